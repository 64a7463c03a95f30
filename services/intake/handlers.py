"""Intake commands and event handlers: load, apply the domain rules, save state and events in one write.

Concurrency. Every change to an issue after its creation, and to the tenant's rules, is written through the
unit of work (services/common/unitofwork.py): the next version is claimed by an insert with a unique _id
("issue:<id>:<version>", "rules:<version>") and only the winner writes it. A loser re-reads and tries again
(event-driven changes) or gets ABORTED (a reclassification or rules change sent with a stale version).

Duplicates are found without scanning the issues: see services/intake/geo.py for the claim grid.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import mongoengine as me
import pymongo.errors
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.events.v1 import intake_events_pb2 as ev
from hongling.events.v1 import publication_events_pb2 as pev

from services.common import clocks, community, paging, rollups, unitofwork
from services.common.context import current_request_id, require_tenant
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.common.events import CloudEvent, PoisonEvent
from services.common.principal import Principal
from services.common.protect import Protector
from services.common.settings import get_settings
from services.common.unitofwork import Conflicts, UnitOfWork
from services.intake import domain, geo, metrics, readmodel
from services.intake.classify import (
    FILING_DIRECT,
    FILING_VERIFY,
    URGENCY_ZH,
    Rules,
    classify,
    default_rules,
    filing_for,
    rules_from_dict,
    suggest_category,
)
from services.intake.documents import (
    AttachmentDoc,
    AttachmentMetaDoc,
    ContactDoc,
    DuplicateClaimDoc,
    FilingDoc,
    FollowCodeDoc,
    HistoryDoc,
    IssueDoc,
    LocationDoc,
    PlaceDoc,
    RulesDoc,
)
from services.intake.placement import Placer

log = logging.getLogger(__name__)
RULES_ID = "rules"
CHANGE_DEADLINE_SECONDS = 5.0
# How long linking a duplicate waits for its original's document (it may be being written right now).
ORIGINAL_WAIT_SECONDS = 3.0
# A duplicate claim whose issue document never appeared after this long belongs to a failed creation.
ORPHAN_CLAIM_AGE = timedelta(seconds=60)

# A change to an issue, made in memory (events recorded on the document): True if there is something to write.
Mutation = Callable[[IssueDoc, datetime], bool]


def utcnow() -> datetime:
    """Now in UTC at the store's precision (milliseconds), so what is returned is what is read back."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _ms(at: datetime) -> datetime:
    at = _aware(at) or at
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _subject(issue_id: str) -> str:
    return f"issues/{issue_id}"


# ---------------------------------------------------------------- rules


# tenant -> (read at, monotonic; the rules). Every create needs the rules; a change made through this
# process is seen at once, one made through another intake process within RULES_TTL_SECONDS.
_rules_cache: dict[str, tuple[float, Rules]] = {}
RULES_TTL_SECONDS = 2.0


def current_rules(uow: UnitOfWork = unitofwork.MONGO) -> Rules:
    """The tenant's classification rules: its stored ones, or the default catalogue (version 0)."""
    tenant = require_tenant()
    cached = _rules_cache.get(tenant)
    if cached is not None and time.monotonic() - cached[0] < RULES_TTL_SECONDS:
        return cached[1]
    read_at = time.monotonic()
    doc = uow.load(RulesDoc, RULES_ID)
    rules = default_rules() if doc is None else rules_from_dict(doc.rules, doc.version)
    _rules_cache[tenant] = (read_at, rules)
    return rules


RULES_CONFLICTS = Conflicts(
    stale=lambda _id, version, expected: Aborted(
        f"the rules are at version {version}, not {expected}: reload and retry", field="version"
    ),
    raced=lambda _id: Aborted(
        "the rules were changed by someone else at the same moment: reload and retry", field="version"
    ),
    busy=lambda _id: Aborted("the rules kept changing under this update: reload and retry", field="version"),
)


def put_rules(
    data: Mapping[str, Any], expected_version: int, by: Principal, *, uow: UnitOfWork = unitofwork.MONGO
) -> Rules:
    """Replace the tenant's rules; `expected_version` is the one the caller read (0: the defaults)."""
    domain.require_role(by.role, domain.RULES_WRITERS, "change the classification rules")
    written: list[Rules] = []

    def replace(doc: RulesDoc, _now: datetime) -> bool:
        rules = rules_from_dict(data, (doc.version or 0) + 1)
        doc.rules = rules.to_dict()
        doc.updated_by = by.sub
        written[:] = [rules]
        return True

    unitofwork.change(
        uow,
        RulesDoc,
        "rules",
        RULES_ID,
        replace,
        conflicts=RULES_CONFLICTS,
        now=utcnow,
        expected_version=expected_version,
        fresh=lambda: RulesDoc(id=RULES_ID, version=0, rules={}),
    )
    _rules_cache.pop(require_tenant(), None)
    return written[0]


# ---------------------------------------------------------------- versioned writes


ISSUE_CONFLICTS = Conflicts(
    stale=lambda issue_id, version, expected: Aborted(
        f"issue {issue_id} is at version {version}, not {expected}: reload and retry", field="version"
    ),
    raced=lambda issue_id: Aborted(
        f"issue {issue_id} was changed by someone else at the same moment: reload and retry", field="version"
    ),
    busy=lambda issue_id: RuntimeError(
        f"issue {issue_id} kept changing under this update for {CHANGE_DEADLINE_SECONDS} s"
    ),
)


def change_issue(
    issue_id: str,
    mutate: Mutation,
    *,
    expected_version: int | None = None,
    wait_for_doc: float = 0.0,
    uow: UnitOfWork = unitofwork.MONGO,
) -> IssueDoc | None:
    """Apply `mutate` to the issue and write it as its next version; None if there is no such issue, or
    none the caller may see (another community's, to a community worker: before its version is compared, so
    a stale version does not tell that it exists).

    With `expected_version` (a caller's conditional change) a stale version or a lost race is ABORTED;
    without it (event-driven changes) a lost race is retried on a fresh read for a few seconds."""
    return unitofwork.change(
        uow,
        IssueDoc,
        f"issue:{issue_id}",
        issue_id,
        mutate,
        conflicts=ISSUE_CONFLICTS,
        now=utcnow,
        expected_version=expected_version,
        exists=lambda doc: community.sees(community_of(doc)),
        wait_for_doc=wait_for_doc,
        deadline=CHANGE_DEADLINE_SECONDS,
    ).doc


def _history(doc: IssueDoc, kind: str, at: datetime, by: str, note: tuple[str, str]) -> None:
    doc.history.append(HistoryDoc(at=at, kind=kind, status=doc.status, note_zh=note[0], note_en=note[1], by=by))


def _ts(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


# ---------------------------------------------------------------- duplicates


@dataclass(frozen=True)
class Original:
    issue_id: str
    distance_m: float


def _release_claim(claim_id: str, issue_id: str) -> None:
    """Delete a duplicate claim if it still is this issue's."""
    if claim_id:
        DuplicateClaimDoc._get_collection().delete_one({"_id": claim_id, "issue_id": issue_id})


def _candidate(
    claim: DuplicateClaimDoc, lat: float, lon: float, at: datetime, rules: Rules, issue_id: str
) -> float | None:
    """The distance to the claim's issue if a new issue here and now duplicates it, else None."""
    if claim.issue_id == issue_id:
        return None
    claimed_at = _aware(claim.created_at) or at
    if abs(at - claimed_at) > timedelta(hours=rules.duplicate_window_hours):
        return None
    distance = geo.haversine_m(lat, lon, claim.lat, claim.lon)
    if distance > rules.duplicate_distance_m:
        return None
    holder = IssueDoc.objects(id=claim.issue_id).only("status").first()
    if holder is None:
        if datetime.now(UTC) - claimed_at < ORPHAN_CLAIM_AGE:
            return distance  # being created right now
        _release_claim(claim.id, claim.issue_id)  # its creation failed
        return None
    if not domain.is_open_original(holder.status):
        _release_claim(claim.id, claim.issue_id)  # closed: should have gone already
        return None
    return distance


def _find_or_claim(
    rules: Rules, category: str, lat: float, lon: float, at: datetime, issue_id: str
) -> tuple[Original | None, str]:
    """(the open issue this one duplicates, or None; the claim this issue now holds, or "")."""
    size, window = rules.duplicate_distance_m, rules.duplicate_window_hours
    keys = geo.neighbourhood_keys(category, lat, lon, at, size, window)
    best: Original | None = None
    # One read for the 18 keys (on MongoDB an _id index look-up; on the local FerretDB every _id read
    # scans the collection anyway, so one scan instead of 18).
    found = DuplicateClaimDoc._get_collection().find({"_id": {"$in": keys}})
    for claim in sorted((DuplicateClaimDoc._from_son(raw) for raw in found), key=lambda c: keys.index(c.id)):
        distance = _candidate(claim, lat, lon, at, rules, issue_id)
        if distance is not None and (best is None or distance < best.distance_m):
            best = Original(claim.issue_id, distance)
    if best is not None:
        return best, ""
    own = keys[0]
    for _attempt in range(3):
        try:
            DuplicateClaimDoc(id=own, issue_id=issue_id, category=category, lat=lat, lon=lon, created_at=at).save(
                force_insert=True
            )
            return None, own
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            held = DuplicateClaimDoc.objects(id=own).first()
            if held is None:
                continue  # released in between: try again
            distance = _candidate(held, lat, lon, at, rules, issue_id)
            if distance is not None:
                return Original(held.issue_id, distance), ""  # claimed a moment ago by an issue right here
            if held.issue_id == issue_id or DuplicateClaimDoc.objects(id=own).first() is not None:
                # Ours already (a retried create), or held by an issue farther away than the distance in
                # the same cell: this issue goes without a claim (a later report near it alone is not linked).
                return None, ""
    return None, ""


# An original in one of these statuses has nothing for its duplicates to take over.
NOT_MIRRORED = frozenset(
    (domain.STATUS_RECEIVED, domain.STATUS_PENDING_VERIFICATION, domain.STATUS_CLASSIFIED, domain.STATUS_DUPLICATE)
)


def _mirror(original: IssueDoc) -> Mutation:
    """Bring a duplicate's status to its original's (forward only, as any lifecycle step)."""

    def mirror(dup: IssueDoc, now: datetime) -> bool:
        if dup.duplicate_of != original.id or original.status in NOT_MIRRORED:
            return False
        kind = original.status_kind or original.status
        event_at = _aware(original.status_changed_at) or now
        new = domain.next_status(
            dup.status,
            original.status,
            reopen=kind == "reopened" and dup.status in domain.REOPENABLE,
            event_at=event_at,
            last_change_at=_aware(dup.status_changed_at),
            reopened_at=_aware(dup.reopened_at),
        )
        if new is None:
            return False
        last = original.history[-1] if original.history and original.history[-1].kind == kind else None
        note = (last.note_zh, last.note_en) if last is not None else domain.history_note(kind)
        _set_status(
            dup, new, kind, event_at, domain.mirrored_note(note[0], note[1], original.id), f"intake:{original.id}"
        )
        return True

    return mirror


def _add_to_original(original_id: str, duplicate_id: str, wait: float, uow: UnitOfWork) -> str | None:
    """Record the duplicate on its original as the original's next version; the original's status, or None
    if there is no such issue. One small read (version, status, duplicates) and one targeted update: the
    original is never read whole nor rewritten whole, however many duplicates it already has."""

    def push(raw: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        if duplicate_id in (raw.get("duplicates") or []):
            return None
        note = domain.history_note("duplicate_linked", duplicate=duplicate_id)
        entry = HistoryDoc(
            at=now,
            kind="duplicate_linked",
            status=str(raw.get("status", "")),
            note_zh=note[0],
            note_en=note[1],
            by="intake",
        ).to_mongo()
        return {"$push": {"duplicates": duplicate_id, "history": entry}}

    raw = unitofwork.change_fields(
        uow,
        IssueDoc,
        f"issue:{original_id}",
        original_id,
        ("status", "duplicates"),
        push,
        conflicts=ISSUE_CONFLICTS,
        now=utcnow,
        wait_for_doc=wait,
        deadline=CHANGE_DEADLINE_SECONDS,
    )
    return None if raw is None else str(raw.get("status", ""))


def link_duplicate(
    original_id: str, duplicate_id: str, *, wait: float = 0.0, uow: UnitOfWork = unitofwork.MONGO
) -> IssueDoc | None:
    """Record the duplicate on its original (history "duplicate_linked") and bring the duplicate to the
    original's status. Idempotent: run at creation and again from the IssueMarkedDuplicate event.
    Returns the duplicate as it was written when it took over the original's status, or None when there
    was nothing to take over (then neither the duplicate nor the whole original is read)."""
    status = _add_to_original(original_id, duplicate_id, wait, uow)
    if status is None:
        raise NotFound(f"original issue {original_id!r} of duplicate {duplicate_id!r} not found")
    if status in NOT_MIRRORED:
        return None  # nothing to mirror
    original = uow.load(IssueDoc, original_id)
    if original is None:
        raise NotFound(f"original issue {original_id!r} of duplicate {duplicate_id!r} not found")
    return change_issue(duplicate_id, _mirror(original), uow=uow)


# ---------------------------------------------------------------- create


def _event_location(loc: LocationDoc) -> common_pb2.Location:
    return common_pb2.Location(lat=loc.lat, lon=loc.lon, address=loc.address or "", compound_id=loc.compound_id or "")


def _store_attachments(
    issue_id: str, attachments: tuple[domain.CheckedAttachment, ...], now: datetime, stored: list[str]
) -> list[AttachmentMetaDoc]:
    metas = []
    for a in attachments:
        aid = uuid.uuid4().hex
        AttachmentDoc(
            id=aid,
            issue_id=issue_id,
            filename=a.filename,
            content_type=a.content_type,
            size=a.size,
            sha256=a.sha256,
            content=a.content,
            created_at=now,
        ).save(force_insert=True)
        stored.append(aid)
        metas.append(
            AttachmentMetaDoc(id=aid, filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256)
        )
    return metas


def _undo(attachment_ids: list[str], claim: str, issue_id: str) -> None:
    """Take back what a failed creation wrote before its issue document (best effort)."""
    try:
        if attachment_ids:
            AttachmentDoc._get_collection().delete_many({"_id": {"$in": attachment_ids}})
        _release_claim(claim, issue_id)
    except Exception:
        log.exception("cleaning up after a failed creation of issue %s", issue_id)


def create_issue(
    new: domain.NewIssue,
    by: Principal,
    idempotency_key: str = "",
    *,
    grant_id: str = "",
    origin: str = "",
    placer: Placer,
    protector: Protector,
) -> tuple[IssueDoc, Rules]:
    """Place, classify and store the issue with its events in one write (IssueReceived, then
    IssueClassified, or IssueMarkedDuplicate when it duplicates an open one); a retried idempotency key
    returns the first issue unchanged. Nothing is stored when anything is refused."""
    tenant = require_tenant()
    rules = current_rules()
    if new.category.strip():
        category = domain.resolve_category(rules, new.category)
        chosen = rules.category(category)
        category_reasons = [
            f"上报时选定类别「{chosen.name_zh if chosen else category}」 (category chosen when reported: {category})"
        ]
    else:
        category, category_reasons = suggest_category(rules, new.title, new.description)
    hazards = domain.check_hazards(rules, new.hazards)
    issue_id = domain.new_issue_id(idempotency_key)
    if idempotency_key:
        existing = IssueDoc.objects(id=issue_id).first()
        if existing is not None:
            return existing, rules
    place = placer.place(new.location)
    urgency, reasons = classify(rules, category, hazards, new.affected_households, new.title, new.description)
    now = utcnow()
    original: Original | None = None
    claim = ""
    if place.lat is not None and place.lon is not None:
        original, claim = _find_or_claim(rules, category, place.lat, place.lon, now, issue_id)
    # 核实立案: an approved assistance task was checked by the district already (审核把关): filed directly.
    filing = filing_for(rules, category, urgency, get_settings().filing_default)
    if grant_id:
        filing = replace(filing, mode=FILING_DIRECT, deadline_minutes=0)
    stored: list[str] = []
    try:
        doc = IssueDoc(
            id=issue_id,
            title=new.title,
            description=new.description,
            channel=new.channel,
            category=category,
            location=LocationDoc(
                lat=new.location.lat,
                lon=new.location.lon,
                address=new.location.address,
                compound_id=new.location.compound_id,
            ),
            status=domain.STATUS_RECEIVED,
            created_by=by.sub,
            created_at=now,
            grant_id=grant_id,
            urgency=urgency,
            urgency_reasons=reasons,
            category_reasons=category_reasons,
            affected_households=new.affected_households,
            hazards=list(hazards),
            contact=_contact_doc(new.contact, protector),
            place=PlaceDoc(
                community_id=place.community_id,
                grid_id=place.grid_id,
                compound_id=place.compound_id,
                community_name_zh=place.community_name_zh,
                grid_name_zh=place.grid_name_zh,
            ),
            version=1,
            updated_at=now,
            status_changed_at=now,
            dup_claim=claim,
            origin=origin,
        )
        _history(doc, "received", now, by.sub, domain.history_note("received", channel=new.channel))
        received = ev.IssueReceived(
            issue_id=issue_id,
            tenant=tenant,
            title=new.title,
            channel=new.channel,
            category=category,
            location=_event_location(doc.location),
            grant_id=grant_id,
            community_id=place.community_id,
            grid_id=place.grid_id,
        )
        received.received_at.FromDatetime(now)
        doc.record(received, subject=_subject(issue_id), at=now)
        if original is not None:
            doc.status = doc.status_kind = domain.STATUS_DUPLICATE
            doc.duplicate_of = original.issue_id
            _history(
                doc,
                "marked_duplicate",
                now,
                "intake",
                domain.history_note("marked_duplicate", original=original.issue_id),
            )
            marked = ev.IssueMarkedDuplicate(
                issue_id=issue_id,
                tenant=tenant,
                duplicate_of=original.issue_id,
                distance_m=round(original.distance_m),
                marked_at=_ts(now),
            )
            doc.record(marked, subject=_subject(issue_id), at=now)
        elif filing.mode == FILING_VERIFY:
            due = now + timedelta(minutes=filing.deadline_minutes)
            doc.filing = FilingDoc(mode=FILING_VERIFY, reason=filing.reason, due_at=due)
            doc.status = doc.status_kind = domain.STATUS_PENDING_VERIFICATION
            _history(doc, "pending_verification", now, "intake", domain.pending_text(urgency, due))
            # The deadline's timer first: should the issue's write fail, the timer finds no issue and does nothing.
            schedule_verification(issue_id, due)
        else:
            doc.filing = FilingDoc(mode=FILING_DIRECT, reason=filing.reason)
            doc.status = doc.status_kind = domain.STATUS_CLASSIFIED
            _history(doc, "classified", now, "intake", domain.history_note("classified", urgency=urgency))
            doc.record(classified_event(doc, now), subject=_subject(issue_id), at=now)
        # The files go first, so an issue never points at a missing attachment.
        doc.attachments = _store_attachments(issue_id, new.attachments, now, stored)
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        _undo(stored, claim, issue_id)
        found = IssueDoc.objects(id=issue_id).first()
        if found is None:
            raise
        return found, rules  # the same idempotency key, created a moment ago by a concurrent call
    except BaseException:
        _undo(stored, claim, issue_id)
        raise
    metrics.ISSUES_RECEIVED.labels(tenant, new.channel, urgency).inc()
    if original is not None:
        metrics.DUPLICATES.labels(tenant, category).inc()
        try:
            # The duplicate changed only if it took over its original's status: then that is its state.
            doc = link_duplicate(original.issue_id, issue_id, wait=ORIGINAL_WAIT_SECONDS) or doc
        except Exception:
            # The IssueMarkedDuplicate event links it (intake-lifecycle consumer): at least once.
            log.warning("linking duplicate %s to %s deferred to its event", issue_id, original.issue_id, exc_info=True)
    return doc, rules


def hand_out_follow_code(issue_id: str) -> str:
    """The reporter's follow-up code (查询码) for a just-created issue: a fresh code whose hash is stored by
    an insert with the issue's id, so only the first call for an issue gets one ("" for a retried idempotency
    key: the code was answered once, and only its hash is kept). Never logged."""
    code = domain.new_follow_code(secrets.token_bytes(16))
    try:
        FollowCodeDoc(id=issue_id, code_hash=domain.follow_code_hash(issue_id, code), created_at=utcnow()).save(
            force_insert=True
        )
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        return ""
    return code


def check_reporter(issue_id: str, follow_code: str, caller: Principal) -> IssueDoc:
    """The issue, when the caller is its reporter: by the follow-up code (checked against the stored hash,
    in constant time), or as the `resident` who reported it. PERMISSION_DENIED otherwise, in the same words
    whether the issue exists or not."""
    refused = PermissionDenied(domain.NOT_REPORTER, reason="not_reporter")
    doc = IssueDoc.objects(id=issue_id).first() if issue_id else None
    if doc is None:
        raise refused
    if follow_code.strip():
        stored = FollowCodeDoc.objects(id=issue_id).first()
        wanted = domain.follow_code_hash(issue_id, follow_code)
        if stored is None or not domain.normalize_follow_code(follow_code):
            raise refused
        if not hmac.compare_digest(stored.code_hash, wanted):
            raise refused
        return doc
    if caller.role == "resident" and doc.created_by == caller.sub:
        return doc
    raise refused


def classified_event(doc: IssueDoc, now: datetime) -> ev.IssueClassified:
    """IssueClassified of the issue as it is: what dispatch opens the task and blows the whistle on."""
    place = doc.place
    return ev.IssueClassified(
        issue_id=doc.id,
        tenant=require_tenant(),
        urgency=doc.urgency,
        reasons=list(doc.urgency_reasons or []),
        category=doc.category,
        community_id=place.community_id if place else "",
        grid_id=place.grid_id if place else "",
        classified_at=_ts(now),
        title=doc.title,
        hazards=list(doc.hazards or []),
        affected_households=doc.affected_households or 0,
    )


# The durable timer of a report waiting for verification (services/common/clocks.py; services/intake/filing.py
# handles it): one per issue, in intake's tenant database.
VERIFICATION_DEADLINE = "intake.verification_deadline"


def verification_key(issue_id: str) -> str:
    return f"fv:{issue_id}"


def schedule_verification(issue_id: str, due: datetime) -> None:
    """Set the issue's verification deadline timer (again when two writers upserted the same new key at once)."""
    for attempt in range(3):
        try:
            clocks.schedule(verification_key(issue_id), VERIFICATION_DEADLINE, due, {"issue_id": issue_id})
            return
        except pymongo.errors.DuplicateKeyError:
            if attempt == 2:
                raise
            time.sleep(0.05)


def _contact_doc(contact: domain.ContactIn | None, protector: Protector) -> ContactDoc | None:
    if contact is None:
        return None
    return ContactDoc(
        name_enc=protector.seal(contact.name),
        phone_enc=protector.seal(contact.phone),
        name_masked=domain.mask_name(contact.name),
        phone_masked=domain.mask_phone(contact.phone),
    )


# ---------------------------------------------------------------- reads


def _issue_missing(issue_id: str) -> NotFound:
    return NotFound(community.not_found_message("issue", issue_id), field="id")


def community_of(doc: IssueDoc) -> str:
    """The community an issue was placed in ("" if none)."""
    return str(doc.place.community_id or "") if doc.place else ""


def get_issue(issue_id: str) -> IssueDoc:
    """The issue, if the caller may see it: an issue of another community is answered to a community worker
    as one that does not exist (services/common/community.py)."""
    doc = IssueDoc.objects(id=issue_id).first() if issue_id else None
    if doc is None or not community.sees(community_of(doc)):
        raise _issue_missing(issue_id)
    return doc


def get_attachment(issue_id: str, attachment_id: str, *, public: bool = False) -> AttachmentDoc:
    """An issue's file; to the `public` (not its handlers) none of a report declined as abusive."""
    doc = AttachmentDoc.objects(id=attachment_id).first() if attachment_id else None
    if doc is not None and doc.issue_id == issue_id and not _sees_issue(issue_id):
        doc = None  # an issue of another community: its files are answered as missing, as the issue is
    if doc is not None and public and _withheld(issue_id):
        doc = None  # declined as abusive: its files are not shown to the public (answered as missing)
    if doc is None or doc.issue_id != issue_id:
        raise NotFound(
            f"issue {issue_id!r} has no attachment {attachment_id!r} in this tenant (未找到该附件)",
            field="attachment_id",
        )
    return doc


def _withheld(issue_id: str) -> bool:
    found = IssueDoc.objects(id=issue_id).only("status", "filing").first()
    return found is not None and domain.withheld(found.status, found.filing.decline_reason if found.filing else "")


def _sees_issue(issue_id: str) -> bool:
    caller = community.caller()
    if caller is None or caller.community is None:
        return True
    found = IssueDoc.objects(id=issue_id).only("place").first()
    return found is not None and community.sees(community_of(found), caller)


def list_issues(flt: domain.IssueFilter, page_size: int, page_token: str) -> tuple[list[IssueDoc], str, Rules]:
    """Newest first, keyset pages, from the SQL read model (services/intake/readmodel.py)."""
    rules = current_rules()
    flt = domain.check_filter(flt, rules.category_codes())
    if flt.ids:  # named issues are read by id, from the write side: a caller sees its own writes at once
        docs, token = _list_by_ids(flt, page_size, page_token)
    else:
        docs, token = readmodel.list_issues(flt, page_size, page_token)
    return docs, token, rules


def _list_by_ids(flt: domain.IssueFilter, page_size: int, page_token: str) -> tuple[list[IssueDoc], str]:
    """The named issues (at most domain.IDS_MAX) that match the other filters, newest first, keyset pages:
    one look-up by _id, the filters applied here as the read model applies them."""
    if not 0 <= page_size <= domain.PAGE_MAX:
        raise InvalidArgument(f"page_size must be 1..{domain.PAGE_MAX}", field="page_size")
    size = page_size or domain.PAGE_DEFAULT
    fingerprint = flt.fingerprint()
    after = paging.parse_page_token(page_token, fingerprint) if page_token else None
    needle = readmodel.normalize(flt.text.strip())
    wanted = {name: getattr(flt, name) for name in ("status", "category", "urgency", "channel") if getattr(flt, name)}

    def keep(doc: IssueDoc) -> bool:
        at = _aware(doc.created_at) or utcnow()
        place = doc.place
        return (
            all(getattr(doc, k) == v for k, v in wanted.items())
            and (not flt.community_id or (place is not None and place.community_id == flt.community_id))
            and (not flt.grid_id or (place is not None and place.grid_id == flt.grid_id))
            and (flt.created_from is None or at >= flt.created_from)
            and (flt.created_to is None or at < flt.created_to)
            and (
                not needle or needle in readmodel.normalize(doc.title) or needle in readmodel.normalize(doc.description)
            )
            and (after is None or (_ms(at), doc.id) < (after[0], after[1]))
            and (
                not flt.verification_overdue
                or domain.is_verification_overdue(doc.status, doc.filing.overdue_at if doc.filing else None)
            )
        )

    docs = sorted(
        (d for d in IssueDoc.objects(id__in=list(flt.ids)).exclude("outbox") if keep(d)),
        key=lambda d: (_aware(d.created_at) or utcnow(), d.id),
        reverse=True,
    )
    page = docs[:size]
    token = (
        paging.page_token(_aware(page[-1].created_at) or utcnow(), page[-1].id, fingerprint) if len(docs) > size else ""
    )
    return page, token


def count_issues(community_id: str) -> dict[str, int]:
    """Issues by status, of one community or the whole tenant, from the read model's counts."""
    return readmodel.count_issues(community_id)


def issue_stats(community_id: str, from_day: str, to_day: str) -> tuple[readmodel.IssueStats, date, date, Rules]:
    """The dashboard's issue figures over a window of local days (at most rollups.MAX_DAYS), from the read
    model's rollups; with the rules, for the categories' names."""
    first, last = rollups.check_window(from_day, to_day)
    return readmodel.issue_stats(community_id, first, last), first, last, current_rules()


# ---------------------------------------------------------------- reclassify


def reclassify_issue(
    issue_id: str,
    urgency: str,
    category: str,
    reason: str,
    version: int,
    by: Principal,
    *,
    uow: UnitOfWork = unitofwork.MONGO,
) -> tuple[IssueDoc, Rules]:
    """A community worker's new class and/or category, with a reason: history + IssueReclassified. A report
    waiting for verification whose new class the tenant files directly goes to dispatch at once (classified,
    IssueClassified; its verification timer cancelled); one still held for verification keeps its deadline."""
    domain.require_role(by.role, domain.HANDLER_ROLES, "reclassify issues")
    if version <= 0:
        raise InvalidArgument("version is required: send the version you read (防止覆盖他人修改)", field="version")
    rules = current_rules(uow)
    tenant = require_tenant()
    moved: dict[str, str] = {}

    def change(doc: IssueDoc, now: datetime) -> bool:
        if doc.status in domain.CLOSED:
            raise FailedPrecondition(
                f"issue {doc.id} is {doc.status}; a closed issue is not reclassified (已结束的事项不能重新分类)",
                field="id",
            )
        rc = domain.check_reclassification(rules, doc.urgency, doc.category, urgency, category, reason)
        from_urgency, from_category = doc.urgency, doc.category
        doc.urgency, doc.category = rc.urgency, rc.category
        doc.urgency_reasons.append(
            f"人工重新分类为{URGENCY_ZH[rc.urgency]}：{rc.reason} "
            f"(reclassified as {rc.urgency} by {by.sub}: {rc.reason})"
        )
        cat = rules.category(rc.category)
        if rc.category != from_category:
            doc.category_reasons.append(
                f"人工改为「{cat.name_zh if cat else rc.category}」：{rc.reason} "
                f"(changed to {rc.category} by {by.sub}: {rc.reason})"
            )
        note = domain.history_note(
            "reclassified",
            urgency=rc.urgency,
            reason=rc.reason,
            category=rc.category if rc.category != from_category else "",
            category_zh=(cat.name_zh if cat else rc.category) if rc.category != from_category else "",
        )
        _history(doc, "reclassified", now, by.sub, note)
        event = ev.IssueReclassified(
            issue_id=doc.id,
            tenant=tenant,
            from_urgency=from_urgency,
            to_urgency=rc.urgency,
            from_category=from_category,
            to_category=rc.category,
            reason=rc.reason,
            by=by.sub,
            reclassified_at=_ts(now),
            community_id=doc.place.community_id if doc.place else "",
            grid_id=doc.place.grid_id if doc.place else "",
        )
        doc.record(event, subject=_subject(doc.id), at=now)
        if doc.status == domain.STATUS_PENDING_VERIFICATION and doc.filing is not None:
            rule = filing_for(rules, doc.category, doc.urgency, get_settings().filing_default)
            if rule.mode == FILING_DIRECT:  # now of a class the tenant files directly: straight to dispatch
                doc.filing.mode, doc.filing.reason, doc.filing.due_at = FILING_DIRECT, rule.reason, None
                note = domain.history_note("classified", urgency=doc.urgency)
                _set_status(doc, domain.STATUS_CLASSIFIED, "classified", now, note, "intake")
                doc.record(classified_event(doc, now), subject=_subject(doc.id), at=now)
                moved["filed"] = doc.id
        if rc.category != from_category and doc.dup_claim:
            new_claim = _move_claim(doc, rules)
            moved.update(old=doc.dup_claim, new=new_claim)
            doc.dup_claim = new_claim
        return True

    try:
        doc = change_issue(issue_id, change, expected_version=version, uow=uow)
    except BaseException:
        if moved.get("new"):
            _release_claim(moved["new"], issue_id)  # the write did not happen: give the new claim back
        raise
    if doc is None:
        raise _issue_missing(issue_id)
    if moved.get("old"):
        _release_claim(moved["old"], issue_id)
    if moved.get("filed"):
        try:
            clocks.cancel(verification_key(issue_id))  # filed: no escalation (the handler would skip it anyway)
        except Exception:
            log.warning("verification timer of issue %s left to fire (it changes nothing now)", issue_id, exc_info=True)
    metrics.RECLASSIFICATIONS.labels(tenant, doc.urgency).inc()
    return doc, rules


def _move_claim(doc: IssueDoc, rules: Rules) -> str:
    """A duplicate claim for the issue's new category (same point and time), or "" if that cell is held."""
    old = DuplicateClaimDoc.objects(id=doc.dup_claim).first()
    if old is None or old.issue_id != doc.id:
        return ""
    at = _aware(old.created_at) or utcnow()
    key = geo.own_key(doc.category, old.lat, old.lon, at, rules.duplicate_distance_m, rules.duplicate_window_hours)
    try:
        DuplicateClaimDoc(id=key, issue_id=doc.id, category=doc.category, lat=old.lat, lon=old.lon, created_at=at).save(
            force_insert=True
        )
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        return ""
    return key


# ---------------------------------------------------------------- personal data


def reveal_contact(issue_id: str, by: Principal, protector: Protector) -> tuple[str, str]:
    """The reporter's name and phone, unmasked, to those handling the issue; every reveal is audit-logged
    first, and refused when it cannot be (never shown unrecorded)."""
    domain.require_role(by.role, domain.HANDLER_ROLES, "see a reporter's contact unmasked")
    doc = get_issue(issue_id)
    contact = doc.contact
    if contact is None or not (contact.name_enc or contact.phone_enc):
        return "", ""
    name, phone = protector.open(contact.name_enc), protector.open(contact.phone_enc)
    tenant = require_tenant()
    from services.common.audit import shared_log  # opened once per process, on the first reveal

    try:
        shared_log().append(
            actor=by.sub,
            role=by.role,
            action="personal_data.reveal",
            outcome="done",
            tenant=tenant,
            target=f"issues/{issue_id}/contact",
            request_id=current_request_id.get() or "",
        )
    except Exception:
        log.exception("contact of issue %s NOT revealed to %s: the audit log is unavailable", issue_id, by.sub)
        raise Unavailable(
            "the contact cannot be shown right now: the audit log could not record the reveal; retry later "
            "(审计日志暂不可用，无法显示个人信息)",
            reason="audit_unavailable",
        ) from None
    metrics.REVEALS.labels(tenant, by.role).inc()
    log.info("contact of issue %s revealed to %s (%s)", issue_id, by.sub, by.role)
    return name, phone


# ---------------------------------------------------------------- lifecycle events


def _set_status(doc: IssueDoc, new: str, kind: str, event_at: datetime, note: tuple[str, str], by: str) -> None:
    old = doc.status
    doc.status = new
    doc.status_kind = kind
    doc.status_changed_at = event_at
    if kind == "reopened":
        doc.reopened_at = event_at
    _history(doc, kind, event_at, by, note)
    changed = ev.IssueStatusChanged(
        issue_id=doc.id,
        tenant=require_tenant(),
        from_status=old,
        to_status=new,
        note_zh=note[0],
        changed_at=_ts(event_at),
    )
    doc.record(changed, subject=_subject(doc.id), at=event_at)
    metrics.STATUS_CHANGES.labels(require_tenant(), new).inc()


def advance(
    issue_id: str,
    target: str,
    kind: str,
    event_at: datetime,
    by: str,
    *,
    uow: UnitOfWork = unitofwork.MONGO,
    **note_kw: str,
) -> IssueDoc | None:
    """Move the issue along its lifecycle (forward only; see domain.next_status), then its duplicates."""
    reopen = kind == "reopened"

    def step(doc: IssueDoc, now: datetime) -> bool:
        new = domain.next_status(
            doc.status,
            target,
            reopen=reopen,
            event_at=event_at,
            last_change_at=_aware(doc.status_changed_at),
            reopened_at=_aware(doc.reopened_at),
        )
        if new is None:
            return False
        _set_status(doc, new, kind, event_at, domain.history_note(kind, **note_kw), by)
        return True

    doc = change_issue(issue_id, step, uow=uow)
    if doc is None:
        log.info("lifecycle event for issue %s, unknown in this tenant: ignored", issue_id)
        return None
    if doc.status in domain.CLOSED and doc.dup_claim:
        _release_claim(doc.dup_claim, doc.id)  # closed: new reports near it start their own issue
    for dup in doc.duplicates:
        change_issue(dup, _mirror(doc), uow=uow)
    return doc


def _event_at(ts: Timestamp, event: CloudEvent) -> datetime:
    at = ts.ToDatetime(tzinfo=UTC) if (ts.seconds or ts.nanos) else event.time
    return _ms(at)


def _by(who: str, event: CloudEvent) -> str:
    if who:
        return who
    parts = event.source.strip("/").split("/")  # /hongling/<service>/<tenant>
    return f"service:{parts[1] if len(parts) > 1 else event.source}"


def _need(issue_id: str, event: CloudEvent) -> str:
    if not issue_id:
        raise PoisonEvent(f"{event.type} {event.id} has no issue_id")
    return issue_id


def on_whistle_blown(event: CloudEvent, msg: dev.WhistleBlown) -> None:
    if not msg.issue_ids:
        raise PoisonEvent(f"WhistleBlown {event.id} names no issue")
    at = _event_at(msg.blown_at, event)
    for issue_id in dict.fromkeys(msg.issue_ids):
        advance(
            _need(issue_id, event),
            domain.STATUS_WHISTLE_BLOWN,
            "whistle_blown",
            at,
            _by("", event),
            call_type=msg.call_type,
        )


def on_task_assigned(event: CloudEvent, msg: dev.TaskAssigned) -> None:
    at = _event_at(msg.assigned_at, event)
    advance(_need(msg.issue_id, event), domain.STATUS_ASSIGNED, "assigned", at, _by(msg.by, event))


def on_task_status_changed(event: CloudEvent, msg: dev.TaskStatusChanged) -> None:
    mapped = domain.TASK_STATUS_MAP.get(msg.to_status)
    if mapped is None:
        return  # "open" and anything new: nothing the resident sees
    target, kind = mapped
    advance(_need(msg.issue_id, event), target, kind, _event_at(msg.changed_at, event), _by(msg.by, event))


def on_progress_published(event: CloudEvent, msg: pev.ProgressPublished) -> None:
    at = _event_at(msg.published_at, event)
    for issue_id in dict.fromkeys(msg.issue_ids):
        advance(_need(issue_id, event), domain.STATUS_PUBLISHED, "published", at, _by("", event))


def on_issue_rated(event: CloudEvent, msg: eev.IssueRated) -> None:
    advance(_need(msg.issue_id, event), domain.STATUS_RATED, "rated", _event_at(msg.rated_at, event), _by("", event))


def on_issue_marked_duplicate(event: CloudEvent, msg: ev.IssueMarkedDuplicate) -> None:
    """The at-least-once path of linking a duplicate to its original (CreateIssue tries it at once)."""
    if not msg.duplicate_of:
        raise PoisonEvent(f"IssueMarkedDuplicate {event.id} has no duplicate_of")
    link_duplicate(msg.duplicate_of, _need(msg.issue_id, event), wait=ORIGINAL_WAIT_SECONDS)
