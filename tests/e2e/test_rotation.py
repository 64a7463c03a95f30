"""Rotating every secret of the running system without downtime, the way docs/runbook.md (轮换密钥) says:
three rolling restarts (accept the next secret; switch to it, accepting the former; drop the former) with
`python -m services.common.rekey rotate` after the switch, while residents keep reporting through the gateway.

Proved here: no report is refused for a secret (never a 401, 403 or 5xx; a restarting service answers 503
with Retry-After and a restarting gateway refuses the connection, both retried as a client would), every
accepted report reaches dispatch, personal data stored before the rotation and during it reads back once only
the new key is left, a session opened before the switch still works after it, the audit chain verifies with the
new key, and a principal signed with the former secret is refused at the end.

The processes on the paths this load and these reads take roll (org, intake, dispatch, gateway); afterwards
the test rotates them back to the stack's own secrets, so the tests after it run as before."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import pytest
import requests
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common import audit
from tests.conftest import REPO, TEST_COMMUNITY, System, call_metadata, wait_for
from tests.e2e.test_auth import create_user, session
from tests.e2e.test_org_api import T, new_person, org, phone
from tests.e2e.test_skeleton_flow import ISSUE

ROLL = ("org", "intake", "dispatch", "gateway")  # services first, the gateway last
TENANT = "qiujiadian"
KEYS = ("PRINCIPAL_SECRET", "SESSION_SECRET", "DATA_KEY")
EXTRA = [f"HONGLING_{k}_ACCEPTED" for k in KEYS] + ["HONGLING_AUDIT_TRUSTED_KEYS"]


def public(secret: str) -> str:
    return audit.public_key_text(audit.signing_key(secret).public_key())


def phase(current: Mapping[str, str], other: Mapping[str, str] | None, trusted: str | None) -> dict[str, str | None]:
    """The environment of one phase: `current` signs and seals; `other` (the rotation's other secrets) is
    accepted; `trusted`: public audit keys besides the current one. None unsets a variable."""
    env: dict[str, str | None] = {f"HONGLING_{k}": v for k, v in current.items()}
    for k in KEYS:
        env[f"HONGLING_{k}_ACCEPTED"] = other[k] if other else None
    env["HONGLING_AUDIT_TRUSTED_KEYS"] = trusted
    return env


def apply(env: Mapping[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def restart_together(system: System, env: Mapping[str, str | None]) -> None:
    """Restart the rolled processes at once (no load runs: putting the stack back after the test)."""
    apply(env)
    system.services_sh("stop", *ROLL)
    system.services_sh("start", *ROLL)


def roll(system: System, env: Mapping[str, str | None], names: tuple[str, ...] = ROLL) -> None:
    """Restart the processes one at a time with this phase's environment (services.sh start waits until each
    is healthy), as an orchestrator rolls a deployment."""
    apply(env)
    for name in names:
        started = time.monotonic()
        system.services_sh("stop", name)
        system.services_sh("start", name)
        print(f"[rotation] {name} restarted in {time.monotonic() - started:.1f} s", flush=True)


def command(env: Mapping[str, str | None], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in env} | {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=full, capture_output=True, text=True, timeout=600, check=False
    )


class Load:
    """Residents reporting at a steady pace through the gateway, as a client with retries would."""

    def __init__(self, system: System) -> None:
        self.url = f"{system.gateway}/api/v1/tenants/{TENANT}/issues"
        self.statuses: Counter[int] = Counter()
        self.refused_connections = 0
        self.no_retry_after = 0
        self.accepted: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                resp = requests.post(self.url, json={**ISSUE, "title": f"轮换中的报事{n}"}, timeout=30)
            except requests.ConnectionError:
                self.refused_connections += 1  # the gateway itself is restarting: try again shortly
                self.stop.wait(0.3)
                continue
            self.statuses[resp.status_code] += 1
            if resp.status_code == 201:
                self.accepted.append(resp.json()["issue"]["id"])
            elif resp.status_code == 503 and not resp.headers.get("Retry-After"):
                self.no_retry_after += 1
            self.stop.wait(0.25)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


@pytest.fixture
def secrets_back(system: System) -> Iterator[dict[str, str]]:
    """The stack's own secrets; afterwards the rolled processes are rotated back to them (the data sealed and
    the checkpoints signed meanwhile move back with `rekey rotate`), so later tests see the stack as it was."""
    own = {k: os.environ[f"HONGLING_{k}"] for k in (*KEYS, "AUDIT_SIGNING_KEY")}
    saved = {name: os.environ.get(name) for name in EXTRA}
    state: dict[str, Any] = {}
    yield state
    rotated = state.get("new")
    if rotated:
        back = phase(own, {k: rotated[k] for k in KEYS}, public(rotated["AUDIT_SIGNING_KEY"]))
        restart_together(system, back)
        done = command(back, "-m", "services.common.rekey", "rotate")
        assert done.returncode == 0, done.stdout + done.stderr
    restart_together(system, {f"HONGLING_{k}": v for k, v in own.items()} | saved)
    wait_for(lambda: requests.get(f"{system.gateway}/readyz", timeout=5).status_code == 200, timeout=120)


@pytest.mark.timeout(1200)
def test_every_secret_rotates_while_residents_keep_reporting(system: System, secrets_back: dict[str, Any]) -> None:
    own = {k: os.environ[f"HONGLING_{k}"] for k in (*KEYS, "AUDIT_SIGNING_KEY")}
    new = {k: secrets.token_urlsafe(32) for k in own}
    secrets_back["new"] = new
    admin = system.auth("subdistrict_admin", "*")
    before = phone()
    person_before = new_person(system, TEST_COMMUNITY, phone=before)["id"]
    user = create_user(system, admin, role="subdistrict_admin", tenant=T)
    signed_in = session(system, user)  # a session signed with the stack's own session secret
    assert command(phase(own, None, None), "-m", "services.common.audit", "checkpoint").returncode == 0

    with Load(system) as load:
        # 1. Every process accepts the next secrets (and trusts the next audit key); nothing signs with them yet.
        roll(system, phase(own, new, public(new["AUDIT_SIGNING_KEY"])))
        # 2. Every process signs and seals with the next secrets, accepting the former ones.
        switched = phase(new, own, public(own["AUDIT_SIGNING_KEY"]))
        roll(system, switched)
        during = phone()
        person_during = new_person(system, TEST_COMMUNITY, phone=during)["id"]
        resp = requests.get(f"{system.gateway}/api/v1/tenants/{T}/org/communities?page_size=1", headers=signed_in)
        assert resp.status_code == 200, resp.text  # the session from before the switch is still good
        moved = command(switched, "-m", "services.common.rekey", "rotate")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "[rekey" in moved.stdout  # counted progress, database by database
        # 3. The former secrets are dropped; the former audit key stays trusted for heads published with it.
        roll(system, phase(new, None, public(own["AUDIT_SIGNING_KEY"])))
        load.stop.wait(2)

    assert load.accepted, f"no report was accepted during the rotation: {dict(load.statuses)}"
    refused = {code: n for code, n in load.statuses.items() if code not in (201, 503)}
    assert not refused, f"answers other than 201/503 during the rotation: {refused}"
    assert load.no_retry_after == 0  # every 503 said when to retry

    def reached_dispatch() -> bool:
        url = f"{system.gateway}/api/v1/tenants/{TENANT}/issues"
        return all(requests.get(f"{url}/{i}", headers=admin, timeout=10).json().get("task") for i in load.accepted)

    wait_for(reached_dispatch, timeout=180, interval=1)

    for pid, expected in ((person_before, before), (person_during, during)):
        resp = org(system, "GET", f"people/{pid}?reveal=true", role="community_worker", scope=T)
        assert resp.status_code == 200 and resp.json()["phone"] == expected, resp.text

    checked = command(phase(new, None, None), "-m", "services.common.audit", "verify")
    assert checked.returncode == 0 and "audit chain intact" in checked.stdout, checked.stdout + checked.stderr

    # A principal signed with the former secret (as this test process still signs) is refused now.
    stub = org_pb2_grpc.OrgServiceStub(system.channel("org"))
    with pytest.raises(grpc.RpcError) as exc:
        stub.ListTenants(org_pb2.ListTenantsRequest(), metadata=call_metadata(system.settings, None), timeout=10)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    print(  # the figures for the closing note
        f"rotation under load: {len(load.accepted)} accepted, {dict(load.statuses)}, "
        f"{load.refused_connections} connections refused while the gateway restarted"
    )
