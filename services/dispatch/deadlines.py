"""The clocks of calls and tasks: report-in and completion deadlines, reminders before them, escalation
after a missed completion (community → subdistrict at once → district after a further period).

Every clock is a durable timer (services/common/clocks.py), nothing lives only in memory. A call and a task
each have ONE timer, keyed by the aggregate and set at its next clock point (one timer write per aggregate
and change, where a timer per clock would cost two to three):

- ``w:<whistle>``: dispatch.report_in_reminder at report_in_by − reminder (DeadlineReminder naming the targets
  that have not answered), then dispatch.report_in_deadline at report_in_by: report-in closes and the targets
  that did not answer are recorded silent, per unit/person (DeadlineMissed report_in, silent_kinds/silent_ids).
- ``t:<task>``: dispatch.completion_reminder at complete_by − reminder (DeadlineReminder to the crew), then
  dispatch.completion_deadline at complete_by (DeadlineMissed completion + Escalated subdistrict), then
  dispatch.district_escalation at complete_by + the rule's period (Escalated district).

`schedule_whistle` / `schedule_task` compute the next clock point from the aggregate's state and (re)set its
timer, or cancel it when nothing is left; every handler ends by calling them on the state it left, so the
timer moves on to the next point (the timer worker keeps a timer its handler scheduled again). Handlers are
idempotent and decide on the current state (timers fire at least once, and may fire after the state moved
on): a finished task, a closed call, a reminder already sent or a deadline not yet due change nothing. A done
or cancelled task's timer is cancelled (and set again when a done task is rejected); a call's when all its
tasks are finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import pymongo.errors
from hongling.events.v1 import dispatch_events_pb2 as dev

from services.common import clocks
from services.common.context import require_tenant
from services.dispatch import domain, handlers, metrics
from services.dispatch.documents import TaskDoc, WhistleDoc

log = logging.getLogger(__name__)

REPORT_IN_REMINDER = "dispatch.report_in_reminder"
REPORT_IN_DEADLINE = "dispatch.report_in_deadline"
COMPLETION_REMINDER = "dispatch.completion_reminder"
COMPLETION_DEADLINE = "dispatch.completion_deadline"
DISTRICT_ESCALATION = "dispatch.district_escalation"
SUBDISTRICT, DISTRICT = "subdistrict", "district"


def whistle_key(whistle_id: str) -> str:
    return f"w:{whistle_id}"


def task_key(task_id: str) -> str:
    return f"t:{task_id}"


# ---------------------------------------------------------------- scheduling


def _retrying(schedule: Callable[[], None]) -> None:
    """Run a scheduling call, again when two writers upserted the same new key at the same moment (FerretDB then
    refuses the second insert; the second try updates the timer the first made)."""
    for attempt in range(3):
        try:
            schedule()
            return
        except pymongo.errors.DuplicateKeyError:
            if attempt == 2:
                raise
            time.sleep(0.05)


def _schedule(key: str, kind: str, due: datetime, payload: Mapping[str, str]) -> None:
    _retrying(lambda: clocks.schedule(key, kind, due, payload))


def next_whistle_clock(w: WhistleDoc, rules: domain.Rules, now: datetime) -> tuple[str, datetime] | None:
    """(kind, when) of the call's next clock point; None once its report-in is closed."""
    return _whistle_clock(
        w.call_type, handlers.aware(w.report_in_by), bool(w.report_in_closed), bool(w.reminded), rules, now
    )


def _whistle_clock(
    call_type: str, due: datetime | None, closed: bool, reminded: bool, rules: domain.Rules, now: datetime
) -> tuple[str, datetime] | None:
    if closed or due is None:
        return None
    remind = domain.reminder_at(due, rules.rule(call_type).report_in_reminder, now)
    if remind is not None and not reminded:
        return REPORT_IN_REMINDER, remind
    return REPORT_IN_DEADLINE, due


def next_task_clock(t: TaskDoc, rules: domain.Rules, now: datetime) -> tuple[str, datetime] | None:
    """(kind, when) of the task's next clock point; None when finished or escalated to the district."""
    return _task_clock(
        t.call_type or domain.SERVICE,
        handlers.aware(t.complete_by),
        t.status,
        t.escalation_level or "",
        list(t.reminded or []),
        rules,
        now,
    )


def _task_clock(
    call_type: str,
    due: datetime | None,
    status: str,
    escalation_level: str,
    reminded: Sequence[str],
    rules: domain.Rules,
    now: datetime,
) -> tuple[str, datetime] | None:
    if status in domain.FINISHED or due is None:
        return None
    rule = rules.rule(call_type)
    if not escalation_level:
        remind = domain.reminder_at(due, rule.completion_reminder, now)
        if remind is not None and _reminder_tag(due) not in reminded:
            return COMPLETION_REMINDER, remind
        return COMPLETION_DEADLINE, due
    if escalation_level == SUBDISTRICT:
        return DISTRICT_ESCALATION, domain.district_escalation_at(due, rule)
    return None


def schedule_whistle(w: WhistleDoc, rules: domain.Rules) -> None:
    """Set the call's timer to its next clock point (or cancel it)."""
    nxt = next_whistle_clock(w, rules, handlers.utcnow())
    if nxt is None:
        clocks.cancel(whistle_key(w.id))
    else:
        _schedule(whistle_key(w.id), nxt[0], nxt[1], {"whistle_id": w.id})


def schedule_task(t: TaskDoc, rules: domain.Rules) -> None:
    """Set the task's timer to its next clock point (or cancel it: then also the clocks of its calls whose
    tasks are all finished)."""
    nxt = next_task_clock(t, rules, handlers.utcnow())
    if nxt is None:
        cancel_task(t)
    else:
        _schedule(task_key(t.id), nxt[0], nxt[1], {"task_id": t.id})


def schedule_created(
    whistle_id: str, task_id: str, call_type: str, report_in_by: datetime, complete_by: datetime, rules: domain.Rules
) -> None:
    """The first clocks of a call and its task, both just created (open, nothing reminded): one insert for the
    two timers."""
    now = handlers.utcnow()
    timers: list[tuple[str, str, datetime, Mapping[str, str]]] = []
    if (nxt := _whistle_clock(call_type, report_in_by, False, False, rules, now)) is not None:
        timers.append((whistle_key(whistle_id), nxt[0], nxt[1], {"whistle_id": whistle_id}))
    if (nxt := _task_clock(call_type, complete_by, domain.OPEN, "", (), rules, now)) is not None:
        timers.append((task_key(task_id), nxt[0], nxt[1], {"task_id": task_id}))
    _retrying(lambda: clocks.schedule_new_many(timers))


def cancel_task(t: TaskDoc) -> None:
    """A done or cancelled task: its clock stops, and so do those of calls whose tasks are all finished."""
    clocks.cancel(task_key(t.id))
    if t.status not in domain.FINISHED:
        return
    for wid in t.whistle_ids or []:
        w = WhistleDoc.objects(id=wid).exclude("outbox").first()
        if w is None:
            continue
        tasks = handlers.whistle_tasks([w])
        tasks[t.id] = t
        if not handlers.whistle_open(w, tasks):
            clocks.cancel(whistle_key(wid))


def _reminder_tag(due: datetime) -> str:
    return f"completion@{int(due.timestamp())}"


def _whistle_moves_on(whistle_id: str) -> None:
    """At the end of a call's timer handler: its timer moves to the next clock point of the state it left."""
    w = WhistleDoc.objects(id=whistle_id).exclude("outbox").first()
    if w is not None:
        schedule_whistle(w, handlers.current_rules())


def _task_moves_on(task_id: str) -> None:
    t = TaskDoc.objects(id=task_id).exclude("outbox", "history").first()
    if t is not None:
        schedule_task(t, handlers.current_rules())


# ---------------------------------------------------------------- handlers


def _waiting_targets(w: WhistleDoc) -> list[tuple[str, str]]:
    return [(t.kind, t.id) for t in w.targets if not t.answer]


@clocks.handler(REPORT_IN_REMINDER)
def on_report_in_reminder(timer: clocks.Timer) -> None:
    """Before the report-in deadline: a reminder naming the targets that have not answered yet."""
    whistle_id = timer.payload.get("whistle_id", "")
    w = WhistleDoc.objects(id=whistle_id).exclude("outbox").first() if whistle_id else None
    if w is None:
        return
    if not (w.report_in_closed or w.reminded) and handlers.whistle_open(w, handlers.whistle_tasks([w])):
        tenant = require_tenant()

        def mutate(w: WhistleDoc, now: datetime, fx: handlers.Effects) -> bool:
            due = handlers.aware(w.report_in_by)
            if w.reminded or w.report_in_closed or due is None or now >= due:
                return False
            w.reminded = True
            waiting = _waiting_targets(w)
            w.record(
                dev.DeadlineReminder(
                    tenant=tenant,
                    deadline="report_in",
                    whistle_id=w.id,
                    issue_id=w.issue_ids[0] if len(w.issue_ids) == 1 else "",
                    due_at=handlers.ts(due),
                    reminded_at=handlers.ts(now),
                    waiting_kinds=[k for k, _ in waiting],
                    waiting_ids=[i for _, i in waiting],
                    call_type=w.call_type,
                    community_id=w.community_id or "",
                ),
                subject=f"whistles/{w.id}",
                at=now,
            )
            fx.append(lambda: metrics.REMINDERS.labels(tenant, "report_in").inc())
            return True

        handlers.change_whistle(whistle_id, mutate)
    _whistle_moves_on(whistle_id)


@clocks.handler(REPORT_IN_DEADLINE)
def on_report_in_deadline(timer: clocks.Timer) -> None:
    """Report-in closes: the targets that did not answer are recorded silent, per unit or person."""
    whistle_id = timer.payload.get("whistle_id", "")
    w = WhistleDoc.objects(id=whistle_id).exclude("outbox").first() if whistle_id else None
    if w is None:
        return
    due = handlers.aware(w.report_in_by)
    if not w.report_in_closed and (due is None or handlers.utcnow() >= due):
        # A call whose tasks were all finished before the deadline needs no answers any more.
        finished_early = not handlers.whistle_open(w, handlers.whistle_tasks([w]))
        tenant = require_tenant()

        def mutate(w: WhistleDoc, now: datetime, fx: handlers.Effects) -> bool:
            if w.report_in_closed:
                return False
            w.report_in_closed = True
            silent = [] if finished_early else [t for t in w.targets if not t.answer]
            for t in silent:
                t.silent = True
            if silent:
                w.record(
                    dev.DeadlineMissed(
                        tenant=tenant,
                        deadline="report_in",
                        whistle_id=w.id,
                        issue_id=w.issue_ids[0] if len(w.issue_ids) == 1 else "",
                        silent_kinds=[t.kind for t in silent],
                        silent_ids=[t.id for t in silent],
                        due_at=handlers.ts(handlers.aware(w.report_in_by)),
                        missed_at=handlers.ts(now),
                        call_type=w.call_type,
                        community_id=w.community_id or "",
                    ),
                    subject=f"whistles/{w.id}",
                    at=now,
                )
                call, count = w.call_type, len(silent)
                fx.append(lambda: metrics.DEADLINES_MISSED.labels(tenant, "report_in", call).inc())
                fx.append(lambda: metrics.SILENT_TARGETS.labels(tenant, call).inc(count))
            return True

        handlers.change_whistle(whistle_id, mutate)
    _whistle_moves_on(whistle_id)  # closed: the timer is cancelled; not yet due (moved): set again


def _task(timer: clocks.Timer) -> TaskDoc | None:
    task_id = timer.payload.get("task_id", "")
    t = TaskDoc.objects(id=task_id).exclude("outbox", "history").first() if task_id else None
    if t is None or t.status in domain.FINISHED:
        return None  # nothing more to watch: the timer is deleted after this firing
    return t


@clocks.handler(COMPLETION_REMINDER)
def on_completion_reminder(timer: clocks.Timer) -> None:
    """Before the completion deadline: a reminder to the crew."""
    t = _task(timer)
    if t is None:
        return
    tenant = require_tenant()

    def mutate(t: TaskDoc, now: datetime, fx: handlers.Effects) -> bool:
        due = handlers.aware(t.complete_by)
        if t.status in domain.FINISHED or due is None or now >= due or _reminder_tag(due) in (t.reminded or []):
            return False
        t.reminded.append(_reminder_tag(due))
        handlers.add_history(t, "reminder", now, handlers.DISPATCH, t.status, t.status)
        t.record(
            dev.DeadlineReminder(
                tenant=tenant,
                deadline="completion",
                whistle_id=t.whistle_id or "",
                task_id=t.id,
                issue_id=t.issue_id,
                due_at=handlers.ts(due),
                reminded_at=handlers.ts(now),
                waiting_kinds=[c.kind for c in t.crew],
                waiting_ids=[c.id for c in t.crew],
                call_type=t.call_type or "",
                community_id=t.community_id or "",
            ),
            subject=f"tasks/{t.id}",
            at=now,
        )
        fx.append(lambda: metrics.REMINDERS.labels(tenant, "completion").inc())
        return True

    handlers.change_task(t.id, mutate)
    _task_moves_on(t.id)


@clocks.handler(COMPLETION_DEADLINE)
def on_completion_deadline(timer: clocks.Timer) -> None:
    """Not finished by its deadline: DeadlineMissed, and the task goes up to the subdistrict."""
    t = _task(timer)
    if t is None:
        return
    due = handlers.aware(t.complete_by)
    if not t.escalation_level and (due is None or handlers.utcnow() >= due):
        tenant = require_tenant()

        def mutate(t: TaskDoc, now: datetime, fx: handlers.Effects) -> bool:
            due = handlers.aware(t.complete_by)
            if t.status in domain.FINISHED or t.escalation_level or due is None or now < due:
                return False
            t.deadline_missed = True
            t.escalation_level = SUBDISTRICT
            lead_kind, lead_id = handlers.lead_pair(t)
            handlers.add_history(t, "deadline_missed", now, handlers.DISPATCH, t.status, t.status)
            handlers.add_history(t, "escalated", now, handlers.DISPATCH, t.status, t.status, level=SUBDISTRICT)
            common = {
                "tenant": tenant,
                "task_id": t.id,
                "issue_id": t.issue_id,
                "whistle_id": t.whistle_id or "",
                "call_type": t.call_type or "",
                "community_id": t.community_id or "",
                "lead_kind": lead_kind,
                "lead_id": lead_id,
                "due_at": handlers.ts(due),
            }
            t.record(
                dev.DeadlineMissed(deadline="completion", missed_at=handlers.ts(now), **common),
                subject=f"tasks/{t.id}",
                at=now,
            )
            t.record(
                dev.Escalated(
                    level=SUBDISTRICT,
                    reason="逾期未办结，上报街道督办 (completion deadline missed: escalated to the subdistrict)",
                    escalated_at=handlers.ts(now),
                    **common,
                ),
                subject=f"tasks/{t.id}",
                at=now,
            )
            call = t.call_type or domain.SERVICE
            fx.append(lambda: metrics.DEADLINES_MISSED.labels(tenant, "completion", call).inc())
            fx.append(lambda: metrics.ESCALATIONS.labels(tenant, SUBDISTRICT).inc())
            return True

        handlers.change_task(t.id, mutate)
    _task_moves_on(t.id)  # next: the district escalation (or the deadline again, if it moved)


@clocks.handler(DISTRICT_ESCALATION)
def on_district_escalation(timer: clocks.Timer) -> None:
    """Still not finished a further period after the missed deadline: up to the district."""
    t = _task(timer)
    if t is None:
        return
    tenant = require_tenant()

    def mutate(t: TaskDoc, now: datetime, fx: handlers.Effects) -> bool:
        if t.status in domain.FINISHED or t.escalation_level != SUBDISTRICT:
            return False
        t.escalation_level = DISTRICT
        lead_kind, lead_id = handlers.lead_pair(t)
        handlers.add_history(t, "escalated", now, handlers.DISPATCH, t.status, t.status, level=DISTRICT)
        t.record(
            dev.Escalated(
                tenant=tenant,
                task_id=t.id,
                issue_id=t.issue_id,
                whistle_id=t.whistle_id or "",
                level=DISTRICT,
                reason="上报街道后仍未办结，上报区督办 (still unfinished after the subdistrict: up to the district)",
                escalated_at=handlers.ts(now),
                community_id=t.community_id or "",
                call_type=t.call_type or "",
                due_at=handlers.ts(handlers.aware(t.complete_by)),
                lead_kind=lead_kind,
                lead_id=lead_id,
            ),
            subject=f"tasks/{t.id}",
            at=now,
        )
        fx.append(lambda: metrics.ESCALATIONS.labels(tenant, DISTRICT).inc())
        return True

    handlers.change_task(t.id, mutate)
    _task_moves_on(t.id)  # the last clock: nothing more is scheduled
