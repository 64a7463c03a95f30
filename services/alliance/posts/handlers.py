"""Standing posts' commands: one function each (the servicer calls them; the shift-end timer calls `shift_ended`).

Claiming a place is race-safe by inserts with unique _ids (documents.py): first the claimant's lock
"<shift>|<claimant>" (a second claim of the same person is refused: ALREADY_EXISTS), then a seat "<shift>:<n>"
for the first free n < capacity (none free: FAILED_PRECONDITION 已满), then the shift's end timer, then the
claim with its PostClaimed. A crash between those steps leaves a lock or a seat without its claim; such a lock
or seat is taken over once it is older than STALE (a claim written within STALE always exists by then).
Release, check-in and the missed shift change the claim through the unit of work (version claims).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import mongoengine as me
import pymongo.errors
from hongling.events.v1 import alliance_events_pb2 as ev

from services.alliance.posts import domain
from services.alliance.posts.documents import ClaimantLockDoc, PlaceDoc, PostClaimDoc, PostDoc, SeatDoc, ShiftDoc
from services.alliance.shared import conflicts, require_unit_person, ts, utcnow
from services.common import clocks, community
from services.common.context import require_tenant
from services.common.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from services.common.principal import Principal
from services.common.unitofwork import MONGO, UnitOfWork, change

log = logging.getLogger(__name__)

SHIFT_END = "alliance.shift_end"
STALE = timedelta(seconds=30)
DUPLICATE = (me.NotUniqueError, pymongo.errors.DuplicateKeyError)
STAFF_ROLES = ("community_worker", "subdistrict_admin", "service")
CONFLICTS = conflicts("claim", "认领")
POST_CONFLICTS = conflicts("post", "岗位")


def is_staff(p: Principal) -> bool:
    return p.role in STAFF_ROLES


def not_found(kind: str, ident: str) -> NotFound:
    return NotFound(community.not_found_message(kind, ident), field="id")


def _staff_only(p: Principal) -> None:
    if not is_staff(p):
        raise PermissionDenied(
            f"{p.role!r} may not manage posts: community workers and subdistrict admins do (仅社区工作者可管理岗位)"
        )


def acting(
    p: Principal, kind: str, ident: str, person_id: str, field: str = "claimant", *, check_unit: bool = True
) -> domain.Who:
    """Who a claim or a sign-up is for: a member's own helper (naming another is PERMISSION_DENIED), or whom staff
    name. A unit acts through one of its own people (org says whom; `check_unit` False only for a withdrawal)."""
    w = _acting(p, kind, ident, person_id, field)
    if check_unit and w.unit_id:
        require_unit_person(w.unit_id, w.person_id)
    return w


def _acting(p: Principal, kind: str, ident: str, person_id: str, field: str) -> domain.Who:
    if p.role == "member":
        if p.responder is None:
            raise PermissionDenied("this member credential is bound to no helper (未绑定成员单位或个人)")
        own_kind, own_id = p.responder
        asked_kind = domain.KIND_ALIASES.get(kind.strip(), kind.strip())
        if (asked_kind or ident.strip()) and (asked_kind, ident.strip()) != (own_kind, own_id):
            raise PermissionDenied(
                f"a member acts only as {own_kind}:{own_id} (成员只能以本单位/本人身份操作)",
                field=field,
                reason="not_your_responder",
            )
        return domain.who(own_kind, own_id, person_id, field)
    if not is_staff(p):
        raise PermissionDenied(f"{p.role!r} may not claim or sign up (无权操作)")
    if not kind.strip() and not ident.strip():
        raise domain.InvalidArgument(
            f"{field} is required (必填): whom this is recorded for, {{kind, id}}", field=field
        )
    return domain.who(kind, ident, person_id, field)


def owns(p: Principal, unit_id: str, person_id: str) -> bool:
    """Whether a member's credential is this claim's (its unit, or its person)."""
    if p.responder is None:
        return False
    kind, rid = p.responder
    return (kind == "member_unit" and rid == unit_id) or (kind == "person" and rid == person_id)


# ---------------------------------------------------------------- posts


def _shifts_of(new: Iterable[domain.NewShift], post_id: str, first: int) -> list[ShiftDoc]:
    return [
        ShiftDoc(id=f"{post_id}.{first + n}", starts_at=s.starts_at, ends_at=s.ends_at, capacity=s.capacity)
        for n, s in enumerate(sorted(new, key=lambda s: s.starts_at))
    ]


def create_post(
    p: Principal,
    community_id: str,
    name: str,
    description: str,
    place: tuple[str, str, str],
    shifts: list[domain.NewShift],
) -> PostDoc:
    _staff_only(p)
    cid = domain.text(community_id or (p.community or ""), "community_id", 64)
    community.require_placed_in_scope(cid)
    domain.check_total(0, len(shifts))
    now = utcnow()
    post_id = f"post-{uuid.uuid4().hex[:12]}"
    doc = PostDoc(
        id=post_id,
        community_id=cid,
        name=domain.text(name, "name", domain.MAX_NAME),
        description=domain.text(description, "description", domain.MAX_DESCRIPTION, required=False),
        place=PlaceDoc(kind=place[0], id=place[1], name=place[2]),
        shifts=_shifts_of(shifts, post_id, 0),
        next_shift=len(shifts),
        created_by=p.sub,
        created_at=now,
        updated_at=now,
        version=1,
    )
    doc.save(force_insert=True)
    return doc


def get_post(p: Principal, post_id: str) -> PostDoc:
    doc = MONGO.load(PostDoc, post_id) if post_id else None
    if doc is None or not community.sees(doc.community_id, p):
        raise not_found("post", post_id)
    return doc


def add_shifts(p: Principal, post_id: str, shifts: list[domain.NewShift], uow: UnitOfWork = MONGO) -> PostDoc:
    _staff_only(p)
    get_post(p, post_id)

    def mutate(doc: PostDoc, _at: datetime) -> bool:
        domain.check_total(len(doc.shifts), len(shifts))
        first = int(doc.next_shift or len(doc.shifts))
        doc.shifts = [*doc.shifts, *_shifts_of(shifts, doc.id, first)]
        doc.next_shift = first + len(shifts)
        return True

    done = change(uow, PostDoc, f"post:{post_id}", post_id, mutate, conflicts=POST_CONFLICTS, now=utcnow)
    assert done.doc is not None
    return done.doc


def find_shift(p: Principal, shift_id: str) -> tuple[PostDoc, ShiftDoc]:
    post_id = shift_id.rpartition(".")[0]
    doc = MONGO.load(PostDoc, post_id) if post_id else None
    found = next((s for s in doc.shifts if s.id == shift_id), None) if doc is not None else None
    if doc is None or found is None or not community.sees(doc.community_id, p):
        raise not_found("shift", shift_id)
    return doc, found


def seat_ids(shift: ShiftDoc) -> list[str]:
    return [f"{shift.id}:{n}" for n in range(int(shift.capacity))]


def taken(shifts: Iterable[ShiftDoc]) -> dict[str, int]:
    """Places held per shift, from the seats (by _id: exact, read-your-writes)."""
    ids = [sid for s in shifts for sid in seat_ids(s)]
    out: dict[str, int] = {}
    coll = SeatDoc._get_collection()
    for i in range(0, len(ids), 1000):
        for seat in coll.find({"_id": {"$in": ids[i : i + 1000]}}, {"_id": 1}):
            shift_id = str(seat["_id"]).rpartition(":")[0]
            out[shift_id] = out.get(shift_id, 0) + 1
    return out


# ---------------------------------------------------------------- claims


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _stale_holder(claim_id: str, at: datetime, now: datetime) -> bool:
    """A lock or seat whose claim is released, or was never written and is older than STALE (its writer died)."""
    claim = PostClaimDoc._get_collection().find_one({"_id": claim_id}, {"status": 1})
    if claim is None:
        return now - _aware(at) > STALE
    return claim.get("status") == domain.RELEASED


def _take_lock(lock_id: str, claim_id: str, now: datetime) -> None:
    coll = ClaimantLockDoc._get_collection()
    for _ in range(3):
        try:
            coll.insert_one({"_id": lock_id, "claim_id": claim_id, "at": now})
            return
        except pymongo.errors.DuplicateKeyError:
            held = coll.find_one({"_id": lock_id})
            if held is None:
                continue
            if not _stale_holder(str(held["claim_id"]), held["at"], now):
                raise AlreadyExists(
                    "already claimed a place on this shift (已认领该班次)", field="shift_id", reason="already_claimed"
                ) from None
            coll.delete_one({"_id": lock_id, "claim_id": held["claim_id"]})
    raise Aborted("this shift's claims kept changing; retry (请稍后重试)")


def _take_seat(shift: ShiftDoc, claim_id: str, now: datetime) -> str | None:
    coll = SeatDoc._get_collection()
    ids = seat_ids(shift)
    for seat in ids:
        try:
            coll.insert_one({"_id": seat, "claim_id": claim_id, "at": now})
            return seat
        except pymongo.errors.DuplicateKeyError:
            continue
    # Full, unless a seat is held by a released claim (its release was interrupted) or by none (a claimant died).
    freed = False
    for held in coll.find({"_id": {"$in": ids}}):
        if _stale_holder(str(held["claim_id"]), held["at"], now):
            coll.delete_one({"_id": held["_id"], "claim_id": held["claim_id"]})
            freed = True
    if freed:
        for seat in ids:
            try:
                coll.insert_one({"_id": seat, "claim_id": claim_id, "at": now})
                return seat
            except pymongo.errors.DuplicateKeyError:
                continue
    return None


def _schedule_end(shift: ShiftDoc, post_id: str) -> None:
    payload = {"post_id": post_id, "shift_id": shift.id}
    for attempt in range(3):
        try:
            clocks.schedule(f"shift_end:{shift.id}", SHIFT_END, domain.utc(shift.ends_at), payload)
            return
        except pymongo.errors.DuplicateKeyError:  # two first claims upserted the new timer at once
            if attempt == 2:
                raise
            time.sleep(0.05)


def claim_shift(p: Principal, shift_id: str, kind: str, ident: str, person_id: str) -> PostClaimDoc:
    post, shift = find_shift(p, shift_id)
    w = acting(p, kind, ident, person_id)
    now = utcnow()
    domain.check_claimable(shift.starts_at, now)
    claim_id = f"pc-{uuid.uuid4().hex[:16]}"
    lock_id = f"{shift.id}|{w.key}"
    _take_lock(lock_id, claim_id, now)
    seat = _take_seat(shift, claim_id, now)
    if seat is None:
        ClaimantLockDoc._get_collection().delete_one({"_id": lock_id, "claim_id": claim_id})
        raise FailedPrecondition("已满 (full): no places left on this shift", field="shift_id", reason="full")
    try:
        _schedule_end(shift, post.id)
        doc = PostClaimDoc(
            id=claim_id,
            post_id=post.id,
            post_name=post.name,
            shift_id=shift.id,
            seat=seat,
            claimant_key=lock_id,
            community_id=post.community_id,
            unit_id=w.unit_id,
            person_id=w.person_id,
            status=domain.CLAIMED,
            shift_starts_at=shift.starts_at,
            shift_ends_at=shift.ends_at,
            claimed_at=now,
            by=p.sub,
            created_at=now,
            updated_at=now,
            version=1,
        )
        doc.record(
            ev.PostClaimed(
                post_id=post.id,
                tenant=require_tenant(),
                community_id=post.community_id,
                shift_id=shift.id,
                unit_id=w.unit_id,
                person_id=w.person_id,
                post_name=post.name,
                shift_starts_at=ts(shift.starts_at),
                shift_ends_at=ts(shift.ends_at),
                at=ts(now),
                claim_id=claim_id,
            ),
            subject=post.id,
            at=now,
        )
        doc.save(force_insert=True)
    except BaseException:
        SeatDoc._get_collection().delete_one({"_id": seat, "claim_id": claim_id})
        ClaimantLockDoc._get_collection().delete_one({"_id": lock_id, "claim_id": claim_id})
        raise
    return doc


def get_claim(p: Principal, claim_id: str) -> PostClaimDoc:
    doc = MONGO.load(PostClaimDoc, claim_id) if claim_id else None
    if (
        doc is None
        or not community.sees(doc.community_id, p)
        or (p.role == "member" and not owns(p, doc.unit_id, doc.person_id))
    ):
        raise not_found("post_claim", claim_id)
    return doc


def release(p: Principal, claim_id: str, uow: UnitOfWork = MONGO) -> PostClaimDoc:
    get_claim(p, claim_id)

    def mutate(doc: PostClaimDoc, at: datetime) -> bool:
        domain.check_release(doc.status, doc.shift_starts_at, at)
        doc.status = domain.RELEASED
        doc.released_at = at
        doc.released_by = p.sub
        doc.record(
            ev.PostClaimReleased(
                post_id=doc.post_id,
                tenant=require_tenant(),
                community_id=doc.community_id,
                shift_id=doc.shift_id,
                unit_id=doc.unit_id,
                person_id=doc.person_id,
                claim_id=doc.id,
                released_by=p.sub,
                shift_starts_at=ts(doc.shift_starts_at),
                at=ts(at),
            ),
            subject=doc.post_id,
            at=at,
        )
        return True

    done = change(uow, PostClaimDoc, f"post_claim:{claim_id}", claim_id, mutate, conflicts=CONFLICTS, now=utcnow)
    doc = done.doc
    assert doc is not None
    # The place is free again: the seat and the claimant's lock go (a repeat finds nothing to delete).
    SeatDoc._get_collection().delete_one({"_id": doc.seat, "claim_id": doc.id})
    ClaimantLockDoc._get_collection().delete_one({"_id": doc.claimant_key, "claim_id": doc.id})
    return doc


def check_in(p: Principal, claim_id: str, uow: UnitOfWork = MONGO) -> PostClaimDoc:
    get_claim(p, claim_id)
    by_worker = is_staff(p)

    def mutate(doc: PostClaimDoc, at: datetime) -> bool:
        late = domain.check_in(doc.status, doc.shift_starts_at, doc.shift_ends_at, at, by_worker=by_worker)
        doc.status = domain.SERVED
        doc.checked_in_at = at
        doc.checked_in_by = p.sub if by_worker else "self"
        doc.late = late
        doc.hours = domain.hours(doc.shift_starts_at, doc.shift_ends_at)
        doc.record(
            ev.ShiftServed(
                post_id=doc.post_id,
                tenant=require_tenant(),
                community_id=doc.community_id,
                shift_id=doc.shift_id,
                unit_id=doc.unit_id,
                person_id=doc.person_id,
                hours=doc.hours,
                late=late,
                at=ts(at),
            ),
            subject=doc.post_id,
            at=at,
        )
        return True

    done = change(uow, PostClaimDoc, f"post_claim:{claim_id}", claim_id, mutate, conflicts=CONFLICTS, now=utcnow)
    assert done.doc is not None
    return done.doc


def mark_missed(claim_id: str, uow: UnitOfWork = MONGO) -> bool:
    """ShiftMissed for a claim still without check-in once its shift is over (idempotent: anything else is left)."""

    def mutate(doc: PostClaimDoc, at: datetime) -> bool:
        if doc.status != domain.CLAIMED or at < domain.utc(doc.shift_ends_at):
            return False
        doc.status = domain.MISSED
        doc.missed_at = at
        doc.record(
            ev.ShiftMissed(
                post_id=doc.post_id,
                tenant=require_tenant(),
                community_id=doc.community_id,
                shift_id=doc.shift_id,
                unit_id=doc.unit_id,
                person_id=doc.person_id,
                at=ts(doc.shift_ends_at),
            ),
            subject=doc.post_id,
            at=at,
        )
        return True

    done = change(uow, PostClaimDoc, f"post_claim:{claim_id}", claim_id, mutate, conflicts=CONFLICTS, now=utcnow)
    return done.written


def shift_ended(post_id: str, shift_id: str) -> int:
    """The shift's end: every claim holding a seat and not checked in is recorded missed. Returns how many."""
    post = MONGO.load(PostDoc, post_id)
    shift = next((s for s in post.shifts if s.id == shift_id), None) if post is not None else None
    if shift is None:
        return 0
    held: list[dict[str, Any]] = list(SeatDoc._get_collection().find({"_id": {"$in": seat_ids(shift)}}))
    return sum(mark_missed(str(seat["claim_id"])) for seat in held)


def on_shift_end(timer: clocks.Timer) -> None:
    missed = shift_ended(timer.payload.get("post_id", ""), timer.payload.get("shift_id", ""))
    if missed:
        log.info("shift %s ended: %d claim(s) recorded missed", timer.payload.get("shift_id"), missed)
