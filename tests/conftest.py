"""Shared fixtures. Unit tests use none of them; integration and e2e tests need the real stack
(Kafka + FerretDB) that `make test` starts (deploy/local/test.sh) and exports in the environment."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from kafka import KafkaConsumer, TopicPartition
from pymongo import MongoClient

from gateway.tokens import TOKEN_ROLES, TokenFile, TokenRecord, make_record
from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from services.common.settings import SECRET_SETTINGS, Settings, get_settings
from services.common.tenants import tenant_slugs
from services.org.seed import Rect

REPO = Path(__file__).resolve().parents[1]
# No process starts without secrets (services/common/settings.py). deploy/local/test.sh exports its fresh state
# dir's; a bare `pytest tests/unit` gets random ones for this session (inherited by anything it starts).
for _name in SECRET_SETTINGS:
    if not os.environ.get(f"HONGLING_{_name.upper()}"):
        os.environ[f"HONGLING_{_name.upper()}"] = secrets.token_urlsafe(32)
SERVICES_SH = REPO / "deploy" / "local" / "services.sh"
# Every tenant of the test stack has a grid around this point (System.place_test_grids), in 测试社区.
TEST_POINT = (36.1876, 117.1296)
TEST_COMMUNITY = "test-place"


def _port_open(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def infra(settings: Settings) -> Settings:
    mongo_hostport = settings.mongo_uri.split("//", 1)[1].strip("/")
    missing = [n for n, hp in (("Kafka", settings.kafka_bootstrap), ("FerretDB", mongo_hostport)) if not _port_open(hp)]
    if missing:
        msg = f"{' and '.join(missing)} not reachable: run these tests with `make test`"
        if os.environ.get("HONGLING_REQUIRE_INFRA"):
            pytest.fail(msg)
        pytest.skip(msg)
    return settings


@pytest.fixture(scope="session")
def mongo_client(infra: Settings) -> Iterator[MongoClient[Any]]:
    client: MongoClient[Any] = MongoClient(infra.mongo_uri, tz_aware=True)
    yield client
    client.close()


@dataclass
class System:
    settings: Settings
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    expired_token: str = ""

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    @property
    def frontdoor(self) -> str:
        """host:port of the gateway's gRPC front door for district departments (gateway/frontdoor.py)."""
        return f"127.0.0.1:{self.settings.frontdoor_port}"

    @property
    def tokens_file(self) -> Path:
        """The session's gateway API token file (HONGLING_API_TOKENS_FILE of the services it starts)."""
        return Path(self.settings_state_dir) / "test-api-tokens.toml"

    def token(self, role: str, tenant: str = "*") -> str:
        """An API token of this role scoped to one tenant, or to every tenant with '*' (made by the fixture).
        A member's acts in one tenant only, as the placeholder helper person:test-member-<tenant> (no such
        person exists: enough for the policy; use member_auth for a real one). A community worker's works
        for one community of one tenant: TEST_COMMUNITY, where issues at TEST_POINT are placed (worker_auth
        makes one for another community)."""
        return self.tokens[(role, tenant)]

    def worker_auth(self, tenant: str, community: str, sub: str = "") -> dict[str, str]:
        """The Authorization header of a new community worker's token for this community of this tenant (its
        sub: `sub` or a fresh test-worker-…); the running gateway picks it up without a restart."""
        token, _ = TokenFile(self.tokens_file).create(
            sub or f"test-worker-{uuid.uuid4().hex[:8]}", "community_worker", [tenant], days=1, community=community
        )
        return {"Authorization": f"Bearer {token}"}

    def member_auth(self, tenant: str, kind: str, helper_id: str) -> dict[str, str]:
        """The Authorization header of a new member token bound to this helper (member_unit, person or team)
        in this tenant; the running gateway picks it up without a restart."""
        token, _ = TokenFile(self.tokens_file).create(
            f"test-member-{uuid.uuid4().hex[:8]}", "member", [tenant], days=1, responder=f"{kind}:{helper_id}"
        )
        return {"Authorization": f"Bearer {token}"}

    def auth(self, role: str, tenant: str = "*") -> dict[str, str]:
        """The Authorization header of system.token(role, tenant)."""
        return {"Authorization": f"Bearer {self.token(role, tenant)}"}

    def write_tokens(self) -> None:
        """A fresh token file: one token per role x (each tenant, '*'), and one expired; exported for the services."""
        now = datetime.now(UTC)
        records: list[TokenRecord] = []
        for role in TOKEN_ROLES:
            for tenant in (*tenant_slugs(), "*"):
                if role in ("member", "community_worker") and tenant == "*":
                    continue  # a member acts in one tenant, as one helper; a community worker for one community
                responder = f"person:test-member-{tenant}" if role == "member" else None
                community = TEST_COMMUNITY if role == "community_worker" else None
                sub = f"test-{role}-{'all' if tenant == '*' else tenant}"
                self.tokens[(role, tenant)], record = make_record(
                    sub, role, [tenant], now + timedelta(days=1), now, responder, community
                )
                records.append(record)
        self.expired_token, record = make_record(
            "test-expired", "subdistrict_admin", ["*"], now - timedelta(minutes=1), now - timedelta(days=1)
        )
        records.append(record)
        self.tokens_file.unlink(missing_ok=True)
        TokenFile(self.tokens_file).update(lambda _old: records)
        os.environ["HONGLING_API_TOKENS_FILE"] = str(self.tokens_file)

    def services_sh(self, *args: str) -> None:
        subprocess.run(["bash", str(SERVICES_SH), *args], check=True, cwd=REPO)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: no graceful shutdown, no final commit."""
        pid_file = Path(self.settings_state_dir) / "run" / f"{name}.pid"
        pid = int(pid_file.read_text())
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        pid_file.unlink()

    @property
    def settings_state_dir(self) -> str:
        return os.environ.get("HONGLING_STATE_DIR", str(REPO / ".local" / "state"))

    def start(self, *names: str) -> None:
        self.services_sh("start", *names)

    def place_test_grids(self) -> None:
        """In every tenant, a community with one grid around TEST_POINT, so issues reported there are placed
        (intake refuses a location outside every grid of the tenant)."""
        lat, lon = TEST_POINT
        boundary = Rect(lon - 0.005, lat - 0.005, lon + 0.005, lat + 0.005).geojson()
        for tenant in tenant_slugs():
            base = f"{self.gateway}/api/v1/tenants/{tenant}/org"
            h = self.auth("subdistrict_admin", "*")
            for path, body in (
                ("communities", {"id": TEST_COMMUNITY, "name_zh": "测试社区"}),
                (
                    "grids",
                    {
                        "id": f"{TEST_COMMUNITY}-g",
                        "community_id": TEST_COMMUNITY,
                        "name_zh": "测试网格",
                        "boundary_geojson": boundary,
                    },
                ),
            ):
                resp = requests.post(f"{base}/{path}", json=body, headers=h, timeout=15)
                if resp.status_code not in (201, 409):
                    raise RuntimeError(f"cannot create the test {path} in {tenant}: {resp.status_code} {resp.text}")

    def channel(self, service: str) -> grpc.Channel:
        return grpc.insecure_channel(self.settings.address(service))


@pytest.fixture(scope="session")
def system(infra: Settings) -> Iterator[System]:
    sys_ = System(infra)
    sys_.write_tokens()  # before the gateway starts: it reads HONGLING_API_TOKENS_FILE at start-up
    # The suite sends many requests quickly from 127.0.0.1 with a few tokens: lift the gateway's per-IP
    # and per-caller rate limits for this stack. Log-in limits stay at their defaults (tests/e2e/test_auth.py).
    for name in ("IP", "PRINCIPAL"):
        os.environ.setdefault(f"HONGLING_RATE_{name}_PER_SECOND", "100000")
        os.environ.setdefault(f"HONGLING_RATE_{name}_BURST", "100000")
    os.environ.setdefault("HONGLING_RATE_FOLLOW_PER_MINUTE", "100000")  # follow-up code checks (评单)
    # Some tests move a timer in the database as another dispatch process would; the rescan that finds such
    # a timer runs every 5 s in this stack instead of every minute, so they do not wait for it.
    os.environ.setdefault("HONGLING_TIMER_RESCAN_SECONDS", "5")
    # An import job left by a killed org service is taken over once its lease lapses: 10 s here, not 30.
    os.environ.setdefault("HONGLING_IMPORT_JOB_LEASE_SECONDS", "10")
    sys_.services_sh("start")
    # The gateway answers /healthz before every service is SERVING; wait for /readyz too.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{sys_.gateway}/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.3)
    sys_.place_test_grids()
    yield sys_
    sys_.services_sh("stop")


def read_topic(bootstrap: str, topic: str, deadline_seconds: float = 120.0) -> list[Any]:
    """Every record now on the topic (all partitions, from the beginning, up to their end offsets as they were
    when asked), read without a group. Reads until each partition reaches that end, however slowly the broker
    answers on a busy machine (a pause between records does not end it), within a generous deadline."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        records: list[Any] = []
        deadline = time.monotonic() + deadline_seconds
        while any(consumer.position(p) < ends[p] for p in parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: could not read to its end in {deadline_seconds:.0f} s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def call_metadata(
    settings: Settings,
    tenant: str | None,
    *,
    role: str = "subdistrict_admin",
    scope: tuple[str, ...] | None = None,
    community: str | None = None,
) -> list[tuple[str, str]]:
    """Metadata the gateway would send: a freshly minted principal and the tenant. A community worker's
    principal carries `community` (default: TEST_COMMUNITY, which every tenant of the test stack has)."""
    scope = scope if scope is not None else ((tenant,) if tenant else ())
    if role == "community_worker" and community is None:
        community = TEST_COMMUNITY
    who = Principal(sub="test-admin", role=role, tenants=scope, community=community)
    md = [(METADATA_KEY, mint(who, settings.principal_secret))]
    if tenant:
        md.append((TENANT_KEY, tenant))
    return md


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll until predicate() returns something truthy; returns it, or fails the test at the timeout.

    The timeout is a deadline for "it never happens", not a measure of speed: on a busy shared machine
    everything can take many times longer than on an idle one, so keep it generous (speed is bench/'s).
    To show that something did *not* happen, wait for a later event that would have come after it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


def audit_caught_up() -> int:
    """Wait until the audit log's SQL read model (services/common/audit_readmodel.py, kept by the running
    projector) holds every entry appended so far; returns the log's last seq. Call it before reading a
    page or a grant's trail that must show an entry just caused: those pages are eventually consistent."""
    from services.common import audit_readmodel
    from services.common.audit import shared_log

    head = shared_log().last_seq()
    wait_for(lambda: audit_readmodel.projected_seq() >= head)
    return head
