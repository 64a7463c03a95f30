"""Transactional outbox without transactions: events ride inside the aggregate's own document.

A handler changes an aggregate and calls `aggregate.record(event)`; one `save()` writes the new state
and the pending events together (a single-document write, atomic on MongoDB and FerretDB alike).
The relay publishes pending events with the idempotent producer, in order per aggregate, then pulls
exactly the published ones out of the document. A crash between publish and pull republishes them
(at least once); consumers drop the duplicate by event id. Nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
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
        try:
            while not stop.is_set():
                OUTBOX_SIGNAL.clear()
                published = self.publish_pending(producer)
                if published == 0:
                    OUTBOX_SIGNAL.wait(self.interval)
        finally:
            producer.close(timeout=10)

    def publish_pending(self, producer: KafkaProducer) -> int:
        """One pass over every tenant; returns how many events were published."""
        total = 0
        for tenant in tenant_slugs():
            db = tenant_database(tenant)
            backlog = 0
            for doc_cls in self.documents:
                coll = db[doc_cls._get_collection_name()]
                docs = list(coll.find({"outbox_pending": True}, {"outbox": 1}).limit(self.batch))
                for doc in docs:
                    backlog += len(doc.get("outbox") or [])
                    total += self._publish_doc(producer, coll, tenant, doc)
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
