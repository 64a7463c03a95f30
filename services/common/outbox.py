"""Transactional outbox without transactions: events ride inside the aggregate's own document.

A handler changes an aggregate and calls `aggregate.record(event)`; one `save()` writes the new state
and the pending events together (a single-document write, atomic on MongoDB and FerretDB alike).
The relay publishes pending events with the idempotent producer, in order per aggregate, then pulls
exactly the published ones out of the document. A crash between publish and pull republishes them
(at least once); consumers drop the duplicate by event id. Nothing is lost.

Finding pending work without scanning every collection: before a write that carries events, the
writer upserts a small marker ({_id: "<collection>:<doc id>", at}) into the tenant's
`outbox_markers` collection. The relay reads only the markers and fetches their documents by _id.
A marker is removed once its document has no pending events and the marker is older than
MARKER_GRACE (longer than any write takes between marker and document), and only if no writer
touched it since it was read. A crash between marker and document leaves a marker to an unchanged
document, which is simply cleaned up. A slow full sweep (SWEEP_SECONDS) backs this up.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import mongoengine as me
from google.protobuf.message import Message
from kafka import KafkaProducer

from services.common import metrics
from services.common.events import CloudEvent, record_key, topic_for
from services.common.mongo import TenantDocument, tenant_database
from services.common.tenants import tenant_slugs

log = logging.getLogger(__name__)

# Set whenever a handler saves events, so the relay publishes at once instead of at its next poll.
OUTBOX_SIGNAL = threading.Event()
MARKERS = "outbox_markers"
MARKER_GRACE = timedelta(seconds=30)
SWEEP_SECONDS = 600.0


def mark_pending(doc_cls: type[Any], doc_id: str) -> None:
    """Tell the relay that this document is about to carry events (call before the write)."""
    db = doc_cls._get_db()
    db[MARKERS].update_one(
        {"_id": f"{doc_cls._get_collection_name()}:{doc_id}"},
        {"$set": {"at": datetime.now(UTC), "collection": doc_cls._get_collection_name(), "doc": doc_id}},
        upsert=True,
    )


class PendingEvent(me.EmbeddedDocument):
    id = me.StringField(required=True)
    type = me.StringField(required=True)
    subject = me.StringField(required=True)
    time = me.DateTimeField(required=True)
    data = me.BinaryField(required=True)


class OutboxDocument(TenantDocument):
    """An aggregate that carries its own not-yet-published events."""

    meta: ClassVar[dict[str, Any]] = {"abstract": True, "indexes": ["outbox_pending"]}

    outbox = me.EmbeddedDocumentListField(PendingEvent)
    outbox_pending = me.BooleanField(default=False)

    def record(self, message: Message, subject: str, *, at: datetime | None = None) -> str:
        """Queue an event to be written with this document's next save(); returns its id."""
        event_id = uuid.uuid4().hex
        self.outbox.append(
            PendingEvent(
                id=event_id,
                type=message.DESCRIPTOR.full_name,
                subject=subject,
                time=at or datetime.now(UTC),
                data=message.SerializeToString(),
            )
        )
        self.outbox_pending = True
        return event_id

    def save(self, *args: Any, **kwargs: Any) -> Any:
        if self.outbox_pending:
            mark_pending(type(self), str(self.pk))
        result = super().save(*args, **kwargs)
        if self.outbox_pending:
            OUTBOX_SIGNAL.set()
        return result


def make_producer(bootstrap: str, client_id: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        retries=2147483647,
        max_in_flight_requests_per_connection=5,
        request_timeout_ms=15000,
    )


class OutboxRelay:
    """Publishes the pending events of the given aggregate classes, for every tenant."""

    def __init__(
        self,
        service: str,
        documents: Sequence[type[OutboxDocument]],
        bootstrap: str,
        *,
        interval: float = 1.0,
        batch: int = 200,
    ) -> None:
        self.name = f"{service}-outbox-relay"
        self.service = service
        self.documents = list(documents)
        self.bootstrap = bootstrap
        self.interval = interval
        self.batch = batch
        self.topic = topic_for(service)

    def run(self, stop: threading.Event) -> None:
        producer = make_producer(self.bootstrap, self.name)
        last_sweep = 0.0
        try:
            while not stop.is_set():
                OUTBOX_SIGNAL.clear()
                if time.monotonic() - last_sweep > SWEEP_SECONDS:
                    self.sweep()
                    last_sweep = time.monotonic()
                published = self.publish_pending(producer)
                if published == 0:
                    OUTBOX_SIGNAL.wait(self.interval)
        finally:
            producer.close(timeout=10)

    def sweep(self) -> int:
        """Full scan for pending documents without a marker (a safety net); returns how many it marked."""
        found = 0
        for tenant in tenant_slugs():
            db = tenant_database(tenant)
            for doc_cls in self.documents:
                name = doc_cls._get_collection_name()
                for doc in db[name].find({"outbox_pending": True}, {"_id": 1}).limit(10_000):
                    db[MARKERS].update_one(
                        {"_id": f"{name}:{doc['_id']}"},
                        {"$setOnInsert": {"at": datetime.now(UTC), "collection": name, "doc": doc["_id"]}},
                        upsert=True,
                    )
                    found += 1
        return found

    def publish_pending(self, producer: KafkaProducer) -> int:
        """One pass over every tenant's markers; returns how many events were published."""
        total = 0
        collections = {d._get_collection_name() for d in self.documents}
        for tenant in tenant_slugs():
            db = tenant_database(tenant)
            backlog = 0
            now = datetime.now(UTC)
            for marker in list(db[MARKERS].find().limit(self.batch)):
                if marker.get("collection") not in collections:
                    continue
                coll = db[marker["collection"]]
                doc = coll.find_one({"_id": marker["doc"]}, {"outbox": 1, "deleted": 1})
                pending = len((doc or {}).get("outbox") or [])
                backlog += pending
                if pending:
                    total += self._publish_doc(producer, coll, tenant, doc)
                    doc = coll.find_one({"_id": marker["doc"]}, {"outbox": 1})
                    if doc and doc.get("outbox"):
                        continue  # new events arrived meanwhile: keep the marker
                at = marker["at"] if marker["at"].tzinfo else marker["at"].replace(tzinfo=UTC)
                if now - at > MARKER_GRACE:
                    db[MARKERS].delete_one({"_id": marker["_id"], "at": marker["at"]})
            metrics.OUTBOX_BACKLOG.labels(self.service, tenant).set(backlog)
        return total

    def _cloud_event(self, tenant: str, ev: dict[str, Any]) -> CloudEvent:
        return CloudEvent(
            id=ev["id"],
            source=f"/hongling/{self.service}/{tenant}",
            type=ev["type"],
            time=ev["time"],
            subject=ev["subject"],
            tenant=tenant,
            data=bytes(ev["data"]),
        )

    def _publish_doc(self, producer: KafkaProducer, coll: Any, tenant: str, doc: dict[str, Any]) -> int:
        events = doc.get("outbox") or []
        if not events:
            coll.update_one({"_id": doc["_id"], "outbox": {"$size": 0}}, {"$set": {"outbox_pending": False}})
            return 0
        try:
            futures = [
                producer.send(self.topic, key=record_key(tenant, str(doc["_id"])), value=ce.data, headers=ce.headers())
                for ce in (self._cloud_event(tenant, ev) for ev in events)
            ]
            producer.flush(timeout=15)
            for f in futures:
                f.get(timeout=15)
        except Exception:
            metrics.OUTBOX_ERRORS.labels(self.service).inc()
            log.exception("publishing %d event(s) failed; they stay in the outbox for the next pass", len(events))
            return 0
        # $pullAll removes exactly the elements as read (FerretDB v1 matches $pull conditions only as
        # whole elements, so a {"id": {"$in": ...}} condition would silently remove nothing).
        coll.update_one({"_id": doc["_id"]}, {"$pullAll": {"outbox": events}})
        coll.update_one({"_id": doc["_id"], "outbox": {"$size": 0}}, {"$set": {"outbox_pending": False}})
        # A tombstone (a deleted record kept only to carry its deletion event) goes once the event is out.
        coll.delete_one({"_id": doc["_id"], "deleted": True, "outbox": {"$size": 0}})
        for ev in events:
            metrics.OUTBOX_PUBLISHED.labels(self.service, tenant, ev["type"]).inc()
        return len(events)
