"""The boards' write side (per-tenant database hl_publication_<tenant>).

- board_sets: one document per frozen version of a quarter's four boards of a community or the tenant, as
  evaluation announced it (BoardsFrozen; _id the event's board_set_id "<quarter>:<community_id|*>:v<version>").
  Inserted, never changed but for `drafted` (the draft of the publication was asked for): the insert by _id
  is the claim, so a repeated event changes nothing. The boards' builder (builder.py) reads the newest version
  of a scope and quarter.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument


class BoardSetDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {
        "collection": "board_sets",
        "indexes": [{"fields": ["quarter", "community_id", "-version"]}],
    }

    id = me.StringField(primary_key=True)
    quarter = me.StringField(required=True)
    community_id = me.StringField(required=True)  # "*" for the tenant
    version = me.IntField(required=True)
    corrects_version = me.IntField(default=0)
    changes = me.StringField(default="")
    formula = me.StringField(default="")
    frozen_at = me.DateTimeField(required=True)
    # board kind -> entries [{rank, subject_kind, subject_id, name_zh, score, workload}], in rank order
    boards = me.DictField(default=dict)
    event_id = me.StringField(default="")
    drafted = me.BooleanField(default=False)
