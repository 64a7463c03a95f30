"""Verification commands: load, apply the rules (domain.py), save the state with its verdicts' events in one write.

Writes and their atomic primitive (FerretDB has no isolated conditional update; an insert with a unique _id is
atomic on it and on MongoDB alike):
- a vote is an insert of "<round>:<task>:<reviewer>": a second vote of a reviewer on a task is refused;
- a verdict is claimed by an insert of "<task>:<attempt>" into verdict_claims (owner: the round or the check)
  before the document that carries its event is written, so two ways of verifying one attempt never both
  decide it. A claim whose owner never wrote its verdict (it crashed) is taken over after CLAIM_STALE;
- a round's changes (open → closing → closed) go through the unit of work (services/common/unitofwork.py);
  closing writes the counted votes, each task's verdict and the verdicts' events in one document write;
- a check is created with its verdict's event in one insert (its photos are written before it).

Closing a round: it is first marked closing (no vote is accepted after that), then its votes are read by _id
(round × tasks × reviewers: every possible id, no query that grows with data), each task with a quorum gets
the verdict of the round's rule, and the round is written closed. A vote that raced the close is counted if
the close read it, else removed and refused. A convenor who closes again finishes a round left closing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import mongoengine as me
import pymongo.errors
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as ev

from services.common import community, unitofwork
from services.common.context import current_principal, require_tenant
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.principal import Principal
from services.common.times import aware, utcnow
from services.common.unitofwork import Conflicts, UnitOfWork
from services.evaluation.verification import domain, peers, readmodel
from services.evaluation.verification.documents import (
    CheckDoc,
    CheckPhotoDoc,
    CountedVoteDoc,
    PhotoMetaDoc,
    ReviewerDoc,
    RoundDoc,
    RoundTaskDoc,
    VerdictClaimDoc,
    VerificationRulesDoc,
    VoteDoc,
)

log = logging.getLogger(__name__)
RULES_ID = "rules"
CLAIM_STALE = timedelta(seconds=30)
VOTE_SETTLE_SECONDS = 10.0


def _ts(at: datetime | None) -> Timestamp:
    out = Timestamp()
    if at is not None:
        out.FromDatetime(aware(at) or at)
    return out


def _conflicts(noun: str, zh: str) -> Conflicts:
    return Conflicts(
        stale=lambda i, v, e: Aborted(f"{zh}已被修改，请刷新后重试 ({noun} {i!r} is at version {v}, not {e})"),
        raced=lambda i: Aborted(f"{zh}已被同时修改，请刷新后重试 ({noun} {i!r} was changed at the same moment)"),
        busy=lambda i: Aborted(f"{zh}正被频繁修改，请稍后重试 ({noun} {i!r} kept changing; retry shortly)"),
    )


ROUND_CONFLICTS = _conflicts("review round", "评议")
RULES_CONFLICTS = Conflicts(
    stale=lambda _i, v, e: Aborted(
        f"验单规则已被修改，请刷新后重试 (the verification rules are at version {v}, not {e})", field="version"
    ),
    raced=lambda _i: Aborted("验单规则已被同时修改 (the verification rules were changed at the same moment)"),
    busy=lambda _i: Aborted("验单规则正被修改，请稍后重试 (the verification rules kept changing; retry)"),
)


def _caller() -> Principal:
    p = current_principal.get()
    if p is None:
        return Principal(sub="evaluation", role="service", tenants=(require_tenant(),))
    return p


# ---------------------------------------------------------------- rules


def current_rules(uow: UnitOfWork = unitofwork.MONGO) -> tuple[dict[str, domain.Rule], VerificationRulesDoc | None]:
    """The tenant's rules per call type (its stored ones, or the defaults) and the stored document."""
    doc = uow.load(VerificationRulesDoc, RULES_ID)
    if doc is None:
        return dict(domain.DEFAULT_RULES), None
    return domain.rules_from_list(doc.rules or []), doc


def get_rules() -> tuple[dict[str, domain.Rule], VerificationRulesDoc | None]:
    domain.require_role(_caller().role, domain.READERS | {"community_worker"}, "read the verification rules")
    return current_rules()


def put_rules(
    raw: Sequence[dict[str, Any]], expected_version: int, *, uow: UnitOfWork = unitofwork.MONGO
) -> tuple[dict[str, domain.Rule], VerificationRulesDoc | None]:
    """Replace the tenant's rules; `expected_version` is the one the caller read (0: the defaults)."""
    p = _caller()
    domain.require_role(p.role, domain.RULES_WRITERS, "change the verification rules")
    checked = domain.check_rules(raw)

    def replace(doc: VerificationRulesDoc, _at: datetime) -> bool:
        doc.rules = domain.rules_to_list(checked)
        doc.updated_by = p.sub
        return True

    written = unitofwork.change(
        uow,
        VerificationRulesDoc,
        "verification_rules",
        RULES_ID,
        replace,
        conflicts=RULES_CONFLICTS,
        now=utcnow,
        expected_version=expected_version,
        fresh=lambda: VerificationRulesDoc(id=RULES_ID, version=0),
    ).doc
    assert written is not None
    return domain.rules_from_list(written.rules or []), written


# ---------------------------------------------------------------- the queue


def queue(community_id: str, call_type: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    """A community's done tasks awaiting verification (dispatch's read model), each with its rule's method."""
    p = _caller()
    domain.require_role(p.role, domain.READERS, "read the verification queue")
    asked = community.list_filter(community_id.strip(), p)
    call_type = call_type.strip()
    if call_type and call_type not in domain.CALL_TYPES:
        raise InvalidArgument(
            "集结号类型应为 service、tackling 或 emergency (call_type: unknown call type)", field="call_type"
        )
    if not 0 <= page_size <= readmodel.PAGE_MAX:
        raise InvalidArgument(
            f"每页条数应为0..{readmodel.PAGE_MAX} (page_size must be 0..{readmodel.PAGE_MAX})", field="page_size"
        )
    rules, _ = current_rules()
    tasks, token = peers.done_tasks(asked, call_type, page_size or readmodel.PAGE_DEFAULT, page_token)
    return [(t, domain.rule_for(rules, t.call_type)) for t in tasks], token


# ---------------------------------------------------------------- verdicts


def claim_verdict(verification_id: str, owner: str) -> bool:
    """Win the right to give this attempt's verdict (or hold it already); False: another owner decided it."""
    for _ in range(3):
        try:
            VerdictClaimDoc(id=verification_id, owner=owner, at=utcnow()).save(force_insert=True)
            return True
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            held = VerdictClaimDoc.objects(id=verification_id).first()
            if held is None:
                continue
            if held.owner == owner:
                return True
            if _owner_decided(held.owner, verification_id) or utcnow() - (aware(held.at) or utcnow()) < CLAIM_STALE:
                return False
            # Its owner claimed long ago and never wrote the verdict (it crashed): take it over.
            VerdictClaimDoc._get_collection().delete_one({"_id": verification_id, "owner": held.owner})
    return False


def _owner_decided(owner: str, verification_id: str) -> bool:
    kind, _, ident = owner.partition(":")
    if kind == "check":
        return CheckDoc.objects(id=ident).first() is not None
    found = RoundDoc.objects(id=ident).only("status", "tasks").first()
    if found is None:
        return False
    if found.status == domain.CLOSING:
        return True  # its convenor's close finishes it
    return any(t.verification_id == verification_id for t in found.tasks)


def _verdict_event(
    *,
    passed: bool,
    vid: str,
    community_id: str,
    task_id: str,
    issue_id: str,
    call_type: str,
    method: str,
    round_id: str = "",
    check_id: str = "",
    attempt: int,
    crew_ids: Sequence[str],
    by: str,
    at: datetime,
    votes_pass: int = 0,
    votes_fail: int = 0,
    place_flagged: bool = False,
    reason: str = "",
) -> ev.TaskVerified | ev.TaskVerificationFailed:
    common: dict[str, Any] = {
        "verification_id": vid,
        "tenant": require_tenant(),
        "community_id": community_id,
        "task_id": task_id,
        "issue_id": issue_id,
        "call_type": call_type,
        "method": method,
        "round_id": round_id,
        "check_id": check_id,
        "attempt": attempt,
        "crew_ids": list(crew_ids),
        "by": by,
        "votes_pass": votes_pass,
        "votes_fail": votes_fail,
        "place_flagged": place_flagged,
    }
    if passed:
        return ev.TaskVerified(**common, verified_at=_ts(at))
    return ev.TaskVerificationFailed(**common, reason=reason, failed_at=_ts(at))


# ---------------------------------------------------------------- review rounds


def _round_missing(round_id: str) -> NotFound:
    return NotFound(f"未找到该评议 (no review round {round_id!r} in this tenant)", field="id")


def _is_reviewer(doc: RoundDoc, p: Principal) -> str:
    """The reviewer id a member (or any non-staff caller) is on this round, or ""."""
    ids = {r.id for r in doc.reviewers}
    if p.responder is not None and p.responder[1] in ids:
        return p.responder[1]
    return p.sub if p.sub in ids else ""


def get_round(round_id: str, uow: UnitOfWork = unitofwork.MONGO) -> RoundDoc:
    """The round, if the caller may see it: staff of its community (or the tenant), a reviewer on it."""
    doc = uow.load(RoundDoc, round_id) if round_id else None
    if doc is None:
        raise _round_missing(round_id)
    p = _caller()
    if p.role in domain.STAFF or p.role in ("ops", "service"):
        if not community.sees(doc.community_id, p):
            raise _round_missing(round_id)
        return doc
    if not _is_reviewer(doc, p):
        raise _round_missing(round_id)
    return doc


def round_votes(doc: RoundDoc) -> list[Any]:
    """The round's votes: as counted when closed, else as cast so far (read by _id, every possible one)."""
    if doc.status == domain.CLOSED:
        return list(doc.votes)
    ids = [domain.vote_id(doc.id, t.task_id, r.id) for t in doc.tasks for r in doc.reviewers]
    found = {v.id: v for v in VoteDoc.objects(id__in=ids)} if ids else {}
    return [found[i] for i in ids if i in found]


def create_round(new: domain.NewRound, idempotency_key: str = "", *, now: Callable[[], datetime] = utcnow) -> RoundDoc:
    p = _caller()
    domain.require_role(p.role, domain.STAFF, "convene review rounds")
    community.require_placed_in_scope(new.community_id)
    round_id = domain.new_id(idempotency_key, p.sub, "round")
    if idempotency_key:
        found = RoundDoc.objects(id=round_id).first()
        if found is not None:
            return found
    rules, _ = current_rules()
    tasks: list[RoundTaskDoc] = []
    used: list[domain.Rule] = []
    for n, task_id in enumerate(new.task_ids):
        where = f"task_ids[{n}]"
        t = peers.task(task_id, where)
        if t.community_id != new.community_id:
            raise InvalidArgument(
                f"该任务不属于本社区 ({where}: task {task_id!r} is not of community {new.community_id!r})", field=where
            )
        domain.require_done(t.status, where)
        rule = domain.rule_for(rules, t.call_type)
        domain.require_method(rule, domain.REVIEW)
        used.append(rule)
        tasks.append(
            RoundTaskDoc(
                task_id=t.id,
                issue_id=t.issue_id,
                title=t.title,
                call_type=t.call_type,
                attempt=t.attempt,
                crew_ids=list(t.crew_ids),
            )
        )
    quorum = domain.round_quorum(new.quorum, used, len(new.reviewers))
    at = now()
    doc = RoundDoc(
        id=round_id,
        community_id=new.community_id,
        title=new.title,
        status=domain.OPEN,
        convenor=p.sub,
        reviewers=[ReviewerDoc(id=r.id, kind=r.kind, name_zh=r.name_zh) for r in new.reviewers],
        quorum=quorum,
        decision=domain.round_decision(used),
        tasks=tasks,
        created_at=at,
        version=1,
        updated_at=at,
    )
    try:
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        found = RoundDoc.objects(id=round_id).first()
        if found is None:
            raise
        return found
    return doc


def cast_vote(round_id: str, task_id: str, reviewer_id: str, passed: bool, reason: str) -> RoundDoc:
    """One reviewer's vote on one task of an open round (staff record it for a reviewer; a reviewer with its own
    credential votes as itself)."""
    p = _caller()
    doc = get_round(round_id)
    reviewer_id = reviewer_id.strip()
    if p.role in domain.STAFF:
        reviewer_id = domain.ident(reviewer_id, "reviewer_id", "评议人")
    else:
        own = _is_reviewer(doc, p)
        if not own:
            raise PermissionDenied(
                "仅评议人本人或社区工作人员可投票 (only a reviewer votes)", reason="role_not_allowed"
            )
        if reviewer_id and reviewer_id != own:
            raise PermissionDenied(
                f"只能以本人身份投票 (a reviewer votes as itself, {own!r}, not {reviewer_id!r})",
                reason="not_your_vote",
                field="reviewer_id",
            )
        reviewer_id = own
    if reviewer_id not in {r.id for r in doc.reviewers}:
        raise InvalidArgument(
            f"不是本轮评议人 (reviewer_id: {reviewer_id!r} is not a reviewer of this round)", field="reviewer_id"
        )
    if task_id not in {t.task_id for t in doc.tasks}:
        raise InvalidArgument(f"本轮评议不含该任务 (task_id: {task_id!r} is not in this round)", field="task_id")
    why = domain.check_vote(passed, reason)
    domain.require_open(doc.status)
    vid = domain.vote_id(round_id, task_id, reviewer_id)
    vote = VoteDoc(
        id=vid, round_id=round_id, task_id=task_id, reviewer_id=reviewer_id, passed=passed, reason=why,
        by=p.sub, at=utcnow(),
    )  # fmt: skip
    try:
        vote.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        held = VoteDoc.objects(id=vid).first()
        if held is None or held.passed != passed or held.reason != why:
            raise FailedPrecondition(
                "该评议人已对此任务投票，不能更改 (this reviewer has voted on this task already)",
                reason="already_voted",
                field="reviewer_id",
            ) from None
        return get_round(round_id)  # the same vote again (a retry)
    return _settle_vote(round_id, vid)


def _settle_vote(round_id: str, vid: str) -> RoundDoc:
    """After the insert: an open round keeps the vote; one closed meanwhile keeps it only if its close counted it."""
    deadline = time.monotonic() + VOTE_SETTLE_SECONDS
    while True:
        doc = RoundDoc.objects(id=round_id).first()
        assert doc is not None
        if doc.status == domain.OPEN:
            return doc
        if doc.status == domain.CLOSED or time.monotonic() > deadline:
            counted = any(domain.vote_id(round_id, v.task_id, v.reviewer_id) == vid for v in doc.votes)
            if counted:
                return doc
            VoteDoc._get_collection().delete_one({"_id": vid})
            domain.require_open(doc.status)
        time.sleep(0.1)


def close_round(round_id: str, *, uow: UnitOfWork = unitofwork.MONGO) -> RoundDoc:
    p = _caller()
    domain.require_role(p.role, domain.STAFF, "close review rounds")
    doc = get_round(round_id, uow)
    if doc.convenor != p.sub and p.role != "subdistrict_admin":
        raise PermissionDenied(
            "仅召集人或街道管理员可结束评议 (only the round's convenor, or a subdistrict admin, closes it)",
            reason="not_the_convenor",
        )
    if doc.status == domain.CLOSED:
        return doc

    def closing(d: RoundDoc, _at: datetime) -> bool:
        if d.status != domain.OPEN:
            return False
        d.status = domain.CLOSING
        return True

    unitofwork.change(uow, RoundDoc, f"round:{round_id}", round_id, closing, conflicts=ROUND_CONFLICTS, now=utcnow)
    current = uow.load(RoundDoc, round_id)
    assert current is not None
    if current.status == domain.CLOSED:
        return current
    votes = round_votes(current)
    owner = f"round:{round_id}"
    outcome: dict[str, tuple[str, int, int, list[str]]] = {}
    for t in current.tasks:
        mine = [v for v in votes if v.task_id == t.task_id]
        yes = sum(1 for v in mine if v.passed)
        no = len(mine) - yes
        verdict = domain.decide(yes, no, current.quorum, current.decision)
        if verdict != domain.NO_QUORUM:
            vid = domain.verification_id(t.task_id, t.attempt)
            still = _still_awaiting(t.task_id, t.attempt)
            if not still or not claim_verdict(vid, owner):
                verdict = domain.ELSEWHERE
        outcome[t.task_id] = (verdict, yes, no, [v.reason for v in mine if not v.passed and v.reason])

    def close(d: RoundDoc, at: datetime) -> bool:
        if d.status == domain.CLOSED:
            return False
        d.votes = [
            CountedVoteDoc(
                reviewer_id=v.reviewer_id, task_id=v.task_id, passed=v.passed, reason=v.reason, by=v.by, at=v.at
            )
            for v in votes
        ]
        for t in d.tasks:
            verdict, yes, no, reasons = outcome[t.task_id]
            t.votes_pass, t.votes_fail, t.verdict, t.reasons = yes, no, verdict, reasons
            if verdict not in (domain.PASSED, domain.FAILED):
                continue
            t.verification_id = domain.verification_id(t.task_id, t.attempt)
            d.record(
                _verdict_event(
                    passed=verdict == domain.PASSED,
                    vid=t.verification_id,
                    community_id=d.community_id,
                    task_id=t.task_id,
                    issue_id=t.issue_id,
                    call_type=t.call_type,
                    method=domain.REVIEW,
                    round_id=d.id,
                    attempt=t.attempt,
                    crew_ids=t.crew_ids,
                    by=p.sub,
                    at=at,
                    votes_pass=yes,
                    votes_fail=no,
                    reason="；".join(reasons)[: domain.REASON_MAX] or "集中评议未通过",
                ),
                subject=f"tasks/{t.task_id}",
                at=at,
            )
        d.status = domain.CLOSED
        d.closed_at = at
        return True

    done = unitofwork.change(uow, RoundDoc, f"round:{round_id}", round_id, close, conflicts=ROUND_CONFLICTS, now=utcnow)
    assert done.doc is not None
    return done.doc


def _still_awaiting(task_id: str, attempt: int) -> bool:
    """Whether dispatch still holds the task done at this attempt (not verified or sent back meanwhile)."""
    try:
        t = peers.task(task_id)
    except NotFound:
        return False
    return t.status == domain.DONE and t.attempt == attempt


def list_rounds(community_id: str, status: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    p = _caller()
    domain.require_role(p.role, domain.READERS, "list review rounds")
    asked = community.list_filter(community_id.strip(), p)
    return readmodel.list_rounds(asked, status.strip(), page_size, page_token)


# ---------------------------------------------------------------- on-site checks


def _check_missing(check_id: str) -> NotFound:
    return NotFound(f"未找到该核验记录 (no on-site check {check_id!r} in this tenant)", field="id")


def get_check(check_id: str) -> CheckDoc:
    p = _caller()
    domain.require_role(p.role, domain.READERS, "read on-site checks")
    doc = CheckDoc.objects(id=check_id).first() if check_id else None
    if doc is None or not community.sees(doc.community_id, p):
        raise _check_missing(check_id)
    return doc


def get_photo(check_id: str, photo_id: str) -> tuple[PhotoMetaDoc, bytes]:
    doc = get_check(check_id)
    meta = next((ph for ph in doc.photos if ph.id == photo_id), None)
    stored = CheckPhotoDoc.objects(id=f"{check_id}:{photo_id}").first() if meta is not None else None
    if meta is None or stored is None:
        raise NotFound(f"未找到该照片 (photo_id: no photo {photo_id!r} on this check)", field="photo_id")
    return meta, bytes(stored.content)


def record_check(
    task_id: str,
    *,
    notes: str,
    photos: Sequence[domain.PhotoIn],
    lat: float,
    lon: float,
    passed: bool,
    reason: str,
    idempotency_key: str = "",
    now: Callable[[], datetime] = utcnow,
) -> CheckDoc:
    p = _caller()
    domain.require_role(p.role, domain.STAFF, "record on-site checks")
    task_id = domain.ident(task_id, "task_id", "任务")
    notes = domain.text(notes, "notes", "核验情况", domain.NOTES_MAX)
    why = domain.check_outcome(passed, reason)
    point = domain.check_point(lat, lon)
    checked = domain.check_photos(photos)
    key = domain.text(idempotency_key, "idempotency_key", "幂等键", 200)
    check_id = domain.new_id(key, p.sub, "check")
    if key:
        found = CheckDoc.objects(id=check_id).first()
        if found is not None:
            return found
    t = peers.task(task_id)
    domain.require_done(t.status)
    rules, _ = current_rules()
    rule = domain.rule_for(rules, t.call_type)
    domain.require_method(rule, domain.ONSITE)
    flag = domain.place_flag(point, peers.issue_point(t.issue_id), rule.distance_m)
    vid = domain.verification_id(t.id, t.attempt)
    if not claim_verdict(vid, f"check:{check_id}"):
        raise FailedPrecondition(
            "该任务本次验单已有结论 (this attempt of the task has a verdict already: 已由其他验单决定)",
            reason="already_decided",
            field="task_id",
        )
    at = now()
    metas = []
    for n, ph in enumerate(checked):
        photo_id = f"p{n + 1}"
        # A photo written by an earlier try of the same check is kept.
        with contextlib.suppress(me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            photo = CheckPhotoDoc(id=f"{check_id}:{photo_id}", content_type=ph.content_type, content=ph.content, at=at)
            photo.save(force_insert=True)
        metas.append(
            PhotoMetaDoc(
                id=photo_id,
                filename=ph.filename,
                content_type=ph.content_type,
                size=ph.size,
                sha256=hashlib.sha256(ph.content).hexdigest(),
            )
        )
    doc = CheckDoc(
        id=check_id,
        community_id=t.community_id,
        task_id=t.id,
        issue_id=t.issue_id,
        call_type=t.call_type,
        attempt=t.attempt,
        inspector=p.sub,
        notes=notes,
        photos=metas,
        lat=point[0],
        lon=point[1],
        distance_m=flag.distance_m,
        distance_limit_m=rule.distance_m,
        place_flagged=flag.flagged,
        place_note_zh=flag.note_zh,
        passed=passed,
        reason=why,
        verification_id=vid,
        checked_at=at,
        version=1,
        updated_at=at,
    )
    doc.record(
        _verdict_event(
            passed=passed,
            vid=vid,
            community_id=t.community_id,
            task_id=t.id,
            issue_id=t.issue_id,
            call_type=t.call_type,
            method=domain.ONSITE,
            check_id=check_id,
            attempt=t.attempt,
            crew_ids=t.crew_ids,
            by=p.sub,
            at=at,
            place_flagged=flag.flagged,
            reason=why,
        ),
        subject=f"tasks/{t.id}",
        at=at,
    )
    try:
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        found = CheckDoc.objects(id=check_id).first()
        if found is None:
            raise
        return found
    return doc


def list_checks(community_id: str, task_id: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    p = _caller()
    domain.require_role(p.role, domain.READERS, "list on-site checks")
    asked = community.list_filter(community_id.strip(), p)
    return readmodel.list_checks(asked, task_id.strip(), page_size, page_token)
