"""The SQL read models (services/common/readside.py), kept by the projector from the state topics: counts that
follow the lists, a replay from the topics' start that writes the same rows, and one schema per tenant.

Real parts only: the running projector process, Kafka, FerretDB and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from hongling.intake.v1 import intake_pb2 as pb
from sqlalchemy import select

from services.common import readside, rollups
from services.common.projection import wait_caught_up
from services.dispatch.readmodel import PROJECTION as DISPATCH
from services.dispatch.readmodel import TASK_COUNTS, TASKS, WHISTLES
from services.intake.readmodel import CATEGORY_COUNTS, COUNTS, ISSUES
from services.intake.readmodel import PROJECTION as INTAKE
from tests.conftest import System, wait_for
from tests.integration.test_intake_service import Area, intake, make_area, new_issue

T = "xujialou"
OTHER = "taiqian"


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return make_area(system, T)


def snapshot(tenant: str, community_id: str) -> dict[str, Any]:
    """The rows of one community's issues, tasks and calls, its counts and its dashboard rollups, as the read
    side holds them."""
    with readside.connect(tenant) as conn:
        issues = conn.execute(select(ISSUES).where(ISSUES.c.community_id == community_id).order_by(ISSUES.c.id)).all()
        tasks = conn.execute(select(TASKS).where(TASKS.c.community_id == community_id).order_by(TASKS.c.id)).all()
        calls = conn.execute(
            select(WHISTLES).where(WHISTLES.c.community_id == community_id).order_by(WHISTLES.c.id)
        ).all()
        counts = conn.execute(
            select(COUNTS.c.status, COUNTS.c.n).where(COUNTS.c.community_id == community_id, COUNTS.c.n != 0)
        ).all()
        kept = {}
        for table in (CATEGORY_COUNTS, TASK_COUNTS, rollups.DAYS, rollups.DURATIONS):
            mine = select(table).where(table.c.community_id == community_id, table.c.n != 0)
            kept[table.name] = sorted(tuple(r) for r in conn.execute(mine))
    return {
        "issues": [tuple(r) for r in issues],
        "tasks": [tuple(r) for r in tasks],
        "calls": [tuple(r) for r in calls],
        "counts": sorted(counts),
        "rollups": kept,
    }


def test_counts_follow_the_issues_of_a_community(system: System, area: Area) -> None:
    svc = intake(system)
    made = [svc.CreateIssue(new_issue(area.point(1, north_m=i * 50.0), title=f"计数{i}")) for i in range(3)]

    def listed_statuses() -> dict[str, int]:
        got = svc.ListIssues(pb.ListIssuesRequest(community_id=area.community_id, page_size=100)).issues
        out: dict[str, int] = {}
        for issue in got:
            out[issue.status] = out.get(issue.status, 0) + 1
        return out

    def settled() -> bool:
        counts = svc.CountIssues(pb.CountIssuesRequest(community_id=area.community_id))
        return counts.total == len(made) and dict(counts.by_status) == listed_statuses()

    # Each issue moves on by itself (classified, then whistle_blown): counts and list agree once projected.
    wait_for(settled)
    tenant_total = svc.CountIssues(pb.CountIssuesRequest()).total
    assert tenant_total >= len(made)
    other = intake(system, tenant=OTHER).CountIssues(pb.CountIssuesRequest(community_id=area.community_id))
    assert other.total == 0 and not other.by_status  # another tenant's schema knows nothing of them


def test_rows_live_in_their_tenants_schema_only(system: System, area: Area) -> None:
    issue = intake(system).CreateIssue(new_issue(area.point(2), title="只在本街道"))
    wait_for(
        lambda: (
            snapshot(T, area.community_id)["issues"]
            and issue.id in [r[0] for r in snapshot(T, area.community_id)["issues"]]
        )
    )
    assert snapshot(OTHER, area.community_id)["issues"] == []
    assert readside.schema_for(T) == f"hl_{T}" and readside.schema_for("") == "hl_district"
    with pytest.raises(ValueError):
        readside.schema_for('x"; drop schema hl_taiqian; --')


def test_a_rebuild_from_the_state_topics_writes_the_same_rows(system: System, area: Area) -> None:
    """Stop the projector and rebuild: every read model dropped, its schema made again, every state record
    of the topics projected again from their start. The community's rows (versions, bodies), counts and
    dashboard rollups come back exactly as they were; then the projector runs on as before."""
    svc = intake(system)
    made = [svc.CreateIssue(new_issue(area.point(1, east_m=i * 60.0), title=f"重建{i}")) for i in range(2)]
    # Let the issues settle (whistle blown: their tasks exist) and the projections catch up with them.
    wait_for(lambda: all(svc.GetIssue(pb.GetIssueRequest(id=m.id)).status == "whistle_blown" for m in made), timeout=90)
    bootstrap = system.settings.kafka_bootstrap

    def caught_up() -> dict[str, Any] | None:
        if not (wait_caught_up(INTAKE, bootstrap, 60) and wait_caught_up(DISPATCH, bootstrap, 60)):
            return None
        found = snapshot(T, area.community_id)
        mine = {m.id for m in made}
        whistled = found["rollups"]["rollup_durations"]  # the issues' whistles, as intake has them
        ok = mine <= {r[0] for r in found["issues"]} and len(found["tasks"]) >= len(made) and whistled
        return found if ok else None

    before = wait_for(caught_up, timeout=120)
    system.services_sh("stop", "projector")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "services.projector", "--rebuild"], capture_output=True, text=True, timeout=900
        )
    finally:
        system.start("projector")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "intake: caught up" in done.stdout and "dispatch: caught up" in done.stdout
    after = snapshot(T, area.community_id)
    assert after == before
    assert after["rollups"]["rollup_days"] and after["rollups"]["intake_issue_category_counts"]
    # And the projector carries on from there.
    later = svc.CreateIssue(new_issue(area.point(2, north_m=80.0), title="重建之后"))
    wait_for(lambda: later.id in {r[0] for r in snapshot(T, area.community_id)["issues"]})


def test_the_projector_reports_its_lag(system: System) -> None:
    port = system.settings.metrics_port("projector")

    def lag_counted() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return any(
            line.startswith('hongling_projection_lag_seconds_count{projection="intake"}')
            and float(line.split()[-1]) > 0
            for line in text.splitlines()
        )

    wait_for(lag_counted)
