"""The audit log, anchored in public: the head of its hash chain at a period's end, signed with the audit key.

A monthly publication (and the report upward) carries `{seq, hash, at, signature, public_key}`: the last
entry of the audit log (services/common/audit.py) appended before the period's end, and an Ed25519
signature over the same message a checkpoint signs ("hongling-audit-checkpoint:<seq>:<hash>"). Once the
notice is printed on a compound's board, rewriting any entry up to that seq — even the newest ones no signed
checkpoint covers yet — breaks the chain against a head someone holds on paper:
`python -m services.common.audit verify --heads FILE` checks the log against published heads.

The head is read from the audit log's SQL read model (services/common/audit_readmodel.py; on the local
FerretDB a look-up in the log itself scans it): per schema, the newest entry before the end on the
(at, seq) index (migration 0012), the greatest of them. The read model may be behind the log: the head is
only taken once it holds an entry at or after the end, or all of the log (else Unavailable: retry later).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from services.common import readside
from services.common.audit import GENESIS, AuditLog, checkpoint_message, shared_log
from services.common.audit_readmodel import entries_in, projected_seq
from services.common.errors import Unavailable
from services.publication.content import Anchor


def head_before(end: datetime, log: AuditLog) -> tuple[int, str]:
    """(seq, hash) of the last entry appended before `end`, or (0, GENESIS) for none."""
    head: tuple[int, str] = (0, GENESIS)
    passed = False
    with readside.engine().connect() as conn:
        for _, schema in readside.all_schemas():
            t = entries_in(schema)
            found = conn.execute(
                select(t.c.seq, t.c.hash).where(t.c.at < end).order_by(t.c.at.desc(), t.c.seq.desc()).limit(1)
            ).first()
            if found is not None and int(found.seq) > head[0]:
                head = (int(found.seq), str(found.hash))
            passed = passed or conn.execute(select(t.c.seq).where(t.c.at >= end).limit(1)).first() is not None
    if not passed and projected_seq() < log.last_seq():
        raise Unavailable(
            "the audit log's read model has not yet reached the period's end; try again shortly "
            "(审计日志读模型尚未同步到期末，请稍后重试)"
        )
    return head


def anchor_at(end: datetime, log: AuditLog | None = None) -> Anchor:
    """The signed head of the audit log at `end` (an aware datetime: the period's end)."""
    if end.tzinfo is None:
        raise ValueError("the period's end must be an aware datetime")
    audit = log or shared_log()
    seq, digest = head_before(end.astimezone(UTC), audit)
    signature = audit.key.sign(checkpoint_message(seq, digest))
    public = audit.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "seq": seq,
        "hash": digest,
        "at": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "signature": base64.b64encode(signature).decode(),
        "public_key": base64.b64encode(public).decode(),
    }
