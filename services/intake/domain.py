"""Intake domain rules (社区接单): what a valid new issue is, its lifecycle as the resident sees it, personal
data masking and attachment checks. Plain Python, no infrastructure."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.common.vocabulary import ISSUE_STATUS_ZH
from services.intake.classify import URGENCIES, URGENCY_ZH, Rules

# Channel code -> Chinese name.
CHANNELS: dict[str, str] = {
    "household_visit": "入户走访",
    "resident_report": "居民反映",
    "online": "线上接单",
    "grid_patrol": "网格巡查",
    "hotline_12345": "12345热线",
    "department_assistance": "部门协助任务",
}
# Handed over by a district department under an approved assistance grant, and by nobody else.
ASSISTANCE_CHANNEL = "department_assistance"
TITLE_MAX = 120
DESCRIPTION_MAX = 4000
ADDRESS_MAX = 300
NAME_MAX = 50
HOUSEHOLDS_MAX = 1_000_000
ID_NAMESPACE = uuid.UUID("3f5b3c1e-6a39-4c56-9d2b-6d3b2a8e1f00")

# Who may do what, checked again behind the gateway's policy table (defence in depth).
HANDLER_ROLES = frozenset({"community_worker", "subdistrict_admin"})  # reclassify, see contacts
# A district department lists only under a grant the gateway checked (require_role checks it carries one).
LIST_ROLES = HANDLER_ROLES | {"service", "district_department"}
RULES_WRITERS = frozenset({"subdistrict_admin", "service"})
# The dashboard's figures (GetIssueStats): counts only, no personal data; the tenant's staff.
STATS_ROLES = HANDLER_ROLES | {"service"}
# Who reads an issue whole (GetIssue): its handlers and the platform's services. Anyone else (the reporter, the
# public, a district department under a grant) reads a filing decision as Open311 gives it, the reason and where
# to turn: never the worker's own note nor who decided (public_view).
FULL_VIEW_ROLES = HANDLER_ROLES | {"service"}

# ---------------------------------------------------------------- attachments

MAX_ATTACHMENTS = 5
ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024
ATTACHMENT_TYPES = ("image/jpeg", "image/png", "image/webp", "application/pdf")
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "application/pdf": "pdf"}
FILENAME_MAX = 200


def sniff_type(content: bytes) -> str | None:
    """The attachment type the bytes really are (by their magic numbers), or None if none we accept."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(content) >= 12 and content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content.startswith(b"%PDF-"):
        return "application/pdf"
    return None


@dataclass(frozen=True)
class AttachmentIn:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class CheckedAttachment:
    filename: str
    content_type: str
    size: int
    sha256: str
    content: bytes = field(repr=False)


def _filename(raw: str, index: int, content_type: str) -> str:
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    if len(name) > FILENAME_MAX:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: FILENAME_MAX - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:FILENAME_MAX]
    return name or f"attachment-{index + 1}.{EXTENSIONS[content_type]}"


def check_attachments(uploads: Sequence[AttachmentIn]) -> list[CheckedAttachment]:
    """Checked attachments, or InvalidArgument naming the first bad one (attachments[i])."""
    if len(uploads) > MAX_ATTACHMENTS:
        raise InvalidArgument(
            f"at most {MAX_ATTACHMENTS} attachments per issue (got {len(uploads)}) (附件过多)", field="attachments"
        )
    out = []
    for i, up in enumerate(uploads):
        where = f"attachments[{i}]"
        size = len(up.content)
        if size == 0:
            raise InvalidArgument(f"{where} is empty", field=where)
        if size > ATTACHMENT_MAX_BYTES:
            raise InvalidArgument(
                f"{where} is {size} bytes; at most {ATTACHMENT_MAX_BYTES} (5 MiB) are allowed (附件过大)", field=where
            )
        actual = sniff_type(up.content)
        if actual is None:
            raise InvalidArgument(
                f"{where} is not an accepted file type; send one of {', '.join(ATTACHMENT_TYPES)} (文件类型不支持)",
                field=where,
            )
        declared = (up.content_type or "").strip().lower()
        if declared != actual:
            raise InvalidArgument(
                f"{where} is declared {declared or '(nothing)'!r} but its content is {actual} (文件类型与内容不符)",
                field=where,
            )
        out.append(
            CheckedAttachment(
                filename=_filename(up.filename, i, actual),
                content_type=actual,
                size=size,
                sha256=hashlib.sha256(up.content).hexdigest(),
                content=up.content,
            )
        )
    return out


# ---------------------------------------------------------------- contact (personal data)

# Mainland mobile (1[3-9] + 9 digits) or landline with area code (0538-1234567, 05381234567).
PHONE_RE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")


@dataclass(frozen=True)
class ContactIn:
    name: str
    phone: str


def check_contact(name: str, phone: str) -> ContactIn | None:
    """The reporter's contact, checked (None when none was given)."""
    name = " ".join((name or "").split())
    phone = re.sub(r"[\s()]", "", phone or "")
    if phone.startswith("+86"):
        phone = phone[3:].lstrip("-")
    if not name and not phone:
        return None
    if len(name) > NAME_MAX:
        raise InvalidArgument(f"contact.name is longer than {NAME_MAX} characters", field="contact.name")
    if phone and not PHONE_RE.match(phone):
        raise InvalidArgument(
            "contact.phone must be a mainland mobile (11 digits, 1[3-9]…) or a landline with its area code "
            "(0538-1234567) (电话号码格式不正确)",
            field="contact.phone",
        )
    return ContactIn(name, phone)


def mask_name(name: str) -> str:
    return f"{name[0]}*" if name else ""


def mask_phone(phone: str) -> str:
    if not phone:
        return ""
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:] if len(phone) >= 8 else "*" * len(phone)


# ---------------------------------------------------------------- the new issue


@dataclass(frozen=True)
class Location:
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    compound_id: str = ""

    @property
    def has_point(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class NewIssue:
    title: str
    description: str
    channel: str
    category: str  # "" = suggested from the title and description (classify.suggest_category), else the catch-all
    location: Location
    hazards: tuple[str, ...] = ()
    affected_households: int = 0
    contact: ContactIn | None = None
    attachments: tuple[CheckedAttachment, ...] = ()


def _text(value: str, field: str, limit: int, *, required: bool) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidArgument(f"{field} is required (必填)", field=field)
    if len(value) > limit:
        raise InvalidArgument(
            f"{field} is {len(value)} characters; at most {limit} are allowed (超出长度限制)", field=field
        )
    return value


def validate_location(loc: Location) -> Location:
    """A location the org service can place: a point (both lat and lon, in range) and/or a compound id.

    An address alone cannot be placed in a grid (there is no geocoder): it is refused."""
    if (loc.lat is None) != (loc.lon is None):
        raise InvalidArgument("location needs both lat and lon, or neither", field="location")
    if loc.has_point:
        assert loc.lat is not None and loc.lon is not None
        if not (loc.lat == loc.lat and -90 <= loc.lat <= 90):  # NaN fails the first test
            raise InvalidArgument(f"location.lat {loc.lat} is outside -90..90", field="location.lat")
        if not (loc.lon == loc.lon and -180 <= loc.lon <= 180):
            raise InvalidArgument(f"location.lon {loc.lon} is outside -180..180", field="location.lon")
    address = _text(loc.address, "location.address", ADDRESS_MAX, required=False)
    compound = (loc.compound_id or "").strip()
    if len(compound) > 100:
        raise InvalidArgument("location.compound_id is too long", field="location.compound_id")
    if not loc.has_point and not compound:
        raise InvalidArgument(
            "give a point (lat, lon) or a compound id so the issue can be placed in its grid (请提供坐标或小区)",
            field="location",
        )
    return Location(loc.lat, loc.lon, address, compound)


def validate_new_issue(
    title: str,
    description: str,
    channel: str,
    category: str,
    location: Location,
    *,
    hazards: Sequence[str] = (),
    affected_households: int = 0,
    contact: ContactIn | None = None,
    attachments: Sequence[AttachmentIn] = (),
) -> NewIssue:
    """A checked NewIssue, or InvalidArgument naming the first field that is wrong.

    Category and hazards are checked against the tenant's rules afterwards (resolve_category, check_hazards)."""
    title = _text(title, "title", TITLE_MAX, required=True)
    description = _text(description, "description", DESCRIPTION_MAX, required=True)
    if channel not in CHANNELS:
        raise InvalidArgument(f"unknown channel {channel!r}; use one of: {', '.join(CHANNELS)}", field="channel")
    if not 0 <= affected_households <= HOUSEHOLDS_MAX:
        raise InvalidArgument(
            f"affected_households must be 0..{HOUSEHOLDS_MAX} (got {affected_households})", field="affected_households"
        )
    return NewIssue(
        title=title,
        description=description,
        channel=channel,
        category=(category or "").strip(),
        location=validate_location(location),
        hazards=tuple(dict.fromkeys(h.strip() for h in hazards)),
        affected_households=affected_households,
        contact=contact,
        attachments=tuple(check_attachments(attachments)),
    )


def resolve_category(rules: Rules, category: str, field: str = "category") -> str:
    """The category code to use ("" = the catch-all), or InvalidArgument listing the valid codes."""
    code = (category or "").strip() or rules.catch_all_category
    if rules.category(code) is None:
        raise InvalidArgument(
            f"unknown {field} {code!r}; use one of: {', '.join(rules.category_codes())} (未知类别)", field=field
        )
    return code


def check_hazards(rules: Rules, hazards: Sequence[str]) -> tuple[str, ...]:
    for i, code in enumerate(hazards):
        if rules.hazard(code) is None:
            valid = ", ".join(h.code for h in rules.hazards)
            raise InvalidArgument(f"unknown hazard {code!r}; use any of: {valid}", field=f"hazards[{i}]")
    return tuple(hazards)


def check_channel(channel: str, grant_id: str, role: str, principal_grant: str | None) -> str:
    """The grant an issue is tagged with ("" for every channel but department assistance), or
    PermissionDenied: assistance tasks only from a district department under the grant the gateway
    checked (carried in the signed principal); a district department files nothing else."""
    if channel == ASSISTANCE_CHANNEL:
        if role != "district_department" or not grant_id or grant_id != principal_grant:
            raise PermissionDenied(
                "department assistance tasks come only from a district department under an approved "
                "assistance grant, through the gateway (须经审核授权)",
                field="channel",
                reason="grant_required",
            )
        return grant_id
    if role == "district_department":
        raise PermissionDenied(
            f"a district department hands over assistance tasks (channel {ASSISTANCE_CHANNEL}) only",
            field="channel",
            reason="assistance_only",
        )
    if grant_id:
        raise InvalidArgument("grant_id belongs to department assistance tasks only", field="grant_id")
    return ""


def require_role(role: str | None, allowed: frozenset[str], what: str, grant_id: str | None = None) -> None:
    """PermissionDenied unless the role is allowed; a district department also needs the grant it acts under."""
    if role not in allowed:
        raise PermissionDenied(
            f"role {role or 'none'!r} may not {what} (allowed: {', '.join(sorted(allowed))})",
            reason="role_not_allowed",
        )
    if role == "district_department" and not grant_id:
        raise PermissionDenied(
            f"a district department may {what} only under an approved grant (须经审核授权)", reason="grant_required"
        )


def new_issue_id(idempotency_key: str = "") -> str:
    """A fresh id, or a stable one derived from the client's idempotency key (so a retry finds the first)."""
    if idempotency_key:
        return uuid.uuid5(ID_NAMESPACE, idempotency_key).hex
    return uuid.uuid4().hex


# ---------------------------------------------------------------- reclassification

REASON_MAX = 500


@dataclass(frozen=True)
class Reclassification:
    urgency: str
    category: str
    reason: str


def check_reclassification(
    rules: Rules, current_urgency: str, current_category: str, urgency: str, category: str, reason: str
) -> Reclassification:
    reason = _text(reason, "reason", REASON_MAX, required=True)
    urgency = (urgency or "").strip() or current_urgency
    if urgency not in URGENCIES:
        raise InvalidArgument(f"urgency must be one of {', '.join(URGENCIES)} (got {urgency!r})", field="urgency")
    category = resolve_category(rules, category) if (category or "").strip() else current_category
    if urgency == current_urgency and category == current_category:
        raise InvalidArgument("nothing to change: give a new urgency and/or category (与当前分类相同)", field="urgency")
    return Reclassification(urgency, category, reason)


# ---------------------------------------------------------------- lifecycle as the resident sees it

STATUS_RECEIVED = "received"
STATUS_PENDING_VERIFICATION = "pending_verification"  # 待核实: waits for a worker to file or decline it
STATUS_CLASSIFIED = "classified"
STATUS_DUPLICATE = "duplicate"
STATUS_WHISTLE_BLOWN = "whistle_blown"
STATUS_ASSIGNED = "assigned"
STATUS_IN_PROGRESS = "in_progress"
STATUS_DONE = "done"
STATUS_VERIFIED = "verified"
STATUS_PUBLISHED = "published"
STATUS_RATED = "rated"
STATUS_CANCELLED = "cancelled"
STATUS_DECLINED = "declined"  # 不予立案: closed, never dispatched
# The lifecycle order: a status only ever moves to a higher rank (reopening aside, see next_status).
# Pending verification comes before classified: filing (受理立案) sends the issue on as "classified".
RANK: dict[str, int] = {
    STATUS_RECEIVED: 0,
    STATUS_PENDING_VERIFICATION: 1,
    STATUS_CLASSIFIED: 2,
    STATUS_DUPLICATE: 2,
    STATUS_WHISTLE_BLOWN: 3,
    STATUS_ASSIGNED: 4,
    STATUS_IN_PROGRESS: 5,
    STATUS_DONE: 6,
    STATUS_VERIFIED: 7,
    STATUS_PUBLISHED: 8,
    STATUS_RATED: 9,
    STATUS_CANCELLED: 10,
    STATUS_DECLINED: 10,
}
STATUSES = tuple(RANK)
CLOSED = frozenset({STATUS_VERIFIED, STATUS_PUBLISHED, STATUS_RATED, STATUS_CANCELLED, STATUS_DECLINED})
# Final: nothing moves an issue out of these (a declined issue was never dispatched).
FINAL = frozenset({STATUS_CANCELLED, STATUS_DECLINED})
# A reopened task (rejected at verification, or reopened) sends a done or verified issue back to work.
REOPENABLE = frozenset({STATUS_DONE, STATUS_VERIFIED})
STATUS_ZH = ISSUE_STATUS_ZH  # the one table (services/common/vocabulary.py)
CALL_ZH = {"service": "服务集结号", "tackling": "攻坚集结号", "emergency": "紧急集结号"}
# TaskStatusChanged.to_status -> (issue status, history kind); "reopen" means next_status(reopen=True).
TASK_STATUS_MAP: dict[str, tuple[str, str]] = {
    "assigned": (STATUS_ASSIGNED, "assigned"),
    "accepted": (STATUS_IN_PROGRESS, "in_progress"),
    "in_progress": (STATUS_IN_PROGRESS, "in_progress"),
    "done": (STATUS_DONE, "done"),
    "verified": (STATUS_VERIFIED, "verified"),
    "rejected": (STATUS_IN_PROGRESS, "reopened"),
    "reopened": (STATUS_IN_PROGRESS, "reopened"),
    "cancelled": (STATUS_CANCELLED, "cancelled"),
}


def open311_status(status: str) -> str:
    """Open311's two states: closed once verified, published, rated or cancelled; open before.

    A duplicate stays open while it follows its original (it mirrors the original's status, so it closes
    when the original does)."""
    return "closed" if status in CLOSED else "open"


def is_open_original(status: str) -> bool:
    """May an issue in this status be the original a new report is linked to as a duplicate?"""
    return status not in CLOSED and status != STATUS_DUPLICATE


def next_status(
    current: str,
    target: str,
    *,
    reopen: bool,
    event_at: datetime,
    last_change_at: datetime | None,
    reopened_at: datetime | None,
) -> str | None:
    """The status after a lifecycle event, or None when the event changes nothing.

    - Forward only: a target of lower or equal rank adds nothing (a late or replayed older event).
    - Cancelled and declined are final; an issue closed by verification is not cancelled any more.
    - Reopening (a task rejected at verification, or reopened) sends a done or verified issue back to
      in_progress, unless the event is older than the issue's last change.
    - After a reopening, forward events older than it (e.g. the first "done", delivered late) add nothing.
    """
    if current in FINAL:
        return None
    if reopen:
        if current not in REOPENABLE or (last_change_at is not None and event_at < last_change_at):
            return None
        return STATUS_IN_PROGRESS
    if reopened_at is not None and event_at < reopened_at:
        return None
    if target in FINAL:
        return target if current not in CLOSED else None
    if RANK.get(target, -1) > RANK.get(current, 0):
        return target
    return None


def history_note(kind: str, **kw: str) -> tuple[str, str]:
    """(note_zh, note_en) of a history step, readable by the resident."""
    if kind == "received":
        channel = kw.get("channel", "")
        return f"已受理（{CHANNELS.get(channel, channel)}）", f"received ({channel})"
    if kind == "classified":
        u = kw.get("urgency", "")
        return f"已分类为{URGENCY_ZH.get(u, u)}事项", f"classified as {u}"
    if kind == "reclassified":
        u, reason = kw.get("urgency", ""), kw.get("reason", "")
        cat = kw.get("category_zh", "")
        zh = f"重新分类为{URGENCY_ZH.get(u, u)}事项" + (f"（类别：{cat}）" if cat else "") + f"：{reason}"
        en = f"reclassified as {u}" + (f" (category {kw.get('category', '')})" if cat else "") + f": {reason}"
        return zh, en
    if kind == "marked_duplicate":
        orig = kw.get("original", "")
        return f"与事项 {orig} 重复反映，随原事项办理", f"duplicate of issue {orig}; follows it"
    if kind == "detached":
        orig = kw.get("original", "")
        return (
            f"原事项 {orig} 不予立案，本反映单独核实办理",
            f"its original {orig} was declined; this report is decided on its own",
        )
    if kind == "duplicate_linked":
        dup = kw.get("duplicate", "")
        return f"重复反映 {dup} 已并入本事项", f"duplicate report {dup} linked to this issue"
    if kind == "whistle_blown":
        call = kw.get("call_type", "")
        return f"社区已吹响{CALL_ZH.get(call, '集结号')}", f"the community blew the whistle ({call or 'call'})"
    fixed = {
        "assigned": ("已派单，指定承办力量", "assigned to a helper"),
        "in_progress": ("正在办理", "being worked on"),
        "done": ("已办结，待验单", "done, awaiting verification"),
        "verified": ("已验单通过", "verified"),
        "reopened": ("验单未通过或被退回，重新办理", "sent back; being worked on again"),
        "cancelled": ("已撤销", "cancelled"),
        "filed": ("社区已核实，受理立案", "verified and filed by the community"),
        "verification_overdue": (
            "核实立案超时，已提请街道督办",
            "not verified in time; escalated to the subdistrict",
        ),
        "published": ("已在月度公示中公开", "published on the monthly progress board"),
        "rated": ("居民已评价", "rated by residents"),
    }
    return fixed.get(kind, (STATUS_ZH.get(kind, kind), kind))


# ---------------------------------------------------------------- filing (核实立案)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Who files or declines a report waiting for verification: the community's workers (their own community's
# issues: services/common/community.py) and the subdistrict admins.
FILING_ROLES = HANDLER_ROLES
DECISION_ACCEPT = "accept"
DECISION_DECLINE = "decline"
DECISIONS = (DECISION_ACCEPT, DECISION_DECLINE)
ACCEPTED = "accepted"
DECLINED = "declined"
# Decline reason -> (Chinese, English) as the reporter reads it.
DECLINE_REASONS: dict[str, tuple[str, str]] = {
    "out_of_scope": ("不属于社区职责", "out of scope"),
    "duplicate": ("重复反映", "duplicate"),
    "insufficient_info": ("信息不足", "not enough information"),
    "abusive": ("内容不当（恶意或骚扰）", "abusive"),
}
# Where an out-of-scope report is referred: these codes, or any other text naming where (kept as "other").
REFERRALS = ("12345", "department", "court")
REFERRAL_OTHER = "other"
FILING_TEXT_MAX = 100
FILING_NOTE_MAX = 500
# Seven digits or more in a row (spaces and dashes allowed between them): a phone or an ID number. Personal
# data never goes into what the reporter, Open311 and the logs read of a decision.
_DIGITS_RUN = re.compile(r"(?:\d[\s-]?){7,}")


@dataclass(frozen=True)
class FilingDecision:
    """A checked decision on a report waiting for verification."""

    decision: str
    reason: str = ""
    referred_to: str = ""  # out_of_scope: 12345 | department | court | other
    referred_name: str = ""  # the department's (or court's, or other place's) name
    duplicate_of: str = ""  # duplicate: the issue it repeats
    ask: str = ""  # insufficient_info: what the reporter is asked to add
    note: str = ""


def _filing_text(value: str, field: str, limit: int, *, required: bool) -> str:
    text = " ".join((value or "").split())
    if required and not text:
        raise InvalidArgument(f"{field} is required (必填)", field=field)
    if len(text) > limit:
        raise InvalidArgument(f"{field} is {len(text)} characters; at most {limit} (超出长度限制)", field=field)
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise InvalidArgument(f"{field} must not contain control characters", field=field)
    if _DIGITS_RUN.search(text):
        raise InvalidArgument(
            f"{field} looks like it holds a phone or ID number; leave personal data out, the reporter reads this "
            "(请勿填写电话、身份证号等个人信息)",
            field=field,
        )
    return text


def check_filing_decision(
    issue_id: str,
    decision: str,
    *,
    reason: str = "",
    referred_to: str = "",
    referred_name: str = "",
    duplicate_of: str = "",
    ask: str = "",
    note: str = "",
) -> FilingDecision:
    """A checked decision, or InvalidArgument naming the field that is missing or wrong: accept takes only an
    optional note; decline needs a reason and what that reason needs (out_of_scope: referred_to, and the
    department's name for "department"; duplicate: duplicate_of; insufficient_info: ask)."""
    decision = (decision or "").strip()
    if decision not in DECISIONS:
        raise InvalidArgument(
            f"decision must be accept (受理立案) or decline (不予立案) (got {decision!r})", field="decision"
        )
    note = _filing_text(note, "note", FILING_NOTE_MAX, required=False)
    if decision == DECISION_ACCEPT:
        for name, value in (
            ("reason", reason),
            ("referred_to", referred_to),
            ("referred_name", referred_name),
            ("duplicate_of", duplicate_of),
            ("ask", ask),
        ):
            if (value or "").strip():
                raise InvalidArgument(f"{name} belongs to a decline; an accept takes only a note", field=name)
        return FilingDecision(DECISION_ACCEPT, note=note)
    reason = (reason or "").strip()
    if reason not in DECLINE_REASONS:
        raise InvalidArgument(
            f"reason must be one of {', '.join(DECLINE_REASONS)} (不予立案须说明理由) (got {reason!r})", field="reason"
        )
    out = FilingDecision(DECISION_DECLINE, reason=reason, note=note)
    if reason == "out_of_scope":
        to = _filing_text(referred_to, "referred_to", FILING_TEXT_MAX, required=True)
        name = _filing_text(referred_name, "referred_name", FILING_TEXT_MAX, required=to == "department")
        if to not in REFERRALS:
            to, name = REFERRAL_OTHER, to  # free text names where it was referred
        return FilingDecision(DECISION_DECLINE, reason, referred_to=to, referred_name=name, note=note)
    for name, value in (("referred_to", referred_to), ("referred_name", referred_name)):
        if (value or "").strip():
            raise InvalidArgument(f"{name} belongs to reason out_of_scope", field=name)
    if reason == "duplicate":
        dup = (duplicate_of or "").strip()
        if not dup:
            raise InvalidArgument(
                "duplicate_of is required: the id of the issue this one repeats", field="duplicate_of"
            )
        if dup == issue_id:
            raise InvalidArgument("duplicate_of names this issue itself", field="duplicate_of")
        if len(dup) > FILING_TEXT_MAX or not re.fullmatch(r"[A-Za-z0-9_-]+", dup):
            raise InvalidArgument("duplicate_of is not an issue id", field="duplicate_of")
        return FilingDecision(DECISION_DECLINE, reason, duplicate_of=dup, note=note)
    if (duplicate_of or "").strip():
        raise InvalidArgument("duplicate_of belongs to reason duplicate", field="duplicate_of")
    if reason == "insufficient_info":
        return FilingDecision(
            DECISION_DECLINE, reason, ask=_filing_text(ask, "ask", FILING_TEXT_MAX, required=True), note=note
        )
    if (ask or "").strip():
        raise InvalidArgument("ask belongs to reason insufficient_info", field="ask")
    return out


def decline_text(d: FilingDecision) -> tuple[str, str]:
    """(zh, en) the reporter reads of a decline, e.g. 不予立案：不属于社区职责，已转12345热线 /
    declined: out of scope, referred to 12345. No note, no person: only the reason and where to turn."""
    zh, en = DECLINE_REASONS.get(d.reason, (d.reason, d.reason))
    if d.reason == "out_of_scope":
        if d.referred_to == "12345":
            zh, en = f"{zh}，已转12345热线", f"{en}, referred to 12345"
        elif d.referred_to == "court":
            where = d.referred_name or "人民法院"
            zh, en = f"{zh}，请向{where}寻求解决", f"{en}, referred to {d.referred_name or 'a court'}"
        elif d.referred_name:
            zh, en = f"{zh}，已转{d.referred_name}", f"{en}, referred to {d.referred_name}"
    elif d.reason == "duplicate":
        zh, en = f"{zh}，已并入事项 {d.duplicate_of}", f"{en} of issue {d.duplicate_of}"
    elif d.reason == "insufficient_info":
        zh, en = f"{zh}，请补充：{d.ask}", f"{en}; please add: {d.ask}"
    return f"不予立案：{zh}", f"declined: {en}"


def local_time(at: datetime) -> str:
    """A time as residents read it: Asia/Shanghai, to the minute."""
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def pending_text(urgency: str, due_at: datetime) -> tuple[str, str]:
    """(zh, en) of an issue waiting for verification (its history step and Open311 status note)."""
    when = local_time(due_at)
    return (
        f"已分类为{URGENCY_ZH.get(urgency, urgency)}事项，待社区核实立案（{when} 前）",
        f"classified as {urgency}; awaiting verification by the community (by {when} +08:00)",
    )


# Decline reasons that hold for a declined issue's nearby duplicates too (the same matter: referred elsewhere,
# or a repeat of another issue): they are declined with it. Abusive and not-enough-information are about the
# one report: its duplicates wait for a decision of their own (filing.decide_filing).
CASCADING_DECLINES = frozenset({"out_of_scope", "duplicate"})
# What the public reads instead of the text (and files) of a report declined as abusive.
WITHHELD = ("内容不予公开（不予立案：内容不当）", "withheld: declined as abusive")


def withheld(status: str, decline_reason: str) -> bool:
    """A report declined as abusive: its text and files are not shown to the public (its status and note are)."""
    return status == STATUS_DECLINED and decline_reason == "abusive"


def check_can_decide(status: str, decision: str, issue_id: str) -> None:
    """FailedPrecondition (409) unless the issue waits for verification: a decided issue is not decided again."""
    if status == STATUS_PENDING_VERIFICATION:
        return
    if status == STATUS_DECLINED:
        what = "它已被不予立案 (it was declined already)"
    elif status == STATUS_DUPLICATE:
        what = "它是重复反映，随原事项办理 (it is a duplicate and follows its original)"
    else:
        what = "它已立案或无需核实 (it was filed already, or needed no verification)"
    raise FailedPrecondition(
        f"issue {issue_id} is {status}, not pending_verification: it cannot be {decision}ed; {what}",
        field="decision",
        reason="already_decided",
    )


def is_verification_overdue(status: str, overdue_at: datetime | None) -> bool:
    """Still waiting for a filing decision after its deadline was escalated (the "verification overdue" list)."""
    return status == STATUS_PENDING_VERIFICATION and overdue_at is not None


def mirrored_note(note_zh: str, note_en: str, original: str) -> tuple[str, str]:
    return f"随原事项 {original}：{note_zh}", f"{note_en} (follows the original {original})"


# ---------------------------------------------------------------- search

PAGE_DEFAULT = 20
PAGE_MAX = 100
TEXT_MAX = 100
IDS_MAX = 100


@dataclass(frozen=True)
class IssueFilter:
    ids: tuple[str, ...] = ()
    status: str = ""
    category: str = ""
    urgency: str = ""
    channel: str = ""
    community_id: str = ""
    grid_id: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    text: str = ""
    verification_overdue: bool = False  # only reports escalated for want of a filing decision

    def fingerprint(self) -> str:
        """A short digest of the filters, so a page token is only accepted with the filters it was made for."""
        parts = [
            ",".join(self.ids),
            self.status,
            self.category,
            self.urgency,
            self.channel,
            self.community_id,
            self.grid_id,
            self.created_from.isoformat() if self.created_from else "",
            self.created_to.isoformat() if self.created_to else "",
            self.text,
        ]
        if self.verification_overdue:
            parts.append("verification_overdue")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def check_filter(f: IssueFilter, category_codes: Sequence[str]) -> IssueFilter:
    if len(f.ids) > IDS_MAX:
        raise InvalidArgument(f"ids: at most {IDS_MAX}", field="ids")
    if f.status and f.status not in RANK:
        raise InvalidArgument(f"unknown status {f.status!r}; use one of: {', '.join(STATUSES)}", field="status")
    if f.urgency and f.urgency not in URGENCIES:
        raise InvalidArgument(f"unknown urgency {f.urgency!r}; use one of: {', '.join(URGENCIES)}", field="urgency")
    if f.channel and f.channel not in CHANNELS:
        raise InvalidArgument(f"unknown channel {f.channel!r}; use one of: {', '.join(CHANNELS)}", field="channel")
    if f.category and f.category not in category_codes:
        raise InvalidArgument(
            f"unknown category {f.category!r}; use one of: {', '.join(category_codes)}", field="category"
        )
    if f.created_from and f.created_to and f.created_to <= f.created_from:
        raise InvalidArgument("created_to must be after created_from", field="created_to")
    text = f.text.strip()
    if len(text) > TEXT_MAX:
        raise InvalidArgument(f"text: at most {TEXT_MAX} characters", field="text")
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise InvalidArgument("text must not contain control characters", field="text")
    return IssueFilter(
        ids=tuple(dict.fromkeys(i for i in f.ids if i)),
        status=f.status,
        category=f.category,
        urgency=f.urgency,
        channel=f.channel,
        community_id=f.community_id,
        grid_id=f.grid_id,
        created_from=f.created_from,
        created_to=f.created_to,
        text=text,
        verification_overdue=f.verification_overdue,
    )


# ---------------------------------------------------------------- 查询码: the reporter's follow-up code

# 20 characters of Crockford's base32 (no I, L, O, U): 100 random bits, read and typed as 4 groups of 5.
FOLLOW_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FOLLOW_LENGTH = 20
FOLLOW_GROUP = 5
# Where a code typed by hand is read leniently: lower case, O for 0, I and L for 1, spaces and dashes.
_FOLLOW_READ = str.maketrans({"O": "0", "I": "1", "L": "1"})
NOT_REPORTER = (
    "查询码不正确，或您不是该事项的反映人 (the follow-up code does not match this issue, or you did not report it)"
)


def new_follow_code(random_bytes: bytes) -> str:
    """A follow-up code from at least 13 random bytes (secrets.token_bytes): "ABCDE-FGHJK-MNPQR-STVWX"."""
    if len(random_bytes) * 8 < FOLLOW_LENGTH * 5:
        raise ValueError("a follow-up code needs 100 random bits")
    number = int.from_bytes(random_bytes, "big")
    chars = []
    for _ in range(FOLLOW_LENGTH):
        number, digit = divmod(number, 32)
        chars.append(FOLLOW_ALPHABET[digit])
    code = "".join(chars)
    return "-".join(code[i : i + FOLLOW_GROUP] for i in range(0, FOLLOW_LENGTH, FOLLOW_GROUP))


def normalize_follow_code(code: str) -> str:
    """The code's 20 characters as stored (upper case, no separators, look-alikes read as digits); "" when
    it cannot be a code."""
    text = "".join(c for c in code.upper() if c not in " -\t").translate(_FOLLOW_READ)
    if len(text) != FOLLOW_LENGTH or any(c not in FOLLOW_ALPHABET for c in text):
        return ""
    return text


def follow_code_hash(issue_id: str, code: str) -> str:
    """What intake stores of a code: SHA-256 of the issue id and the normalised code (100 random bits need
    no slow hash; the issue id keeps one hash from matching any other issue's)."""
    return hashlib.sha256(f"hl-follow-v1:{issue_id}:{normalize_follow_code(code)}".encode()).hexdigest()
