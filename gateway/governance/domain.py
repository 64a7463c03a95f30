"""The no-unauthorised-tasks rule (减负增效, 属地管理) as plain rules: department requests, decisions, grants.

A district department has no default access to community-level data and may not hand communities
work. It files a request naming the purpose, the tenant and community, exactly what it wants to
read or hand over, the community's public-affairs list item it relies on (承办/协办) and the funding
and working conditions it brings, for a period. Assessment tasks (考核任务) are refused at filing.
A district approver (区委区政府) approves — possibly narrowing operations, fields, period or quota —
or rejects with a reason. An approval becomes a grant; a call goes through only inside its grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


@dataclass(frozen=True)
class Wording:
    """A phrase of the field's wording for assessment work pushed onto communities (考核任务), and why it is one:
    the reason an approver and the department read (Chinese, then English)."""

    phrase: str
    why: str


# Refused outright: the words the field uses for assessing, rating, ranking or inspecting communities, which
# district departments may not push onto them (区直部门不得向社区摊派考核任务; 减负增效). Matched anywhere in the
# title, purpose and task titles (English case-insensitively), longest first, after NOT_ASSESSMENT is taken out.
ASSESSMENT_WORDING: tuple[Wording, ...] = (
    Wording("目标责任考核", "目标责任考核是考核任务 — a target-responsibility assessment"),
    Wording("检查验收", "检查验收是对社区的考核验收 — an inspection-and-acceptance of the community's work"),
    Wording("督查", "督查是对社区工作的督促检查 — a supervisory inspection of the community"),
    Wording("迎检", "迎检是为上级检查做准备 — preparing the community for an inspection"),
    Wording("考核", "考核任务 — an assessment of the community"),
    Wording("考评", "考评是考核评价 — an assessment and appraisal"),
    Wording("评比", "评比是比较打分 — a rating contest between communities"),
    Wording("打分", "打分是给社区评分 — scoring the community"),
    Wording("排名", "排名是给社区排位次 — ranking communities"),
    Wording("排行", "排行是排名 — a league table of communities"),
    Wording("排位", "排位是排名 — ranking communities"),
    Wording("assessment", "an assessment of the community (考核)"),
    Wording("appraisal", "an appraisal of the community (考评)"),
    Wording("ranking", "a ranking of communities (排名)"),
    Wording("scoring", "scoring the community (打分)"),
)
# Let through, with a flag the approver sees: words that often hide an assessment but have honest uses too
# (燃气安全检查 is help a community asks for; 台账 and 留痕 are the paperwork 减负 rules cut back).
FLAGGED_WORDING: tuple[Wording, ...] = (
    Wording("检查", "检查可能是变相督查或迎检，请核实是否为协助 — an inspection: check it is help, not an assessment"),
    Wording("验收", "验收可能是变相考核，请核实 — an acceptance check: may be an assessment in other words"),
    Wording("评估", "评估可能是变相考评，请核实 — an evaluation: may be an appraisal in other words"),
    Wording("测评", "测评可能是变相考评，请核实 — a survey rating: may be an appraisal in other words"),
    Wording("评选", "评选可能是变相评比，请核实 — a selection: may be a rating contest in other words"),
    Wording("通报", "通报常与排名、问责相连，请核实 — a circular naming communities: often ranking or blame"),
    Wording("暗访", "暗访常用于督查，请核实 — an unannounced visit: often a supervisory inspection"),
    Wording("台账", "台账留痕是减负要压减的负担，请核实是否必要 — ledgers kept for show: paperwork to cut back"),
    Wording("留痕", "过度留痕是减负要压减的负担，请核实 — leaving a paper trail: paperwork to cut back"),
)
FLAGGED_WHY = {w.phrase: w.why for w in FLAGGED_WORDING}
# Fixed expressions that contain a refused word without meaning it: taken out of the text before matching.
NOT_ASSESSMENT = ("排名不分先后", "不排名", "不打分", "不考核", "不作考核", "不纳入考核")


def _wording_found(text: str, wording: Sequence[Wording]) -> list[Wording]:
    """The wording found in `text`, longest phrase first, a phrase inside a longer one found once."""
    found: list[Wording] = []
    for w in sorted(wording, key=lambda w: -len(w.phrase)):
        if w.phrase in text:
            found.append(w)
            text = text.replace(w.phrase, " ")
    return found


def _assessment_text(*texts: str) -> str:
    joined = " ".join(texts).lower()
    for phrase in NOT_ASSESSMENT:
        joined = joined.replace(phrase, " ")
    return joined


def assessment_wording(*texts: str) -> Wording | None:
    """The first assessment wording (refused) in the texts, or None."""
    found = _wording_found(_assessment_text(*texts), ASSESSMENT_WORDING)
    return found[0] if found else None


def flagged_wording(*texts: str) -> list[Wording]:
    """The wording in the texts that an approver should look at twice (let through, flagged)."""
    text = _assessment_text(*texts)
    for w in ASSESSMENT_WORDING:
        text = text.replace(w.phrase, " ")
    return _wording_found(text, FLAGGED_WORDING)


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
    flags: tuple[str, ...] = ()  # FLAGGED_WORDING phrases found: let through, shown to the approver


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


def validate_request(data: Mapping[str, Any], department: str, today: date) -> Request:
    """A checked request, or InvalidArgument / PermissionDenied (assessment tasks) naming the problem."""
    kind = _text(data, "kind", 32)
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of: {', '.join(KINDS)}", field="kind")
    purpose = _text(data, "purpose", 2000)
    tasks = tuple(str(t).strip() for t in data.get("tasks") or [] if str(t).strip())
    texts = (purpose, *tasks, str(data.get("title") or ""))
    found = assessment_wording(*texts)
    if found or data.get("assessment"):
        why = f"found {found.phrase!r}: {found.why}" if found else "the request says it is an assessment"
        raise PermissionDenied(
            f"assessment tasks (考核任务) may not be pushed onto communities ({why}); "
            "district departments assess through their own channels (减负增效)",
            field="purpose",
            reason="assessment_task_refused",
        )
    flags = tuple(w.phrase for w in flagged_wording(*texts))
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
        flags=flags,
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
