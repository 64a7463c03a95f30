"""一月一公示: one community's month as content.MonthlyContent, from the read side (sources.py), evaluation's
measures, alliance's meetings, intake's category names and org's community (over gRPC), and the audit log's
signed head at the month's end (services/publication/anchor.py).

Public by construction: an issue is its reference, category, grid, dates, status, crew names, verification and
rating — never its title, description, comments, its reporter's name, phone or address; helpers appear by their
public names (services/publication/names.py); the free text workers typed for the public (a meeting's title,
place and agenda items) goes through services/publication/redaction.py. Deterministic: everything sorted, as_of
is the month's end, no wall clock — the same read side gives the same dict.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import grpc
from hongling.alliance.v1 import meetings_pb2, meetings_pb2_grpc
from hongling.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from hongling.intake.v1 import intake_pb2, intake_pb2_grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common.errors import InvalidArgument
from services.common.grpc_client import LazyStub, peer_call
from services.common.tenants import get_tenant
from services.publication import anchor, content, names, redaction
from services.publication.monthly import sources

SHANGHAI = ZoneInfo("Asia/Shanghai")
CALLER = "publication"
MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

_org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", "hongling.org.v1.OrgService", CALLER)
_evaluation = LazyStub(
    evaluation_pb2_grpc.EvaluationServiceStub, "evaluation", "hongling.evaluation.v1.EvaluationService", CALLER
)
_meetings = LazyStub(meetings_pb2_grpc.MeetingServiceStub, "alliance", "hongling.alliance.v1.MeetingService", CALLER)
_intake = LazyStub(intake_pb2_grpc.IntakeServiceStub, "intake", "hongling.intake.v1.IntakeService", CALLER)

STATUS_ZH = {
    "received": "已受理",
    "pending_verification": "待核实",
    "classified": "已分类",
    "whistle_blown": "已吹哨",
    "assigned": "已派单",
    "in_progress": "办理中",
    "done": "已办结",
    "verified": "已验收",
    "published": "已公示",
    "rated": "已评价",
    "closed": "已关闭",
    "cancelled": "已撤销",
    "declined": "不予立案",
}
HANDLED = frozenset({"done", "verified", "published", "rated", "closed"})
CALL_TYPE_ZH = {"service": "服务", "tackling": "攻坚", "emergency": "应急"}
VERIFICATION_ZH = {"passed": "通过", "failed": "未通过", "pending": "待验收", "": ""}
DECISION_ZH = {"agreed": "同意", "rejected": "否决", "deferred": "暂缓", "": "未决"}
FUND_ZH = {
    "running": "运转经费",
    "resident_service": "为民服务经费",
    "model_community": "示范社区党费支持",
    "property_backstop": "物业兜底资金",
}
MEASURE_KEYS = ("response", "resolution", "satisfaction", "on_time", "reopen", "whistle", "duties")


# ---------------------------------------------------------------- periods


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's (aware, Asia/Shanghai), or InvalidArgument (period)."""
    m = MONTH_RE.match(period)
    if not m:
        raise InvalidArgument(
            "期间格式应为YYYY-MM (the monthly board's period must be a month YYYY-MM)", field="period"
        )
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=SHANGHAI)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def day(at: Any) -> str | None:
    if not isinstance(at, datetime):
        return None
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(SHANGHAI).strftime("%Y-%m-%d")


def period_zh(period: str) -> str:
    year, month = period.split("-")
    return f"{year}年{int(month)}月"


# ---------------------------------------------------------------- peers


def community(community_id: str) -> org_pb2.Community:
    """The tenant's community, or InvalidArgument naming scope."""
    try:
        return peer_call(lambda: _org().GetCommunity(org_pb2.GetRequest(id=community_id)), CALLER)
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise InvalidArgument(
                f"社区 {community_id} 不存在 (scope {community_id!r} is not a community of this tenant)", field="scope"
            ) from None
        raise


def communities() -> list[str]:
    """Every community id of the call's tenant, sorted."""
    found: list[str] = []
    token = ""
    while True:
        req = org_pb2.ListRequest(page_size=500, page_token=token)
        page = peer_call(lambda r=req: _org().ListCommunities(r), CALLER)  # type: ignore[misc]
        found.extend(c.id for c in page.items)
        token = page.next_page_token
        if not token:
            return sorted(found)


def category_names() -> dict[str, str]:
    rules = peer_call(lambda: _intake().GetClassificationRules(intake_pb2.GetClassificationRulesRequest()), CALLER)
    return {c.code: c.name_zh for c in rules.categories}


def measures(community_id: str, period: str) -> list[content.Rate]:
    found = peer_call(
        lambda: _evaluation().GetMeasures(
            evaluation_pb2.GetMeasuresRequest(
                subject=f"community:{community_id}", period=period, community_id=community_id
            )
        ),
        CALLER,
    )
    out: list[content.Rate] = []
    for v in sorted(found.measures, key=lambda v: (MEASURE_KEYS.index(v.key) if v.key in MEASURE_KEYS else 99, v.key)):
        if v.key not in MEASURE_KEYS:
            continue
        out.append(
            {
                "key": v.key,
                "name_zh": v.name_zh,
                "name_en": v.name_en,
                "numerator": float(v.numerator),
                "denominator": float(v.denominator),
                "rate": round(float(v.rate), 4) if v.has_rate else None,
                "lower_is_better": bool(v.lower_is_better),
            }
        )
    return out


def meeting(meeting_id: str) -> meetings_pb2.Meeting:
    return peer_call(lambda: _meetings().GetMeeting(meetings_pb2.GetMeetingRequest(id=meeting_id)), CALLER)


# ---------------------------------------------------------------- the month


def _subject(kind: str, ident: str) -> str:
    return f"{'member_unit' if kind == 'unit' else kind}:{ident}"


VERIFIED_ISSUE = frozenset({"verified", "published", "rated", "closed"})


def _verification(task: Mapping[str, Any] | None, check: bool | None, issue_status: str = "") -> str:
    """passed | failed | pending | "": the issue past verification (intake's status says so), else its task's."""
    if issue_status in VERIFIED_ISSUE:
        return "passed"
    if task is None:
        return ""
    status = str(task.get("status") or "")
    history = task.get("history") or []
    failed = any(h.get("action") in ("rejected", "reopened") or h.get("to_status") == "reopened" for h in history)
    if status in ("verified", "closed") or (check is True and status != "done"):
        return "passed"
    if status == "done":
        return "pending"
    if failed or check is False:
        return "failed"
    return ""


def build(tenant: str, community_id: str, period: str) -> content.MonthlyContent:
    """The kind's builder: the month's content anchored at its end."""
    _, end = month_bounds(period)
    return month_content(tenant, community_id, period, anchor.anchor_at(end))


def month_content(tenant: str, community_id: str, period: str, audit_anchor: content.Anchor) -> content.MonthlyContent:
    """The month's content with the given audit anchor (the builder's is the head at the month's end)."""
    start, end = month_bounds(period)
    place = community(community_id)
    facts = sources.read(sources.Month(community_id, start, end))
    cats = category_names()

    tasks_by_issue: dict[str, Mapping[str, Any]] = {}
    for task_body in sorted(facts.tasks, key=lambda t: (str(t.get("created_at") or ""), str(t.get("_id")))):
        if task_body.get("issue_id"):
            tasks_by_issue[str(task_body["issue_id"])] = task_body  # the newest task of the issue

    subjects: set[str] = set()
    for t in tasks_by_issue.values():
        subjects.update(_subject(str(c.get("kind")), str(c.get("id"))) for c in t.get("crew") or [])
    for w in facts.whistles:
        subjects.update(_subject(str(x.get("kind")), str(x.get("id"))) for x in w.get("targets") or [])
    shown = names.public_names(tenant, sorted(subjects))

    def name(kind: Any, ident: Any) -> str:
        s = _subject(str(kind), str(ident))
        return shown.get(s, s.split(":", 1)[-1])

    issues: list[content.IssueLine] = []
    for i in facts.issues:
        ref = str(i["_id"])
        task = tasks_by_issue.get(ref)
        status = str(i.get("status") or "")
        category = str(i.get("category") or "")
        grid = (i.get("place") or {}).get("grid_name_zh") or ""
        call_type = str(task.get("call_type") or "") if task and task.get("whistle_ids") else ""
        verification = _verification(task, facts.checks.get(str(task.get("_id"))) if task else None, status)
        overdue = bool(task and (task.get("deadline_missed") or False))
        issues.append(
            {
                "ref": ref,
                "category": category,
                "category_zh": cats.get(category, category),
                "grid_zh": str(grid),
                "call_type": call_type,
                "call_type_zh": CALL_TYPE_ZH.get(call_type, ""),
                "received_on": day(i.get("created_at")) or "",
                "done_on": (day(i.get("_done_at")) or day((task or {}).get("finished_at")))
                if status in HANDLED
                else None,
                "status": status,
                "status_zh": STATUS_ZH.get(status, status),
                "handled_by": sorted({name(c.get("kind"), c.get("id")) for c in (task or {}).get("crew") or []}),
                "verification": verification,
                "verification_zh": VERIFICATION_ZH[verification],
                "rating": facts.ratings.get(ref),
                "overdue": overdue,
            }
        )
    issues.sort(key=lambda x: (x["received_on"], x["ref"]))

    whistles: list[content.WhistleLine] = []
    for w in facts.whistles:
        targets = w.get("targets") or []
        in_time = sorted({name(x.get("kind"), x.get("id")) for x in targets if x.get("answer") and not x.get("late")})
        late = sorted({name(x.get("kind"), x.get("id")) for x in targets if x.get("answer") and x.get("late")})
        silent = sorted({name(x.get("kind"), x.get("id")) for x in targets if not x.get("answer")})
        category = next(
            (str(t.get("category") or "") for t in facts.tasks if str(t.get("_id")) in set(w.get("task_ids") or [])),
            "",
        )
        whistles.append(
            {
                "ref": str(w["_id"]),
                "blown_on": day(w.get("blown_at")) or "",
                "call_type": str(w.get("call_type") or ""),
                "call_type_zh": CALL_TYPE_ZH.get(str(w.get("call_type") or ""), ""),
                "category_zh": cats.get(category, category),
                "answered_in_time": in_time,
                "answered_late": late,
                "not_answered": silent,
            }
        )

    topic = problem_of_month(issues)
    topic_refs = {i["ref"] for i in issues if topic and (i["category"], i["grid_zh"]) == topic}
    meetings: list[content.MeetingLine] = []
    actions_zh: list[str] = []
    for row in facts.meetings:
        held = meeting(row.id)
        decisions: list[content.Decision] = []
        for item in held.agenda:
            outcome = item.decision.outcome if item.HasField("decision") else ""
            d = item.decision
            voted = item.HasField("decision") and d.voted
            votes = f"赞成 {d.votes_for} · 反对 {d.votes_against} · 弃权 {d.votes_abstain}" if voted else ""
            title = redaction.redact(item.title)
            decisions.append(
                {
                    "item_zh": title,
                    "decision": outcome,
                    "decision_zh": DECISION_ZH.get(outcome, outcome),
                    "votes": votes,
                    "actions": len(item.actions),
                }
            )
            if item.issue_id and item.issue_id in topic_refs:
                actions_zh.append(f"{day(row.starts_at)} 联席会议议题“{title}”：{DECISION_ZH.get(outcome, outcome)}")
        meetings.append(
            {
                "ref": row.id,
                "held_on": day(row.starts_at) or "",
                "title_zh": redaction.redact(row.title),
                "place_zh": "线上" if row.place == "online" else redaction.redact(row.place or ""),
                "invited": int(row.invited or 0),
                "on_time": int(row.on_time or 0),
                "late": int(row.late or 0),
                "excused": int(row.excused or 0),
                "absent": int(row.absent or 0),
                "decisions": decisions,
            }
        )

    problem: content.ProblemOfMonth | None = None
    if topic is not None:
        lines = [i for i in issues if i["ref"] in topic_refs]
        handled = sum(1 for i in lines if i["status"] in HANDLED)
        whistled = sum(1 for i in lines if i["call_type"])
        tasks_line = f"吹哨派单 {whistled} 件，已办结 {handled} 件"
        problem = {
            "topic_zh": f"{lines[0]['category_zh']} · {topic[1]}" if topic[1] else lines[0]["category_zh"],
            "category": topic[0],
            "category_zh": lines[0]["category_zh"],
            "grid_zh": topic[1],
            "issues": len(lines),
            "handled": handled,
            "actions_zh": [*sorted(actions_zh), tasks_line],
        }

    funds: list[content.FundLine] = [
        {
            "fund": r.fund,
            "fund_zh": FUND_ZH.get(r.fund, r.fund),
            "opening_fen": int(r.closing_fen) - int(r.allocated_fen) + int(r.spent_fen),
            "allocated_fen": int(r.allocated_fen),
            "spent_fen": int(r.spent_fen),
            "closing_fen": int(r.closing_fen),
        }
        for r in facts.funds
    ]

    in_month = [i for i in issues if start.strftime("%Y-%m") == i["received_on"][:7]]
    handled_lines = [i for i in issues if i["status"] in HANDLED and (i["done_on"] or "")[:7] == period]
    rated = [i["rating"] for i in issues if i["rating"] is not None]
    summary: content.MonthlySummary = {
        "issues_received": len(in_month),
        "issues_handled": len(handled_lines),
        "verified": sum(1 for i in issues if i["verification"] == "passed"),
        "verification_failed": sum(1 for i in issues if i["verification"] == "failed"),
        "rated": len(rated),
        "rating_average": round(sum(rated) / len(rated), 2) if rated else None,
        "whistles": len(whistles),
        "meetings": len(meetings),
        "overdue": sum(1 for i in issues if i["overdue"]),
    }
    tenant_zh = get_tenant(tenant).name_zh
    name_zh = place.name_zh or community_id
    return {
        "schema": content.SCHEMA,
        "kind": "monthly",
        "tenant": tenant,
        "tenant_name_zh": tenant_zh,
        "scope": community_id,
        "scope_name_zh": name_zh,
        "period": period,
        "period_zh": period_zh(period),
        "as_of": end.isoformat(),
        "title_zh": f"{name_zh}{period_zh(period)}公示",
        "title_en": f"{place.name_en or community_id}: public board, {period}",
        "summary": summary,
        "issues": issues,
        "whistles": whistles,
        "meetings": meetings,
        "problem_of_month": problem,
        "funds": funds,
        "measures": measures(community_id, period),
        "audit_anchor": audit_anchor,
    }


def problem_of_month(issues: Iterable[content.IssueLine]) -> tuple[str, str] | None:
    """每月一题: the (category, grid) that recurred most among the month's issues (ties: by category, then grid)."""
    counts = Counter((i["category"], i["grid_zh"]) for i in issues)
    if not counts:
        return None
    return min(counts, key=lambda k: (-counts[k], k))
