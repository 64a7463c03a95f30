"""BoardsFrozen -> the stored board set and the publication's draft (consumer group "publication-boards", in the
publication process).

Evaluation freezes a closed quarter's four boards per community and for the tenant (BoardsFrozen on
hongling.evaluation.v1), and corrects them with the next version (corrects_version, `changes`). Each event is
stored as it came (documents.BoardSetDoc, inserted by its board_set_id: a repeated event, whatever its event
id, changes nothing), then the lifecycle is asked for the draft of the quarter's `boards` publication of that
scope (lifecycle.handlers.create_draft; a correction's draft is the publication's next version, built from the
newest stored set). The draft is asked for after the insert and marked done on the document (`drafted`): a
crash between the two asks again on redelivery; an event whose set was stored and drafted changes nothing.
Processed-event marks (the consumer's, by event id) drop a redelivered record before any read; offsets are
committed after the write; poison (not a CloudEvent, no board_set_id) goes to the group's dead-letter topic
(services/common/topics.py EXTRA_GROUPS).
"""

from __future__ import annotations

import logging
from datetime import UTC

import mongoengine as me
import pymongo.errors
from hongling.events.v1 import evaluation_events_pb2 as eev

from services.common.consumer import EventConsumer
from services.common.context import require_tenant
from services.common.events import CloudEvent, PoisonEvent, topic_for
from services.common.settings import Settings
from services.publication.boards.documents import BoardSetDoc
from services.publication.lifecycle import handlers as lifecycle
from services.publication.reports.domain import QUARTER

log = logging.getLogger(__name__)
GROUP = "publication-boards"
KIND = "boards"
BY = "evaluation"


def document_of(event: CloudEvent, msg: eev.BoardsFrozen) -> BoardSetDoc:
    """The stored set of an event (PoisonEvent for one that names no set, scope or quarter)."""
    if not msg.board_set_id or not msg.community_id or not QUARTER.match(msg.quarter) or msg.version < 1:
        raise PoisonEvent(f"{event.type} {event.id} names no board set, scope, quarter or version")
    at = msg.frozen_at.ToDatetime(tzinfo=UTC) if msg.frozen_at.seconds else event.time.astimezone(UTC)
    return BoardSetDoc(
        id=msg.board_set_id,
        quarter=msg.quarter,
        community_id=msg.community_id,
        version=msg.version,
        corrects_version=msg.corrects_version,
        changes=msg.changes,
        formula=msg.formula,
        frozen_at=at.replace(microsecond=at.microsecond // 1000 * 1000),
        boards={
            b.kind: [
                {
                    "rank": e.rank,
                    "subject_kind": e.subject_kind,
                    "subject_id": e.subject_id,
                    "name_zh": e.name_zh,
                    "score": e.score,
                    "workload": int(e.workload),
                }
                for e in sorted(b.entries, key=lambda x: x.rank)
            ]
            for b in msg.boards
        },
        event_id=event.id,
    )


def create_draft(tenant: str, scope: str, quarter: str) -> None:
    """The lifecycle's draft of the quarter's boards of a scope (services.publication.lifecycle.handlers)."""
    lifecycle.create_draft(tenant, KIND, scope, quarter, by=BY)


def on_boards_frozen(event: CloudEvent, msg: eev.BoardsFrozen) -> None:
    doc = document_of(event, msg)
    try:
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        stored = BoardSetDoc.objects(id=doc.id).only("drafted").first()
        if stored is None or stored.drafted:
            return  # the same set again: nothing changes
    tenant = require_tenant()
    try:
        create_draft(tenant, doc.community_id, doc.quarter)
    except lifecycle.NothingChanged:
        log.info("boards %s stored; what the boards show is as released, so no new version", doc.id)
    else:
        log.info("boards %s stored, its draft asked for", doc.id)
    BoardSetDoc.objects(id=doc.id).update_one(set__drafted=True)


def build_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        GROUP,
        [topic_for("evaluation")],
        {eev.BoardsFrozen: on_boards_frozen},
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
        mark_prefix=f"{GROUP}:",
    )
