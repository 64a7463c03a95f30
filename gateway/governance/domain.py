"""The no-unauthorised-tasks rule (减负增效, 属地管理) as plain rules: department requests, decisions, grants.

A district department has no default access to community-level data and may not hand communities
work. It files a request naming the purpose, the tenant and community, exactly what it wants to
read or hand over, the community's public-affairs list item it relies on (承办/协办) and the funding
and working conditions it brings, for a period. Assessment tasks (考核任务) are refused at filing.
A district approver (区委区政府) approves — possibly narrowing operations, fields, period or quota —
or rejects with a reason. An approval becomes a grant; a call goes through only inside its grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied

SHANGHAI = ZoneInfo("Asia/Shanghai")
KINDS = {"data_access": "数据调取", "assistance_task": "协助任务"}
# What a data-access grant can cover: (operation, the fields it may return).
DATA_OPERATIONS: dict[str, str] = {
    "org.read:communities": "社区",
    "org.read:grids": "网格",
    "org.read:compounds": "小区",
    "org.read:grid-stations": "网格驿站",
    "org.read:member-units": "成员单位",
    "org.read:people": "人员",
    "org.read:volunteer-teams": "志愿者队伍",
    "org.read:talent-entries": "人才清单",
    "org.read:team-service-entries": "志愿服务清单",
    "org.read:unit-resource-entries": "单位资源清单",
    "intake.read:issues": "民情事项",
}
ASSISTANCE_OPERATION = "intake.create:assistance_task"
# Words that mark an assessment, rating or ranking task pushed onto a community (考核任务): refused.
ASSESSMENT_MARKERS = (
    "考核",
    "考评",
    "评比",
    "打分",
    "排名",
    "排位",
    "督查考核",
    "目标责任考核",
    "assessment",
    "appraisal",
    "ranking",
)
MAX_PERIOD_DAYS = 366
MAX_QUOTA = 10_000


@dataclass(frozen=True)
class Funding:
    amount_yuan: float
    source: str
    working_conditions: str


@dataclass(frozen=True)
class Request:
    kind: str
    department: str
    purpose: str
    tenant: str
    community_id: str
    public_affairs_item_id: str
    funding: Funding
    starts_on: date
    ends_on: date
    operations: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()  # assistance: the task titles handed over
    quota: int = 0  # assistance: how many tasks at most; data access: how many calls (0 = unlimited)


@dataclass(frozen=True)
class Grant:
    id: str
    request_id: str
    department: str
    kind: str
    tenant: str
    community_id: str
    operations: frozenset[str]
    fields: frozenset[str]
    starts_at: datetime
    expires_at: datetime
    quota: int = 0
    used: int = 0
    revoked: bool = False
    tasks: frozenset[str] = frozenset()  # assistance: the approved task titles, the only ones handed over


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    missing: str = ""  # what the grant lacks, for the 403 body


@dataclass
class Narrowing:
    operations: Iterable[str] | None = None
    fields: Iterable[str] | None = None
    ends_on: date | None = None
    quota: int | None = None
    tasks: Iterable[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _text(data: Mapping[str, Any], name: str, limit: int, *, required: bool = True) -> str:
    value = str(data.get(name) or "").strip()
    if required and not value:
        raise InvalidArgument(f"{name} is required (必填)", field=name)
    if len(value) > limit:
        raise InvalidArgument(f"{name} is longer than {limit} characters", field=name)
    return value


def _date(data: Mapping[str, Any], name: str) -> date:
    raw = str(data.get(name) or "")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f"{name} {raw!r} is not a date (YYYY-MM-DD, Asia/Shanghai)", field=name) from None


def is_assessment(*texts: str) -> str:
    """The assessment marker found in the texts, or ""."""
    joined = " ".join(texts).lower()
    return next((m for m in ASSESSMENT_MARKERS if m in joined), "")


def validate_request(data: Mapping[str, Any], department: str, today: date) -> Request:
    """A checked request, or InvalidArgument / PermissionDenied (assessment tasks) naming the problem."""
    kind = _text(data, "kind", 32)
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of: {', '.join(KINDS)}", field="kind")
    purpose = _text(data, "purpose", 2000)
    tasks = tuple(str(t).strip() for t in data.get("tasks") or [] if str(t).strip())
    marker = is_assessment(purpose, *tasks, str(data.get("title") or ""))
    if marker or data.get("assessment"):
        raise PermissionDenied(
            f"assessment tasks (考核任务) may not be pushed onto communities (found {marker or 'assessment'!r}); "
            "district departments assess through their own channels (减负增效)",
            field="purpose",
            reason="assessment_task_refused",
        )
    raw_funding = data.get("funding") or {}
    amount = raw_funding.get("amount_yuan")
    if not isinstance(amount, int | float) or amount <= 0:
        raise InvalidArgument(
            "funding.amount_yuan must be a positive amount: requests come with funding (经费和工作条件)",
            field="funding.amount_yuan",
        )
    funding = Funding(float(amount), _text(raw_funding, "source", 200), _text(raw_funding, "working_conditions", 1000))
    starts, ends = _date(data, "starts_on"), _date(data, "ends_on")
    if ends < starts:
        raise InvalidArgument("ends_on is before starts_on", field="ends_on")
    if ends < today:
        raise InvalidArgument("the period has already ended", field="ends_on")
    if (ends - starts).days > MAX_PERIOD_DAYS:
        raise InvalidArgument(f"a request covers at most {MAX_PERIOD_DAYS} days", field="ends_on")
    operations = tuple(sorted({str(o) for o in data.get("operations") or []}))
    fields = tuple(sorted({str(f) for f in data.get("fields") or []}))
    quota = int(data.get("quota") or 0)
    if not 0 <= quota <= MAX_QUOTA:
        raise InvalidArgument(f"quota must be 0..{MAX_QUOTA}", field="quota")
    if kind == "data_access":
        bad = [o for o in operations if o not in DATA_OPERATIONS]
        if not operations or bad:
            raise InvalidArgument(
                f"operations must name what to read, from: {', '.join(DATA_OPERATIONS)}", field="operations"
            )
        if not fields:
            raise InvalidArgument("fields must list exactly the data fields needed (最小必要)", field="fields")
        if tasks:
            raise InvalidArgument("a data-access request hands over no tasks", field="tasks")
    else:
        if not tasks:
            raise InvalidArgument("tasks must list the task(s) to hand over", field="tasks")
        operations = (ASSISTANCE_OPERATION,)
        quota = quota or len(tasks)
        if quota < len(tasks):
            raise InvalidArgument("quota is smaller than the number of tasks listed", field="quota")
    return Request(
        kind=kind,
        department=department,
        purpose=purpose,
        tenant=_text(data, "tenant", 32),
        community_id=_text(data, "community_id", 64),
        public_affairs_item_id=_text(data, "public_affairs_item_id", 64),
        funding=funding,
        starts_on=starts,
        ends_on=ends,
        operations=operations,
        fields=fields,
        tasks=tasks,
        quota=quota,
    )


def approve(request: Request, grant_id: str, request_id: str, narrowing: Narrowing | None = None) -> Grant:
    """The grant an approval creates; narrowing may only take away, never add."""
    n = narrowing or Narrowing()
    operations = set(request.operations)
    fields = set(request.fields)
    if n.operations is not None:
        extra = set(n.operations) - operations
        if extra:
            raise InvalidArgument(f"an approval cannot add operations: {', '.join(sorted(extra))}", field="operations")
        operations = set(n.operations)
    if n.fields is not None:
        extra = set(n.fields) - fields
        if extra:
            raise InvalidArgument(f"an approval cannot add fields: {', '.join(sorted(extra))}", field="fields")
        fields = set(n.fields)
    ends = request.ends_on
    if n.ends_on is not None:
        if n.ends_on > request.ends_on or n.ends_on < request.starts_on:
            raise InvalidArgument("an approval may only shorten the period", field="ends_on")
        ends = n.ends_on
    tasks = set(request.tasks)
    if n.tasks is not None:
        extra = set(n.tasks) - tasks
        if extra:
            raise InvalidArgument(f"an approval cannot add tasks: {', '.join(sorted(extra))}", field="tasks")
        tasks = set(n.tasks)
        if request.kind == "assistance_task" and not tasks:
            raise InvalidArgument("an approval must leave at least one task", field="tasks")
    quota = request.quota
    if n.quota is not None:
        if (request.quota and n.quota > request.quota) or n.quota < 0:
            raise InvalidArgument("an approval may only lower the quota", field="quota")
        quota = n.quota
    if not operations:
        raise InvalidArgument("an approval must leave at least one operation", field="operations")
    return Grant(
        id=grant_id,
        request_id=request_id,
        department=request.department,
        kind=request.kind,
        tenant=request.tenant,
        community_id=request.community_id,
        operations=frozenset(operations),
        fields=frozenset(fields),
        starts_at=datetime.combine(request.starts_on, time.min, SHANGHAI),
        expires_at=datetime.combine(ends + timedelta(days=1), time.min, SHANGHAI),
        quota=quota,
        tasks=frozenset(tasks),
    )


def check(
    grant: Grant | None,
    *,
    department: str,
    operation: str,
    tenant: str,
    community_id: str,
    fields: Iterable[str] = (),
    task: str | None = None,
    now: datetime,
) -> Decision:
    """Whether one department call fits inside its grant; the refusal names what is missing."""
    if grant is None:
        return Decision(
            False, "no approved grant: file a request for district approval first (须经区委区政府审核)", "grant"
        )
    if grant.department != department:
        return Decision(False, f"grant {grant.id} belongs to another department", "grant")
    if grant.revoked:
        return Decision(False, f"grant {grant.id} was revoked", "grant")
    if now < grant.starts_at:
        return Decision(False, f"grant {grant.id} starts {grant.starts_at.date().isoformat()}", "period")
    if now >= grant.expires_at:
        return Decision(False, f"grant {grant.id} expired {grant.expires_at.isoformat()}", "period")
    if grant.tenant != tenant:
        return Decision(False, f"grant {grant.id} covers tenant {grant.tenant}, not {tenant}", "tenant")
    if grant.community_id and grant.community_id != community_id:
        return Decision(
            False, f"grant {grant.id} covers community {grant.community_id}, not {community_id or '(all)'}", "community"
        )
    if operation not in grant.operations:
        return Decision(
            False,
            f"grant {grant.id} does not cover {operation} (granted: {', '.join(sorted(grant.operations))})",
            f"operation:{operation}",
        )
    extra = sorted(set(fields) - grant.fields) if grant.kind == "data_access" else []
    if extra:
        return Decision(
            False, f"grant {grant.id} does not cover field(s) {', '.join(extra)}", f"fields:{','.join(extra)}"
        )
    if grant.kind == "assistance_task" and task is not None and task not in grant.tasks:
        return Decision(
            False,
            f"grant {grant.id} does not cover the task {task!r}: only the approved task(s) may be handed over "
            f"({len(grant.tasks)} approved)",
            "task",
        )
    if grant.quota and grant.used >= grant.quota:
        return Decision(False, f"grant {grant.id} quota of {grant.quota} is used up", "quota")
    return Decision(True, f"within grant {grant.id}")


def use(grant: Grant) -> Grant:
    if grant.quota and grant.used >= grant.quota:
        raise FailedPrecondition(f"grant {grant.id} quota is used up")
    return replace(grant, used=grant.used + 1)
