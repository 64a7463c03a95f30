"""Meetings' persistence schema (per-tenant database hl_alliance_<tenant>).

- meetings: one document per meeting: its invitees, agenda (with decisions and action items), proposals,
  attendance and events (outbox); every write's state goes to the state topic (the read model's rows).
- meeting_settings: the tenant's meeting settings (_id "settings": the check-in grace), absent until set.
- version_claims (services/common/unitofwork.py), timers (services/common/clocks.py), outbox_* (outbox.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class InviteeDoc(me.EmbeddedDocument):
    kind = me.StringField(required=True)  # member_unit | person
    id = me.StringField(required=True)
    name_zh = me.StringField(default="")


class DecisionDoc(me.EmbeddedDocument):
    outcome = me.StringField(required=True)
    voted = me.BooleanField(default=False)
    votes_for = me.IntField(default=0)
    votes_against = me.IntField(default=0)
    votes_abstain = me.IntField(default=0)
    note = me.StringField(default="")
    by = me.StringField(default="")
    at = me.DateTimeField(required=True)


class ActionDoc(me.EmbeddedDocument):
    id = me.StringField(required=True)
    title = me.StringField(required=True)
    description = me.StringField(default="")
    category = me.StringField(default="")
    kind = me.StringField(default="issue")
    target_id = me.StringField(required=True)
    opened_at = me.DateTimeField(required=True)
    by = me.StringField(default="")


class ItemDoc(me.EmbeddedDocument):
    id = me.StringField(required=True)
    title = me.StringField(required=True)
    source = me.StringField(required=True)
    issue_id = me.StringField(default="")
    note = me.StringField(default="")
    proposed_by = me.StringField(default="")
    proposed_at = me.DateTimeField()
    decision = me.EmbeddedDocumentField(DecisionDoc)
    actions = me.EmbeddedDocumentListField(ActionDoc)


class AttendanceDoc(me.EmbeddedDocument):
    key = me.StringField(required=True)  # the invitee's "kind:id"
    unit_id = me.StringField(default="")
    person_id = me.StringField(default="")
    person_name_zh = me.StringField(default="")  # a unit's attendee, by name (as org had it when recorded)
    status = me.StringField(required=True)
    recorded_by = me.StringField(default="")
    at = me.DateTimeField(required=True)


class MeetingDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "meetings"}

    id = me.StringField(primary_key=True)
    community_id = me.StringField(required=True)
    title = me.StringField(required=True)
    starts_at = me.DateTimeField(required=True)
    ends_at = me.DateTimeField()
    closes_at = me.DateTimeField(required=True)
    place_kind = me.StringField(required=True)  # station | online
    station_id = me.StringField(default="")
    place = me.StringField(default="")
    online_link = me.StringField(default="")
    invitees = me.EmbeddedDocumentListField(InviteeDoc)
    agenda = me.EmbeddedDocumentListField(ItemDoc)
    proposals = me.EmbeddedDocumentListField(ItemDoc)
    attendance = me.EmbeddedDocumentListField(AttendanceDoc)
    status = me.StringField(required=True)
    ended = me.BooleanField(default=False)
    cancel_reason = me.StringField(default="")
    grace_minutes = me.IntField(default=10)
    created_by = me.StringField(required=True)
    created_at = me.DateTimeField(required=True)
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()


class MeetingSettingsDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "meeting_settings"}

    id = me.StringField(primary_key=True)  # "settings"
    grace_minutes = me.IntField(default=10)
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()
