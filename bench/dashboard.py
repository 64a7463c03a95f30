"""The dashboard at scale: its figures come from rollups, so its cost must not grow with the issues.

Runs against a running stack (deploy/local/test.sh bench starts a private one, the projector included).

1. Load: issues with their tasks and calls are projected into one tenant's read models (TENANT) by the
   projector's own code (Projection.apply with the states the relay would send: intake's and dispatch's
   refresh, rows and rollups in one transaction per batch), from realistic documents: read_scale's issues
   and tasks (varied Chinese text, statuses over the real lifecycle, three years of history, 12
   communities), each task with its done step, ~5% of the unfinished ones past their deadline and marked
   (deadline_missed), and each task's call with report-ins (most accept, some late, some never). Ids start
   "db": an earlier run's rows are dropped first and the tenant's counts worked out again.
2. Check: the rollups equal a recount from the rows (rollups = sum of every row's contributions).
3. Measure, at SIZES[0] issues and again at SIZES[-1]: the dashboard route through the gateway (what the
   portal waits for: both services' gRPC calls and the JSON), the two gRPC calls, and the two read-model
   queries alone (SQL), REPS times each, for the tenant over 30 and 366 days and for one community over 30
   days; and what one call reads: every statement the read-model queries run, EXPLAIN (ANALYZE, BUFFERS)ed
   (table rows scanned, buffers touched), which unlike times does not depend on what else the machine does.
   Goals: rows read within the bound that holds at any data size (`bound`: window days × (day measures +
   span measures × buckets) + categories × statuses + task statuses × 2; below it while a sparse tenant
   still has empty days and buckets, which is why the rows read rise from the small size to the large),
   and gateway p99 under 50 ms at the large size, at most 2x its p99 at the small.

    HONGLING_TEST_PORT_BASE=28000 bash deploy/local/test.sh bench bench/dashboard.py
    HONGLING_BENCH_DASH_SIZES=10000,100000 HONGLING_BENCH_DASH_REPS=200
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import bson
import grpc
import read_scale as rs
import requests
from benchlib import admin_headers, percentile
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.dispatch.v1 import dispatch_pb2_grpc as dpb_grpc
from hongling.intake.v1 import intake_pb2 as ipb
from hongling.intake.v1 import intake_pb2_grpc as ipb_grpc
from sqlalchemy import delete, event, select, text

from services.common import context, readside, rollups
from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from services.common.projection import State
from services.common.settings import get_settings
from services.dispatch import domain as ddomain
from services.dispatch import readmodel as dreadmodel
from services.dispatch.documents import ReportDoc, TaskEventDoc, WhistleDoc
from services.intake import domain as idomain
from services.intake import readmodel as ireadmodel

TENANT = os.environ.get("HONGLING_BENCH_DASH_TENANT", "qiujiadian")
SIZES = tuple(int(n) for n in os.environ.get("HONGLING_BENCH_DASH_SIZES", "10000,100000").split(","))
REPS = int(os.environ.get("HONGLING_BENCH_DASH_REPS", "200"))
SEED = int(os.environ.get("HONGLING_BENCH_SEED", "15"))
BATCH = 1000
PREFIX = "db"  # ids of this benchmark's issues, tasks and calls
GOAL_P99_MS = 50.0
GOAL_GROWTH = 2.0
NOW = rs.NOW


# ---------------------------------------------------------------- documents


def documents(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """One issue's raw document, its task's and its call's (None for a duplicate, which has neither)."""
    issue, task = rs.make(rng)
    issue["_id"] = PREFIX + issue["_id"][2:]
    if task is None:
        return issue, None, None
    task["_id"] = ddomain.task_id_for_issue(issue["_id"])
    task["issue_id"] = issue["_id"]
    call_id = ddomain.whistle_id_for_issue(issue["_id"])
    task["whistle_id"], task["whistle_ids"] = call_id, [call_id]
    steps = {h["kind"]: h["at"] for h in issue["history"]}
    history = task["history"]
    if task["status"] in (ddomain.DONE, ddomain.VERIFIED) and "done" in steps:
        history.append(rs._doc(TaskEventDoc, at=steps["done"], action="done", to_status=ddomain.DONE, by="bench"))
    if task["status"] not in ddomain.FINISHED and task["complete_by"] < NOW:  # the deadline timer's mark
        task["deadline_missed"], task["escalation_level"] = True, "subdistrict"
        history.append(
            rs._doc(TaskEventDoc, at=task["complete_by"], action="deadline_missed", to_status=task["status"], by="d")
        )
    blown = steps.get("whistle_blown", task["created_at"])
    report_in_by = blown + timedelta(hours={"emergency": 0.5, "tackling": 24}.get(task["call_type"], 72))
    reports = []
    if rng.random() < 0.85:
        at = blown + timedelta(minutes=rng.lognormvariate(4.0, 1.5))
        if at < NOW:
            reports.append(
                rs._doc(
                    ReportDoc,
                    responder_kind="member_unit",
                    responder_id=f"unit-{rng.randint(1, 300):03d}",
                    answer="accept",
                    late=at > report_in_by,
                    targeted=True,
                    reported_at=at,
                    by="bench",
                )
            )
    call = rs._doc(
        WhistleDoc,
        id=call_id,
        call_type=task["call_type"],
        community_id=task["community_id"],
        grid_id=task["grid_id"],
        issue_ids=[issue["_id"]],
        task_ids=[task["_id"]],
        reports=reports,
        report_in_by=report_in_by,
        complete_by=task["complete_by"],
        blown_at=blown,
        version=1 + len(reports),
        updated_at=reports[-1]["reported_at"] if reports else blown,
    )
    return issue, task, call


def states(raws: list[dict[str, Any]]) -> dict[str, State]:
    return {r["_id"]: State(r, bson.encode(r)) for r in raws}


# ---------------------------------------------------------------- loading


def remove_earlier() -> None:
    """An earlier run's rows (ids "db…"); then the tenant's counts and rollups worked out from what is left."""
    with readside.begin(TENANT) as conn:
        gone = 0
        for table in (ireadmodel.ISSUES, dreadmodel.TASKS, dreadmodel.WHISTLES):
            gone += conn.execute(delete(table).where(table.c.id.like(f"{PREFIX}%"))).rowcount or 0
        if gone:
            ireadmodel.backfill(conn)
            dreadmodel.backfill(conn)
    if gone:
        print(f"[bench] removed {gone} rows of an earlier run; counts worked out again", flush=True)


def load(rng: random.Random, start: int, stop: int, stats: dict[str, Any]) -> None:
    """Issues start..stop-1 with their tasks and calls, BATCH at a time, through the projections."""
    started = time.perf_counter()
    for n in range(start, stop, BATCH):
        issues, tasks, calls = [], [], []
        for _ in range(min(BATCH, stop - n)):
            issue, task, call = documents(rng)
            issues.append(issue)
            if task is not None and call is not None:
                tasks.append(task)
                calls.append(call)
        if n == start:  # what mongoengine reads, validates and writes back
            rs.check_raw(WhistleDoc, calls[0])
        t0 = time.perf_counter()
        ireadmodel.PROJECTION.apply(TENANT, {ireadmodel.COLLECTION: states(issues)})
        t1 = time.perf_counter()
        dreadmodel.PROJECTION.apply(
            TENANT, {dreadmodel.TASK_COLLECTION: states(tasks), dreadmodel.WHISTLE_COLLECTION: states(calls)}
        )
        t2 = time.perf_counter()
        stats["issue_ms"].append((t1 - t0) * 1000 / len(issues))
        stats["dispatch_ms"].append((t2 - t1) * 1000 / max(1, len(tasks)))
        stats["tasks"] += len(tasks)
        done = n + len(issues)
        if done % 10_000 == 0 or done == stop:
            print(
                f"[bench] projected {done} of {stop} issues ({stats['tasks']} tasks and calls) in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )


def vacuum_analyze() -> float:
    started = time.perf_counter()
    schema = readside.schema_for(TENANT)
    tables = ("intake_issues", "intake_issue_category_counts", "dispatch_tasks", "dispatch_whistles")
    with readside.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in (*tables, "dispatch_task_counts", "rollup_days", "rollup_durations"):
            conn.execute(text(f'VACUUM (ANALYZE) "{schema}".{table}'))
    return time.perf_counter() - started


def consistent() -> bool:
    """The rollups as kept equal a recount of every row's contributions (the whole tenant, "*")."""
    with readside.connect(TENANT) as conn:
        recount = rollups.Tally()
        recount.update(ireadmodel.recount(conn))
        recount.update(dreadmodel.recount(conn))
        for table in (
            ireadmodel.COUNTS,
            ireadmodel.CATEGORY_COUNTS,
            dreadmodel.TASK_COUNTS,
            rollups.DAYS,
            rollups.DURATIONS,
        ):
            keys = list(table.primary_key.columns)
            held = {tuple(r)[:-1]: int(r.n) for r in conn.execute(select(*keys, table.c.n).where(table.c.n != 0))}
            if held != recount.of(table):
                print(f"[bench] {table.name} differs from a recount of the rows", flush=True)
                return False
    return True


def rollup_rows() -> dict[str, int]:
    with readside.connect(TENANT) as conn:
        return {
            t: int(conn.execute(text(f'SELECT count(*) FROM "{readside.schema_for(TENANT)}".{t}')).scalar_one())
            for t in ("intake_issues", "rollup_days", "rollup_durations")
        }


# ---------------------------------------------------------------- measuring


@dataclass
class Query:
    name: str
    calls: dict[str, Callable[[int], Any]]  # how: gateway / gRPC / SQL
    figures: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # size -> how -> ms
    days: int = 30
    reads: dict[int, tuple[int, int]] = field(default_factory=dict)  # size -> (rows scanned, buffers)


class Caller:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.intake = ipb_grpc.IntakeServiceStub(grpc.insecure_channel(self.settings.address("intake")))
        self.dispatch = dpb_grpc.DispatchServiceStub(grpc.insecure_channel(self.settings.address("dispatch")))
        self.http = requests.Session()
        self.http.headers.update(admin_headers(self.settings))
        self.base = f"http://127.0.0.1:{self.settings.gateway_port}/api/v1/tenants/{TENANT}/dashboard"
        self._token, self._minted = "", 0.0

    def md(self) -> list[tuple[str, str]]:
        if time.monotonic() - self._minted > 30:
            principal = Principal(sub="bench:dashboard", role="service", tenants=(TENANT,))
            self._token = mint(principal, self.settings.principal_secret, ttl_seconds=120)
            self._minted = time.monotonic()
        return [(METADATA_KEY, self._token), (TENANT_KEY, TENANT)]


def queries(caller: Caller) -> list[Query]:
    communities = [c for c, _ in rs.COMMUNITIES]
    out = []
    for label, days, scoped in (
        ("tenant, 30 days", 30, False),
        ("tenant, 366 days", 366, False),
        ("community, 30 days", 30, True),
    ):
        first, last = rollups.window(days, rollups.today())

        def community(i: int, scoped: bool = scoped) -> str:
            return communities[i % len(communities)] if scoped else ""

        def gateway(i: int, days: int = days, community: Callable[[int], str] = community) -> Any:
            params: dict[str, str | int] = {"days": days, "community_id": community(i)}
            resp = caller.http.get(caller.base, params=params, timeout=30)
            if resp.status_code != 200:
                raise SystemExit(f"dashboard answered {resp.status_code}: {resp.text[:300]}")
            return resp.json()

        def via_grpc(
            i: int, first: date = first, last: date = last, community: Callable[[int], str] = community
        ) -> Any:
            window = {"community_id": community(i), "from_day": first.isoformat(), "to_day": last.isoformat()}
            caller.intake.GetIssueStats(ipb.GetIssueStatsRequest(**window), metadata=caller.md())
            return caller.dispatch.GetDispatchStats(dpb.GetDispatchStatsRequest(**window), metadata=caller.md())

        def sql(i: int, first: date = first, last: date = last, community: Callable[[int], str] = community) -> Any:
            ireadmodel.issue_stats(community(i), first, last)
            return dreadmodel.dispatch_stats(community(i), first, last)

        out.append(Query(f"dashboard, {label}", {"gateway": gateway, "gRPC": via_grpc, "SQL": sql}, days=days))
    return out


def timed(fn: Callable[[int], Any], i: int) -> float:
    t0 = time.perf_counter()
    fn(i)
    return (time.perf_counter() - t0) * 1000


def _scanned(node: dict[str, Any]) -> int:
    """Table rows the scans of a plan node and its children returned (bitmap index scans: their heap scan)."""
    own = 0
    kind = node.get("Node Type", "")
    if "Scan" in kind and kind != "Bitmap Index Scan":
        own = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
    return own + sum(_scanned(child) for child in node.get("Plans", ()))


def bound(days: int) -> int:
    """The most rollup rows one dashboard call can read, whatever the number of issues: its window's day
    rows and bucket rows of every measure, the open issues' (category, status) rows, the task counts' rows."""
    day_measures = len(ireadmodel.DAY_MEASURES) + len(dreadmodel.DAY_MEASURES)
    span_measures = len(ireadmodel.SPAN_MEASURES) + len(dreadmodel.SPAN_MEASURES)
    categories = len(rs.RULES.categories) * len(idomain.STATUSES)
    return days * (day_measures + span_measures * len(rollups.BUCKETS)) + categories + len(ddomain.STATUSES) * 2


def reads_of(fn: Callable[[int], Any]) -> tuple[int, int]:
    """(table rows scanned, buffers touched) by the read-model statements of one call, each EXPLAINed."""
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    engine = readside.engine()
    event.listen(engine, "before_cursor_execute", grab)
    try:
        fn(0)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    rows = buffers = 0
    with engine.connect() as conn:
        for statement, parameters in captured:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            plan: Any = conn.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters
            ).scalar()
            top = plan[0]["Plan"]
            rows += _scanned(top)
            buffers += int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))
    return rows, buffers


def measure(size: int, qs: list[Query]) -> None:
    principal = Principal(sub="bench:dashboard", role="service", tenants=(TENANT,))
    for q in qs:
        with context.bound(tenant=TENANT, principal=principal):
            q.reads[size] = reads_of(q.calls["SQL"])
        q.figures[size] = {}
        for how, fn in q.calls.items():
            with context.bound(tenant=TENANT, principal=principal):
                for i in range(10):  # warm: connections, plans, caches
                    fn(i)
                q.figures[size][how] = [timed(fn, i) for i in range(REPS)]
        g = q.figures[size]
        print(
            f"[bench] {size} issues: {q.name}: gateway p99 {percentile(g['gateway'], 99):.1f} ms, "
            f"gRPC p99 {percentile(g['gRPC'], 99):.1f} ms, SQL p99 {percentile(g['SQL'], 99):.1f} ms",
            flush=True,
        )


def show(size: int, qs: list[Query]) -> None:
    print(f"\n{size} issues in {TENANT} ({REPS} calls each; gateway = what the portal waits for):")
    for q in qs:
        parts = []
        for how, ms in q.figures[size].items():
            parts.append(f"{how} p50={percentile(ms, 50):5.1f} p99={percentile(ms, 99):5.1f}")
        mean = statistics.fmean(q.figures[size]["gateway"])
        rows, buffers = q.reads[size]
        print(
            f"  {q.name:30s} " + "  | ".join(parts) + f" ms  (gateway mean {mean:.1f}; a call reads {rows} rollup "
            f"rows, {buffers} buffers)"
        )


def explain() -> None:
    """EXPLAIN ANALYZE of the largest read: the tenant's span histograms over 366 days."""
    first, last = rollups.window(366, rollups.today())
    sql = (
        "EXPLAIN (ANALYZE, BUFFERS) SELECT measure, bucket, sum(n) "
        f"FROM {readside.schema_for(TENANT)}.rollup_durations "
        "WHERE community_id = '*' AND measure IN ('received_to_whistle', 'received_to_done') "
        "AND day BETWEEN :first AND :last GROUP BY measure, bucket"
    )
    with readside.connect(TENANT) as conn:
        for (line,) in conn.execute(text(sql), {"first": first, "last": last}):
            print(f"    {line}")


def main() -> int:
    rng = random.Random(SEED)
    caller = Caller()
    print(f"[bench] tenant {TENANT}, sizes {', '.join(map(str, SIZES))}, {REPS} calls per query, seed {SEED}")
    remove_earlier()
    stats: dict[str, Any] = {"tasks": 0, "issue_ms": [], "dispatch_ms": []}
    qs = queries(caller)
    loaded = 0
    ok = True
    for size in SIZES:
        load(rng, loaded, size, stats)
        loaded = size
        same = consistent()
        ok = ok and same
        print(
            f"[bench] {size} issues: rollups = a recount of the rows: {'yes' if same else 'NO'}; "
            f"rows {rollup_rows()}; VACUUM ANALYZE in {vacuum_analyze():.1f} s",
            flush=True,
        )
        print(f"[bench] load average before measuring: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)", flush=True)
        measure(size, qs)
        show(size, qs)
    print(
        f"\nprojection with the rollups, per state (batches of {BATCH}): issues "
        f"p50 {percentile(stats['issue_ms'], 50):.2f} ms, tasks+calls p50 {percentile(stats['dispatch_ms'], 50):.2f} ms"
    )
    small, large = SIZES[0], SIZES[-1]
    print(
        f"\ngoals: rows read within the bound at any size; gateway p99 < {GOAL_P99_MS:.0f} ms at {large} and "
        f"<= {GOAL_GROWTH:.0f}x at {small} (times depend on the machine's other work: load average above)"
    )
    for q in qs:
        (r_small, b_small), (r_large, b_large) = q.reads[small], q.reads[large]
        rows_met = max(r_small, r_large) <= bound(q.days)
        p_small, p_large = (percentile(q.figures[s]["gateway"], 99) for s in (small, large))
        ratio = p_large / p_small if p_small else float("inf")
        time_met = p_large < GOAL_P99_MS and ratio <= GOAL_GROWTH
        ok = ok and rows_met and time_met
        print(
            f"  {q.name:30s} rows read {r_small:5d} -> {r_large:5d} of at most {bound(q.days)} (buffers {b_small} -> "
            f"{b_large}) {'met' if rows_met else 'MISSED'};  gateway p99 {p_small:6.1f} -> {p_large:6.1f} ms "
            f"x{ratio:4.2f} {'met' if time_met else 'MISSED'}"
        )
    print(f"\nEXPLAIN ANALYZE of the tenant's span histograms over 366 days at {large} issues:")
    explain()
    print(f"\nall goals met: {'yes' if ok else 'NO'}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
