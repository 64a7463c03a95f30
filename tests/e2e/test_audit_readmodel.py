"""The audit log's SQL read model (services/common/audit_readmodel.py), kept by the running projector:
entries appended to the log show in the pages once projected, exactly as appended; pages by tenant,
action, actor and grant, keyset by seq; a tenant's schema holds its entries only; a replay (the cursor
moved back) writes nothing twice."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from services.common import audit_readmodel, readside
from services.common.audit import AuditLog, Entry, entry_hash, shared_log
from services.common.audit_readmodel import ENTRIES, AuditProjection, page
from tests.conftest import System, audit_caught_up, unique, wait_for

T, OTHER = "xujialou", "shengzhuang"
ACTION = "test.readmodel"


@pytest.fixture
def log(system: System) -> AuditLog:
    return shared_log()


def append_some(log: AuditLog, actor: str, grant: str, n: int = 9) -> list[Entry]:
    """n entries by `actor`: tenants T, OTHER and the district level in turn; every other one under `grant`."""
    return [
        log.append(
            actor=actor,
            role="ops",
            action=ACTION,
            outcome="done",
            tenant=(T, OTHER, "")[i % 3],
            target=f"thing/{i}",
            grant_id=grant if i % 2 else "",
            request_id=f"req-{i}",
            detail={"i": i, "note": "备注", "nested": {"z": [1, 2.5, "二"], "a": None}},
        )
        for i in range(n)
    ]


def newest_first(entries: list[Entry], keep: Any = lambda e: True) -> list[int]:
    return [e.seq for e in reversed(entries) if keep(e)]


def test_appended_entries_show_in_the_pages_exactly_as_appended(log: AuditLog) -> None:
    actor, grant = unique("auditor"), f"gr-{secrets.token_hex(14)}"
    appended = append_some(log, actor, grant)
    wait_for(lambda: len(page(actor=actor, limit=100)[0]) == len(appended))
    shown, more = page(actor=actor, limit=100)
    assert more is None and shown == appended[::-1]  # every field, the tenant and the detail as appended
    assert all(entry_hash(e) == e.hash for e in shown)  # so each hash still verifies

    # Keyset pages by seq, newest first, across every schema.
    seen: list[int] = []
    before = None
    while True:
        part, before = page(actor=actor, before=before, limit=4)
        seen += [e.seq for e in part]
        if before is None:
            break
        assert before == part[-1].seq
    assert seen == newest_first(appended)

    # Filters: one tenant, several, the district level, a grant's entries, an action.
    assert [e.seq for e in page(tenant=T, actor=actor, limit=100)[0]] == newest_first(appended, lambda e: e.tenant == T)
    some = page(tenants=(OTHER, ""), actor=actor, limit=2)
    assert [e.seq for e in some[0]] == newest_first(appended, lambda e: e.tenant in (OTHER, ""))[:2]
    assert some[1] == some[0][-1].seq
    district, _ = page(tenant="", actor=actor, limit=100)
    assert [e.seq for e in district] == newest_first(appended, lambda e: e.tenant == "")
    trail, _ = page(grant_id=grant, limit=100)
    assert [e.seq for e in trail] == newest_first(appended, lambda e: e.grant_id == grant)
    assert [e.seq for e in page(tenant=T, grant_id=grant, limit=100)[0]] == newest_first(
        appended, lambda e: e.grant_id == grant and e.tenant == T
    )
    assert page(tenant=T, action=ACTION + ".none", actor=actor, limit=10) == ([], None)
    assert page(tenant="gotham", limit=10) == ([], None)  # no such tenant: nothing, not an error


def test_a_tenants_schema_holds_its_entries_only(system: System, log: AuditLog) -> None:
    actor = unique("auditor")
    appended = append_some(log, actor, f"gr-{secrets.token_hex(14)}", n=6)
    audit_caught_up()
    for tenant in (T, OTHER, ""):
        with readside.connect(tenant) as conn:
            held = conn.execute(select(ENTRIES.c.seq).where(ENTRIES.c.actor == actor).order_by(ENTRIES.c.seq)).all()
        assert [r.seq for r in held] == [e.seq for e in appended if e.tenant == tenant]
    # Through the API: T's subdistrict admin reads T's entries, never OTHER's.
    admin = system.auth("subdistrict_admin", T)
    resp = requests.get(f"{system.gateway}/api/v1/tenants/{T}/audit?actor={actor}", headers=admin, timeout=30)
    assert resp.status_code == 200, resp.text
    shown = resp.json()["entries"]
    assert [e["seq"] for e in shown] == newest_first(appended, lambda e: e.tenant == T)
    assert {e["tenant"] for e in shown} == {T}


def _rows() -> dict[str, int]:
    counts = {}
    for tenant, _ in readside.all_schemas():
        with readside.connect(tenant) as conn:
            counts[tenant] = int(conn.execute(select(func.count()).select_from(ENTRIES)).scalar() or 0)
    return counts


def test_a_replay_writes_nothing_twice(system: System, log: AuditLog) -> None:
    append_some(log, unique("auditor"), f"gr-{secrets.token_hex(14)}", n=3)
    head = audit_caught_up()
    held = _rows()
    assert sum(held.values()) == head  # every entry of the log once, in its tenant's schema
    audit_readmodel.move_cursor(0)  # as a rebuild would: project the whole log again
    assert AuditProjection(log, batch=50).catch_up() == 0  # (beside the running projector, replaying too)
    wait_for(lambda: audit_readmodel.projected_seq() >= head)
    assert _rows() == held

    # The projector goes on from where the replay ended.
    actor = unique("auditor")
    more = append_some(log, actor, "", n=2)
    wait_for(lambda: len(page(actor=actor, limit=10)[0]) == 2)
    assert sum(_rows().values()) == sum(held.values()) + len(more)


def test_the_projection_lag_is_measured(system: System, log: AuditLog) -> None:
    append_some(log, unique("auditor"), "", n=1)
    audit_caught_up()
    metrics = f"http://127.0.0.1:{system.settings.projector_metrics_port}/metrics"
    found = wait_for(
        lambda: [
            line
            for line in requests.get(metrics, timeout=10).text.splitlines()
            if line.startswith('hongling_projection_lag_seconds_count{projection="audit"}')
        ]
    )
    assert float(found[0].rsplit(" ", 1)[1]) >= 1
