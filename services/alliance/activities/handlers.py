"""Co-building activities' commands: publish, sign up, withdraw, attendance (one function each)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime

from hongling.events.v1 import alliance_events_pb2 as ev

from services.alliance.activities import domain
from services.alliance.activities.documents import ActivityDoc, ParticipantDoc
from services.alliance.posts import domain as posts_domain
from services.alliance.posts.documents import PlaceDoc
from services.alliance.posts.handlers import acting, is_staff, not_found, owns
from services.alliance.shared import conflicts, ts, utcnow
from services.common import community
from services.common.context import require_tenant
from services.common.errors import PermissionDenied
from services.common.principal import Principal
from services.common.unitofwork import MONGO, UnitOfWork, change

CONFLICTS = conflicts("activity", "活动")
# Many people signing up for one activity at once each take its next version in turn: give them time.
DEADLINE_SECONDS = 20.0


def entries_of(doc: ActivityDoc) -> list[domain.Entry]:
    return [domain.Entry(**{k: getattr(p, k) for k in domain.Entry.__dataclass_fields__}) for p in doc.participants]


def store(doc: ActivityDoc, entries: list[domain.Entry]) -> None:
    doc.participants = [ParticipantDoc(**asdict(e)) for e in entries]


def publish(
    p: Principal,
    community_id: str,
    title: str,
    kind: str,
    description: str,
    place: tuple[str, str, str],
    starts_at: datetime | None,
    ends_at: datetime | None,
    capacity: int,
    deadline: datetime | None,
) -> ActivityDoc:
    if not is_staff(p):
        raise PermissionDenied(f"{p.role!r} may not publish activities (仅社区工作者可发布活动)")
    cid = posts_domain.text(community_id or (p.community or ""), "community_id", 64)
    community.require_placed_in_scope(cid)
    now = utcnow()
    title_ = posts_domain.text(title, "title", 80)
    kind_ = domain.check_kind(kind)
    domain.check_times(starts_at, ends_at, deadline, now)
    assert starts_at is not None and ends_at is not None
    doc = ActivityDoc(
        id=f"act-{uuid.uuid4().hex[:12]}",
        community_id=cid,
        title=title_,
        kind=kind_,
        description=posts_domain.text(description, "description", posts_domain.MAX_DESCRIPTION, required=False),
        place=PlaceDoc(kind=place[0], id=place[1], name=place[2]),
        starts_at=posts_domain.utc(starts_at),
        ends_at=posts_domain.utc(ends_at),
        capacity=domain.check_capacity(capacity),
        signup_deadline=posts_domain.utc(deadline or starts_at),
        participants=[],
        created_by=p.sub,
        created_at=now,
        updated_at=now,
        version=1,
    )
    doc.record(
        ev.ActivityPublished(
            activity_id=doc.id,
            tenant=require_tenant(),
            community_id=cid,
            title=doc.title,
            kind=doc.kind,
            capacity=doc.capacity,
            starts_at=ts(doc.starts_at),
            ends_at=ts(doc.ends_at),
            at=ts(now),
        ),
        subject=doc.id,
        at=now,
    )
    doc.save(force_insert=True)
    return doc


def get(p: Principal, activity_id: str) -> ActivityDoc:
    doc = MONGO.load(ActivityDoc, activity_id) if activity_id else None
    if doc is None or not community.sees(doc.community_id, p):
        raise not_found("activity", activity_id)
    return doc


def _signed_up(doc: ActivityDoc, e: domain.Entry, entries: list[domain.Entry], at: datetime) -> None:
    doc.record(
        ev.ActivitySignedUp(
            activity_id=doc.id,
            tenant=require_tenant(),
            community_id=doc.community_id,
            unit_id=e.unit_id,
            person_id=e.person_id,
            waiting=e.status == domain.WAITING,
            position=domain.position(entries, e),
            at=ts(at),
            signup=domain.signup_number(entries, e),
        ),
        subject=doc.id,
        at=at,
    )


def _change(uow: UnitOfWork, activity_id: str, mutate: object) -> ActivityDoc:
    done = change(
        uow,
        ActivityDoc,
        f"activity:{activity_id}",
        activity_id,
        mutate,  # type: ignore[arg-type]
        conflicts=CONFLICTS,
        now=utcnow,
        deadline=DEADLINE_SECONDS,
    )
    assert done.doc is not None
    return done.doc


def sign_up(
    p: Principal, activity_id: str, kind: str, ident: str, person_id: str, uow: UnitOfWork = MONGO
) -> ActivityDoc:
    get(p, activity_id)
    who = acting(p, kind, ident, person_id, "participant")

    def mutate(doc: ActivityDoc, at: datetime) -> bool:
        entries = entries_of(doc)
        out = domain.sign_up(entries, who, int(doc.capacity), doc.signup_deadline, at, p.sub)
        _signed_up(doc, out.entry, entries, at)
        store(doc, entries)
        return True

    return _change(uow, activity_id, mutate)


def withdraw(
    p: Principal, activity_id: str, kind: str, ident: str, person_id: str, uow: UnitOfWork = MONGO
) -> ActivityDoc:
    get(p, activity_id)
    who = acting(p, kind, ident, person_id, "participant", check_unit=False)  # leaving needs no proof

    def mutate(doc: ActivityDoc, at: datetime) -> bool:
        entries = entries_of(doc)
        out = domain.withdraw(entries, who, int(doc.capacity), doc.starts_at, at)
        doc.record(
            ev.ActivitySignupWithdrawn(
                activity_id=doc.id,
                tenant=require_tenant(),
                community_id=doc.community_id,
                unit_id=out.entry.unit_id,
                person_id=out.entry.person_id,
                waiting=out.was == domain.WAITING,
                signup=domain.signup_number(entries, out.entry),
                at=ts(at),
            ),
            subject=doc.id,
            at=at,
        )
        for promoted in out.promoted:  # the place went to the first waiting: it is signed up with a place now
            _signed_up(doc, promoted, entries, at)
        store(doc, entries)
        return True

    return _change(uow, activity_id, mutate)


def attend(
    p: Principal, activity_id: str, kind: str, ident: str, person_id: str, hours: float, uow: UnitOfWork = MONGO
) -> ActivityDoc:
    get(p, activity_id)
    who = acting(p, kind, ident, person_id, "participant")
    by_worker = is_staff(p)

    def mutate(doc: ActivityDoc, at: datetime) -> bool:
        entries = entries_of(doc)
        e = domain.attend(
            entries, who, doc.starts_at, doc.ends_at, at, by_worker=by_worker, asked_hours=hours, by=p.sub
        )
        doc.record(
            ev.ActivityAttended(
                activity_id=doc.id,
                tenant=require_tenant(),
                community_id=doc.community_id,
                unit_id=e.unit_id,
                person_id=e.person_id,
                hours=e.hours,
                recorded_by=e.recorded_by,
                at=ts(at),
                signup=domain.signup_number(entries, e),
            ),
            subject=doc.id,
            at=at,
        )
        store(doc, entries)
        return True

    return _change(uow, activity_id, mutate)


def visible(p: Principal, e: domain.Entry) -> bool:
    """Staff see every participant; a member only itself."""
    return is_staff(p) or (p.role == "member" and owns(p, e.unit_id, e.person_id))
