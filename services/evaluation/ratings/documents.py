"""评单's persistence schema (per-tenant database hl_evaluation_<tenant>, collections prefixed ratings_).

- ratings_verdicts: _id the issue's id: the latest verification verdict of its task, as the area learnt it
  from TaskVerified / TaskVerificationFailed (its own consumer), and the ids of every verification that
  passed (`verified_ids`). Changed only through the unit of work's version claims.
- ratings_resident_acts: _id the verification's id: the reporter's one decision on that verification, a
  rating (IssueRated) or a rejection (TaskVerificationFailed, method resident). The insert of this _id is
  what makes it once; its state goes to the state topic (the staff's lists).
- ratings_unit_ratings: _id "<quarter>:<unit>:<rater>": one per rater, unit and quarter (UnitRated).
- ratings_settings: _id "settings": the tenant's windows, absent until set (the defaults then).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class VerdictDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "ratings_verdicts"}

    id = me.StringField(primary_key=True)  # the issue's id
    task_id = me.StringField(default="")
    community_id = me.StringField(default="")
    call_type = me.StringField(default="")
    crew_ids = me.ListField(me.StringField())
    verification_id = me.StringField(default="")
    attempt = me.IntField(default=0)
    status = me.StringField(default="")  # verified | failed
    method = me.StringField(default="")
    at = me.DateTimeField()
    verified_at = me.DateTimeField()
    verified_ids = me.ListField(me.StringField())
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()


class ResidentActDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "ratings_resident_acts"}

    id = me.StringField(primary_key=True)  # the verification decided on
    kind = me.StringField(required=True)  # rating | rejection
    issue_id = me.StringField(required=True)
    task_id = me.StringField(default="")
    community_id = me.StringField(default="")
    call_type = me.StringField(default="")
    attempt = me.IntField(default=0)
    score = me.IntField(default=0)
    comment = me.StringField(default="")  # the resident's words: stored here and in the staff's list, never in events
    reason = me.StringField(default="")
    by = me.StringField(default="")  # the resident's account id, or "follow_code"
    at = me.DateTimeField(required=True)
    version = me.IntField(default=1)
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()


class UnitRatingDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "ratings_unit_ratings"}

    id = me.StringField(primary_key=True)  # "<quarter>:<unit>:<rater>"
    unit_id = me.StringField(required=True)
    unit_name_zh = me.StringField(default="")
    community_id = me.StringField(required=True)
    quarter = me.StringField(required=True)
    rater_kind = me.StringField(required=True)
    rater = me.StringField(required=True)
    score = me.IntField(required=True)
    comment = me.StringField(default="")
    recorded_by = me.StringField(default="")
    rated_at = me.DateTimeField(required=True)
    version = me.IntField(default=1)
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()


class RatingSettingsDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "ratings_settings"}

    id = me.StringField(primary_key=True)  # "settings"
    rating_window_days = me.IntField(required=True)
    rejection_window_days = me.IntField(required=True)
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()
    updated_by = me.StringField(default="")
