"""Verification's persistence schema (per-tenant database hl_evaluation_<tenant>).

- review_rounds: one document per review round (its reviewers, tasks, and once closed the votes counted and
  each task's verdict, with the verdicts' events: the outbox); its state goes to the state topic.
- review_votes: one document per vote, _id "<round>:<task>:<reviewer>": inserted once, never changed.
- onsite_checks: one document per on-site check with its verdict's event (the outbox); state published.
- check_photos: a check's photos, _id "<check>:<photo>", written before the check that points at them.
- verdict_claims: _id "<task>:<attempt>" (the verification id): inserted by whoever gives that attempt's verdict
  before writing it; `owner` is "round:<id>" or "check:<id>".
- verification_rules: the tenant's rules (_id "rules"), absent until set.
- version_claims (services/common/unitofwork.py), outbox_* (services/common/outbox.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class ReviewerDoc(me.EmbeddedDocument):
    id = me.StringField(required=True)
    kind = me.StringField(required=True)
    name_zh = me.StringField(default="")


class CountedVoteDoc(me.EmbeddedDocument):
    reviewer_id = me.StringField(required=True)
    task_id = me.StringField(required=True)
    passed = me.BooleanField(required=True)
    reason = me.StringField(default="")
    by = me.StringField(default="")
    at = me.DateTimeField(required=True)


class RoundTaskDoc(me.EmbeddedDocument):
    task_id = me.StringField(required=True)
    issue_id = me.StringField(default="")
    title = me.StringField(default="")
    call_type = me.StringField(default="")
    attempt = me.IntField(default=1)
    crew_ids = me.ListField(me.StringField())
    votes_pass = me.IntField(default=0)
    votes_fail = me.IntField(default=0)
    verdict = me.StringField(default="")
    verification_id = me.StringField(default="")
    reasons = me.ListField(me.StringField())


class RoundDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "review_rounds"}

    id = me.StringField(primary_key=True)
    community_id = me.StringField(required=True)
    title = me.StringField(required=True)
    status = me.StringField(required=True)
    convenor = me.StringField(required=True)
    reviewers = me.EmbeddedDocumentListField(ReviewerDoc)
    quorum = me.IntField(required=True)
    decision = me.StringField(required=True)
    tasks = me.EmbeddedDocumentListField(RoundTaskDoc)
    votes = me.EmbeddedDocumentListField(CountedVoteDoc)  # filled when closed
    created_at = me.DateTimeField(required=True)
    closed_at = me.DateTimeField()
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()


class VoteDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "review_votes"}

    id = me.StringField(primary_key=True)  # "<round>:<task>:<reviewer>"
    round_id = me.StringField(required=True)
    task_id = me.StringField(required=True)
    reviewer_id = me.StringField(required=True)
    passed = me.BooleanField(required=True)
    reason = me.StringField(default="")
    by = me.StringField(required=True)
    at = me.DateTimeField(required=True)


class PhotoMetaDoc(me.EmbeddedDocument):
    id = me.StringField(required=True)
    filename = me.StringField(required=True)
    content_type = me.StringField(required=True)
    size = me.IntField(required=True)
    sha256 = me.StringField(required=True)


class CheckDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "onsite_checks"}

    id = me.StringField(primary_key=True)
    community_id = me.StringField(required=True)
    task_id = me.StringField(required=True)
    issue_id = me.StringField(default="")
    call_type = me.StringField(default="")
    attempt = me.IntField(default=1)
    inspector = me.StringField(required=True)
    notes = me.StringField(default="")
    photos = me.EmbeddedDocumentListField(PhotoMetaDoc)
    lat = me.FloatField(required=True)
    lon = me.FloatField(required=True)
    distance_m = me.FloatField(default=-1.0)
    distance_limit_m = me.IntField(default=200)
    place_flagged = me.BooleanField(default=False)
    place_note_zh = me.StringField(default="")
    passed = me.BooleanField(required=True)
    reason = me.StringField(default="")
    verification_id = me.StringField(required=True)
    checked_at = me.DateTimeField(required=True)
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()


class CheckPhotoDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "check_photos"}

    id = me.StringField(primary_key=True)  # "<check>:<photo>"
    content_type = me.StringField(required=True)
    content = me.BinaryField(required=True)
    at = me.DateTimeField(required=True)


class VerdictClaimDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "verdict_claims"}

    id = me.StringField(primary_key=True)  # "<task>:<attempt>"
    owner = me.StringField(required=True)  # "round:<id>" | "check:<id>"
    at = me.DateTimeField(required=True)


class VerificationRulesDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "verification_rules"}

    id = me.StringField(primary_key=True)  # "rules"
    rules = me.ListField(me.DictField())
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()
    updated_by = me.StringField(default="")
