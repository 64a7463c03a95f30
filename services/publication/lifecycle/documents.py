"""The lifecycle's write side (per-tenant database hl_publication_<tenant>).

- publications: one document per version, _id "<kind>:<scope>:<period>:v<n>", created by insert (two creations
  of one version cannot both win). `number` is the publication's version n; `version` is the document's own
  revision (the unit of work's, services/common/unitofwork.py, and the state topic's: the read model keeps the
  newest). The content is canonical JSON with its sha256. Until released a version's draft may be replaced
  (a new CreateDraft: same number, `draft_no` + 1); released, it never changes again. The release writes
  PublicationReleased (and ProgressPublished for monthly) in the same document write (the outbox). Its state
  goes to the state topic (the read model `publications`, readmodel.py).
- publication_claims: once-only steps, claimed by insert before they are written (gateway/governance/store.py
  explains why an insert and not a conditional update): "release:<id>", "review:<id>:<draft_no>". Of two
  concurrent releases (or reviews of one draft) exactly one insert succeeds; the other is refused.
- version_claims (the unit of work), outbox_* (services/common/outbox.py), timers (services/common/clocks.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class PublicationDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "publications"}

    id = me.StringField(primary_key=True)
    kind = me.StringField(required=True)
    scope = me.StringField(required=True)
    period = me.StringField(required=True)
    number = me.IntField(required=True)  # the publication's version n
    status = me.StringField(required=True)
    corrects_version = me.IntField(default=0)
    changes = me.ListField(me.StringField())
    content = me.StringField(required=True)  # canonical JSON
    content_sha256 = me.StringField(required=True)
    audit_anchor = me.DictField(default=None, null=True)
    title_zh = me.StringField(default="")
    title_en = me.StringField(default="")
    draft_no = me.IntField(default=1)
    created_at = me.DateTimeField(required=True)
    created_by = me.StringField(default="")
    reviewed_at = me.DateTimeField()
    reviewed_by = me.StringField(default="")
    review_note = me.StringField(default="")
    released_at = me.DateTimeField()
    released_by = me.StringField(default="")
    version = me.IntField(default=1)
    updated_at = me.DateTimeField()


class ClaimDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "publication_claims"}

    id = me.StringField(primary_key=True)  # "release:<id>" | "review:<id>:<draft_no>"
    by = me.StringField(default="")
    at = me.DateTimeField(required=True)
