"""Intake persistence schema (per-tenant database hl_intake_<tenant>).

- issues: one document per issue, carrying its history and its events (outbox).
- attachments: the files, one document each, written before the issue that points at them.
- rules: the tenant's classification rules (_id "rules"), absent until the tenant stores its own.
- version_claims: who won the right to write an issue's (or the rules') next version (services/common/unitofwork.py).
- duplicate_claims: which open issue holds a (category, cell, time bucket) for duplicate detection.
- follow_codes: the hash of each issue's follow-up code (查询码), _id the issue's id; kept apart from the
  issue so that it is in neither the issue's state on the state topic nor its events.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class LocationDoc(me.EmbeddedDocument):
    lat = me.FloatField()
    lon = me.FloatField()
    address = me.StringField(default="")
    compound_id = me.StringField(default="")


class PlaceDoc(me.EmbeddedDocument):
    community_id = me.StringField(default="")
    grid_id = me.StringField(default="")
    compound_id = me.StringField(default="")
    community_name_zh = me.StringField(default="")
    grid_name_zh = me.StringField(default="")


class ContactDoc(me.EmbeddedDocument):
    """Personal data: sealed with HONGLING_DATA_KEY, and the masked forms every answer shows."""

    name_enc = me.StringField(default="")
    phone_enc = me.StringField(default="")
    name_masked = me.StringField(default="")
    phone_masked = me.StringField(default="")


class AttachmentMetaDoc(me.EmbeddedDocument):
    id = me.StringField(required=True)
    filename = me.StringField(required=True)
    content_type = me.StringField(required=True)
    size = me.IntField(required=True)
    sha256 = me.StringField(required=True)


class HistoryDoc(me.EmbeddedDocument):
    at = me.DateTimeField(required=True)
    kind = me.StringField(required=True)
    status = me.StringField(required=True)
    note_zh = me.StringField(default="")
    note_en = me.StringField(default="")
    by = me.StringField(default="")


class FilingDoc(me.EmbeddedDocument):
    """Verification before filing (核实立案): how the issue was filed and, for "verify", the worker's decision.
    Issues stored before it existed have none: they were filed directly."""

    mode = me.StringField(default="direct")  # direct | verify
    reason = me.StringField(default="")  # the rule that chose the mode, bilingual
    due_at = me.DateTimeField()  # verify: decide by then, or it is escalated
    overdue_at = me.DateTimeField()  # when it was escalated for want of a decision
    decision = me.StringField(default="")  # "" (waiting) | accepted | declined
    decided_by = me.StringField(default="")  # account id, never a name
    decided_at = me.DateTimeField()
    decline_reason = me.StringField(default="")  # out_of_scope | duplicate | insufficient_info | abusive
    referred_to = me.StringField(default="")  # 12345 | department | court | other
    referred_name = me.StringField(default="")
    duplicate_of = me.StringField(default="")
    ask = me.StringField(default="")
    note = me.StringField(default="")


class IssueDoc(OutboxDocument):
    # Every write's state goes to the state topic, from which the projector keeps the issue list
    # (services/intake/readmodel.py).
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {
        "collection": "issues",
        "indexes": ["-created_at"],
    }

    id = me.StringField(primary_key=True)
    title = me.StringField(required=True)
    description = me.StringField(required=True)
    channel = me.StringField(required=True)
    category = me.StringField(required=True)
    location = me.EmbeddedDocumentField(LocationDoc, required=True)
    status = me.StringField(required=True)
    created_by = me.StringField(required=True)
    created_at = me.DateTimeField(required=True)
    grant_id = me.StringField(default="")  # department_assistance: the assistance grant
    urgency = me.StringField(default="")
    urgency_reasons = me.ListField(me.StringField())
    # Why the issue has its category: chosen by the reporter, suggested from its words (classify.suggest_category)
    # or changed by a worker; bilingual lines, oldest first.
    category_reasons = me.ListField(me.StringField())
    affected_households = me.IntField(default=0)
    hazards = me.ListField(me.StringField())
    contact = me.EmbeddedDocumentField(ContactDoc)
    attachments = me.EmbeddedDocumentListField(AttachmentMetaDoc)
    place = me.EmbeddedDocumentField(PlaceDoc)
    duplicate_of = me.StringField(default="")
    duplicates = me.ListField(me.StringField())
    history = me.EmbeddedDocumentListField(HistoryDoc)
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()
    # The lifecycle's clock: when (by the events' own times) the status last changed and was last
    # reopened, so a late or replayed older event changes nothing; and the kind of that last step.
    status_changed_at = me.DateTimeField()
    status_kind = me.StringField(default="")
    reopened_at = me.DateTimeField()
    # The duplicate claim this issue holds (deleted when it closes), "" for none.
    dup_claim = me.StringField(default="")
    # Where it came from besides its channel: "meeting:<id>" (an alliance meeting's action item), "" for a report.
    origin = me.StringField(default="")
    filing = me.EmbeddedDocumentField(FilingDoc)


class AttachmentDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "attachments"}

    id = me.StringField(primary_key=True)
    issue_id = me.StringField(required=True)
    filename = me.StringField(required=True)
    content_type = me.StringField(required=True)
    size = me.IntField(required=True)
    sha256 = me.StringField(required=True)
    content = me.BinaryField(required=True)
    created_at = me.DateTimeField(required=True)


class RulesDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "rules"}

    id = me.StringField(primary_key=True)  # "rules"
    version = me.IntField(required=True)
    rules = me.DictField(required=True)
    updated_at = me.DateTimeField(required=True)
    updated_by = me.StringField(default="")


class DuplicateClaimDoc(TenantDocument):
    """_id = geo.claim_key(...): the open issue that holds this category's cell in this time bucket."""

    meta: ClassVar[dict[str, Any]] = {"collection": "duplicate_claims"}

    id = me.StringField(primary_key=True)
    issue_id = me.StringField(required=True)
    category = me.StringField(required=True)
    lat = me.FloatField(required=True)
    lon = me.FloatField(required=True)
    created_at = me.DateTimeField(required=True)  # the issue's


class FollowCodeDoc(TenantDocument):
    """_id = the issue's id: the SHA-256 of its reporter's follow-up code (domain.follow_code_hash), never the code."""

    meta: ClassVar[dict[str, Any]] = {"collection": "follow_codes"}

    id = me.StringField(primary_key=True)
    code_hash = me.StringField(required=True)
    created_at = me.DateTimeField(required=True)
