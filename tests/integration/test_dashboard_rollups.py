"""The dashboard's rollups on the real read side (PostgreSQL), kept by the projection's own code:

- states fed to the projections as the projector would (the same state again, an older one after a newer
  one) change the counts exactly once per event, and what is kept equals a recount from the rows;
- a task whose completion deadline really passes (dispatch's timer marks it) counts as overdue until it is
  done, through the services' stats methods;
- migration 0003 gives rows projected before it their facts and counts.
The rebuild from the state topics is tests/integration/test_read_models.py (its snapshot holds the rollups).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from alembic import command
from alembic.config import Config
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.dispatch.v1.dispatch_pb2_grpc import DispatchServiceStub
from hongling.intake.v1 import intake_pb2 as ipb
from pymongo import MongoClient
from sqlalchemy import Connection, Table, insert, select, text

from services.common import readside, rollups
from services.common.projection import State
from services.common.rollups import DAYS, DURATIONS, Tally
from services.dispatch import readmodel as dispatch
from services.dispatch.documents import ReportDoc, TaskDoc, TaskEventDoc, WhistleDoc
from services.intake import readmodel as intake
from services.intake.documents import HistoryDoc, IssueDoc, LocationDoc, PlaceDoc
from tests.conftest import System, unique, wait_for
from tests.integration.test_dispatch_service import Scene, report, scene, task_of, travel, who
from tests.integration.test_dispatch_service import dispatch as dispatch_as
from tests.integration.test_intake_service import Stub
from tests.integration.test_intake_service import intake as intake_as

__all__ = ["scene"]  # the module-scoped fixture of test_dispatch_service: this module's own community

T = "shengzhuang"
REAL = "xujialou"  # the tenant of test_dispatch_service's helpers (scene, travel)


# ---------------------------------------------------------------- documents as the state topics carry them


def issue_raw(ident: str, community: str, version: int, steps: list[tuple[str, datetime]], **kw: Any) -> dict[str, Any]:
    doc = IssueDoc(
        id=ident,
        title="仪表盘测试",
        description="楼道灯不亮",
        channel="online",
        category=kw.get("category", "property_repair"),
        location=LocationDoc(lat=36.19, lon=117.13, address="测试路1号"),
        status=steps[-1][0],
        created_by="itest",
        created_at=steps[0][1],
        urgency="routine",
        place=PlaceDoc(community_id=community, grid_id=f"{community}-g"),
        duplicate_of=kw.get("duplicate_of", ""),
        history=[HistoryDoc(at=at, kind=kind, status=kind) for kind, at in steps],
        version=version,
        updated_at=steps[-1][1],
    )
    return dict(doc.to_mongo().to_dict())


def task_raw(
    ident: str, community: str, version: int, steps: list[tuple[str, datetime]], missed: datetime | None = None
) -> dict[str, Any]:
    history = [
        TaskEventDoc(at=at, action="create" if i == 0 else status, to_status=status)
        for i, (status, at) in enumerate(steps)
    ]
    if missed is not None:  # the deadline passed while the task was in the status it had then (not its last one)
        then = [status for status, at in steps if at <= missed] or [steps[0][0]]
        history.append(TaskEventDoc(at=missed, action="deadline_missed", to_status=then[-1]))
    doc = TaskDoc(
        id=ident,
        issue_id=f"{ident}-issue",
        status=steps[-1][0],
        created_at=steps[0][1],
        source_event_id=unique("ev"),
        community_id=community,
        grid_id=f"{community}-g",
        report_in_by=steps[0][1] + timedelta(hours=72),
        complete_by=steps[0][1] + timedelta(days=15),
        deadline_missed=missed is not None,
        history=history,
        version=version,
        updated_at=steps[-1][1],
    )
    return dict(doc.to_mongo().to_dict())


def whistle_raw(
    ident: str, community: str, version: int, blown: datetime, reports: list[tuple[str, datetime, bool]]
) -> dict[str, Any]:
    doc = WhistleDoc(
        id=ident,
        call_type="service",
        community_id=community,
        issue_ids=[f"{ident}-issue"],
        task_ids=[f"{ident}-task"],
        reports=[
            ReportDoc(responder_kind="member_unit", responder_id=f"u{n}", answer=a, reported_at=at, late=late)
            for n, (a, at, late) in enumerate(reports)
        ],
        report_in_by=blown + timedelta(hours=72),
        complete_by=blown + timedelta(days=15),
        blown_at=blown,
        version=version,
        updated_at=reports[-1][1] if reports else blown,
    )
    return dict(doc.to_mongo().to_dict())


def feed(collection: str, *raws: dict[str, Any]) -> None:
    """One poll's states of one collection, as the projector applies them (the newest per aggregate)."""
    newest: dict[str, State] = {}
    for raw in raws:
        state = State(raw, bson.encode(raw))
        if raw["_id"] not in newest or newest[raw["_id"]].version < state.version:
            newest[raw["_id"]] = state
    projection = intake.PROJECTION if collection == intake.COLLECTION else dispatch.PROJECTION
    projection.apply(T, {collection: newest})


COMMUNITY_TABLES: tuple[Table, ...] = (
    intake.COUNTS,
    intake.CATEGORY_COUNTS,
    dispatch.TASK_COUNTS,
    DAYS,
    DURATIONS,
)


def kept(community: str, tenant: str = T) -> dict[str, dict[tuple[Any, ...], int]]:
    """One community's counts and rollups as the read side holds them (zero rows left out)."""
    with readside.connect(tenant) as conn:
        return _kept(conn, community)


def _kept(conn: Connection, community: str) -> dict[str, dict[tuple[Any, ...], int]]:
    out: dict[str, dict[tuple[Any, ...], int]] = {}
    for table in COMMUNITY_TABLES:
        keys = [c for c in table.primary_key.columns]
        rows = conn.execute(select(*keys, table.c.n).where(table.c.community_id == community, table.c.n != 0))
        out[table.name] = {tuple(r)[:-1]: int(r.n) for r in rows}
    return out


def recounted(conn: Connection, community: str) -> dict[str, dict[tuple[Any, ...], int]]:
    """One community's counts and rollups worked out again from its rows."""
    t = Tally()
    t.update(intake.recount(conn, community_id=community))
    t.update(dispatch.recount(conn, community_id=community))
    return {table.name: {k: n for k, n in t.of(table).items() if k[0] == community} for table in COMMUNITY_TABLES}


# ---------------------------------------------------------------- fed states


def test_states_again_or_older_count_each_event_once_and_match_a_recount(system: System) -> None:
    c = unique("dash")
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(hours=3)
    day = rollups.local_day
    issue, task, call = unique("di"), unique("dt"), unique("dw")
    steps = [
        ("received", t0),
        ("classified", t0 + timedelta(minutes=1)),
        ("whistle_blown", t0 + timedelta(minutes=4)),
        ("in_progress", t0 + timedelta(minutes=30)),
        ("done", t0 + timedelta(hours=2)),
    ]
    issues = [issue_raw(issue, c, n, steps[:n]) for n in range(1, 6)]

    feed(intake.COLLECTION, issues[0])
    first = kept(c)
    assert first["intake_issue_counts"] == {(c, "received"): 1}
    assert first["rollup_days"] == {(c, intake.RECEIVED, day(t0)): 1}
    assert first["rollup_durations"] == {}

    feed(intake.COLLECTION, issues[2])  # whistled
    after_whistle = kept(c)
    assert after_whistle["rollup_days"] == first["rollup_days"]  # still received once
    assert after_whistle["rollup_durations"] == {(c, intake.RECEIVED_TO_WHISTLE, day(steps[2][1]), 0): 1}
    assert after_whistle["intake_issue_category_counts"] == {(c, "property_repair", "whistle_blown"): 1}

    feed(intake.COLLECTION, issues[2])  # the same state again (a re-delivery)
    feed(intake.COLLECTION, issues[1])  # an older one, later
    feed(intake.COLLECTION, issues[0], issues[1])
    assert kept(c) == after_whistle

    feed(intake.COLLECTION, issues[3], issues[4])  # one poll: the newest (done) is applied
    feed(intake.COLLECTION, issues[3])
    done = kept(c)
    assert done["rollup_durations"] == {
        (c, intake.RECEIVED_TO_WHISTLE, day(steps[2][1]), 0): 1,
        (c, intake.RECEIVED_TO_DONE, day(steps[4][1]), 4): 1,  # 2 h: ≤2 h
    }
    assert done["intake_issue_counts"] == {(c, "done"): 1}

    # A task: done, after its deadline was missed; a call: a decline, then the first report-in, then another.
    missed = t0 + timedelta(minutes=50)
    tsteps = [("open", t0), ("accepted", t0 + timedelta(minutes=6)), ("in_progress", t0 + timedelta(minutes=9))]
    tasks = [
        task_raw(task, c, 1, tsteps[:1]),
        task_raw(task, c, 2, tsteps, missed),
        task_raw(task, c, 3, [*tsteps, ("done", t0 + timedelta(hours=2))], missed),
    ]
    reports = [
        ("decline", t0 + timedelta(minutes=2), False),
        ("accept", t0 + timedelta(minutes=20), False),
        ("accept", t0 + timedelta(minutes=25), False),
    ]
    calls = [whistle_raw(call, c, n + 1, t0, reports[:n]) for n in range(4)]
    feed(dispatch.TASK_COLLECTION, tasks[1])
    assert kept(c)["dispatch_task_counts"] == {(c, "in_progress", True): 1}  # overdue now
    for raws in ([tasks[0]], [tasks[1]], [tasks[2], tasks[0]], [tasks[1]]):
        feed(dispatch.TASK_COLLECTION, *raws)
    for raws in ([calls[1]], [calls[3], calls[0]], [calls[2]], [calls[3]]):
        feed(dispatch.WHISTLE_COLLECTION, *raws)
    final = kept(c)
    assert final["dispatch_task_counts"] == {(c, "done", True): 1}  # done: no longer counted as overdue
    assert final["rollup_days"] == {
        (c, intake.RECEIVED, day(t0)): 1,
        (c, dispatch.TASKS_DONE, day(t0 + timedelta(hours=2))): 1,
        (c, dispatch.TASKS_OVERDUE, day(missed)): 1,
        (c, dispatch.WHISTLES_BLOWN, day(t0)): 1,
        (c, dispatch.ANSWERED_IN_TIME, day(t0)): 1,
    }
    assert final["rollup_durations"][(c, dispatch.WHISTLE_TO_REPORT_IN, day(reports[1][1]), 2)] == 1  # 20 min
    with readside.connect(T) as conn:
        assert recounted(conn, c) == final

    # The services answer the same figures (the window: the last 30 local days).
    first_day, last_day = rollups.window(30, rollups.today())
    window = {"community_id": c, "from_day": first_day.isoformat(), "to_day": last_day.isoformat()}
    got = intake_as(system, T).GetIssueStats(ipb.GetIssueStatsRequest(**window))
    assert [(o.category, o.category_zh, o.status, o.count) for o in got.open_issues] == [
        ("property_repair", "物业维修", "done", 1)
    ]
    assert len(got.days) == 30 and got.days[0].day == first_day.isoformat()
    assert sum(d.counts.get(intake.RECEIVED, 0) for d in got.days) == 1
    spans = {s.measure: s for s in got.spans}
    assert spans[intake.RECEIVED_TO_DONE].total == 1 and spans[intake.RECEIVED_TO_DONE].counts[4] == 1
    assert 3600 < spans[intake.RECEIVED_TO_DONE].p50_seconds <= 7200
    assert list(spans[intake.RECEIVED_TO_DONE].upper_bounds_seconds) == list(rollups.UPPER_BOUNDS)
    d = dispatch_as(system, tenant=T).GetDispatchStats(dpb.GetDispatchStatsRequest(**window))
    assert d.overdue_tasks == 0
    totals = {m: sum(x.counts.get(m, 0) for x in d.days) for m in dispatch.DAY_MEASURES}
    assert totals == {m: 1 for m in dispatch.DAY_MEASURES}
    assert d.spans[0].measure == dispatch.WHISTLE_TO_REPORT_IN and d.spans[0].total == 1
    assert d.spans[0].HasField("p90_seconds") and got.spans[0].HasField("p50_seconds")

    # A community worker of that community gets its figures without naming it; another community is refused.
    mine = intake_as(system, T, role="community_worker", community=c)
    own = mine.GetIssueStats(ipb.GetIssueStatsRequest(from_day=window["from_day"], to_day=window["to_day"]))
    assert own == got
    err = mine.fails("GetIssueStats", ipb.GetIssueStatsRequest(**{**window, "community_id": "another"}))
    assert err.code().name == "PERMISSION_DENIED" and "无权访问该社区数据" in (err.details() or "")
    worker = Stub(DispatchServiceStub(system.channel("dispatch")), system, T, "community_worker", community=c)
    own_tasks = worker.GetDispatchStats(
        dpb.GetDispatchStatsRequest(from_day=window["from_day"], to_day=window["to_day"])
    )
    assert own_tasks == d
    err = worker.fails("GetDispatchStats", dpb.GetDispatchStatsRequest(**{**window, "community_id": "another"}))
    assert err.code().name == "PERMISSION_DENIED"


def test_a_window_longer_than_366_days_is_refused_naming_the_field(system: System) -> None:
    err = intake_as(system, T).fails(
        "GetIssueStats", ipb.GetIssueStatsRequest(from_day="2024-01-01", to_day="2025-12-31")
    )
    assert err.code().name == "INVALID_ARGUMENT" and "366" in (err.details() or "")
    resident = intake_as(system, T, role="resident").fails(
        "GetIssueStats", ipb.GetIssueStatsRequest(from_day="2026-01-01", to_day="2026-01-02")
    )
    assert resident.code().name == "PERMISSION_DENIED"


# ---------------------------------------------------------------- a deadline that really passes


def test_a_task_past_its_deadline_is_overdue_until_done(
    system: System, scene: Scene, mongo_client: MongoClient[Any]
) -> None:
    issue = report(system, scene)
    task = task_of(system, issue.id)
    d = dispatch_as(system, tenant=REAL)
    d.ClaimTask(dpb.ClaimTaskRequest(task_id=task.id, claimant=who("member_unit", scene.unit_g1), role="lead"))
    travel(mongo_client, "tasks", task.id, "complete_by", f"t:{task.id}")
    first_day, last_day = rollups.window(2, rollups.today())  # today, and yesterday should it be just past midnight
    window = {"community_id": scene.area.community_id, "from_day": str(first_day), "to_day": str(last_day)}

    def figures() -> tuple[int, dict[str, int]]:
        got = d.GetDispatchStats(dpb.GetDispatchStatsRequest(**window))
        return got.overdue_tasks, {m: sum(x.counts.get(m, 0) for x in got.days) for m in dispatch.DAY_MEASURES}

    wait_for(
        lambda: figures() == (1, {**dict.fromkeys(dispatch.DAY_MEASURES, 0), "whistles_blown": 1, "tasks_overdue": 1}),
        timeout=90,
    )
    for action in ("start", "done"):
        d.TransitionTask(dpb.TransitionTaskRequest(task_id=task.id, action=action))
    wait_for(
        lambda: (
            figures()
            == (
                0,
                {**dict.fromkeys(dispatch.DAY_MEASURES, 0), "whistles_blown": 1, "tasks_overdue": 1, "tasks_done": 1},
            )
        ),
        timeout=90,
    )
    stats = intake_as(system, REAL)

    def issue_figures() -> Any:
        got = stats.GetIssueStats(ipb.GetIssueStatsRequest(**window))
        spans = {s.measure: s.total for s in got.spans}
        opened = [(o.category, o.status, o.count) for o in got.open_issues]
        return (opened, spans) if spans[intake.RECEIVED_TO_DONE] == 1 else None

    opened, spans = wait_for(issue_figures, timeout=90)
    assert opened == [("property_repair", "done", 1)] and spans[intake.RECEIVED_TO_WHISTLE] == 1
    with readside.connect(REAL) as conn:
        community = scene.area.community_id
        assert recounted(conn, community) == _kept(conn, community)


# ---------------------------------------------------------------- migration 0003


@pytest.fixture
def old_schema(system: System) -> Iterator[str]:
    schema = f"hl_itest_{unique('m').replace('-', '_')}"
    yield schema
    with readside.engine().begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def upgrade(schema: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(readside.MIGRATIONS))
    cfg.attributes["schema"] = schema
    with readside.engine().begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_the_migration_gives_rows_projected_before_it_their_facts_and_counts(old_schema: str) -> None:
    """A schema at 0002 with rows (and status counts) as the projection wrote them then; 0003 adds the fact
    columns, fills them from the bodies and works out every count and rollup: the same as projecting anew."""
    upgrade(old_schema, "0002_search_index_flat")
    c = "c-old"
    t0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    steps = [("received", t0), ("whistle_blown", t0 + timedelta(minutes=20)), ("done", t0 + timedelta(hours=30))]
    raws = {
        "issue": issue_raw("i-old", c, 3, steps),
        "dup": issue_raw("i-dup", c, 1, [("duplicate", t0 + timedelta(hours=1))], duplicate_of="i-old"),
        "task": task_raw("t-old", c, 3, [("open", t0), ("in_progress", t0 + timedelta(hours=1))], t0),
        "call": whistle_raw("w-old", c, 2, t0, [("accept", t0 + timedelta(hours=80), True)]),
    }
    old_columns = {
        # (verification_overdue: 0005_filing's.)
        intake.ISSUES: set(intake.ISSUES.c.keys()) - {"duplicate", "whistled_at", "done_at", "verification_overdue"},
        dispatch.TASKS: set(dispatch.TASKS.c.keys()) - {"done_at", "overdue_at"},
        dispatch.WHISTLES: set(dispatch.WHISTLES.c.keys()) - {"first_report_at", "first_report_in_time"},
    }
    rows = [
        (intake.ISSUES, intake.row_of(raws["issue"])),
        (intake.ISSUES, intake.row_of(raws["dup"])),
        (dispatch.TASKS, dispatch.task_row(raws["task"])),
        (dispatch.WHISTLES, dispatch.whistle_row(raws["call"])),
    ]
    with readside.engine().begin() as raw_conn:
        conn = raw_conn.execution_options(schema_translate_map={readside.PLACEHOLDER: old_schema})
        for table, row in rows:
            conn.execute(insert(table).values({k: v for k, v in row.items() if k in old_columns[table]}))
        conn.execute(
            insert(intake.COUNTS).values(
                [{"community_id": k, "status": s, "n": 1} for k in (c, "*") for s in ("done", "duplicate")]
            )
        )
    upgrade(old_schema, "head")

    expected = Tally()
    expected.update(intake.contributions(intake.row_of(raws["issue"])))
    expected.update(intake.contributions(intake.row_of(raws["dup"])))
    expected.update(dispatch.task_contributions(dispatch.task_row(raws["task"])))
    expected.update(dispatch.whistle_contributions(dispatch.whistle_row(raws["call"])))
    with readside.engine().connect() as raw_conn:
        conn = raw_conn.execution_options(schema_translate_map={readside.PLACEHOLDER: old_schema})
        facts = conn.execute(select(intake.ISSUES.c.id, *intake.FACTS[-3:]).order_by(intake.ISSUES.c.id)).all()
        assert [tuple(f) for f in facts] == [
            ("i-dup", True, None, None),
            ("i-old", False, steps[1][1], steps[2][1]),
        ]
        assert conn.execute(select(dispatch.TASKS.c.overdue_at)).scalar_one() == t0
        assert tuple(conn.execute(select(*dispatch.WHISTLE_FACTS[-2:])).one()) == (t0 + timedelta(hours=80), False)
        for table in COMMUNITY_TABLES:
            held = {tuple(r)[:-1]: int(r.n) for r in conn.execute(select(table).where(table.c.n != 0))}
            assert held == expected.of(table), table.name
