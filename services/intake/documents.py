"""Intake persistence schema (per-tenant database hl_intake_<tenant>)."""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.outbox import OutboxDocument


class LocationDoc(me.EmbeddedDocument):
    lat = me.FloatField()
    lon = me.FloatField()
    address = me.StringField(default="")
    compound_id = me.StringField(default="")


class IssueDoc(OutboxDocument):
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
