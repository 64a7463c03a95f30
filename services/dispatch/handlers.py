"""Dispatch commands and event handlers: load, apply the domain rules, write state and events in one write.

Concurrency. Every change of a task, a call or the rules goes through the unit of work
(services/common/unitofwork.py): claim version v+1 by an insert with a unique _id, then only the winner
writes it. Of two writers holding the same version exactly one wins, on MongoDB and on FerretDB v1's
unisolated updates alike; the loser re-reads and decides again on the new state (a claim for the last place
then finds no place left and is refused). Two dispatch processes in one consumer group therefore never
double-assign or over-fill a task. Creations insert by a deterministic _id (the task and the call of an
issue derive from the issue id), so a replayed event or a second process finds what the first made and
changes nothing.

Effects outside the document (timers, metrics) run after the write succeeded, once.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import mongoengine as me
import pymongo.errors
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as vev
from hongling.events.v1 import intake_events_pb2 as iev
from hongling.events.v1 import org_events_pb2 as oev

from services.common import community, outbox, rollups, unitofwork
from services.common.context import require_tenant
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.events import CloudEvent, PoisonEvent
from services.common.outbox import OutboxDocument
from services.common.principal import Principal
from services.common.times import aware, ts
from services.common.unitofwork import Conflicts, UnitOfWork
from services.dispatch import deadlines, domain, matching, metrics, readmodel
from services.dispatch.directory import directory
from services.dispatch.documents import (
    AssignmentDoc,
    CrewDoc,
    DispatchRulesDoc,
    IssueLinkDoc,
    ReportDoc,
    TargetDoc,
    TaskDoc,
    TaskEventDoc,
    WhistleDoc,
)

log = logging.getLogger(__name__)

DISPATCH = "service:dispatch"
RULES_ID = "rules"
RULES_TTL_SECONDS = 2.0
CHANGE_DEADLINE_SECONDS = 10.0
PAGE_DEFAULT = 50
PAGE_MAX = 200
MAX_ISSUES_PER_CALL = 50
IDEMPOTENCY_KEY_MAX = 200
RANK_FOR_OVERRIDE = 100  # an assignee among this many best-ranked helpers is "from the list"

D = TypeVar("D", bound=OutboxDocument)
Effects = list[Callable[[], None]]


# ---------------------------------------------------------------- time


def ms(at: datetime) -> datetime:
    """UTC, to the millisecond (what the database keeps): replays compute the same deadlines."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def utcnow() -> datetime:
    return ms(datetime.now(UTC))


def _event_at(stamp: Timestamp, event: CloudEvent) -> datetime:
    at = stamp.ToDatetime(tzinfo=UTC) if (stamp.seconds or stamp.nanos) else event.time
    return ms(at)


# ---------------------------------------------------------------- rules

_rules_cache: dict[str, tuple[float, domain.Rules]] = {}


def current_rules(uow: UnitOfWork = unitofwork.MONGO) -> domain.Rules:
    """The tenant's dispatch rules: its stored ones, or the defaults (version 0)."""
    tenant = require_tenant()
    cached = _rules_cache.get(tenant)
    if cached is not None and time.monotonic() - cached[0] < RULES_TTL_SECONDS:
        return cached[1]
    read_at = time.monotonic()
    doc = uow.load(DispatchRulesDoc, RULES_ID)
    rules = domain.DEFAULT_RULES if doc is None else _rules_of(doc)
    _rules_cache[tenant] = (read_at, rules)
    return rules


def _rules_of(doc: DispatchRulesDoc) -> domain.Rules:
    return domain.rules_from_dict(doc.rules, doc.version, aware(doc.updated_at), doc.updated_by)


RULES_CONFLICTS = Conflicts(
    stale=lambda _id, version, expected: Aborted(
        f"the dispatch rules are at version {version}, not {expected}: reload and retry (规则已被修改)",
        field="version",
    ),
    raced=lambda _id: Aborted("the dispatch rules were changed by someone else at the same moment: reload and retry"),
    busy=lambda _id: Aborted("the dispatch rules kept changing under this update; retry (请稍后重试)"),
)


def put_rules(
    calls: Sequence[dict[str, Any]],
    matching_targets: int,
    expected_version: int,
    by: Principal,
    *,
    uow: UnitOfWork = unitofwork.MONGO,
) -> domain.Rules:
    """Replace the tenant's rules; `expected_version` is the one the caller read (0: the defaults)."""
    domain.require_role(by.role, domain.RULES_WRITERS, "change the dispatch rules")
    checked = domain.check_rules(calls, matching_targets)

    def replace(doc: DispatchRulesDoc, _now: datetime) -> bool:
        doc.rules = domain.rules_to_dict(checked)
        doc.updated_by = by.sub
        return True

    written = unitofwork.change(
        uow,
        DispatchRulesDoc,
        "dispatch_rules",
        RULES_ID,
        replace,
        conflicts=RULES_CONFLICTS,
        now=utcnow,
        expected_version=expected_version,
        fresh=lambda: DispatchRulesDoc(id=RULES_ID, version=0),
    ).doc
    assert written is not None
    _rules_cache.pop(require_tenant(), None)
    return _rules_of(written)


# ---------------------------------------------------------------- versioned writes


def _conflicts(kind: str) -> Conflicts:
    return Conflicts(
        stale=lambda doc_id, version, expected: Aborted(
            f"{kind} {doc_id} is at version {version}, not {expected}: reload and retry (已被他人修改，请刷新后重试)",
            field="expected_version",
        ),
        raced=lambda doc_id: Aborted(
            f"{kind} {doc_id} was changed by someone else at the same moment: reload and retry "
            "(已被他人同时修改，请刷新后重试)",
            field="expected_version",
        ),
        busy=lambda doc_id: Aborted(f"{kind} {doc_id} kept changing under this update; retry (请稍后重试)"),
    )


CONFLICTS = {"task": _conflicts("task"), "whistle": _conflicts("whistle")}


def _change(
    cls: type[D],
    prefix: str,
    doc_id: str,
    mutate: Callable[[D, datetime, Effects], bool],
    *,
    expected_version: int = 0,
    missing: Callable[[], Exception],
    uow: UnitOfWork = unitofwork.MONGO,
) -> D:
    """Apply `mutate` to the document and write it as its next version (services/common/unitofwork.py);
    `mutate` returns False when there is nothing to change. With `expected_version` a stale version or a
    lost race is ABORTED; without it a lost race is decided again on a fresh read (for a few seconds). The
    effects `mutate` queued run once the write succeeded (those of a lost attempt are dropped)."""
    effects: Effects = []

    def attempt(doc: D, now: datetime) -> bool:
        effects.clear()
        return mutate(doc, now, effects)

    done = unitofwork.change(
        uow,
        cls,
        f"{prefix}:{doc_id}",
        doc_id,
        attempt,
        conflicts=CONFLICTS.get(prefix) or _conflicts(prefix),
        now=utcnow,
        expected_version=expected_version or None,
        # Another community's task or call is, to a community worker, one that does not exist (before its
        # version is compared: a stale version must not tell that it exists).
        exists=lambda doc: community.sees(doc.community_id),
        deadline=CHANGE_DEADLINE_SECONDS,
    )
    if done.doc is None:
        raise missing()
    if done.written:
        for effect in effects:
            try:
                effect()
            except Exception:
                log.exception("after-write effect on %s %s failed", prefix, doc_id)
    return done.doc


def _no_task(task_id: str, field: str = "task_id") -> NotFound:
    return NotFound(community.not_found_message("task", task_id), field=field)


def _task_missing(task_id: str) -> Callable[[], Exception]:
    return lambda: _no_task(task_id)


def _whistle_missing(whistle_id: str) -> Callable[[], Exception]:
    return lambda: NotFound(community.not_found_message("call", whistle_id), field="whistle_id")


def change_task(
    task_id: str,
    mutate: Callable[[TaskDoc, datetime, Effects], bool],
    *,
    expected_version: int = 0,
    uow: UnitOfWork = unitofwork.MONGO,
) -> TaskDoc:
    return _change(
        TaskDoc,
        "task",
        task_id,
        mutate,
        expected_version=expected_version,
        missing=_task_missing(task_id),
        uow=uow,
    )


def change_whistle(
    whistle_id: str,
    mutate: Callable[[WhistleDoc, datetime, Effects], bool],
    *,
    expected_version: int = 0,
    uow: UnitOfWork = unitofwork.MONGO,
) -> WhistleDoc:
    return _change(
        WhistleDoc,
        "whistle",
        whistle_id,
        mutate,
        expected_version=expected_version,
        missing=_whistle_missing(whistle_id),
        uow=uow,
    )


# ---------------------------------------------------------------- task helpers


def lead_of(task: TaskDoc) -> CrewDoc | None:
    return next((c for c in task.crew or [] if c.role == domain.LEAD), None)


def task_places(task: TaskDoc) -> domain.Places:
    return domain.places(
        task.lead_places or 1,
        task.assistant_places or 0,
        [domain.Member(c.kind, c.id, c.role) for c in task.crew or []],
    )


def places_left(task: TaskDoc) -> int:
    """Places still open for claims (none on a finished or rejected task)."""
    if task.status in domain.FINISHED or task.status == domain.REJECTED:
        return 0
    p = task_places(task)
    return p.left if task.status == domain.OPEN else p.assistants_free


def is_overdue(task: TaskDoc, now: datetime | None = None) -> bool:
    due = aware(task.complete_by)
    return due is not None and task.status not in domain.FINISHED and (now or utcnow()) > due


def add_history(
    task: TaskDoc, action: str, at: datetime, by: str, frm: str = "", to: str = "", reason: str = "", **kw: str
) -> None:
    zh, en = domain.note(action, reason=reason, **kw)
    task.history.append(
        TaskEventDoc(at=at, action=action, from_status=frm, to_status=to, reason=reason, by=by, note_zh=zh, note_en=en)
    )


def _set_status(
    task: TaskDoc,
    to: str,
    action: str,
    at: datetime,
    by: str,
    fx: Effects,
    *,
    reason: str = "",
    released: CrewDoc | None = None,
    **note_kw: str,
) -> None:
    """Move the task to `to`, with its history step and its TaskStatusChanged."""
    frm = task.status
    task.status = to
    add_history(task, action, at, by, frm, to, reason, **note_kw)
    lead = released or lead_of(task)
    msg = dev.TaskStatusChanged(
        task_id=task.id,
        issue_id=task.issue_id,
        tenant=require_tenant(),
        from_status=frm,
        to_status=to,
        reason=reason,
        by=by,
        changed_at=ts(at),
        assignee_kind=lead.kind if lead else "",
        assignee_id=lead.id if lead else "",
        community_id=task.community_id or "",
        call_type=task.call_type or "",
        crew_ids=[f"{c.kind}:{c.id}" for c in task.crew or []],
    )
    task.record(msg, subject=f"tasks/{task.id}", at=at)
    tenant = require_tenant()
    fx.append(lambda: metrics.TRANSITIONS.labels(tenant, to).inc())


def _remove_crew(task: TaskDoc, member: CrewDoc) -> None:
    task.crew = [c for c in task.crew if not (c.kind == member.kind and c.id == member.id)]
    task.crew_ids = [c.id for c in task.crew]


def need_of(task: TaskDoc) -> matching.Need:
    return need_from({f: getattr(task, f) for f in NEED_FIELDS})


NEED_FIELDS = ("skills", "services", "resources", "category", "hazards", "community_id", "grid_id")


def need_from(fields: Mapping[str, Any]) -> matching.Need:
    """The task's need from its stored fields (NEED_FIELDS): what it was given, or its category's."""
    community, grid = str(fields.get("community_id") or ""), str(fields.get("grid_id") or "")
    skills, services, resources = (list(fields.get(f) or []) for f in ("skills", "services", "resources"))
    if skills or services or resources:
        return matching.Need(tuple(skills), tuple(services), tuple(resources), community, grid)
    return matching.need_for(str(fields.get("category") or ""), list(fields.get("hazards") or []), community, grid)


# ---------------------------------------------------------------- targets


def find_targets(
    need: matching.Need,
    community_id: str,
    grid_id: str,
    call_type: str,
    rules: domain.Rules,
    extra: Iterable[domain.TargetIn] = (),
) -> list[domain.TargetIn]:
    """Who a call goes to: the community's member units serving the grid (every unit of the community for an
    emergency), the best-ranked helpers for the need, and anyone named by hand.

    A call is never held back because org cannot be asked: it goes out with the targets that could be found
    (logged), and anyone may still report in."""
    area: list[domain.TargetIn] = []
    try:
        for u in directory.units_of(community_id):
            if domain.unit_serves(u.serves_grid_ids, grid_id, call_type):
                area.append(
                    domain.TargetIn(
                        domain.MEMBER_UNIT,
                        u.id,
                        u.name_zh,
                        "serves_area",
                        ("服务本社区/网格的成员单位 / member unit serving this community or grid",),
                    )
                )
    except Exception:
        log.warning("member units of %s could not be listed: the call goes without them", community_id, exc_info=True)
    matched: list[domain.TargetIn] = []
    if rules.matching_targets > 0:
        try:
            ranked, _ = matching.rank_candidates(need, limit=rules.matching_targets)
            for r in ranked:
                kind = domain.KIND_ALIASES.get(r.kind, r.kind)
                directory.remember(kind, r.id, r.name_zh)
                matched.append(domain.TargetIn(kind, r.id, r.name_zh, "matching", tuple(r.reasons)))
        except Exception:
            log.warning("candidates for a call could not be ranked: the call goes without them", exc_info=True)
    return domain.merge_targets(area, matched, extra)


def _target_docs(targets: Iterable[domain.TargetIn]) -> list[TargetDoc]:
    return [
        TargetDoc(kind=t.kind, id=t.id, name_zh=t.name_zh, source=t.source, reasons=list(t.reasons)) for t in targets
    ]


def _whistle_blown(w: WhistleDoc) -> dev.WhistleBlown:
    return dev.WhistleBlown(
        whistle_id=w.id,
        tenant=require_tenant(),
        issue_ids=list(w.issue_ids),
        call_type=w.call_type,
        community_id=w.community_id or "",
        grid_id=w.grid_id or "",
        report_in_by=ts(w.report_in_by),
        complete_by=ts(w.complete_by),
        blown_at=ts(w.blown_at),
        task_ids=list(w.task_ids),
        target_kinds=[t.kind for t in w.targets],
        target_ids=[t.id for t in w.targets],
        blown_by=w.blown_by or DISPATCH,
        manual=bool(w.manual),
    )


def _insert(doc: OutboxDocument) -> OutboxDocument | None:
    """Insert a new document; None when one with its _id exists already (a replay or another process)."""
    try:
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        return None
    return doc


# ---------------------------------------------------------------- events from intake


def on_issue_classified(event: CloudEvent, msg: iev.IssueClassified) -> None:
    """A classified issue gets its task and blows its call (the type follows the class). Deterministic ids:
    a replayed event (or a second process) finds both and changes nothing; timers are (re)scheduled by
    key, which moves nothing."""
    if not msg.issue_id:
        raise PoisonEvent(f"IssueClassified {event.id} has no issue_id")
    tenant = require_tenant()
    at = _event_at(msg.classified_at, event)
    rules = current_rules()
    call_type = domain.call_type_for(msg.urgency)
    rule = rules.rule(call_type)
    dl = domain.deadlines_for(rule, at)
    task_id = domain.task_id_for_issue(msg.issue_id)
    whistle_id = domain.whistle_id_for_issue(msg.issue_id)
    need = matching.need_for(msg.category, list(msg.hazards), msg.community_id, msg.grid_id)
    # Written insert first, without a look beforehand: a replay (rare) finds its task and call by their
    # duplicate _ids, where a look before every insert would cost every event a read. Who the call goes to
    # is asked of org before anything is written, so the task and its call appear within moments of each
    # other; the task is written before its call, so a call that exists means its task does too.
    targets = find_targets(need, msg.community_id, msg.grid_id, call_type, rules)
    task_son = created_task(task_id, whistle_id, msg, event.id, at, call_type, need, rule.assistant_places, dl)
    whistle_son = created_whistle(whistle_id, task_id, msg, event.id, at, call_type, targets, dl)
    task_created, whistle_created = outbox.insert_created([(TaskDoc, task_son), (WhistleDoc, whistle_son)])
    if whistle_created:
        metrics.WHISTLES_BLOWN.labels(tenant, call_type, "false").inc()
    if task_created and whistle_created:
        # Both timers in one insert.
        deadlines.schedule_created(whistle_id, task_id, call_type, dl.report_in_by, dl.complete_by, rules)
        return
    # A replay (or a crash between the two inserts): each clock set to where its document is now.
    whistle = WhistleDoc.objects(id=whistle_id).exclude("outbox").first()
    if whistle is not None:
        deadlines.schedule_whistle(whistle, rules)
    task = TaskDoc.objects(id=task_id).exclude("outbox", "history").first()
    if task is not None:
        deadlines.schedule_task(task, rules)


def created_task(
    task_id: str,
    whistle_id: str,
    msg: iev.IssueClassified,
    event_id: str,
    at: datetime,
    call_type: str,
    need: matching.Need,
    assistant_places: int,
    dl: domain.Deadlines,
) -> dict[str, Any]:
    """A classified issue's new task as stored (TaskDoc's fields, with its history step and TaskCreated)."""
    zh, en = domain.note("created", call_type=call_type)
    created = dev.TaskCreated(
        task_id=task_id, issue_id=msg.issue_id, tenant=require_tenant(), status=domain.OPEN, created_at=ts(at)
    )
    return {
        "_id": task_id,
        "outbox": [outbox.stored_event(created, f"tasks/{task_id}", at)],
        "issue_id": msg.issue_id,
        "status": domain.OPEN,
        "created_at": at,
        "source_event_id": event_id,
        "title": msg.title,
        "category": msg.category,
        "urgency": msg.urgency,
        "call_type": call_type,
        "community_id": msg.community_id,
        "grid_id": msg.grid_id,
        "hazards": list(msg.hazards),
        "affected_households": msg.affected_households,
        "whistle_id": whistle_id,
        "whistle_ids": [whistle_id],
        "skills": list(need.skills),
        "services": list(need.services),
        "resources": list(need.resources),
        "lead_places": 1,
        "assistant_places": assistant_places,
        "crew": [],
        "crew_ids": [],
        "report_in_by": dl.report_in_by,
        "complete_by": dl.complete_by,
        "escalation_level": "",
        "deadline_missed": False,
        "reminded": [],
        "history": [
            {
                "at": at,
                "action": "created",
                "from_status": "",
                "to_status": domain.OPEN,
                "reason": "",
                "by": DISPATCH,
                "note_zh": zh,
                "note_en": en,
            }
        ],
        "cancel_reason": "",
        "verification_ids": [],
        "version": 1,
        "updated_at": at,
    }


def created_whistle(
    whistle_id: str,
    task_id: str,
    msg: iev.IssueClassified,
    event_id: str,
    at: datetime,
    call_type: str,
    targets: Sequence[domain.TargetIn],
    dl: domain.Deadlines,
) -> dict[str, Any]:
    """The call a classified issue raises by itself, as stored (WhistleDoc's fields, with its WhistleBlown)."""
    blown = dev.WhistleBlown(
        whistle_id=whistle_id,
        tenant=require_tenant(),
        issue_ids=[msg.issue_id],
        call_type=call_type,
        community_id=msg.community_id,
        grid_id=msg.grid_id,
        report_in_by=ts(dl.report_in_by),
        complete_by=ts(dl.complete_by),
        blown_at=ts(at),
        task_ids=[task_id],
        target_kinds=[t.kind for t in targets],
        target_ids=[t.id for t in targets],
        blown_by=DISPATCH,
        manual=False,
    )
    return {
        "_id": whistle_id,
        "outbox": [outbox.stored_event(blown, f"whistles/{whistle_id}", at)],
        "call_type": call_type,
        "community_id": msg.community_id,
        "grid_id": msg.grid_id,
        "issue_ids": [msg.issue_id],
        "task_ids": [task_id],
        "targets": [
            {
                "kind": t.kind,
                "id": t.id,
                "name_zh": t.name_zh,
                "source": t.source,
                "reasons": list(t.reasons),
                "answer": "",
                "late": False,
                "silent": False,
            }
            for t in targets
        ],
        "target_ids": [t.id for t in targets],
        "reports": [],
        "report_in_by": dl.report_in_by,
        "complete_by": dl.complete_by,
        "blown_at": at,
        "blown_by": DISPATCH,
        "manual": False,
        "note": "",
        "upgraded_from": "",
        "report_in_closed": False,
        "reminded": False,
        "source_event_id": event_id,
        "version": 1,
        "updated_at": at,
    }


def on_issue_reclassified(event: CloudEvent, msg: iev.IssueReclassified) -> None:
    """A more urgent class upgrades the issue's task and its own call (deadlines brought forward, never
    pushed back; see domain). A less urgent one changes only the recorded class. A replay changes nothing."""
    if not msg.issue_id:
        raise PoisonEvent(f"IssueReclassified {event.id} has no issue_id")
    task_id = domain.task_id_for_issue(msg.issue_id)
    if TaskDoc.objects(id=task_id).only("id").first() is None:
        return  # a duplicate (no task of its own) or an issue dispatch never saw
    at = _event_at(msg.reclassified_at, event)
    rules = current_rules()
    new_call = domain.call_type_for(msg.to_urgency) if msg.to_urgency else ""
    reason = msg.reason.strip()[: domain.REASON_MAX]
    by = msg.by or "service:intake"

    def mutate(t: TaskDoc, now: datetime, fx: Effects) -> bool:
        changed = False
        if msg.to_category and msg.to_category != t.category:
            t.category = msg.to_category
            need = matching.need_for(t.category, list(t.hazards or []), t.community_id or "", t.grid_id or "")
            t.skills, t.services, t.resources = list(need.skills), list(need.services), list(need.resources)
            changed = True
        if msg.to_urgency and msg.to_urgency != t.urgency:
            t.urgency = msg.to_urgency
            changed = True
        if new_call and domain.more_urgent(new_call, t.call_type) and t.status not in domain.FINISHED:
            rule = rules.rule(new_call)
            dl = domain.upgraded_deadlines(
                domain.Deadlines(aware(t.report_in_by) or at, aware(t.complete_by) or at), rule, at
            )
            t.call_type = new_call
            t.report_in_by, t.complete_by = dl.report_in_by, dl.complete_by
            t.assistant_places = max(t.assistant_places or 0, rule.assistant_places)
            add_history(t, "upgraded", at, by, t.status, t.status, reason, call_type=new_call)
            fx.append(lambda: deadlines.schedule_task(t, rules))
            changed = True
        return changed

    change_task(task_id, mutate)
    if new_call:
        upgrade_whistle(domain.whistle_id_for_issue(msg.issue_id), new_call, at, reason, rules)


def upgrade_whistle(whistle_id: str, new_call: str, at: datetime, reason: str, rules: domain.Rules) -> None:
    """Raise an open call to a more urgent type: earlier deadlines, and the targets the new type calls."""
    w = WhistleDoc.objects(id=whistle_id).first()
    if w is None or not domain.more_urgent(new_call, w.call_type):
        return
    tasks = whistle_tasks([w])
    if tasks and all(t.status in domain.FINISHED for t in tasks.values()):
        return
    first = next(iter(tasks.values()), None)
    need = need_of(first) if first is not None else matching.Need((), (), (), w.community_id or "", w.grid_id or "")
    found = find_targets(need, w.community_id or "", w.grid_id or "", new_call, rules)
    tenant = require_tenant()

    def mutate(w: WhistleDoc, now: datetime, fx: Effects) -> bool:
        if not domain.more_urgent(new_call, w.call_type):
            return False
        rule = rules.rule(new_call)
        dl = domain.upgraded_deadlines(
            domain.Deadlines(aware(w.report_in_by) or at, aware(w.complete_by) or at), rule, at
        )
        old = w.call_type
        w.upgraded_from = w.upgraded_from or old
        w.call_type = new_call
        w.report_in_by, w.complete_by = dl.report_in_by, dl.complete_by
        known = {(t.kind, t.id) for t in w.targets}
        for t in found:
            if (t.kind, t.id) not in known:
                w.targets.append(
                    TargetDoc(kind=t.kind, id=t.id, name_zh=t.name_zh, source=t.source, reasons=list(t.reasons))
                )
                w.target_ids.append(t.id)
        w.record(
            dev.WhistleUpgraded(
                whistle_id=w.id,
                tenant=tenant,
                issue_ids=list(w.issue_ids),
                from_call_type=old,
                to_call_type=new_call,
                report_in_by=ts(dl.report_in_by),
                complete_by=ts(dl.complete_by),
                reason=reason,
                upgraded_at=ts(at),
            ),
            subject=f"whistles/{w.id}",
            at=at,
        )
        fx.append(lambda: deadlines.schedule_whistle(w, rules))
        fx.append(lambda: metrics.WHISTLES_UPGRADED.labels(tenant, new_call).inc())
        return True

    change_whistle(whistle_id, mutate)


def on_org_entity_changed(event: CloudEvent, msg: oev.OrgEntityChanged) -> None:
    """A member unit joined, changed or left at org: the next calls target the community's units as they are."""
    if msg.entity == "member_unit":
        directory.units_changed()


def on_issue_marked_duplicate(event: CloudEvent, msg: iev.IssueMarkedDuplicate) -> None:
    """A duplicate gets no task or call of its own: remember which original it follows."""
    if not msg.issue_id or not msg.duplicate_of:
        raise PoisonEvent(f"IssueMarkedDuplicate {event.id} has no issue_id or duplicate_of")
    link = IssueLinkDoc(id=msg.issue_id, original=msg.duplicate_of, at=_event_at(msg.marked_at, event))
    with contextlib.suppress(me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        link.save(force_insert=True)


# ---------------------------------------------------------------- reading tasks


def get_task(task_id: str) -> TaskDoc:
    """The task, if the caller may see it (another community's is NOT_FOUND to a community worker)."""
    doc = TaskDoc.objects(id=task_id).first() if task_id else None
    if doc is None or not community.sees(doc.community_id):
        raise _no_task(task_id, "id")
    return doc


def get_task_for_issue(issue_id: str) -> TaskDoc:
    """The task of an issue (_id task_id_for_issue: an index look-up); a duplicate answers with the task of the
    original it follows."""
    current = issue_id
    for _ in range(4):
        doc = TaskDoc.objects(id=domain.task_id_for_issue(current)).first() if current else None
        if doc is not None and doc.issue_id == current:
            if not community.sees(doc.community_id):
                break  # another community's: answered as no task
            return doc
        link = IssueLinkDoc.objects(id=current).first() if current else None
        if link is None:
            break
        current = link.original
    raise NotFound(f"no task for issue {issue_id!r} yet (该事项尚未派单)", field="issue_id")


def _fingerprint(**filters: Any) -> str:
    raw = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _page_size(page_size: int) -> int:
    if not 0 <= page_size <= PAGE_MAX:
        raise InvalidArgument(f"page_size must be 1..{PAGE_MAX}", field="page_size")
    return page_size or PAGE_DEFAULT


@dataclass(frozen=True)
class TaskFilter:
    status: str = ""
    community_id: str = ""
    grid_id: str = ""
    assignee_id: str = ""
    whistle_id: str = ""
    overdue: bool = False
    call_type: str = ""


def list_tasks(flt: TaskFilter, page_size: int, page_token: str) -> tuple[list[TaskDoc], str]:
    """Newest first, keyset pages, from the SQL read model (services/dispatch/readmodel.py)."""
    size = _page_size(page_size)
    if flt.status and flt.status not in domain.STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(domain.STATUSES)}", field="status")
    if flt.call_type and flt.call_type not in domain.CALL_TYPES:
        raise InvalidArgument(f"call_type must be one of {', '.join(domain.CALL_TYPES)}", field="call_type")
    fingerprint = _fingerprint(**flt.__dict__)
    where = readmodel.task_filters(**flt.__dict__, now=utcnow())
    docs, more = readmodel.list_tasks(where, size, readmodel.after_of(page_token, fingerprint))
    return docs, readmodel.token_of(more, fingerprint)


def list_overdue(community_id: str, deadline: str, page_size: int, page_token: str) -> tuple[list[TaskDoc], str]:
    """Unfinished tasks past a deadline, most overdue first: report_in = still without a lead after the
    report-in deadline; completion = not done by the completion deadline; "" = either (ordered by the
    completion deadline). From the SQL read model."""
    size = _page_size(page_size)
    if deadline not in ("", "report_in", "completion"):
        raise InvalidArgument("deadline must be report_in, completion or empty", field="deadline")
    fingerprint = _fingerprint(community_id=community_id, deadline=deadline)
    docs, more = readmodel.list_overdue(
        community_id, deadline, size, readmodel.after_of(page_token, fingerprint), utcnow()
    )
    return docs, readmodel.token_of(more, fingerprint)


def dispatch_stats(community_id: str, from_day: str, to_day: str) -> tuple[readmodel.DispatchStats, date, date]:
    """The dashboard's dispatch figures over a window of local days (at most rollups.MAX_DAYS), from the read
    model's rollups."""
    first, last = rollups.check_window(from_day, to_day)
    return readmodel.dispatch_stats(community_id, first, last), first, last


# ---------------------------------------------------------------- calls (whistles)


def whistle_tasks(whistles: Iterable[WhistleDoc]) -> dict[str, TaskDoc]:
    """The tasks of these calls, by id (one look-up by _id)."""
    ids = sorted({tid for w in whistles for tid in w.task_ids})
    if not ids:
        return {}
    return {t.id: t for t in TaskDoc.objects(id__in=ids).exclude("outbox", "history")}


def whistle_open(w: WhistleDoc, tasks: dict[str, TaskDoc]) -> bool:
    mine = [tasks[t] for t in w.task_ids if t in tasks]
    return not mine or any(t.status not in domain.FINISHED for t in mine)


def get_whistle(whistle_id: str) -> WhistleDoc:
    doc = WhistleDoc.objects(id=whistle_id).first() if whistle_id else None
    if doc is None or not community.sees(doc.community_id):
        raise NotFound(community.not_found_message("call", whistle_id), field="id")
    return doc


def list_whistles(
    community_id: str, status: str, call_type: str, responder_id: str, page_size: int, page_token: str
) -> tuple[list[WhistleDoc], dict[str, TaskDoc], str]:
    """The whistle board: calls newest first (blown_at, id), with their tasks; `status` open/closed is
    derived from the tasks. From the SQL read model."""
    size = _page_size(page_size)
    if status not in ("", "open", "closed"):
        raise InvalidArgument("status must be open, closed or empty", field="status")
    if call_type and call_type not in domain.CALL_TYPES:
        raise InvalidArgument(f"call_type must be one of {', '.join(domain.CALL_TYPES)}", field="call_type")
    fingerprint = _fingerprint(c=community_id, s=status, t=call_type, r=responder_id)
    whistles, tasks, more = readmodel.list_whistles(
        community_id, status, call_type, responder_id, size, readmodel.after_of(page_token, fingerprint)
    )
    return whistles, tasks, readmodel.token_of(more, fingerprint)


def _responder_name(w: WhistleDoc, kind: str, rid: str, field: str) -> str:
    for t in w.targets:
        if t.kind == kind and t.id == rid and t.name_zh:
            return str(t.name_zh)
    return directory.name_of(kind, rid, field)


def blow_whistle(
    issue_ids: Sequence[str],
    call_type: str,
    note: str,
    named: Sequence[tuple[str, str]],
    idempotency_key: str,
    by: Principal,
) -> WhistleDoc:
    """A call blown by hand for one or several issues of one community (their tasks exist, unfinished)."""
    domain.require_role(by.role, domain.STAFF_ROLES, "blow a call")
    ids = list(dict.fromkeys(i.strip() for i in issue_ids if i.strip()))
    if not 1 <= len(ids) <= MAX_ISSUES_PER_CALL:
        raise InvalidArgument(f"issue_ids: 1..{MAX_ISSUES_PER_CALL} issues (须选择事项)", field="issue_ids")
    if call_type and call_type not in domain.CALL_TYPES:
        raise InvalidArgument(f"call_type must be one of {', '.join(domain.CALL_TYPES)} or empty", field="call_type")
    note = note.strip()
    if len(note) > domain.NOTE_MAX:
        raise InvalidArgument(f"note: at most {domain.NOTE_MAX} characters", field="note")
    if len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise InvalidArgument(f"idempotency_key: at most {IDEMPOTENCY_KEY_MAX} characters", field="idempotency_key")
    whistle_id = domain.manual_whistle_id(by.sub, idempotency_key)
    rules = current_rules()
    existing = WhistleDoc.objects(id=whistle_id).first()
    if existing is not None and community.sees(existing.community_id):
        _link_tasks(existing, rules, by.sub)
        return existing
    task_ids = [domain.task_id_for_issue(i) for i in ids]
    found = {
        t.id: t
        for t in TaskDoc.objects(id__in=task_ids).exclude("outbox", "history")
        if community.sees(t.community_id)  # another community's issues: as if they had no task
    }
    missing = [i for i, tid in zip(ids, task_ids, strict=True) if tid not in found]
    if missing:
        raise NotFound(
            f"no task for issue(s) {', '.join(missing)}: not classified yet, a duplicate (it follows its original), "
            "or of another tenant (该事项尚无任务)",
            field="issue_ids",
        )
    tasks = [found[t] for t in task_ids]
    finished = [t.issue_id for t in tasks if t.status in domain.FINISHED]
    if finished:
        raise FailedPrecondition(
            f"issue(s) {', '.join(finished)} are done, verified or cancelled: no call for them (事项已办结或已取消)",
            field="issue_ids",
            reason="task_finished",
        )
    communities = {t.community_id or "" for t in tasks}
    if len(communities) > 1:
        raise InvalidArgument(
            "the issues of one call must be in one community (一次吹号限同一社区的事项)", field="issue_ids"
        )
    place = communities.pop()
    grids = {t.grid_id or "" for t in tasks}
    grid = grids.pop() if len(grids) == 1 else ""
    ct = call_type or max((t.call_type or domain.SERVICE for t in tasks), key=lambda c: domain.CALL_RANK.get(c, 0))
    extra = []
    for n, (kind, rid) in enumerate(named):
        k, r = domain.check_responder(kind, rid, f"targets[{n}]")
        extra.append(
            domain.TargetIn(k, r, directory.name_of(k, r, f"targets[{n}]"), "manual", ("吹号时点名 / named by hand",))
        )
    needs = [need_of(t) for t in tasks]
    need = matching.Need(
        tuple(dict.fromkeys(s for n in needs for s in n.skills)),
        tuple(dict.fromkeys(s for n in needs for s in n.services)),
        tuple(dict.fromkeys(s for n in needs for s in n.resources)),
        place,
        grid,
    )
    targets = find_targets(need, place, grid, ct, rules, extra)
    now = utcnow()
    dl = domain.deadlines_for(rules.rule(ct), now)
    w = WhistleDoc(
        id=whistle_id,
        call_type=ct,
        community_id=place,
        grid_id=grid,
        issue_ids=ids,
        task_ids=task_ids,
        targets=_target_docs(targets),
        target_ids=[t.id for t in targets],
        report_in_by=dl.report_in_by,
        complete_by=dl.complete_by,
        blown_at=now,
        blown_by=by.sub,
        manual=True,
        note=note,
        version=1,
        updated_at=now,
    )
    w.record(_whistle_blown(w), subject=f"whistles/{whistle_id}", at=now)
    created = _insert(w)
    if created is None:  # the same key, at the same moment
        w = get_whistle(whistle_id)
    else:
        metrics.WHISTLES_BLOWN.labels(require_tenant(), ct, "true").inc()
    _link_tasks(w, rules, by.sub)
    deadlines.schedule_whistle(w, rules)
    return w


def _link_tasks(w: WhistleDoc, rules: domain.Rules, by: str) -> None:
    """Put the call's tasks on it (idempotent): the call becomes their latest; a more urgent call upgrades
    them, and their deadlines become the earlier of theirs and the call's."""
    for task_id in w.task_ids:

        def mutate(t: TaskDoc, now: datetime, fx: Effects) -> bool:
            if w.id in (t.whistle_ids or []) or t.status in domain.FINISHED:
                return False
            t.whistle_ids.append(w.id)
            t.whistle_id = w.id
            if domain.more_urgent(w.call_type, t.call_type):
                t.call_type = w.call_type
                t.assistant_places = max(t.assistant_places or 0, rules.rule(w.call_type).assistant_places)
            w_in, w_done = aware(w.report_in_by), aware(w.complete_by)
            t_in, t_done = aware(t.report_in_by), aware(t.complete_by)
            t.report_in_by = min(x for x in (t_in, w_in) if x is not None) if (t_in or w_in) else None
            t.complete_by = min(x for x in (t_done, w_done) if x is not None) if (t_done or w_done) else None
            add_history(t, "whistle", now, by, t.status, t.status, w.note or "", call_type=w.call_type)
            fx.append(lambda: deadlines.schedule_task(t, rules))
            return True

        try:
            change_task(task_id, mutate)
        except NotFound:
            log.warning("call %s names task %s, which does not exist", w.id, task_id)


def report_in(
    whistle_id: str,
    responder: tuple[str, str],
    answer: str,
    reason: str,
    proposed: tuple[str, str] | None,
    expected_version: int,
    by: Principal,
) -> WhistleDoc:
    """An answer to a call (报到): accept, decline with a reason, or propose another (who becomes a target).
    After the report-in deadline it is recorded as late. The same answer again changes nothing."""
    domain.require_role(by.role, domain.HELPER_ROLES, "record a report-in")
    kind, rid = domain.acting_as(by.role, by.responder, responder, "responder")
    prop = domain.check_responder(*proposed, "proposed") if proposed is not None else None
    a, r = domain.check_answer(answer, reason, prop)
    if prop == (kind, rid):
        raise InvalidArgument("a responder cannot propose itself (不能推荐自己)", field="proposed")
    w = get_whistle(whistle_id)
    if not whistle_open(w, whistle_tasks([w])):
        raise FailedPrecondition(
            "该集结号的任务均已办结或取消，不再接受报到 (every task of this call is finished: the call is closed)",
            reason="call_closed",
        )
    name = _responder_name(w, kind, rid, "responder")
    prop_name = _responder_name(w, *prop, "proposed") if prop is not None else ""
    tenant = require_tenant()

    def mutate(w: WhistleDoc, now: datetime, fx: Effects) -> bool:
        earlier = [x for x in w.reports if x.responder_kind == kind and x.responder_id == rid]
        last = earlier[-1] if earlier else None
        if (
            last is not None
            and last.answer == a
            and last.reason == r
            and (last.proposed_kind, last.proposed_id) == (prop or ("", ""))
        ):
            return False
        report_by = aware(w.report_in_by) or now
        late = domain.is_late(now, report_by)
        target = next((t for t in w.targets if t.kind == kind and t.id == rid), None)
        w.reports.append(
            ReportDoc(
                responder_kind=kind,
                responder_id=rid,
                name_zh=name,
                answer=a,
                reason=r,
                proposed_kind=prop[0] if prop else "",
                proposed_id=prop[1] if prop else "",
                late=late,
                targeted=target is not None,
                reported_at=now,
                by=by.sub,
            )
        )
        if target is not None:
            target.answer, target.answered_at, target.late = a, now, late
        if prop is not None and not any(t.kind == prop[0] and t.id == prop[1] for t in w.targets):
            w.targets.append(
                TargetDoc(
                    kind=prop[0],
                    id=prop[1],
                    name_zh=prop_name,
                    source="proposed",
                    reasons=[f"由 {name} 推荐：{r} / proposed by {name}: {r}"],
                )
            )
            w.target_ids.append(prop[1])
        w.record(
            dev.UnitReportedIn(
                whistle_id=w.id,
                tenant=tenant,
                responder_kind=kind,
                responder_id=rid,
                answer=a,
                reason=r,
                proposed_kind=prop[0] if prop else "",
                proposed_id=prop[1] if prop else "",
                late=late,
                reported_at=ts(now),
            ),
            subject=f"whistles/{w.id}",
            at=now,
        )
        waited = (now - (aware(w.blown_at) or now)).total_seconds()
        call = w.call_type
        fx.append(lambda: metrics.REPORT_INS.labels(tenant, a, str(late).lower()).inc())
        if last is None:
            fx.append(lambda: metrics.REPORT_IN_SECONDS.labels(tenant, call, a).observe(max(0.0, waited)))
        return True

    return change_whistle(whistle_id, mutate, expected_version=expected_version)


# ---------------------------------------------------------------- claims and assignment


def claim_task(task_id: str, claimant: tuple[str, str], role: str, by: Principal) -> TaskDoc:
    """Take a place on a task. Racing claimants for the last place: exactly one wins (versioned write), the
    other re-reads, finds it full and gets FAILED_PRECONDITION. Claiming the lead of an open task assigns it
    to the claimant, accepted at once (TaskClaimed, TaskAssigned, open → assigned → accepted)."""
    domain.require_role(by.role, domain.HELPER_ROLES, "claim a place on a task")
    kind, cid = domain.acting_as(by.role, by.responder, claimant, "claimant")
    role = role.strip()
    task = get_task(task_id)
    name = _known_name(task, kind, cid) or directory.name_of(kind, cid, "claimant")
    tenant = require_tenant()

    def mutate(t: TaskDoc, now: datetime, fx: Effects) -> bool:
        crew = [domain.Member(c.kind, c.id, c.role) for c in t.crew or []]
        got = domain.claim_role(t.status, role, (kind, cid), crew, t.lead_places or 1, t.assistant_places or 0)
        if got is None:
            return False
        member = CrewDoc(kind=kind, id=cid, name_zh=name, role=got, via="claim", joined_at=now, by=by.sub)
        t.crew.append(member)
        t.crew_ids = [c.id for c in t.crew]
        add_history(t, "claimed", now, by.sub, t.status, t.status, who=name, role=got)
        t.record(
            dev.TaskClaimed(
                task_id=t.id,
                issue_id=t.issue_id,
                tenant=tenant,
                claimant_kind=kind,
                claimant_id=cid,
                role=got,
                places_left=places_left(t),
                claimed_at=ts(now),
            ),
            subject=f"tasks/{t.id}",
            at=now,
        )
        if got == domain.LEAD:
            t.assignment = AssignmentDoc(
                kind=kind,
                id=cid,
                name_zh=name,
                by=by.sub,
                override=False,
                reason="认领牵头 / claimed the lead place",
                assigned_at=now,
                response="accepted",
                responded_at=now,
                via="claim",
            )
            _assigned_event(t, now, by.sub, via="claim", override=False, reason="")
            _set_status(t, domain.ASSIGNED, "assigned", now, by.sub, fx, who=name)
            _set_status(t, domain.ACCEPTED, "accepted", now, by.sub, fx, who=name)
        fx.append(lambda: metrics.CLAIMS.labels(tenant, "won").inc())
        return True

    try:
        return change_task(task_id, mutate)
    except FailedPrecondition as exc:
        metrics.CLAIMS.labels(tenant, exc.reason).inc()
        raise


def _known_name(task: TaskDoc, kind: str, helper_id: str) -> str:
    for c in task.crew or []:
        if c.kind == kind and c.id == helper_id and c.name_zh:
            return str(c.name_zh)
    if task.whistle_id:
        w = WhistleDoc.objects(id=task.whistle_id).only("targets").first()
        for t in (w.targets if w else []) or []:
            if t.kind == kind and t.id == helper_id and t.name_zh:
                return str(t.name_zh)
    return ""


def _assigned_event(t: TaskDoc, at: datetime, by: str, *, via: str, override: bool, reason: str) -> None:
    a = t.assignment
    t.record(
        dev.TaskAssigned(
            task_id=t.id,
            issue_id=t.issue_id,
            tenant=require_tenant(),
            assignee_kind=a.kind,
            assignee_id=a.id,
            by=by,
            override=override,
            assigned_at=ts(at),
            reason=reason,
            via=via,
            community_id=t.community_id or "",
            call_type=t.call_type or "",
        ),
        subject=f"tasks/{t.id}",
        at=at,
    )


@dataclass(frozen=True)
class RankedView:
    candidates: list[matching.Ranked]
    considered: int
    need: matching.Need
    on_crew: frozenset[tuple[str, str]]
    reported_in: frozenset[tuple[str, str]]


_READS = ThreadPoolExecutor(8, thread_name_prefix="dispatch-read")


def _accepted_on(whistle_ids: list[str]) -> set[tuple[str, str]]:
    """(kind, id) of the targets that accepted these calls (the targets only, as stored: no document build)."""
    accepted: set[tuple[str, str]] = set()
    for raw in WhistleDoc._get_collection().find({"_id": {"$in": whistle_ids}}, {"targets": 1}) if whistle_ids else []:
        for t in raw.get("targets") or []:
            if t.get("answer") == domain.ACCEPT:
                accepted.add((str(t.get("kind", "")), str(t.get("id", ""))))
    return accepted


def rank_for_task(task_id: str, limit: int, by: Principal) -> RankedView:
    """点将: helpers for the task, best first, with their reasons; who is already on it or answered its call."""
    domain.require_role(by.role, domain.READ_ROLES, "rank candidates")
    if not 0 <= limit <= matching.MAX_LIMIT:
        raise InvalidArgument(f"limit must be 1..{matching.MAX_LIMIT}", field="limit")
    # What the ranking needs of the task, read as stored (no mongoengine document is built).
    wanted = {**dict.fromkeys(NEED_FIELDS, 1), "crew": 1, "whistle_ids": 1}
    raw = TaskDoc._get_collection().find_one({"_id": task_id}, wanted) if task_id else None
    if raw is None or not community.sees(raw.get("community_id")):
        raise _no_task(task_id, "id")
    need = need_from(raw)
    # Who accepted the task's calls is read while org ranks (both wait on other processes).
    answers = _READS.submit(contextvars.copy_context().run, _accepted_on, list(raw.get("whistle_ids") or []))
    ranked, considered = matching.rank_candidates(need, limit or 20)
    accepted = answers.result()
    return RankedView(
        ranked,
        considered,
        need,
        frozenset((str(c.get("kind", "")), str(c.get("id", ""))) for c in raw.get("crew") or []),
        frozenset(accepted),
    )


def assign_task(task_id: str, assignee: tuple[str, str], reason: str, expected_version: int, by: Principal) -> TaskDoc:
    """点将: assign an open task (or replace a pending assignee, with a reason). Someone outside the ranked list
    is an override and needs a reason."""
    domain.require_role(by.role, domain.STAFF_ROLES, "assign tasks")
    kind, aid = domain.check_responder(*assignee, "assignee")
    r = domain.check_reason(reason, required=False, what="assign")
    task = get_task(task_id)
    if task.status not in (domain.OPEN, domain.ASSIGNED):
        raise FailedPrecondition(
            f"任务当前为「{domain.status_zh(task.status)}」，不能派单 "
            f"(a task that is {task.status} cannot be assigned; allowed from: assigned, open)",
            reason="illegal_transition",
            field="task_id",
        )
    lead = lead_of(task)
    if task.status == domain.ASSIGNED and lead is not None and (lead.kind, lead.id) == (kind, aid):
        return task  # already theirs, awaiting their answer
    ranked, _ = matching.rank_candidates(need_of(task), RANK_FOR_OVERRIDE)
    hit = next((c for c in ranked if (domain.KIND_ALIASES.get(c.kind, c.kind), c.id) == (kind, aid)), None)
    override = hit is None
    if override and not r:
        raise InvalidArgument(
            "the assignee is not among the ranked candidates: an override needs a reason "
            "(不在推荐名单中的点将须说明理由)",
            field="reason",
        )
    name = (
        hit.name_zh if hit is not None else (_known_name(task, kind, aid) or directory.name_of(kind, aid, "assignee"))
    )
    tenant = require_tenant()

    def mutate(t: TaskDoc, now: datetime, fx: Effects) -> bool:
        if t.status not in (domain.OPEN, domain.ASSIGNED):
            raise FailedPrecondition(
                f"任务当前为「{domain.status_zh(t.status)}」，不能派单 (a task that is {t.status} cannot be assigned)",
                reason="illegal_transition",
                field="task_id",
            )
        current = lead_of(t)
        if t.status == domain.ASSIGNED and current is not None:
            if (current.kind, current.id) == (kind, aid):
                return False
            if not r:
                raise InvalidArgument(
                    "replacing the assignee who has not answered yet needs a reason (更换承办人须说明理由)",
                    field="reason",
                )
            _remove_crew(t, current)
            _set_status(
                t,
                domain.OPEN,
                "released",
                now,
                by.sub,
                fx,
                reason=r,
                released=current,
                who=current.name_zh or current.id,
            )
        mine = next((c for c in t.crew if c.kind == kind and c.id == aid), None)
        if mine is not None:  # an assistant promoted to lead
            _remove_crew(t, mine)
        t.crew.append(
            CrewDoc(kind=kind, id=aid, name_zh=name, role=domain.LEAD, via="assignment", joined_at=now, by=by.sub)
        )
        t.crew_ids = [c.id for c in t.crew]
        t.assignment = AssignmentDoc(
            kind=kind,
            id=aid,
            name_zh=name,
            by=by.sub,
            override=override,
            reason=r,
            assigned_at=now,
            score=hit.score if hit is not None else 0.0,
            via="assignment",
        )
        _assigned_event(t, now, by.sub, via="assignment", override=override, reason=r)
        _set_status(t, domain.ASSIGNED, "assigned", now, by.sub, fx, reason=r, who=name)
        fx.append(lambda: metrics.ASSIGNMENTS.labels(tenant, str(override).lower()).inc())
        return True

    return change_task(task_id, mutate, expected_version=expected_version)


def respond_to_assignment(task_id: str, accept: bool, reason: str, expected_version: int, by: Principal) -> TaskDoc:
    """The assignee accepts (assigned → accepted) or declines with a reason (assigned → open, place freed)."""
    domain.require_role(by.role, domain.HELPER_ROLES, "answer an assignment")
    r = domain.check_reason(reason, required=not accept, what="decline an assignment")

    def mutate(t: TaskDoc, now: datetime, fx: Effects) -> bool:
        a = t.assignment
        if by.role == domain.MEMBER and (
            by.responder is None or a is None or (a.kind, a.id) != domain.acting_as(by.role, by.responder, ("", ""), "")
        ):
            raise PermissionDenied(
                "仅限派给本单位/本人的任务 (a member answers only an assignment to itself)", reason="not_your_task"
            )
        if accept and t.status == domain.ACCEPTED and a is not None and a.response == "accepted":
            return False  # answered already (a retry)
        if t.status != domain.ASSIGNED or a is None:
            raise FailedPrecondition(
                f"任务当前为「{domain.status_zh(t.status)}」，没有待答复的派单 (a task that is {t.status} has no "
                "assignment awaiting an answer)",
                reason="illegal_transition",
                field="task_id",
            )
        a.response = "accepted" if accept else "declined"
        a.response_reason = r
        a.responded_at = now
        who = a.name_zh or a.id
        if accept:
            _set_status(t, domain.ACCEPTED, "accepted", now, by.sub, fx, who=who)
        else:
            current = lead_of(t)
            if current is not None:
                _remove_crew(t, current)
            _set_status(t, domain.OPEN, "declined", now, by.sub, fx, reason=r, released=current, who=who)
        return True

    return change_task(task_id, mutate, expected_version=expected_version)


def transition_task(
    task_id: str,
    action: str,
    reason: str,
    expected_version: int,
    by: Principal,
    *,
    uow: UnitOfWork = unitofwork.MONGO,
) -> TaskDoc:
    """start, done, reopen, cancel (domain.TRANSITIONS); illegal ones are FAILED_PRECONDITION, and so are verify and
    reject: evaluation's verdicts take those steps (on_task_verified, on_task_verification_failed)."""
    domain.require_role(by.role, domain.HELPER_ROLES, "change a task's status")
    action = action.strip()
    domain.refuse_verdict_action(action)
    if action not in domain.TRANSITIONS:
        raise InvalidArgument(f"action must be one of {', '.join(domain.TRANSITIONS)} (操作无效)", field="action")
    r = domain.check_reason(reason, required=action in domain.REASON_REQUIRED, what=action)
    rules = current_rules(uow)

    def mutate(t: TaskDoc, now: datetime, fx: Effects) -> bool:
        lead = lead_of(t)
        domain.member_may(by.role, by.responder, action, (lead.kind, lead.id) if lead is not None else None)
        to = domain.transition(t.status, action)
        _set_status(t, to, action, now, by.sub, fx, reason=r)
        if to == domain.CANCELLED:
            t.cancel_reason = r
        if to in domain.FINISHED:
            t.finished_at = t.finished_at if to == domain.VERIFIED and t.finished_at else now
            fx.append(lambda: deadlines.cancel_task(t))
        elif to == domain.REJECTED:
            t.finished_at = None
            fx.append(lambda: deadlines.schedule_task(t, rules))
        return True

    return change_task(task_id, mutate, expected_version=expected_version, uow=uow)


# ---------------------------------------------------------------- used by the timers (deadlines.py)


def lead_pair(task: TaskDoc) -> tuple[str, str]:
    lead = lead_of(task)
    return (lead.kind, lead.id) if lead is not None else ("", "")


# ---------------------------------------------------------------- evaluation's verdicts (验单)


def apply_verdict(
    v: domain.Verdict, task_id: str, by: str, reason: str, at: datetime, *, uow: UnitOfWork = unitofwork.MONGO
) -> None:
    """Move the task as the verdict says (domain.apply_verdict), once: the verdict's id is kept on the task, so a
    re-sent event, or one for an earlier attempt, changes nothing."""
    rules = current_rules(uow)

    def mutate(t: TaskDoc, now: datetime, fx: Effects) -> bool:
        steps = domain.apply_verdict(
            t.status, domain.done_count(h.to_status for h in t.history), t.verification_ids or [], v
        )
        if not steps:
            return False
        for action, to in steps:
            _set_status(t, to, action, at, by, fx, reason=reason, method=v.method)
        t.verification_ids = [*(t.verification_ids or []), v.verification_id]
        if t.status == domain.VERIFIED:
            fx.append(lambda: deadlines.cancel_task(t))
        else:
            t.finished_at = None
            fx.append(lambda: deadlines.schedule_task(t, rules))
        return True

    try:
        change_task(task_id, mutate, uow=uow)
    except NotFound:
        log.warning("verdict %s for task %s: no such task in %s", v.verification_id, task_id, require_tenant())


def on_task_verified(event: CloudEvent, msg: vev.TaskVerified) -> None:
    """TaskVerified (evaluation): done → verified."""
    v = domain.Verdict(True, msg.method, int(msg.attempt), msg.verification_id or event.id)
    apply_verdict(v, msg.task_id, msg.by or "evaluation", "", _event_at(msg.verified_at, event))


def on_task_verification_failed(event: CloudEvent, msg: vev.TaskVerificationFailed) -> None:
    """TaskVerificationFailed (evaluation): done → rejected → reopened (review, onsite); verified → reopened
    (resident: the reporter rejected the verified result within the window)."""
    v = domain.Verdict(False, msg.method, int(msg.attempt), msg.verification_id or event.id)
    reason = msg.reason.strip()[: domain.REASON_MAX]
    apply_verdict(v, msg.task_id, msg.by or "evaluation", reason, _event_at(msg.failed_at, event))
