"""Version claims: who may write a record's next version, on MongoDB and on FerretDB alike.

FerretDB v1 runs update/findAndModify as unisolated read-modify-writes (measured on both its backends), so a conditional
update cannot decide between two writers holding the same version. An insert with a unique _id is atomic
everywhere: a writer inserts {_id: "<record>:<version>"} into the service's per-tenant `version_claims`
and only the winner writes that version. A claim whose writer died before writing (older than
CLAIM_STALE) is taken over under the next name ("…~1", "…~2"), so one crash cannot freeze a record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import mongoengine as me
import pymongo.errors

from services.common.mongo import TenantDocument

CLAIM_STALE = timedelta(seconds=30)
CLAIM_TAKEOVERS = 20


class VersionClaimDoc(TenantDocument):
    """_id "<record>:<version>" (e.g. "issue:<id>:3", "person:<id>:2"): inserted before that version is written."""

    meta: ClassVar[dict[str, Any]] = {"collection": "version_claims"}

    id = me.StringField(primary_key=True)
    at = me.DateTimeField(required=True)


def claim_version(claim_id: str) -> bool:
    """Win the right to write this version; False if another (live) writer has it."""
    now = datetime.now(UTC)
    for n in range(CLAIM_TAKEOVERS):
        cid = claim_id if n == 0 else f"{claim_id}~{n}"
        try:
            VersionClaimDoc(id=cid, at=now).save(force_insert=True)
            return True
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            held = VersionClaimDoc.objects(id=cid).first()
            if held is None:
                return False
            held_at = held.at if held.at.tzinfo else held.at.replace(tzinfo=UTC)
            if now - held_at < CLAIM_STALE:
                return False
            # Its writer claimed long ago and never wrote (it crashed): take over under the next name.
    return False
