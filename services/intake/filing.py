"""Verification before filing (核实立案): a report the tenant's filing rule holds for verification waits, as
`pending_verification`, for a community worker of its community (or a subdistrict admin) to file it
(受理立案: IssueFiled + IssueClassified, dispatch blows the whistle as for any report) or to decline it
(不予立案: IssueDeclined, closed with the reason the reporter reads). Nobody deciding by the deadline
escalates it: a durable timer (services/common/clocks.py, intake's tenant database) flags the issue
overdue (IssueVerificationOverdue, history, the subdistrict's list filter); it keeps waiting for a decision.

Every change goes through intake's one write path (handlers.change_issue: the unit of work, events in the
issue's outbox). The timer's handler decides on the issue's state (it fires at least once, maybe after a
decision): a decided or already escalated issue changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from hongling.events.v1 import intake_events_pb2 as ev

from services.common import clocks, community, unitofwork
from services.common.context import require_tenant
from services.common.errors import InvalidArgument, NotFound
from services.common.principal import Principal
from services.common.settings import get_settings
from services.common.unitofwork import UnitOfWork
from services.intake import domain, handlers, metrics
from services.intake.classify import FILING_DIRECT, FILING_VERIFY, Rules, filing_for
from services.intake.documents import FilingDoc, IssueDoc
from services.intake.handlers import (
    VERIFICATION_DEADLINE,
    _history,
    _issue_missing,
    _mirror,
    _release_claim,
    _set_status,
    _subject,
    _ts,
    change_issue,
    classified_event,
    community_of,
    current_rules,
    schedule_verification,
    verification_key,
)

log = logging.getLogger(__name__)


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _check_duplicate_of(decision: domain.FilingDecision) -> None:
    """The issue a duplicate repeats must be one the caller sees in this tenant (another community's is
    answered as a missing one)."""
    if not decision.duplicate_of:
        return
    found = IssueDoc.objects(id=decision.duplicate_of).only("place").first()
    if found is None or not community.sees(community_of(found)):
        raise InvalidArgument(
            f"duplicate_of: there is no issue {decision.duplicate_of!r} in this tenant that you can see "
            "(未找到所重复的事项)",
            field="duplicate_of",
        )


def decide_filing(
    issue_id: str,
    decision: str,
    by: Principal,
    *,
    reason: str = "",
    referred_to: str = "",
    referred_name: str = "",
    duplicate_of: str = "",
    ask: str = "",
    note: str = "",
    version: int = 0,
    uow: UnitOfWork = unitofwork.MONGO,
) -> tuple[IssueDoc, Rules]:
    """File (accept) or decline a report waiting for verification. INVALID_ARGUMENT names a bad field,
    NOT_FOUND an issue the caller cannot see, FAILED_PRECONDITION (409) an issue that does not wait for a
    decision (decided already, or filed directly); with `version`, ABORTED when it is stale."""
    domain.require_role(by.role, domain.FILING_ROLES, "file or decline reports (核实立案)")
    checked = domain.check_filing_decision(
        issue_id,
        decision,
        reason=reason,
        referred_to=referred_to,
        referred_name=referred_name,
        duplicate_of=duplicate_of,
        ask=ask,
        note=note,
    )
    _check_duplicate_of(checked)
    if version < 0:
        raise InvalidArgument("version must be the version read, or 0 for the current one", field="version")
    tenant = require_tenant()

    def decide(doc: IssueDoc, now: datetime) -> bool:
        domain.check_can_decide(doc.status, checked.decision, doc.id)
        filing = doc.filing
        assert filing is not None  # a pending issue has its filing
        filing.decided_by = by.sub
        filing.decided_at = now
        filing.note = checked.note
        place = doc.place
        where = {"community_id": place.community_id if place else "", "grid_id": place.grid_id if place else ""}
        if checked.decision == domain.DECISION_ACCEPT:
            filing.decision = domain.ACCEPTED
            _set_status(doc, domain.STATUS_CLASSIFIED, "filed", now, domain.history_note("filed"), by.sub)
            filed = ev.IssueFiled(
                issue_id=doc.id,
                tenant=tenant,
                by=by.sub,
                filed_at=_ts(now),
                urgency=doc.urgency,
                category=doc.category,
                note=checked.note,
                **where,
            )
            doc.record(filed, subject=_subject(doc.id), at=now)
            doc.record(classified_event(doc, now), subject=_subject(doc.id), at=now)
            return True
        filing.decision = domain.DECLINED
        filing.decline_reason = checked.reason
        filing.referred_to = checked.referred_to
        filing.referred_name = checked.referred_name
        filing.duplicate_of = checked.duplicate_of
        filing.ask = checked.ask
        text = domain.decline_text(checked)
        _set_status(doc, domain.STATUS_DECLINED, "declined", now, text, by.sub)
        declined = ev.IssueDeclined(
            issue_id=doc.id,
            tenant=tenant,
            by=by.sub,
            declined_at=_ts(now),
            reason=checked.reason,
            referred_to=checked.referred_to,
            referred_name=checked.referred_name,
            duplicate_of=checked.duplicate_of,
            ask=checked.ask,
            note=checked.note,
            status_note_zh=text[0],
            status_note_en=text[1],
            **where,
        )
        doc.record(declined, subject=_subject(doc.id), at=now)
        return True

    doc = change_issue(issue_id, decide, expected_version=version or None, uow=uow)
    if doc is None:
        raise _issue_missing(issue_id)
    try:
        clocks.cancel(verification_key(issue_id))  # decided: no escalation (the handler would skip it anyway)
    except Exception:
        log.warning("verification timer of issue %s left to fire (it changes nothing now)", issue_id, exc_info=True)
    if doc.status == domain.STATUS_DECLINED:
        if doc.dup_claim:
            _release_claim(doc.dup_claim, doc.id)  # closed: new reports near it start their own issue
        cascades = doc.filing is not None and doc.filing.decline_reason in domain.CASCADING_DECLINES
        rules = current_rules(uow)
        for dup in doc.duplicates:
            if cascades:
                change_issue(dup, _mirror(doc), uow=uow)  # the same matter: its duplicates are closed with it
            else:
                _verify_on_its_own(dup, doc.id, rules, uow)  # about that one report: each is decided on its own
    metrics.FILING_DECISIONS.labels(tenant, doc.filing.decision if doc.filing else "").inc()
    return doc, current_rules(uow)


def _verify_on_its_own(dup_id: str, original_id: str, rules: Rules, uow: UnitOfWork) -> None:
    """A duplicate of a report declined as abusive or for want of information: no longer its duplicate, it
    waits for a decision of its own (its class's filing rule: verified by a deadline, or filed directly).
    Idempotent: a duplicate that no longer follows the original is left as it is."""
    found = IssueDoc.objects(id=dup_id).only("status", "duplicate_of", "category", "urgency").first()
    if found is None or found.duplicate_of != original_id or found.status != domain.STATUS_DUPLICATE:
        return
    rule = filing_for(rules, found.category, found.urgency, get_settings().filing_default)
    due = handlers.utcnow() + timedelta(minutes=rule.deadline_minutes)
    if rule.mode == FILING_VERIFY:
        schedule_verification(dup_id, due)  # the timer first, as at creation: it finds the issue's state

    def detach(dup: IssueDoc, now: datetime) -> bool:
        if dup.duplicate_of != original_id or dup.status != domain.STATUS_DUPLICATE:
            return False
        dup.duplicate_of = ""
        note = domain.history_note("detached", original=original_id)
        if rule.mode == FILING_DIRECT:
            dup.filing = FilingDoc(mode=FILING_DIRECT, reason=rule.reason)
            _set_status(dup, domain.STATUS_CLASSIFIED, "classified", now, note, "intake")
            dup.record(classified_event(dup, now), subject=_subject(dup.id), at=now)
        else:
            dup.filing = FilingDoc(mode=FILING_VERIFY, reason=rule.reason, due_at=due)
            _set_status(dup, domain.STATUS_PENDING_VERIFICATION, "pending_verification", now, note, "intake")
        return True

    change_issue(dup_id, detach, uow=uow)


@clocks.handler(VERIFICATION_DEADLINE)
def on_verification_deadline(timer: clocks.Timer) -> None:
    """Nobody filed or declined the report by its deadline: flag it overdue and escalate it to the subdistrict
    (IssueVerificationOverdue, a history step); it keeps waiting for a decision. Idempotent."""
    issue_id = timer.payload.get("issue_id", "")
    if not issue_id:
        log.warning("verification timer %s has no issue_id: dropped", timer.key)
        return
    tenant = require_tenant()
    escalated: list[bool] = []

    def escalate(doc: IssueDoc, now: datetime) -> bool:
        filing = doc.filing
        if doc.status != domain.STATUS_PENDING_VERIFICATION or filing is None or filing.overdue_at is not None:
            return False  # decided meanwhile, or escalated already
        due = _aware(filing.due_at)
        if due is not None and due > now:
            return False  # not due yet (a timer fires at its time; the issue's own deadline decides)
        filing.overdue_at = now
        _history(doc, "verification_overdue", now, "intake", domain.history_note("verification_overdue"))
        place = doc.place
        overdue = ev.IssueVerificationOverdue(
            issue_id=doc.id,
            tenant=tenant,
            community_id=place.community_id if place else "",
            grid_id=place.grid_id if place else "",
            due_at=_ts(due or now),
            escalated_at=_ts(now),
            escalated_to="subdistrict",
            urgency=doc.urgency,
            category=doc.category,
        )
        doc.record(overdue, subject=_subject(doc.id), at=now)
        escalated[:] = [True]
        return True

    try:
        doc = change_issue(issue_id, escalate)
    except NotFound:
        doc = None
    if doc is None:
        log.info(
            "verification timer %s: no issue %s in tenant %s (creation failed): dropped", timer.key, issue_id, tenant
        )
        return
    if escalated:
        metrics.VERIFICATION_OVERDUE.labels(tenant, doc.urgency or "").inc()
