"""Dispatch domain rules (吹号 · 报到 · 认领 · 点将 · 时限). Plain Python, no infrastructure.

Calls (集结号). The class of an issue picks its call: routine → service call (服务集结号), major → tackling
call (攻坚集结号), urgent → emergency call (紧急集结号). Each call type has, per tenant (defaults below,
changed with PutDispatchRules):

| call type | report in | complete | reminders before (report-in, completion) | to the district | assistants |
|---|---|---|---|---|---|
| emergency 紧急集结号 | 30 min | 24 h | 10 min, 2 h | +2 h | 3 |
| tackling 攻坚集结号 | 24 h | 7 days | 4 h, 24 h | +24 h | 2 |
| service 服务集结号 | 72 h | 15 days | 12 h, 48 h | +72 h | 1 |

Why these: an urgent issue (gas, fire, a structural danger, many households) needs people on the spot
within the half hour a community can reasonably rally its alliance, and made safe within a day; a major
issue gets a working day to gather units and a week to solve (the usual 7-day "攻坚" cycle of
district task lists); a routine service request gets three days to find a helper and the 15 working
days common in 12345 hotline service rules. Deadlines count from the moment the call is blown (the
issue's classification time), in plain hours (not working days; a tenant that wants working days
lengthens them).

A missed completion deadline escalates the task to the subdistrict (街道) at once; still unfinished
after the "to the district" period, it goes to the district (区). A task counts as finished for the
clock when it is done (pending verification), verified or cancelled; a rejected task runs against its
completion deadline again.

Reclassification. An issue reclassified to a more urgent class upgrades its call (service → tackling →
emergency): the task's and the call's deadlines become the earlier of the old ones and the new call
type's counted from the reclassification, and the task gets the new type's assistant places if that is
more. A call is never downgraded: a less urgent class keeps the promised deadlines.

Tasks. One task per issue (id derived from the issue id; a duplicate issue gets none and follows its
original). A task has a crew of one lead place and N assistant places. States::

    open ─assign─▶ assigned ─accept─▶ accepted ─start─▶ in_progress ─done─▶ done ─verify─▶ verified
     ▲  ◀─decline──┘                                       ▲                    │
     │  claim lead (assign + accept at once)                └──start── reopened ◀┴reopen── rejected ◀─reject
    any unfinished state ─cancel─▶ cancelled

Verification (验单) is evaluation's: `verify` and `reject` are not TransitionTask actions any more (refused,
FAILED_PRECONDITION pointing to 验单) but the consequence of its verdicts (`apply_verdict`): TaskVerified moves a
done task to verified; TaskVerificationFailed (a review round or an on-site check) moves it done → rejected →
reopened in one write; a resident's rejection of the verified result (method resident) moves verified →
reopened. A verdict applies once, to the attempt it was given for (the task's count of done steps).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied

TASK_NAMESPACE = uuid.UUID("0b7a4f0e-2f59-4d8e-8f55-3c1c9e6f7a10")
WHISTLE_NAMESPACE = uuid.UUID("5d0c2a8e-8f3b-4c1a-9b7e-2e4f6a1c3d55")

# ---------------------------------------------------------------- roles

STAFF_ROLES = frozenset({"community_worker", "subdistrict_admin", "service"})
READ_ROLES = STAFF_ROLES | {"ops"}
RULES_WRITERS = frozenset({"subdistrict_admin", "service"})
# A member (成员单位/个人: a unit's contact, a party member, a volunteer) acts only as the one helper its
# credential is bound to (Principal.responder): it answers calls, claims places, answers its assignment and
# starts or finishes the tasks it leads; it reads the whistle board and its own tasks.
MEMBER = "member"
HELPER_ROLES = STAFF_ROLES | {MEMBER}
BOARD_ROLES = READ_ROLES | {MEMBER}
MEMBER_ACTIONS = frozenset({"start", "done"})


def require_role(role: str | None, allowed: frozenset[str], what: str) -> None:
    if role not in allowed:
        raise PermissionDenied(
            f"role {role or 'none'!r} may not {what} (无权操作; allowed: {', '.join(sorted(allowed))})",
            reason="role_not_allowed",
        )


def acting_as(role: str, bound: tuple[str, str] | None, named: tuple[str, str], field: str) -> tuple[str, str]:
    """The helper an answer or a claim is for: a member's own (naming another is refused), or the one staff
    name (required)."""
    if role != MEMBER:
        return check_responder(*named, field)
    if bound is None:
        raise PermissionDenied(
            "this member credential is bound to no helper (未绑定成员单位或个人)", reason="no_responder"
        )
    kind, rid = bound
    if named[1].strip():
        asked = check_responder(*named, field)
        if asked != (KIND_ALIASES.get(kind, kind), rid):
            raise PermissionDenied(
                f"a member acts only as {kind}:{rid}, not as {asked[0]}:{asked[1]} (成员只能以本单位/本人身份操作)",
                reason="not_your_responder",
                field=field,
            )
    return KIND_ALIASES.get(kind, kind), rid


def member_may(role: str, bound: tuple[str, str] | None, action: str, lead: tuple[str, str] | None) -> None:
    """A member starts or finishes only the task it leads; verifying, rejecting, reopening and cancelling are
    the community's."""
    if role != MEMBER:
        return
    if action not in MEMBER_ACTIONS:
        raise PermissionDenied(
            f"a member may only {' or '.join(sorted(MEMBER_ACTIONS))} a task it leads, not {action} (无权操作)",
            reason="role_not_allowed",
            field="action",
        )
    if bound is None or lead is None or (KIND_ALIASES.get(bound[0], bound[0]), bound[1]) != lead:
        raise PermissionDenied(
            "仅限本单位/本人牵头的任务 (a member may act only on a task it leads)", reason="not_your_task"
        )


# ---------------------------------------------------------------- ids


def task_id_for_issue(issue_id: str) -> str:
    return uuid.uuid5(TASK_NAMESPACE, issue_id).hex


def whistle_id_for_issue(issue_id: str) -> str:
    """The call a classified issue raises by itself (a replay finds the same one)."""
    return uuid.uuid5(WHISTLE_NAMESPACE, f"issue:{issue_id}").hex


def manual_whistle_id(sub: str, idempotency_key: str) -> str:
    """A call blown by hand: from the caller's idempotency key (same key → same call), else random."""
    if idempotency_key:
        return uuid.uuid5(WHISTLE_NAMESPACE, f"manual:{sub}:{idempotency_key}").hex
    return uuid.uuid4().hex


# ---------------------------------------------------------------- call types

SERVICE, TACKLING, EMERGENCY = "service", "tackling", "emergency"
CALL_TYPES = (SERVICE, TACKLING, EMERGENCY)  # least to most urgent
CALL_RANK = {c: n for n, c in enumerate(CALL_TYPES)}
URGENCY_CALL = {"routine": SERVICE, "major": TACKLING, "urgent": EMERGENCY}
CALL_NAMES = {
    SERVICE: ("服务集结号", "Service call"),
    TACKLING: ("攻坚集结号", "Tackling call"),
    EMERGENCY: ("紧急集结号", "Emergency call"),
}
URGENCY_RANK = {"routine": 0, "major": 1, "urgent": 2}


def call_type_for(urgency: str) -> str:
    """The call a class raises; an unknown or empty class raises the service call."""
    return URGENCY_CALL.get(urgency, SERVICE)


def more_urgent(a: str, b: str) -> bool:
    """Is call type a more urgent than b?"""
    return CALL_RANK.get(a, 0) > CALL_RANK.get(b, 0)


@dataclass(frozen=True)
class CallRule:
    call_type: str
    report_in: timedelta
    completion: timedelta
    report_in_reminder: timedelta
    completion_reminder: timedelta
    district_escalation: timedelta
    assistant_places: int

    @property
    def name_zh(self) -> str:
        return CALL_NAMES[self.call_type][0]

    @property
    def name_en(self) -> str:
        return CALL_NAMES[self.call_type][1]

    @property
    def urgency(self) -> str:
        return {v: k for k, v in URGENCY_CALL.items()}[self.call_type]


@dataclass(frozen=True)
class Rules:
    calls: Mapping[str, CallRule]
    matching_targets: int = 5
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str = ""

    def rule(self, call_type: str) -> CallRule:
        return self.calls.get(call_type) or self.calls[SERVICE]


def _m(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


DEFAULT_RULES = Rules(
    calls={
        EMERGENCY: CallRule(EMERGENCY, _m(30), _m(24 * 60), _m(10), _m(2 * 60), _m(2 * 60), 3),
        TACKLING: CallRule(TACKLING, _m(24 * 60), _m(7 * 24 * 60), _m(4 * 60), _m(24 * 60), _m(24 * 60), 2),
        SERVICE: CallRule(SERVICE, _m(72 * 60), _m(15 * 24 * 60), _m(12 * 60), _m(48 * 60), _m(72 * 60), 1),
    },
    matching_targets=5,
)
MAX_MINUTES = 366 * 24 * 60
MAX_ASSISTANTS = 20
MAX_MATCHING_TARGETS = 50


def check_rules(calls: Sequence[Mapping[str, Any]], matching_targets: int) -> Rules:
    """Rules from a caller (PutDispatchRules), or INVALID_ARGUMENT naming the first bad field."""
    seen: dict[str, CallRule] = {}
    for n, c in enumerate(calls):
        f = f"call_types[{n}]"
        ct = str(c.get("call_type", ""))
        if ct not in CALL_TYPES:
            raise InvalidArgument(f"{f}.call_type must be one of {', '.join(CALL_TYPES)} (集结号类型无效)", field=f)
        if ct in seen:
            raise InvalidArgument(f"{f}.call_type {ct} appears twice (重复)", field=f)
        values = {}
        for key in (
            "report_in_minutes",
            "completion_minutes",
            "report_in_reminder_minutes",
            "completion_reminder_minutes",
            "district_escalation_minutes",
        ):
            v = int(c.get(key, 0))
            low = 0 if "reminder" in key else 1
            if not low <= v <= MAX_MINUTES:
                raise InvalidArgument(f"{f}.{key} must be {low}..{MAX_MINUTES} minutes (时限无效)", field=f"{f}.{key}")
            values[key] = v
        if values["report_in_minutes"] > values["completion_minutes"]:
            raise InvalidArgument(
                f"{f}: the report-in deadline must not be after the completion deadline (报到时限不能晚于办结时限)",
                field=f"{f}.report_in_minutes",
            )
        for reminder, deadline in (
            ("report_in_reminder_minutes", "report_in_minutes"),
            ("completion_reminder_minutes", "completion_minutes"),
        ):
            if values[reminder] >= values[deadline]:
                raise InvalidArgument(
                    f"{f}.{reminder} must be shorter than {deadline} (提醒须早于时限)", field=f"{f}.{reminder}"
                )
        assistants = int(c.get("assistant_places", 0))
        if not 0 <= assistants <= MAX_ASSISTANTS:
            raise InvalidArgument(
                f"{f}.assistant_places must be 0..{MAX_ASSISTANTS} (协办名额无效)", field=f"{f}.assistant_places"
            )
        seen[ct] = CallRule(
            ct,
            _m(values["report_in_minutes"]),
            _m(values["completion_minutes"]),
            _m(values["report_in_reminder_minutes"]),
            _m(values["completion_reminder_minutes"]),
            _m(values["district_escalation_minutes"]),
            assistants,
        )
    missing = [c for c in CALL_TYPES if c not in seen]
    if missing:
        raise InvalidArgument(
            f"call_types must hold all three call types; missing {', '.join(missing)} (须包含三类集结号)",
            field="call_types",
        )
    if not 0 <= matching_targets <= MAX_MATCHING_TARGETS:
        raise InvalidArgument(f"matching_targets must be 0..{MAX_MATCHING_TARGETS}", field="matching_targets")
    # Ordered by urgency: a more urgent call must not allow more time than a less urgent one.
    for lower, higher in ((SERVICE, TACKLING), (TACKLING, EMERGENCY)):
        for attr, name in (("report_in", "report_in_minutes"), ("completion", "completion_minutes")):
            if getattr(seen[higher], attr) > getattr(seen[lower], attr):
                raise InvalidArgument(
                    f"{higher}.{name} is longer than {lower}'s: a more urgent call must not allow more time "
                    "(更紧急的集结号时限不能更长)",
                    field="call_types",
                )
    return Rules(calls={c: seen[c] for c in CALL_TYPES}, matching_targets=matching_targets)


def rules_to_dict(rules: Rules) -> dict[str, Any]:
    return {
        "call_types": [
            {
                "call_type": r.call_type,
                "report_in_minutes": int(r.report_in.total_seconds() // 60),
                "completion_minutes": int(r.completion.total_seconds() // 60),
                "report_in_reminder_minutes": int(r.report_in_reminder.total_seconds() // 60),
                "completion_reminder_minutes": int(r.completion_reminder.total_seconds() // 60),
                "district_escalation_minutes": int(r.district_escalation.total_seconds() // 60),
                "assistant_places": r.assistant_places,
            }
            for r in (rules.rule(c) for c in CALL_TYPES)
        ],
        "matching_targets": rules.matching_targets,
    }


def rules_from_dict(data: Mapping[str, Any], version: int, updated_at: datetime | None, updated_by: str) -> Rules:
    rules = check_rules(data.get("call_types", []), int(data.get("matching_targets", 5)))
    return replace(rules, version=version, updated_at=updated_at, updated_by=updated_by)


# ---------------------------------------------------------------- deadline arithmetic


@dataclass(frozen=True)
class Deadlines:
    report_in_by: datetime
    complete_by: datetime

    def report_in_reminder(self, rule: CallRule, now: datetime) -> datetime | None:
        return reminder_at(self.report_in_by, rule.report_in_reminder, now)

    def completion_reminder(self, rule: CallRule, now: datetime) -> datetime | None:
        return reminder_at(self.complete_by, rule.completion_reminder, now)


def deadlines_for(rule: CallRule, blown_at: datetime) -> Deadlines:
    """The report-in and completion deadlines of a call blown at `blown_at`."""
    return Deadlines(blown_at + rule.report_in, blown_at + rule.completion)


def upgraded_deadlines(current: Deadlines, rule: CallRule, at: datetime) -> Deadlines:
    """After an upgrade at `at`: the earlier of the promised deadlines and the new call type's."""
    new = deadlines_for(rule, at)
    return Deadlines(min(current.report_in_by, new.report_in_by), min(current.complete_by, new.complete_by))


def reminder_at(deadline: datetime, lead: timedelta, now: datetime) -> datetime | None:
    """When to remind before a deadline; None when there is no reminder or its moment has passed."""
    if lead <= timedelta(0):
        return None
    at = deadline - lead
    return at if at > now else None


def district_escalation_at(complete_by: datetime, rule: CallRule) -> datetime:
    return complete_by + rule.district_escalation


def is_late(reported_at: datetime, report_in_by: datetime) -> bool:
    return reported_at > report_in_by


# ---------------------------------------------------------------- helpers (responders)

MEMBER_UNIT, PERSON, TEAM = "member_unit", "person", "team"
KINDS = (MEMBER_UNIT, PERSON, TEAM)
KIND_ALIASES = {"unit": MEMBER_UNIT, "member_unit": MEMBER_UNIT, "person": PERSON, "team": TEAM}
KIND_ZH = {MEMBER_UNIT: "成员单位", PERSON: "个人", TEAM: "志愿者队伍"}


def normalise_kind(kind: str, field: str) -> str:
    k = KIND_ALIASES.get(kind.strip())
    if k is None:
        raise InvalidArgument(f"{field}.kind must be one of {', '.join(KINDS)} (类型无效)", field=f"{field}.kind")
    return k


def check_responder(kind: str, responder_id: str, field: str) -> tuple[str, str]:
    k = normalise_kind(kind, field)
    rid = responder_id.strip()
    if not rid or len(rid) > 120:
        raise InvalidArgument(f"{field}.id is required (须指明单位或个人)", field=f"{field}.id")
    return k, rid


REASON_MAX = 500
NOTE_MAX = 500


def check_reason(reason: str, *, required: bool, what: str, field: str = "reason") -> str:
    r = reason.strip()
    if required and not r:
        raise InvalidArgument(f"a reason is required to {what} (须说明理由)", field=field)
    if len(r) > REASON_MAX:
        raise InvalidArgument(f"{field}: at most {REASON_MAX} characters", field=field)
    return r


ACCEPT, DECLINE, PROPOSE = "accept", "decline", "propose"
ANSWERS = (ACCEPT, DECLINE, PROPOSE)
ANSWER_ZH = {ACCEPT: "报到", DECLINE: "婉拒", PROPOSE: "推荐他人"}


def check_answer(answer: str, reason: str, proposed: tuple[str, str] | None) -> tuple[str, str]:
    a = answer.strip()
    if a not in ANSWERS:
        raise InvalidArgument(f"answer must be one of {', '.join(ANSWERS)} (报到答复无效)", field="answer")
    r = check_reason(reason, required=a != ACCEPT, what=f"{a} a call")
    if a == PROPOSE and proposed is None:
        raise InvalidArgument("propose needs the helper proposed instead (须推荐单位或个人)", field="proposed")
    if a != PROPOSE and proposed is not None:
        raise InvalidArgument("proposed is only for the answer propose", field="proposed")
    return a, r


# ---------------------------------------------------------------- task states

OPEN, ASSIGNED, ACCEPTED, IN_PROGRESS = "open", "assigned", "accepted", "in_progress"
DONE, VERIFIED, REJECTED, REOPENED, CANCELLED = "done", "verified", "rejected", "reopened", "cancelled"
STATUSES = (OPEN, ASSIGNED, ACCEPTED, IN_PROGRESS, DONE, VERIFIED, REJECTED, REOPENED, CANCELLED)
STATUS_NAMES = {
    OPEN: ("待认领", "open"),
    ASSIGNED: ("已派单", "assigned"),
    ACCEPTED: ("已接单", "accepted"),
    IN_PROGRESS: ("办理中", "in progress"),
    DONE: ("已办结", "done"),
    VERIFIED: ("已验收", "verified"),
    REJECTED: ("验收未通过", "rejected"),
    REOPENED: ("重新办理", "reopened"),
    CANCELLED: ("已取消", "cancelled"),
}
# No more work expected: the call's places and the clocks stop.
FINISHED = frozenset({DONE, VERIFIED, CANCELLED})
# The whistle of a task in these is closed for good.
FINAL = frozenset({VERIFIED, CANCELLED})
# TransitionTask actions: action -> (allowed from, to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({ACCEPTED, REOPENED}), IN_PROGRESS),
    "done": (frozenset({IN_PROGRESS}), DONE),
    "reopen": (frozenset({REJECTED}), REOPENED),
    "cancel": (frozenset({OPEN, ASSIGNED, ACCEPTED, IN_PROGRESS, REJECTED, REOPENED}), CANCELLED),
}
# The steps only evaluation's verdicts take (apply_verdict); TransitionTask refuses them (refuse_verdict_action).
VERDICT_ACTIONS = frozenset({"verify", "reject"})
REASON_REQUIRED = frozenset({"cancel"})
ACTION_NAMES = {
    "start": ("开始办理", "start"),
    "done": ("办结", "mark done"),
    "verify": ("验收通过", "verify"),
    "reject": ("验收不通过", "reject"),
    "reopen": ("重新办理", "reopen"),
    "cancel": ("取消", "cancel"),
    "assign": ("派单", "assign"),
    "accept": ("接单", "accept"),
    "decline": ("拒单", "decline"),
    "claim": ("认领", "claim"),
}
# Assistants may join while the work is still ahead.
ASSISTANT_CLAIMABLE = frozenset({OPEN, ASSIGNED, ACCEPTED, IN_PROGRESS, REOPENED})


def status_zh(status: str) -> str:
    return STATUS_NAMES.get(status, (status, status))[0]


def transition(status: str, action: str) -> str:
    """The status after a TransitionTask action, or FAILED_PRECONDITION saying what is allowed (verify and reject:
    that they are 验单's)."""
    refuse_verdict_action(action)
    if action not in TRANSITIONS:
        raise InvalidArgument(
            f"action must be one of {', '.join(TRANSITIONS)} (操作无效)",
            field="action",
        )
    allowed, to = TRANSITIONS[action]
    if status not in allowed:
        zh, en = ACTION_NAMES[action]
        raise FailedPrecondition(
            f"任务当前为「{status_zh(status)}」，不能{zh} (a task that is {status} cannot {en}; "
            f"allowed from: {', '.join(sorted(allowed))})",
            reason="illegal_transition",
            field="action",
        )
    return to


def refuse_verdict_action(action: str) -> None:
    """verify / reject by a bare transition: refused, they are the consequence of evaluation's verdict (验单)."""
    if action in VERDICT_ACTIONS:
        zh, en = ACTION_NAMES[action]
        raise FailedPrecondition(
            f"任务的{zh}由验单（集中评议或现场核验）决定，请到「验单」办理 (a task is no longer {en}-ed by a "
            "transition: verification is evaluation's — a review round or an on-site check decides, see "
            "/api/v1/tenants/{tenant}/evaluation/verification-queue)",
            reason="verified_by_evaluation",
            field="action",
        )


@dataclass(frozen=True)
class Verdict:
    passed: bool
    method: str  # review | onsite | resident
    attempt: int
    verification_id: str


def done_count(to_statuses: Iterable[str]) -> int:
    """How many times the task has been done: the attempt its next verification is (1 = first)."""
    return sum(1 for s in to_statuses if s == DONE)


def apply_verdict(status: str, done_steps: int, applied: Iterable[str], v: Verdict) -> list[tuple[str, str]]:
    """The (action, to) steps a verdict moves the task through, [] when it changes nothing: applied already
    (its id is among `applied`), or given for another attempt or state (a late or re-sent event)."""
    if v.verification_id in set(applied):
        return []
    if v.method == "resident":
        return [("resident_rejected", REOPENED)] if not v.passed and status == VERIFIED else []
    if status != DONE or (v.attempt and v.attempt != done_steps):
        return []
    if v.passed:
        return [("verify", VERIFIED)]
    return [("reject", REJECTED), ("reopen", REOPENED)]


def allowed_actions(status: str, *, lead_free: bool, places_left: int) -> list[str]:
    """What may be done to a task now (for the portals' buttons)."""
    out: list[str] = []
    if status in (OPEN, ASSIGNED):
        out.append("assign")
    if status == ASSIGNED:
        out += ["accept", "decline"]
    if places_left > 0 and (status in ASSISTANT_CLAIMABLE or (status == OPEN and lead_free)):
        out.append("claim")
    out += [a for a, (frm, _) in TRANSITIONS.items() if status in frm]
    return out


# ---------------------------------------------------------------- crew and places

LEAD, ASSISTANT = "lead", "assistant"


@dataclass(frozen=True)
class Member:
    kind: str
    id: str
    role: str


@dataclass(frozen=True)
class Places:
    lead_places: int
    assistant_places: int
    lead_taken: int
    assistants_taken: int

    @property
    def lead_free(self) -> bool:
        return self.lead_taken < self.lead_places

    @property
    def assistants_free(self) -> int:
        return max(0, self.assistant_places - self.assistants_taken)

    @property
    def left(self) -> int:
        return (1 if self.lead_free else 0) + self.assistants_free


def places(lead_places: int, assistant_places: int, crew: Iterable[Member]) -> Places:
    members = list(crew)
    return Places(
        lead_places,
        assistant_places,
        sum(1 for m in members if m.role == LEAD),
        sum(1 for m in members if m.role == ASSISTANT),
    )


def claim_role(
    status: str, requested: str, who: tuple[str, str], crew: Sequence[Member], lead_places: int, assistant_places: int
) -> str | None:
    """The place a claimant gets, None when they already hold it (nothing to do), or FAILED_PRECONDITION
    with a clear answer (full, taken, already on the crew in another role, wrong state)."""
    if requested not in ("", LEAD, ASSISTANT):
        raise InvalidArgument("role must be lead, assistant or empty (任一空位)", field="role")
    mine = next((m for m in crew if (m.kind, m.id) == who), None)
    if mine is not None:
        if requested in ("", mine.role):
            return None
        raise FailedPrecondition(
            f"已作为{'牵头' if mine.role == LEAD else '协办'}认领该任务 (already on this task as {mine.role})",
            reason="already_claimed",
            field="role",
        )
    if status in FINISHED or status == REJECTED:
        raise FailedPrecondition(
            f"任务当前为「{status_zh(status)}」，不能认领 (a task that is {status} takes no claims)",
            reason="not_claimable",
        )
    p = places(lead_places, assistant_places, crew)
    lead_ok = status == OPEN and p.lead_free
    if requested == LEAD or (requested == "" and lead_ok):
        if lead_ok:
            return LEAD
        if requested == LEAD:
            raise FailedPrecondition(
                "牵头名额已被占用 (the lead place is taken"
                + (": the task awaits its assignee's answer)" if status == ASSIGNED else ")"),
                reason="lead_taken",
                field="role",
            )
    if status not in ASSISTANT_CLAIMABLE:
        raise FailedPrecondition(
            f"任务当前为「{status_zh(status)}」，不能认领 (a task that is {status} takes no claims)",
            reason="not_claimable",
        )
    if p.assistants_free > 0:
        return ASSISTANT
    raise FailedPrecondition(
        f"名额已满：该任务的{assistant_places}个协办名额均已认领 (no places left: all {assistant_places} assistant "
        "places are taken" + ("" if p.lead_free else " and the lead is taken") + ")",
        reason="no_places_left",
        field="role",
    )


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class TargetIn:
    kind: str
    id: str
    name_zh: str
    source: str  # serves_area | matching | manual | proposed
    reasons: tuple[str, ...] = ()


def unit_serves(serves_grid_ids: Sequence[str], grid_id: str, call_type: str) -> bool:
    """Is a member unit of the community called for an issue in this grid?

    Units that name no grid serve the whole community; an emergency calls every unit of the community."""
    return call_type == EMERGENCY or not serves_grid_ids or not grid_id or grid_id in serves_grid_ids


def merge_targets(*groups: Iterable[TargetIn]) -> list[TargetIn]:
    """One entry per helper, the first group naming it wins (area units before matching before manual)."""
    out: dict[tuple[str, str], TargetIn] = {}
    for group in groups:
        for t in group:
            out.setdefault((t.kind, t.id), t)
    return list(out.values())


# ---------------------------------------------------------------- notes (history)


def note(action: str, **kw: str) -> tuple[str, str]:
    """(note_zh, note_en) of a task history step."""
    reason = kw.get("reason", "")
    tail_zh = f"：{reason}" if reason else ""
    tail_en = f": {reason}" if reason else ""
    who = kw.get("who", "")
    if action == "created":
        ct = kw.get("call_type", SERVICE)
        return f"已吹响{CALL_NAMES[ct][0]}", f"{CALL_NAMES[ct][1]} blown"
    if action == "claimed":
        role = kw.get("role", "")
        return f"{who} 认领{'牵头' if role == LEAD else '协办'}名额", f"{who} claimed the {role} place"
    if action == "assigned":
        return f"派单给 {who}{tail_zh}", f"assigned to {who}{tail_en}"
    if action == "released":
        return f"{who} 不再承办{tail_zh}", f"{who} released{tail_en}"
    if action == "accepted":
        return f"{who} 已接单", f"{who} accepted"
    if action == "declined":
        return f"{who} 拒单{tail_zh}", f"{who} declined{tail_en}"
    if action == "upgraded":
        ct = kw.get("call_type", SERVICE)
        return f"升级为{CALL_NAMES[ct][0]}{tail_zh}", f"upgraded to {CALL_NAMES[ct][1]}{tail_en}"
    if action == "whistle":
        ct = kw.get("call_type", SERVICE)
        return f"再次吹响{CALL_NAMES[ct][0]}{tail_zh}", f"{CALL_NAMES[ct][1]} blown again{tail_en}"
    if action == "reminder":
        return "办结时限将至", "completion deadline approaching"
    if action == "deadline_missed":
        return "已超过办结时限", "completion deadline missed"
    if action == "resident_rejected":
        return f"报事居民否决验收结果{tail_zh}", f"the resident who reported it rejected the result{tail_en}"
    if action in ("verify", "reject") and kw.get("method"):
        zh, en = ACTION_NAMES[action]
        m_zh = {"review": "集中评议", "onsite": "现场核验"}.get(kw["method"], kw["method"])
        return f"{m_zh}：{zh}{tail_zh}", f"{kw['method']}: {en}{tail_en}"
    if action == "escalated":
        level = kw.get("level", "")
        zh = {"subdistrict": "街道", "district": "区"}.get(level, level)
        return f"已逾期，上报{zh}督办", f"overdue: escalated to the {level}"
    zh, en = ACTION_NAMES.get(action, (action, action))
    return f"{zh}{tail_zh}", f"{en}{tail_en}"
