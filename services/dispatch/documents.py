"""Dispatch persistence schema (per-tenant database hl_dispatch_<tenant>).

- tasks: one document per issue (_id task_id_for_issue), its crew, assignment, clocks, history and events.
- whistles: one document per call (_id whistle_id_for_issue for the call an issue raises by itself, or
  from the caller's idempotency key), its targets and report-ins, and its events.
- dispatch_rules: the tenant's deadlines (_id "rules"), absent until the tenant stores its own.
- issue_links: a duplicate issue (_id) → the original it follows (GetTaskForIssue answers with its task).
- version_claims: who won the right to write a task's / whistle's / the rules' next version
  (services/common/unitofwork.py): on FerretDB v1 an update is an unisolated read-modify-write,
  so every change is "claim version v+1 by insert, then replace the v document".
- timers (services/common/clocks.py), processed_events and outbox_* (services/common).

The indexes serve MongoDB (production); on the local FerretDB a filter other than _id scans, so the hot
paths (event handling, claims, transitions, timers) read by _id only.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class CrewDoc(me.EmbeddedDocument):
    kind = me.StringField(required=True)
    id = me.StringField(required=True)
    name_zh = me.StringField(default="")
    role = me.StringField(required=True)  # lead | assistant
    via = me.StringField(required=True)  # claim | assignment
    joined_at = me.DateTimeField(required=True)
    by = me.StringField(default="")


class AssignmentDoc(me.EmbeddedDocument):
    kind = me.StringField(required=True)
    id = me.StringField(required=True)
    name_zh = me.StringField(default="")
    by = me.StringField(default="")
    override = me.BooleanField(default=False)
    reason = me.StringField(default="")
    assigned_at = me.DateTimeField(required=True)
    response = me.StringField(default="")  # "" | accepted | declined
    response_reason = me.StringField(default="")
    responded_at = me.DateTimeField()
    score = me.FloatField(default=0.0)
    via = me.StringField(default="assignment")  # assignment | claim


class TaskEventDoc(me.EmbeddedDocument):
    at = me.DateTimeField(required=True)
    action = me.StringField(required=True)
    from_status = me.StringField(default="")
    to_status = me.StringField(default="")
    reason = me.StringField(default="")
    by = me.StringField(default="")
    note_zh = me.StringField(default="")
    note_en = me.StringField(default="")


class TaskDoc(OutboxDocument):
    # Every write's state goes to the state topic, from which the projector keeps the task lists
    # (services/dispatch/readmodel.py).
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {
        "collection": "tasks",
        "indexes": [
            {"fields": ["issue_id"], "unique": True},
            ("community_id", "-created_at"),
            "status",
            "crew_ids",
            "whistle_ids",
            "complete_by",
        ],
    }

    id = me.StringField(primary_key=True)
    issue_id = me.StringField(required=True)
    status = me.StringField(required=True)
    created_at = me.DateTimeField(required=True)
    source_event_id = me.StringField(required=True)
    title = me.StringField(default="")
    category = me.StringField(default="")
    urgency = me.StringField(default="")
    call_type = me.StringField(default="service")
    community_id = me.StringField(default="")
    grid_id = me.StringField(default="")
    hazards = me.ListField(me.StringField())
    affected_households = me.IntField(default=0)
    whistle_id = me.StringField(default="")
    whistle_ids = me.ListField(me.StringField())
    skills = me.ListField(me.StringField())
    services = me.ListField(me.StringField())
    resources = me.ListField(me.StringField())
    lead_places = me.IntField(default=1)
    assistant_places = me.IntField(default=0)
    crew = me.EmbeddedDocumentListField(CrewDoc)
    crew_ids = me.ListField(me.StringField())  # "<id>" of every crew member, for "my tasks"
    assignment = me.EmbeddedDocumentField(AssignmentDoc)
    report_in_by = me.DateTimeField()
    complete_by = me.DateTimeField()
    escalation_level = me.StringField(default="")  # "" | subdistrict | district
    deadline_missed = me.BooleanField(default=False)
    reminded = me.ListField(me.StringField())  # reminders sent (completion@<iso due>)
    history = me.EmbeddedDocumentListField(TaskEventDoc)
    cancel_reason = me.StringField(default="")
    finished_at = me.DateTimeField()
    # The verdicts of evaluation (验单) applied to the task, by verification id: each applies once.
    verification_ids = me.ListField(me.StringField())
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()


class TargetDoc(me.EmbeddedDocument):
    kind = me.StringField(required=True)
    id = me.StringField(required=True)
    name_zh = me.StringField(default="")
    source = me.StringField(default="")
    reasons = me.ListField(me.StringField())
    answer = me.StringField(default="")
    answered_at = me.DateTimeField()
    late = me.BooleanField(default=False)
    silent = me.BooleanField(default=False)


class ReportDoc(me.EmbeddedDocument):
    responder_kind = me.StringField(required=True)
    responder_id = me.StringField(required=True)
    name_zh = me.StringField(default="")
    answer = me.StringField(required=True)
    reason = me.StringField(default="")
    proposed_kind = me.StringField(default="")
    proposed_id = me.StringField(default="")
    late = me.BooleanField(default=False)
    targeted = me.BooleanField(default=False)
    reported_at = me.DateTimeField(required=True)
    by = me.StringField(default="")


class WhistleDoc(OutboxDocument):
    # Every write's state goes to the state topic, from which the projector keeps the whistle board
    # (services/dispatch/readmodel.py).
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {
        "collection": "whistles",
        "indexes": [("community_id", "-blown_at"), "target_ids", "task_ids"],
    }

    id = me.StringField(primary_key=True)
    call_type = me.StringField(required=True)
    community_id = me.StringField(default="")
    grid_id = me.StringField(default="")
    issue_ids = me.ListField(me.StringField())
    task_ids = me.ListField(me.StringField())
    targets = me.EmbeddedDocumentListField(TargetDoc)
    target_ids = me.ListField(me.StringField())
    reports = me.EmbeddedDocumentListField(ReportDoc)  # every answer, in order (the latest per responder counts)
    report_in_by = me.DateTimeField(required=True)
    complete_by = me.DateTimeField(required=True)
    blown_at = me.DateTimeField(required=True)
    blown_by = me.StringField(default="")
    manual = me.BooleanField(default=False)
    note = me.StringField(default="")
    upgraded_from = me.StringField(default="")
    report_in_closed = me.BooleanField(default=False)
    reminded = me.BooleanField(default=False)
    source_event_id = me.StringField(default="")
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()


class DispatchRulesDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "dispatch_rules"}

    id = me.StringField(primary_key=True)
    version = me.IntField(required=True)
    rules = me.DictField()
    updated_at = me.DateTimeField()
    updated_by = me.StringField(default="")


class IssueLinkDoc(TenantDocument):
    """A duplicate issue (_id) and the original it follows: it has no task of its own."""

    meta: ClassVar[dict[str, Any]] = {"collection": "issue_links"}

    id = me.StringField(primary_key=True)
    original = me.StringField(required=True)
    at = me.DateTimeField(required=True)
