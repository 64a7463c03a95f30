"""Dispatch commands and event handlers."""

from __future__ import annotations

from datetime import UTC, datetime

import pymongo.errors
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import intake_events_pb2 as iev

from services.common.context import require_tenant
from services.common.errors import NotFound
from services.common.events import CloudEvent, PoisonEvent
from services.dispatch.documents import TaskDoc
from services.dispatch.domain import STATUS_OPEN, task_id_for_issue


def on_issue_received(event: CloudEvent, msg: iev.IssueReceived) -> None:
    """Open the task for a newly received issue; a replayed event finds the task and changes nothing."""
    if not msg.issue_id:
        raise PoisonEvent(f"IssueReceived {event.id} has no issue_id")
    tenant = require_tenant()
    task_id = task_id_for_issue(msg.issue_id)
    if TaskDoc.objects(id=task_id).first() is not None:
        return
    now = datetime.now(UTC)
    task = TaskDoc(id=task_id, issue_id=msg.issue_id, status=STATUS_OPEN, created_at=now, source_event_id=event.id)
    created = dev.TaskCreated(task_id=task_id, issue_id=msg.issue_id, tenant=tenant, status=STATUS_OPEN)
    created.created_at.FromDatetime(now)
    task.record(created, subject=f"tasks/{task_id}", at=now)
    try:
        task.save(force_insert=True)
    except pymongo.errors.DuplicateKeyError:
        return  # another consumer (or an earlier delivery) opened it first


def get_task(task_id: str) -> TaskDoc:
    doc = TaskDoc.objects(id=task_id).first() if task_id else None
    if doc is None:
        raise NotFound(f"task {task_id!r} not found in this tenant (未找到该任务)", field="id")
    return doc


def get_task_for_issue(issue_id: str) -> TaskDoc:
    # The task of an issue has the id task_id_for_issue(issue_id) (on_issue_received opens no other):
    # a look-up by _id, where a filter on issue_id reads the whole collection on the local FerretDB.
    doc = TaskDoc.objects(id=task_id_for_issue(issue_id)).first() if issue_id else None
    if doc is None or doc.issue_id != issue_id:
        raise NotFound(f"no task for issue {issue_id!r} yet (该事项尚未派单)", field="issue_id")
    return doc
