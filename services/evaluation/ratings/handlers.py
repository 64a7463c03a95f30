"""评单's commands and event handlers: load, apply the rules (domain.py), write with the events in one write.

- Verdicts (the consumer, consumer.py): each TaskVerified / TaskVerificationFailed updates the issue's verdict
  document through the unit of work (claims "rverdict:<issue>:<version>"); the rule (domain.next_verdict)
  makes a replay or a late event a no-op.
- The reporter's decision: one insert of ResidentActDoc with the verification's id carries the rating
  (IssueRated) or the rejection (TaskVerificationFailed, method resident): of two racing decisions on one
  verification exactly one is stored, the other is ALREADY_EXISTS.
- Unit ratings: one insert of UnitRatingDoc by "<quarter>:<unit>:<rater>" (UnitRated).

Nothing here logs a follow-up code, a comment, a reason or a name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import mongoengine as me
import pymongo.errors
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev

from services.common import community, unitofwork
from services.common.context import current_principal, require_tenant
from services.common.errors import Aborted, AlreadyExists, InvalidArgument, PermissionDenied
from services.common.principal import Principal
from services.common.unitofwork import UnitOfWork
from services.evaluation.ratings import domain, peers, readmodel
from services.evaluation.ratings.documents import RatingSettingsDoc, ResidentActDoc, UnitRatingDoc, VerdictDoc

log = logging.getLogger(__name__)
SETTINGS_ID = "settings"


def utcnow() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def ts(at: datetime | None) -> Timestamp:
    out = Timestamp()
    if at is not None:
        out.FromDatetime(aware(at))  # type: ignore[arg-type]
    return out


def _conflicts() -> unitofwork.Conflicts:
    return unitofwork.Conflicts(
        stale=lambda i, v, e: Aborted(f"{i!r} is at version {v}, not {e}: reload and retry (设置已被修改)"),
        raced=lambda i: Aborted(f"{i!r} was changed at the same moment: reload and retry (记录已被同时修改)"),
        busy=lambda i: Aborted(f"{i!r} kept changing under this change: retry shortly (记录正被频繁修改，请重试)"),
    )


CONFLICTS = _conflicts()


def _caller() -> Principal:
    p = current_principal.get()
    if p is None:
        return Principal(sub="evaluation", role="service", tenants=(require_tenant(),))
    return p


# ---------------------------------------------------------------- settings


def windows(uow: UnitOfWork = unitofwork.MONGO) -> tuple[domain.Windows, RatingSettingsDoc | None]:
    found = uow.load(RatingSettingsDoc, SETTINGS_ID)
    if found is None:
        return domain.Windows(), None
    return domain.Windows(found.rating_window_days, found.rejection_window_days), found


def put_settings(
    rating_days: int, rejection_days: int, expected_version: int, uow: UnitOfWork = unitofwork.MONGO
) -> RatingSettingsDoc:
    p = _caller()
    domain.require_settings_writer(p.role)
    wanted = domain.check_windows(rating_days, rejection_days)

    def fresh() -> RatingSettingsDoc:
        return RatingSettingsDoc(
            id=SETTINGS_ID,
            rating_window_days=domain.DEFAULT_RATING_WINDOW_DAYS,
            rejection_window_days=domain.DEFAULT_REJECTION_WINDOW_DAYS,
            version=0,
        )

    def put(doc: RatingSettingsDoc, _now: datetime) -> bool:
        doc.rating_window_days = wanted.rating_days
        doc.rejection_window_days = wanted.rejection_days
        doc.updated_by = p.sub
        return True

    done = unitofwork.change(
        uow,
        RatingSettingsDoc,
        "rsettings",
        SETTINGS_ID,
        put,
        conflicts=CONFLICTS,
        now=utcnow,
        expected_version=expected_version or None,  # 0: no check (the defaults, or no If-Match)
        fresh=fresh,
    )
    assert done.doc is not None
    return done.doc


# ---------------------------------------------------------------- verdicts (from the verification's events)


def _verdict_of(doc: VerdictDoc | None) -> domain.Verdict | None:
    if doc is None or not doc.status:
        return None
    at = aware(doc.at)
    assert at is not None
    return domain.Verdict(
        verification_id=doc.verification_id,
        attempt=doc.attempt or 0,
        status=doc.status,
        task_id=doc.task_id,
        community_id=doc.community_id,
        call_type=doc.call_type,
        crew_ids=tuple(doc.crew_ids or ()),
        at=at,
        method=doc.method,
        verified_at=aware(doc.verified_at),
    )


def apply_verdict(issue_id: str, incoming: domain.Verdict, uow: UnitOfWork = unitofwork.MONGO) -> bool:
    """The issue's verdict after this one (domain.next_verdict); True when it changed."""

    def fresh() -> VerdictDoc:
        return VerdictDoc(id=issue_id, version=0)

    def step(doc: VerdictDoc, _now: datetime) -> bool:
        changed = False
        if incoming.status == domain.VERIFIED and incoming.verification_id not in (doc.verified_ids or []):
            doc.verified_ids = [*(doc.verified_ids or []), incoming.verification_id]
            changed = True
        new = domain.next_verdict(_verdict_of(doc), incoming)
        if new is None:
            return changed
        doc.task_id, doc.community_id, doc.call_type = new.task_id, new.community_id, new.call_type
        doc.crew_ids = list(new.crew_ids)
        doc.verification_id, doc.attempt, doc.status, doc.method = (
            new.verification_id,
            new.attempt,
            new.status,
            new.method,
        )
        doc.at = new.at
        doc.verified_at = new.verified_at
        return True

    done = unitofwork.change(
        uow, VerdictDoc, f"rverdict:{issue_id}", issue_id, step, conflicts=CONFLICTS, now=utcnow, fresh=fresh
    )
    return done.written


# ---------------------------------------------------------------- the reporter


@dataclass(frozen=True)
class Followed:
    reporter: peers.Reporter
    verdict: domain.Verdict | None
    standing: domain.Standing
    rating: ResidentActDoc | None
    rejection: ResidentActDoc | None  # of the current verification (or the one the verdict's failure rejected)


def _by(p: Principal, reporter: peers.Reporter) -> str:
    return p.sub if reporter.by == "resident" else "follow_code"


def _situation(issue_id: str, reporter: peers.Reporter, now: datetime, uow: UnitOfWork) -> Followed:
    doc = uow.load(VerdictDoc, issue_id)
    verdict = _verdict_of(doc)
    verified_ids = list(doc.verified_ids or []) if doc is not None else []
    acts = {a.id: a for a in ResidentActDoc.objects(id__in=verified_ids)} if verified_ids else {}
    rating = next((a for a in acts.values() if a.kind == domain.RATING), None)
    current = acts.get(verdict.verification_id) if verdict is not None else None
    # The rejection that stands now: of the current verification (its verdict not heard back yet), or the one
    # the latest verdict is (a resident's, "resident:<verification>"); an older one, followed by a new
    # verification, no longer stands.
    rejection = current if current is not None and current.kind == domain.REJECTION else None
    if verdict is not None and verdict.status == domain.FAILED and verdict.method == domain.RESIDENT_METHOD:
        rejected = acts.get(verdict.verification_id.removeprefix("resident:"))
        rejection = rejected if rejected is not None and rejected.kind == domain.REJECTION else rejection
    win, _ = windows(uow)
    s = domain.standing(verdict, now, win, rated=rating is not None, decided_current=current is not None)
    return Followed(reporter, verdict, s, rating, rejection)


def follow(issue_id: str, follow_code: str, *, now: Callable[[], datetime] = utcnow) -> Followed:
    reporter = peers.check_reporter(issue_id, follow_code)
    return _situation(reporter.issue_id, reporter, now(), unitofwork.MONGO)


def _insert_act(doc: ResidentActDoc) -> ResidentActDoc:
    try:
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        found = ResidentActDoc.objects(id=doc.id).only("kind").first()
        raise domain.decided_message(found.kind if found is not None else doc.kind) from None
    return doc


def rate_issue(
    issue_id: str, follow_code: str, score: int, comment: str, *, now: Callable[[], datetime] = utcnow
) -> ResidentActDoc:
    score = domain.check_score(score)
    comment = domain.text(comment, "comment", "评价内容", domain.COMMENT_MAX)
    reporter = peers.check_reporter(issue_id, follow_code)
    at = now()
    seen = _situation(reporter.issue_id, reporter, at, unitofwork.MONGO)
    verdict = domain.require_may_rate(seen.standing, seen.verdict)
    doc = ResidentActDoc(
        id=verdict.verification_id,
        kind=domain.RATING,
        issue_id=reporter.issue_id,
        task_id=verdict.task_id,
        community_id=verdict.community_id or reporter.community_id,
        call_type=verdict.call_type,
        attempt=verdict.attempt,
        score=score,
        comment=comment,
        by=_by(_caller(), reporter),
        at=at,
        version=1,
        created_at=at,
        updated_at=at,
    )
    doc.record(
        eev.IssueRated(
            issue_id=reporter.issue_id,
            tenant=require_tenant(),
            task_id=verdict.task_id,
            score=score,
            ratings=1,
            rated_at=ts(at),
            community_id=doc.community_id,
            call_type=verdict.call_type,
            crew_ids=list(verdict.crew_ids),
            rating_id=domain.rating_id(verdict.verification_id),
        ),
        subject=f"issues/{reporter.issue_id}/rating",
        at=at,
    )
    return _insert_act(doc)


def reject_result(
    issue_id: str, follow_code: str, reason: str, *, now: Callable[[], datetime] = utcnow
) -> ResidentActDoc:
    reason = domain.text(reason, "reason", "退回理由", domain.REASON_MAX, required=True)
    reporter = peers.check_reporter(issue_id, follow_code)
    at = now()
    seen = _situation(reporter.issue_id, reporter, at, unitofwork.MONGO)
    verdict = domain.require_may_reject(seen.standing, seen.verdict)
    by = _by(_caller(), reporter)
    doc = ResidentActDoc(
        id=verdict.verification_id,
        kind=domain.REJECTION,
        issue_id=reporter.issue_id,
        task_id=verdict.task_id,
        community_id=verdict.community_id or reporter.community_id,
        call_type=verdict.call_type,
        attempt=verdict.attempt,
        reason=reason,
        by=by,
        at=at,
        version=1,
        created_at=at,
        updated_at=at,
    )
    doc.record(
        eev.TaskVerificationFailed(
            verification_id=domain.rejection_id(verdict.verification_id),
            tenant=require_tenant(),
            community_id=doc.community_id,
            task_id=verdict.task_id,
            issue_id=reporter.issue_id,
            call_type=verdict.call_type,
            method=domain.RESIDENT_METHOD,
            attempt=verdict.attempt,
            crew_ids=list(verdict.crew_ids),
            reason=domain.redact(reason),
            by=by,
            failed_at=ts(at),
        ),
        subject=f"tasks/{verdict.task_id}/verification",
        at=at,
    )
    return _insert_act(doc)


def list_resident_acts(community_id: str, kind: str, page_size: int, page_token: str) -> tuple[list[object], str]:
    domain.require_staff(_caller().role, ("查看居民评价", "list residents' ratings"))
    if kind not in ("", *domain.ACT_KINDS):
        raise InvalidArgument("kind 应为 rating 或 rejection (kind must be rating or rejection)", field="kind")
    scope = community.list_filter(community_id.strip())
    return readmodel.list_acts(scope, kind, page_size, page_token)


# ---------------------------------------------------------------- unit ratings


def _rater(p: Principal, rater_person_id: str) -> domain.Rater:
    person_id = rater_person_id.strip()
    if p.role == domain.MEMBER:
        if person_id:
            raise InvalidArgument(
                "成员以自身身份评价，无需指定人员 (a member rates as itself: leave rater_person_id empty)",
                field="rater_person_id",
            )
        key = domain.rater_of_member(p.responder)
        kind, ident = key.split(":", 1)
        found = peers.member_unit(ident, "rater") if kind == "member_unit" else peers.person(ident, "rater")
        return domain.Rater(domain.RATER_MEMBER, key, found.community_id)
    if p.role in domain.STAFF:
        if not person_id:
            raise InvalidArgument(
                "请指定居民代表 (rater_person_id: name the resident representative whose rating is recorded)",
                field="rater_person_id",
            )
        found = peers.person(person_id, "rater_person_id")
        if domain.REPRESENTATIVE_ROLE not in found.roles:
            raise InvalidArgument(
                "该人员不是居民代表 (rater_person_id: the person is not a resident representative)",
                field="rater_person_id",
            )
        return domain.Rater(domain.RATER_REPRESENTATIVE, f"person:{found.id}", found.community_id)
    raise PermissionDenied(
        "居民代表（由社区工作者录入）或联盟成员方可评价成员单位 "
        "(only resident representatives, recorded by a community worker, and alliance members rate units, "
        f"not {p.role})",
        reason="role",
    )


def rate_unit(
    unit_id: str,
    score: int,
    comment: str,
    quarter: str,
    rater_person_id: str,
    *,
    now: Callable[[], datetime] = utcnow,
) -> UnitRatingDoc:
    p = _caller()
    unit_id = unit_id.strip()
    if not unit_id:
        raise InvalidArgument("请指定成员单位 (unit_id is required)", field="unit_id")
    score = domain.check_score(score)
    comment = domain.text(comment, "comment", "评价内容", domain.COMMENT_MAX)
    at = now()
    q = domain.check_quarter(quarter, at)
    unit = peers.member_unit(unit_id)
    # A community worker records only in its own community (403 for another's unit).
    community.require_placed_in_scope(unit.community_id, "unit_id")
    rater = _rater(p, rater_person_id)
    domain.check_rater(rater, unit_id, unit.community_id)
    doc = UnitRatingDoc(
        id=domain.unit_rating_id(q, unit_id, rater.key),
        unit_id=unit_id,
        unit_name_zh=unit.name_zh,
        community_id=unit.community_id,
        quarter=q,
        rater_kind=rater.kind,
        rater=rater.key,
        score=score,
        comment=comment,
        recorded_by=p.sub,
        rated_at=at,
        version=1,
        created_at=at,
        updated_at=at,
    )
    doc.record(
        eev.UnitRated(
            rating_id=doc.id,
            tenant=require_tenant(),
            community_id=unit.community_id,
            unit_id=unit_id,
            quarter=q,
            rater_kind=rater.kind,
            score=score,
            rated_at=ts(at),
        ),
        subject=f"units/{unit_id}/ratings/{q}",
        at=at,
    )
    try:
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        raise AlreadyExists(domain.ALREADY_RATED_UNIT, reason="already_rated") from None
    return doc


def list_unit_ratings(
    community_id: str, unit_id: str, quarter: str, page_size: int, page_token: str
) -> tuple[list[object], str]:
    domain.require_staff(_caller().role, ("查看成员单位评价", "list unit ratings"))
    scope = community.list_filter(community_id.strip())
    return readmodel.list_unit_ratings(
        scope, unit_id.strip(), domain.check_quarter_filter(quarter), page_size, page_token
    )
