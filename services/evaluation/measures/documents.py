"""The measures' write side (per-tenant database hl_evaluation_<tenant>).

- measure_settings: the tenant's weights, prior k, minimum workload and freeze grace (_id "settings"),
  absent until first set (the defaults of domain.py apply).
- board_sets: one document per frozen version of a quarter's four boards of a community or the tenant
  (_id "<quarter>:<community_id|*>:v<version>", inserted, never changed): the boards with each entry's
  explanation, and the BoardsFrozen event in the same write (outbox). The insert by _id is the claim: two
  freezes of the same version cannot both win.
- timers (services/common/clocks.py): "boards:<quarter>" freezes or corrects a quarter's boards.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class MeasureSettingsDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "measure_settings"}

    id = me.StringField(primary_key=True)  # "settings"
    weights = me.DictField(default=dict)
    prior = me.FloatField(default=5.0)
    min_workload = me.IntField(default=1)
    grace_hours = me.IntField(default=72)
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()
    updated_by = me.StringField(default="")


class BoardSetDoc(OutboxDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "board_sets"}

    id = me.StringField(primary_key=True)
    quarter = me.StringField(required=True)
    community_id = me.StringField(required=True)  # "*" for the tenant
    version = me.IntField(required=True)
    corrects_version = me.IntField(default=0)
    changes = me.StringField(default="")
    formula = me.StringField(required=True)
    frozen_at = me.DateTimeField(required=True)
    # board kind -> entries: {rank, subject, name_zh, score, workload, explanation, parts: [...]}
    boards = me.DictField(default=dict)
