"""验单 (verification): the rules, in plain Python (no database, no gRPC).

Evaluation owns "verified". A task that dispatch reports done waits in the verification queue until a verdict
is given by one of two methods, and the verdict is an event that dispatch applies (TaskVerified: done →
verified; TaskVerificationFailed: done → rejected → reopened):

- Collective review (集中评议, method "review"): a round for a set of done tasks of one community, convened by
  a community worker, with named reviewers of three kinds — the community Party committee (社区党委,
  party_committee), resident representatives (居民代表, resident_representative) and alliance members (联盟成员,
  alliance_member) — and a quorum. Each reviewer votes once per task: pass, or fail with a reason. When the
  convenor closes the round each task with at least `quorum` votes gets the verdict of the tenant's decision
  rule (`decide`); a task with fewer gets none and stays in the queue.
- On-site verification (现场核验, method "onsite"): an inspector records a check of a task with notes, photos and
  the place (lat, lon); the check's pass or fail is the verdict. A place farther than the tenant's distance
  from the issue's point is flagged (`place_flag`): shown, and carried in the event (place_flagged).

The tenant's rules, per call type (PUT with the version read; defaults until it stores its own):

| call type | method | quorum | decision | distance |
|---|---|---|---|---|
| emergency 紧急集结号 | onsite 现场核验 | 3 | majority | 200 m |
| tackling 攻坚集结号 | review 集中评议 | 3 | majority | 200 m |
| service 服务集结号 | review 集中评议 | 3 | majority | 200 m |

Why these: an emergency is made safe on the spot and is best judged there, at once, by one inspector; major
and routine work is what the seed's regular verification (定期验单) reviews together, and three votes are the
fewest that make a majority meaningful (a community's Party committee, a resident representative and an
alliance member). 200 m is about a compound's span: a check made farther away was not made at the place.
`method` "either" accepts both. Decisions: majority = more than half of the votes cast pass (a tie fails);
two_thirds = at least two thirds pass; unanimous = every vote passes.

Attempts. A task's verifications are counted by its done steps: the first time it is done its verification is
attempt 1; after a failure (or a resident's rejection, the ratings area's) it is reopened, done again and
verified as attempt 2, and so on. One verdict per task and attempt: its id is "<task_id>:<attempt>", claimed by
an insert with that _id before the verdict is written (handlers.py), so a round and a check, or two checks,
never both decide one attempt.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common import validate
from services.common.errors import FailedPrecondition, PermissionDenied
from services.common.validate import bad, text

# ---------------------------------------------------------------- names

REVIEW, ONSITE, EITHER = "review", "onsite", "either"
METHODS = (REVIEW, ONSITE, EITHER)
METHOD_ZH = {REVIEW: "集中评议", ONSITE: "现场核验", EITHER: "集中评议或现场核验", "resident": "居民否决"}
SERVICE, TACKLING, EMERGENCY = "service", "tackling", "emergency"
CALL_TYPES = (SERVICE, TACKLING, EMERGENCY)
CALL_TYPE_ZH = {SERVICE: "服务集结号", TACKLING: "攻坚集结号", EMERGENCY: "紧急集结号"}
MAJORITY, TWO_THIRDS, UNANIMOUS = "majority", "two_thirds", "unanimous"
DECISIONS = (MAJORITY, TWO_THIRDS, UNANIMOUS)
PARTY_COMMITTEE, RESIDENT_REP, ALLIANCE_MEMBER = "party_committee", "resident_representative", "alliance_member"
REVIEWER_KINDS = (PARTY_COMMITTEE, RESIDENT_REP, ALLIANCE_MEMBER)
REVIEWER_KIND_ZH = {PARTY_COMMITTEE: "社区党委", RESIDENT_REP: "居民代表", ALLIANCE_MEMBER: "联盟成员"}
# Round statuses.
OPEN, CLOSING, CLOSED = "open", "closing", "closed"
ROUND_STATUS_ZH = {OPEN: "评议中", CLOSING: "正在结束", CLOSED: "已结束"}
# A task's verdict in a round or a check.
PASSED, FAILED, NO_QUORUM, ELSEWHERE = "passed", "failed", "no_quorum", "decided_elsewhere"
VERDICT_ZH = {PASSED: "验收通过", FAILED: "验收不通过", NO_QUORUM: "未达法定票数", ELSEWHERE: "已由其他验单决定"}

DEFAULT_QUORUM = 3
DEFAULT_DISTANCE_M = 200
MAX_DISTANCE_M = 50_000
MAX_QUORUM = 30
MAX_TASKS = 50
MAX_REVIEWERS = 30
TITLE_MAX = 120
NOTES_MAX = 2000
REASON_MAX = 500
NAME_MAX = 60
MAX_PHOTOS = 5
PHOTO_MAX_BYTES = 5 * 1024 * 1024
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
FILENAME_MAX = 200
ID_NAMESPACE = uuid.UUID("3e0c9a52-7b1d-4f0e-8d6a-1c2b3a4d5e6f")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,119}$")

STAFF = frozenset({"community_worker", "subdistrict_admin"})
RULES_WRITERS = frozenset({"subdistrict_admin"})
READERS = STAFF | {"ops", "service"}
MEMBER = "member"
DONE = "done"


def require_role(role: str | None, allowed: frozenset[str], what: str) -> None:
    if role not in allowed:
        raise PermissionDenied(
            f"无权操作 (role {role or 'none'!r} may not {what}; allowed: {', '.join(sorted(allowed))})",
            reason="role_not_allowed",
        )


def ident(value: str, field_name: str, label_zh: str, *, required: bool = True) -> str:
    """An id, in this area's alphabet (the common one and "@")."""
    return validate.ident(value, field_name, label_zh, required=required, pattern=_ID)


def new_id(idempotency_key: str = "", by: str = "", kind: str = "") -> str:
    if idempotency_key:
        return uuid.uuid5(ID_NAMESPACE, f"{kind}:{by}:{idempotency_key}").hex
    return uuid.uuid4().hex


def verification_id(task_id: str, attempt: int) -> str:
    """One verdict per task and attempt: the id of its claim and of its event."""
    return f"{task_id}:{attempt}"


def vote_id(round_id: str, task_id: str, reviewer_id: str) -> str:
    """A vote's _id: inserted once (a second vote of the reviewer on the task is refused by the store)."""
    return f"{round_id}:{task_id}:{reviewer_id}"


def attempt_of(history_to_statuses: Iterable[str]) -> int:
    """The verification a done task awaits: how many times it has been done (1 = first)."""
    return max(1, sum(1 for s in history_to_statuses if s == DONE))


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    call_type: str
    method: str = REVIEW
    quorum: int = DEFAULT_QUORUM
    decision: str = MAJORITY
    distance_m: int = DEFAULT_DISTANCE_M

    def accepts(self, method: str) -> bool:
        return self.method in (method, EITHER)


DEFAULT_RULES: dict[str, Rule] = {
    EMERGENCY: Rule(EMERGENCY, ONSITE),
    TACKLING: Rule(TACKLING, REVIEW),
    SERVICE: Rule(SERVICE, REVIEW),
}


def rule_for(rules: Mapping[str, Rule], call_type: str) -> Rule:
    return rules.get(call_type) or DEFAULT_RULES.get(call_type) or Rule(call_type or SERVICE)


def check_rules(raw: Sequence[Mapping[str, Any]]) -> dict[str, Rule]:
    """All three call types' rules, checked; InvalidArgument naming the field (rules[i].…)."""
    out: dict[str, Rule] = {}
    for n, r in enumerate(raw):
        where = f"rules[{n}]"
        ct = str(r.get("call_type") or "").strip()
        if ct not in CALL_TYPES:
            raise bad(f"{where}.call_type", "集结号类型应为 service、tackling 或 emergency", "unknown call type")
        if ct in out:
            raise bad(f"{where}.call_type", "集结号类型重复", f"{ct} appears twice")
        method = str(r.get("method") or "").strip()
        if method not in METHODS:
            raise bad(f"{where}.method", "验单方式应为 review、onsite 或 either", "must be review, onsite or either")
        decision = str(r.get("decision") or MAJORITY).strip()
        if decision not in DECISIONS:
            raise bad(f"{where}.decision", "表决规则应为 majority、two_thirds 或 unanimous", "unknown decision rule")
        quorum = r.get("quorum")
        if not isinstance(quorum, int) or isinstance(quorum, bool) or not 1 <= quorum <= MAX_QUORUM:
            raise bad(f"{where}.quorum", f"法定票数应为1..{MAX_QUORUM}", f"must be 1..{MAX_QUORUM}")
        distance = r.get("distance_m")
        if not isinstance(distance, int) or isinstance(distance, bool) or not 10 <= distance <= MAX_DISTANCE_M:
            raise bad(f"{where}.distance_m", f"核验距离应为10..{MAX_DISTANCE_M}米", f"must be 10..{MAX_DISTANCE_M} m")
        out[ct] = Rule(ct, method, quorum, decision, distance)
    missing = [ct for ct in CALL_TYPES if ct not in out]
    if missing:
        raise bad("rules", f"须包含全部三类集结号（缺{'、'.join(missing)}）", f"missing {', '.join(missing)}")
    return out


def rules_to_list(rules: Mapping[str, Rule]) -> list[dict[str, Any]]:
    return [
        {"call_type": r.call_type, "method": r.method, "quorum": r.quorum, "decision": r.decision,
         "distance_m": r.distance_m}
        for r in (rule_for(rules, ct) for ct in CALL_TYPES)
    ]  # fmt: skip


def rules_from_list(raw: Iterable[Mapping[str, Any]]) -> dict[str, Rule]:
    out = dict(DEFAULT_RULES)
    for r in raw:
        ct = str(r.get("call_type") or "")
        if ct in CALL_TYPES:
            out[ct] = replace(
                DEFAULT_RULES[ct],
                method=str(r.get("method") or DEFAULT_RULES[ct].method),
                quorum=int(r.get("quorum") or DEFAULT_QUORUM),
                decision=str(r.get("decision") or MAJORITY),
                distance_m=int(r.get("distance_m") or DEFAULT_DISTANCE_M),
            )
    return out


def require_method(rule: Rule, method: str) -> None:
    """The tenant's rule for the task's call type must accept this method (FAILED_PRECONDITION otherwise)."""
    if not rule.accepts(method):
        raise FailedPrecondition(
            f"本街道规定{CALL_TYPE_ZH.get(rule.call_type, rule.call_type)}以{METHOD_ZH[rule.method]}验单，"
            f"不能{METHOD_ZH[method]} (the tenant verifies {rule.call_type} tasks by {rule.method}, not {method})",
            reason="method_not_allowed",
            field="task_id",
        )


def require_done(status: str, field: str = "task_id") -> None:
    if status != DONE:
        raise FailedPrecondition(
            f"任务尚未办结，不能验单 (only a done task is verified; this one is {status or 'unknown'})",
            reason="task_not_done",
            field=field,
        )


# ---------------------------------------------------------------- review rounds


@dataclass(frozen=True)
class ReviewerIn:
    id: str
    kind: str
    name_zh: str = ""


@dataclass(frozen=True)
class NewRound:
    community_id: str
    title: str
    task_ids: tuple[str, ...]
    reviewers: tuple[ReviewerIn, ...]
    quorum: int  # 0: the rule's


def check_new_round(
    *, community_id: str, title: str, task_ids: Sequence[str], reviewers: Sequence[ReviewerIn], quorum: int
) -> NewRound:
    community_id = ident(community_id, "community_id", "社区")
    title = text(title, "title", "评议名称", TITLE_MAX, required=True)
    if not task_ids:
        raise bad("task_ids", "请至少选择一项待验任务", "name at least one done task")
    if len(task_ids) > MAX_TASKS:
        raise bad("task_ids", f"每轮至多{MAX_TASKS}项任务", f"at most {MAX_TASKS} tasks")
    tasks: list[str] = []
    for n, t in enumerate(task_ids):
        tid = ident(t, f"task_ids[{n}]", "任务")
        if tid in tasks:
            raise bad(f"task_ids[{n}]", "任务重复", "is named twice")
        tasks.append(tid)
    if not reviewers:
        raise bad("reviewers", "请至少指定一位评议人", "name at least one reviewer")
    if len(reviewers) > MAX_REVIEWERS:
        raise bad("reviewers", f"评议人至多{MAX_REVIEWERS}位", f"at most {MAX_REVIEWERS} reviewers")
    seen: set[str] = set()
    checked: list[ReviewerIn] = []
    for n, r in enumerate(reviewers):
        rid = ident(r.id, f"reviewers[{n}].id", "评议人")
        if rid in seen:
            raise bad(f"reviewers[{n}].id", "评议人重复", "is named twice")
        seen.add(rid)
        kind = (r.kind or "").strip()
        if kind not in REVIEWER_KINDS:
            raise bad(
                f"reviewers[{n}].kind",
                "评议人类别应为 party_committee（社区党委）、resident_representative（居民代表）"
                "或 alliance_member（联盟成员）",
                "must be party_committee, resident_representative or alliance_member",
            )
        checked.append(ReviewerIn(rid, kind, text(r.name_zh, f"reviewers[{n}].name_zh", "姓名", NAME_MAX)))
    if quorum < 0 or quorum > len(checked):
        raise bad("quorum", f"法定票数应为1..{len(checked)}（评议人数）", f"must be 1..{len(checked)} (the reviewers)")
    return NewRound(community_id, title, tuple(tasks), tuple(checked), quorum)


def round_quorum(asked: int, rules: Iterable[Rule], reviewers: int) -> int:
    """The round's quorum: the one asked, or the largest of its tasks' rules (never more than the reviewers)."""
    if asked:
        return asked
    wanted = max((r.quorum for r in rules), default=DEFAULT_QUORUM)
    if wanted > reviewers:
        raise bad(
            "quorum",
            f"评议人不足：本街道规则要求至少{wanted}票，仅指定了{reviewers}位评议人",
            f"the tenant's rule needs {wanted} votes; only {reviewers} reviewers are named",
        )
    return wanted


def round_decision(rules: Iterable[Rule]) -> str:
    """A round decides by the strictest of its tasks' rules."""
    order = {MAJORITY: 0, TWO_THIRDS: 1, UNANIMOUS: 2}
    return max((r.decision for r in rules), key=lambda d: order.get(d, 0), default=MAJORITY)


def check_vote(passed: bool, reason: str) -> str:
    why = text(reason, "reason", "不通过理由", REASON_MAX, required=not passed)
    return why


def require_open(status: str) -> None:
    if status != OPEN:
        raise FailedPrecondition(
            f"评议{ROUND_STATUS_ZH.get(status, status)}，不能投票 (the round is {status}: no more votes)",
            reason="round_closed",
            field="round_id",
        )


def decide(votes_pass: int, votes_fail: int, quorum: int, decision: str) -> str:
    """A task's verdict in a closed round: no_quorum below the quorum, else passed or failed by the rule."""
    cast = votes_pass + votes_fail
    if cast < max(1, quorum):
        return NO_QUORUM
    if decision == UNANIMOUS:
        ok = votes_fail == 0
    elif decision == TWO_THIRDS:
        ok = 3 * votes_pass >= 2 * cast
    else:
        ok = 2 * votes_pass > cast
    return PASSED if ok else FAILED


# ---------------------------------------------------------------- on-site checks


@dataclass(frozen=True)
class PhotoIn:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class CheckedPhoto:
    filename: str
    content_type: str
    size: int
    content: bytes


def sniff_photo(content: bytes) -> str | None:
    """The photo type the bytes really are (their magic numbers), or None."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(content) >= 12 and content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_photos(photos: Sequence[PhotoIn]) -> list[CheckedPhoto]:
    """The checks intake applies to an issue's photos: at most 5, 5 MiB each, JPEG/PNG/WebP by content."""
    if len(photos) > MAX_PHOTOS:
        raise bad("photos", f"照片至多{MAX_PHOTOS}张", f"at most {MAX_PHOTOS} photos")
    out = []
    for n, p in enumerate(photos):
        where = f"photos[{n}]"
        if not p.content:
            raise bad(where, "照片为空", "is empty")
        if len(p.content) > PHOTO_MAX_BYTES:
            raise bad(where, "照片至多5 MiB", "at most 5 MiB")
        actual = sniff_photo(p.content)
        if actual is None:
            raise bad(where, "仅支持 JPEG、PNG、WebP 照片", "send a JPEG, PNG or WebP photo")
        declared = (p.content_type or "").strip().lower()
        if declared and declared != actual:
            raise bad(where, "文件类型与内容不符", f"declared {declared!r} but the content is {actual}")
        name = re.split(r"[\\/]", p.filename or "")[-1].strip()[:FILENAME_MAX]
        name = "".join(ch for ch in name if ord(ch) >= 32) or f"photo-{n + 1}.{actual.split('/')[1]}"
        out.append(CheckedPhoto(name, actual, len(p.content), p.content))
    return out


def check_point(lat: float, lon: float) -> tuple[float, float]:
    if not (math.isfinite(lat) and -90 <= lat <= 90) or (lat == 0 and lon == 0):
        raise bad("lat", "请提供核验地点（纬度）", "the check's place (lat, lon) is required")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise bad("lon", "经度应为-180..180", "must be -180..180")
    return lat, lon


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres (haversine, mean Earth radius)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class PlaceFlag:
    distance_m: float  # -1: the issue has no point to compare with
    flagged: bool
    note_zh: str


def place_flag(check: tuple[float, float], issue: tuple[float, float] | None, limit_m: int) -> PlaceFlag:
    if issue is None:
        return PlaceFlag(-1.0, False, "事项无坐标，未比对核验地点")
    d = round(distance_m(check, issue), 1)
    if d > limit_m:
        return PlaceFlag(d, True, f"核验地点距事项位置{d:.0f}米，超过{limit_m}米")
    return PlaceFlag(d, False, f"核验地点距事项位置{d:.0f}米")


def check_outcome(passed: bool, reason: str) -> str:
    return text(reason, "reason", "不通过理由", REASON_MAX, required=not passed)
