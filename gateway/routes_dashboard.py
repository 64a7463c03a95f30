"""The portal's dashboard: /api/v1/tenants/<tenant>/dashboard -> intake GetIssueStats + dispatch GetDispatchStats.

    GET dashboard?community_id=&days=30    open issues by category × status, overdue tasks, a day series
                                           (Asia/Shanghai) and span histograms with p50/p90 estimates

Every figure comes from rollups the read models keep beside their rows (services/common/rollups.py, kept by
the projector in the same transaction as the rows): the route reads at most `days` × a few dozen rollup rows
through the services, the same at 10,000 issues as at 1,000,000 (bench/dashboard.py), and follows a change
within moments, like the lists. The gateway does not touch PostgreSQL: it reads through the services, as
for every list. Who may call it: gateway/policy.py (staff of the tenant).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from hongling.common.v1 import stats_pb2
from hongling.dispatch.v1 import dispatch_pb2
from hongling.intake.v1 import intake_pb2
from pydantic import BaseModel, Field

from gateway.calls import clients, tenant_call
from gateway.community import list_filter
from gateway.query import args, integer, query, text
from gateway.routes_dispatch import DOCS, Doc
from gateway.routes_issues import STATUS_ZH
from services.common import rollups

bp = Blueprint("dashboard", __name__)
DASHBOARD = "/api/v1/tenants/<tenant>/dashboard"
DEFAULT_DAYS = 30
# The open statuses in the order of the lifecycle (an open duplicate counts as `duplicate`).
OPEN_STATUSES = (
    "received",
    "pending_verification",
    "classified",
    "duplicate",
    "whistle_blown",
    "assigned",
    "in_progress",
    "done",
)
STATUS_EN = {
    "received": "received",
    "pending_verification": "awaiting verification before filing",
    "classified": "classified",
    "duplicate": "duplicate (follows its original)",
    "whistle_blown": "whistle blown",
    "assigned": "assigned",
    "in_progress": "in progress",
    "done": "done, awaiting verification",
}
SERIES = ("issues_received", "whistles_blown", "whistles_answered_in_time", "tasks_done", "tasks_overdue")
SPANS = {  # measure -> (中文, English)
    "received_to_whistle": ("受理到吹号", "Received to whistle blown"),
    "whistle_to_report_in": ("吹号到首个报到", "Whistle blown to the first report-in"),
    "received_to_done": ("受理到办结", "Received to task done"),
}


# ---------------------------------------------------------------- the answer (also its OpenAPI schema)


class StatusCount(BaseModel):
    status: str = Field(description="事项状态 An open status")
    name_zh: str
    name_en: str
    count: int


class CategoryRow(BaseModel):
    category: str = Field(description="类别编码 The category's code (the tenant's classification rules)")
    name_zh: str = Field(description="类别名称 From the tenant's rules; the code for a category no longer in them")
    name_en: str
    total: int = Field(description="Open issues of this category")
    by_status: dict[str, int] = Field(
        description="Open issues of this category by status (statuses with none left out)"
    )


class OpenIssues(BaseModel):
    """Open issues now (not verified, published, rated or cancelled); an open duplicate counts once, as
    `duplicate`, not under the status it mirrors from its original."""

    total: int
    by_status: list[StatusCount] = Field(description="In the order of the lifecycle; statuses with none left out")
    by_category: list[CategoryRow] = Field(description="Most open issues first")


class Day(BaseModel):
    """One local day (Asia/Shanghai)."""

    day: str = Field(description="YYYY-MM-DD")
    issues_received: int = Field(description="受理 Issues received that day (duplicates included)")
    whistles_blown: int = Field(description="吹号 Calls (集结号) blown that day")
    whistles_answered_in_time: int = Field(
        description="按时报到 Of the calls blown that day, those whose first report-in came by the report-in deadline"
    )
    tasks_done: int = Field(description="办结 Tasks first done that day")
    tasks_overdue: int = Field(description="逾期 Tasks whose completion deadline was missed that day")


class BucketCount(BaseModel):
    le_seconds: int | None = Field(description="The bucket's upper bound in seconds; null for the open last (>7 d)")
    label_zh: str
    label_en: str
    count: int


class Span(BaseModel):
    """A span's histogram over the spans that ended in the window, with estimates from its buckets."""

    name_zh: str
    name_en: str
    total: int
    buckets: list[BucketCount] = Field(
        description="≤5 min, ≤15 min, ≤30 min, ≤1 h, ≤2 h, ≤4 h, ≤8 h, ≤1 d, ≤3 d, ≤7 d, >7 d"
    )
    p50_seconds: float | None = Field(
        description="中位数估计 Median estimate: linear inside its bucket; in >7 d its lower bound; null without spans"
    )
    p90_seconds: float | None = Field(description="90% estimate, as p50_seconds")


class Durations(BaseModel):
    received_to_whistle: Span = Field(description="受理到吹号 An issue's receipt to its first whistle (no duplicates)")
    whistle_to_report_in: Span = Field(description="吹号到首个报到 A call's blowing to its first report-in (an accept)")
    received_to_done: Span = Field(description="受理到办结 An issue's receipt to its task first done (no duplicates)")


class HotSpot(BaseModel):
    grid_id: str = Field(description="网格 A grid of the tenant (org's grids name it)")
    count: int = Field(description="Issues received there this month (the local month of to_day)")


class DashboardOut(BaseModel):
    """仪表盘 The dashboard of a tenant or one community."""

    tenant: str
    community_id: str | None = Field(description="null: the whole tenant")
    days: int
    from_day: str = Field(description="The window's first local day, YYYY-MM-DD")
    to_day: str = Field(description="Its last: today in Asia/Shanghai")
    time_zone: str = Field(description="Asia/Shanghai: the days are its local dates")
    open_issues: OpenIssues
    overdue_tasks: int = Field(description="逾期任务 Unfinished tasks whose completion deadline dispatch marked missed")
    series: list[Day] = Field(description="Every day of the window, oldest first")
    durations: Durations
    hot_spots: list[HotSpot] = Field(
        description="本月热点网格 The grids with most issues received in the month of to_day (Asia/Shanghai), "
        "most first; at most 20"
    )


DOCS["dashboard.get_dashboard"] = Doc(DashboardOut, errors=(400,))


# ---------------------------------------------------------------- the route


@bp.get(DASHBOARD)
@query(
    text("community_id", "社区 Community; empty: the whole tenant"),
    integer(
        "days",
        f"天数 Days up to today (Asia/Shanghai), 1..{rollups.MAX_DAYS}",
        lo=1,
        hi=rollups.MAX_DAYS,
        default=DEFAULT_DAYS,
    ),
)
def get_dashboard(tenant: str) -> Response:
    """仪表盘 Dashboard: open issues by category and status, overdue tasks, a day series, response times

    For the tenant or one community (a community worker: its own; another named is 403
    `community_out_of_scope`): open issues by category × status now; unfinished tasks past their
    completion deadline now; for every day of the last `days` (Asia/Shanghai) the issues received, calls
    blown, calls answered in time, tasks done and tasks overdue; and histograms (≤5 min … >7 d) with p50/p90
    estimates of an issue's receipt to its whistle, a call's blowing to its first report-in, and an issue's
    receipt to its task done. From rollups the read models keep: the cost does not grow with the data."""
    q = args()
    community_id = list_filter(q["community_id"])  # a community worker: its own community
    first, last = rollups.window(q["days"], rollups.today())
    window = {"community_id": community_id, "from_day": first.isoformat(), "to_day": last.isoformat()}
    with tenant_call(tenant):
        issues = clients().intake.GetIssueStats(intake_pb2.GetIssueStatsRequest(**window))
        tasks = clients().dispatch.GetDispatchStats(dispatch_pb2.GetDispatchStatsRequest(**window))
    out = dashboard(tenant, community_id, q["days"], first.isoformat(), last.isoformat(), issues, tasks)
    return jsonify(out.model_dump(mode="json"))


def dashboard(
    tenant: str,
    community_id: str,
    days: int,
    from_day: str,
    to_day: str,
    issues: intake_pb2.IssueStats,
    tasks: dispatch_pb2.DispatchStats,
) -> DashboardOut:
    """The answer from the two services' figures."""
    spans = {s.measure: s for s in (*issues.spans, *tasks.spans)}
    return DashboardOut(
        tenant=tenant,
        community_id=community_id or None,
        days=days,
        from_day=from_day,
        to_day=to_day,
        time_zone="Asia/Shanghai",
        open_issues=open_issues(issues.open_issues),
        overdue_tasks=tasks.overdue_tasks,
        series=series(issues.days, tasks.days),
        durations=Durations(**{m: span(m, spans.get(m)) for m in SPANS}),
        hot_spots=[HotSpot(grid_id=h.grid_id, count=h.count) for h in issues.hot_spots],
    )


def open_issues(counts: Any) -> OpenIssues:
    by_status: dict[str, int] = {}
    rows: dict[str, CategoryRow] = {}
    for c in counts:
        by_status[c.status] = by_status.get(c.status, 0) + c.count
        row = rows.get(c.category)
        if row is None:
            row = rows[c.category] = CategoryRow(
                category=c.category,
                name_zh=c.category_zh or c.category,
                name_en=c.category_en or c.category,
                total=0,
                by_status={},
            )
        row.total += c.count
        row.by_status[c.status] = row.by_status.get(c.status, 0) + c.count
    order = {s: n for n, s in enumerate(OPEN_STATUSES)}
    return OpenIssues(
        total=sum(by_status.values()),
        by_status=[
            StatusCount(status=s, name_zh=STATUS_ZH.get(s, s), name_en=STATUS_EN.get(s, s), count=n)
            for s, n in sorted(by_status.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        ],
        by_category=sorted(rows.values(), key=lambda r: (-r.total, r.category)),
    )


def series(*sources: Any) -> list[Day]:
    """One entry per day of the window, the services' day counts merged (both list every day)."""
    merged: dict[str, dict[str, int]] = {}
    for days in sources:
        for d in days:
            merged.setdefault(d.day, {}).update(d.counts)
    return [Day(day=day, **{m: counts.get(m, 0) for m in SERIES}) for day, counts in sorted(merged.items())]


def span(measure: str, found: stats_pb2.SpanHistogram | None) -> Span:
    """A histogram as the service sent it (its own bucket bounds), labelled with the buckets' names."""
    zh, en = SPANS[measure]
    names = {b.le_seconds: b for b in rollups.BUCKETS}
    if found is None:  # a service that sent none: the fixed buckets, empty
        bounds, counts = [b.le_seconds for b in rollups.BUCKETS], [0] * len(rollups.BUCKETS)
    else:
        bounds, counts = [*found.upper_bounds_seconds, None], list(found.counts)
    buckets = []
    for le, n in zip(bounds, counts, strict=False):
        named = names.get(le)
        label_zh, label_en = (named.label_zh, named.label_en) if named else (f"≤{le}秒", f"≤{le} s")
        buckets.append(BucketCount(le_seconds=le, label_zh=label_zh, label_en=label_en, count=n))
    return Span(
        name_zh=zh,
        name_en=en,
        total=sum(counts),
        buckets=buckets,
        p50_seconds=found.p50_seconds if found is not None and found.HasField("p50_seconds") else None,
        p90_seconds=found.p90_seconds if found is not None and found.HasField("p90_seconds") else None,
    )
