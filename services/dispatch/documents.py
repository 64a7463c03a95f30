"""Dispatch persistence schema (per-tenant database hl_dispatch_<tenant>)."""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.outbox import OutboxDocument


class TaskDoc(OutboxDocument):
    meta: ClassVar[dict[str, Any]] = {
        "collection": "tasks",
        "indexes": [{"fields": ["issue_id"], "unique": True}],
    }

    id = me.StringField(primary_key=True)
    issue_id = me.StringField(required=True)
    status = me.StringField(required=True)
    created_at = me.DateTimeField(required=True)
    source_event_id = me.StringField(required=True)
