"""Co-building activities' persistence (hl_alliance_<tenant>): alliance_activities, one document per activity
with its participants (PUBLISH_STATE: the read side's activities and sign-ups). Every sign-up, withdrawal and
attendance is the activity's next version through the unit of work (a version claim inserted by _id): concurrent
ones are decided one after another on the state the previous one left."""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.alliance.posts.documents import PlaceDoc
from services.common.outbox import OutboxDocument


class ParticipantDoc(me.EmbeddedDocument):
    key = me.StringField(required=True)
    unit_id = me.StringField(default="")
    person_id = me.StringField(default="")
    status = me.StringField(required=True)
    seq = me.IntField(required=True)
    signed_up_at = me.DateTimeField(required=True)
    promoted_at = me.DateTimeField()
    withdrawn_at = me.DateTimeField()
    attended = me.BooleanField(default=False)
    hours = me.FloatField(default=0.0)
    attended_at = me.DateTimeField()
    by = me.StringField(default="")
    recorded_by = me.StringField(default="")


class ActivityDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "alliance_activities", "indexes": ["community_id"]}

    id = me.StringField(primary_key=True)
    community_id = me.StringField(required=True)
    title = me.StringField(required=True)
    kind = me.StringField(required=True)
    description = me.StringField(default="")
    place = me.EmbeddedDocumentField(PlaceDoc)
    starts_at = me.DateTimeField(required=True)
    ends_at = me.DateTimeField(required=True)
    capacity = me.IntField(required=True)
    signup_deadline = me.DateTimeField(required=True)
    participants = me.EmbeddedDocumentListField(ParticipantDoc)
    created_by = me.StringField(default="")
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()
    version = me.IntField(default=1)
