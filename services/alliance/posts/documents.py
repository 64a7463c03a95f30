"""Standing posts' persistence (per-tenant database hl_alliance_<tenant>).

- alliance_posts: one document per post with its shifts (PUBLISH_STATE: the read side's posts and shifts).
- alliance_post_claims: one document per claim (PUBLISH_STATE: rosters, a person's claims, fill rates); it
  carries PostClaimed, ShiftServed and ShiftMissed. Changes go through the unit of work (version claims).
- alliance_shift_seats: _id "<shift>:<n>" for n < the shift's capacity, inserted to take place n. The insert
  with a unique _id is the atomic primitive on FerretDB and MongoDB alike: of two claimants for the last
  place exactly one insert succeeds. Releasing deletes the seat (a later claimant takes it).
- alliance_shift_claimants: _id "<shift>|<claimant key>", inserted before a seat is sought, so the same person
  cannot claim a shift twice, even at the same moment. Deleted with the release.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class PlaceDoc(me.EmbeddedDocument):
    kind = me.StringField(default="other")
    id = me.StringField(default="")
    name = me.StringField(default="")


class ShiftDoc(me.EmbeddedDocument):
    id = me.StringField(required=True)
    starts_at = me.DateTimeField(required=True)
    ends_at = me.DateTimeField(required=True)
    capacity = me.IntField(required=True)


class PostDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "alliance_posts", "indexes": ["community_id"]}

    id = me.StringField(primary_key=True)
    community_id = me.StringField(required=True)
    name = me.StringField(required=True)
    description = me.StringField(default="")
    place = me.EmbeddedDocumentField(PlaceDoc)
    shifts = me.EmbeddedDocumentListField(ShiftDoc)
    next_shift = me.IntField(default=0)  # the next shift's number ("<post>.<n>")
    created_by = me.StringField(default="")
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()
    version = me.IntField(default=1)


class PostClaimDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "alliance_post_claims", "indexes": ["shift_id", "person_id"]}

    id = me.StringField(primary_key=True)
    post_id = me.StringField(required=True)
    post_name = me.StringField(default="")
    shift_id = me.StringField(required=True)
    seat = me.StringField(required=True)  # the seat's _id
    claimant_key = me.StringField(required=True)  # the claimant lock's _id
    community_id = me.StringField(required=True)
    unit_id = me.StringField(default="")
    person_id = me.StringField(default="")
    status = me.StringField(required=True)
    shift_starts_at = me.DateTimeField(required=True)
    shift_ends_at = me.DateTimeField(required=True)
    claimed_at = me.DateTimeField(required=True)
    checked_in_at = me.DateTimeField()
    checked_in_by = me.StringField(default="")
    released_at = me.DateTimeField()
    released_by = me.StringField(default="")
    missed_at = me.DateTimeField()
    late = me.BooleanField(default=False)
    hours = me.FloatField(default=0.0)
    by = me.StringField(default="")
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()
    version = me.IntField(default=1)


class SeatDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "alliance_shift_seats"}

    id = me.StringField(primary_key=True)
    claim_id = me.StringField(required=True)
    at = me.DateTimeField(required=True)


class ClaimantLockDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "alliance_shift_claimants"}

    id = me.StringField(primary_key=True)
    claim_id = me.StringField(required=True)
    at = me.DateTimeField(required=True)
