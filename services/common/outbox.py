"""Transactional outbox without transactions: events ride inside the aggregate's own document.

A handler changes an aggregate and calls `aggregate.record(event)`; one `save()` writes the new state
and the pending events together (a single-document write). The relay publishes them with the
idempotent producer, in order per aggregate, and records each published event id in the tenant's
`outbox_published` collection (an insert by _id). It never writes the aggregate document itself:
on FerretDB v1 an update is a read-modify-write without isolation, so a relay update
racing a handler's update could silently undo one of them. A crash between publishing and
recording republishes (at least once); consumers drop the duplicate by event id. Nothing is lost.
The aggregate keeps its events as its history (`outbox`); what is still pending is the part whose
ids are not yet in `outbox_published`.

Finding pending work without scanning every collection: before every write that carries events, the
writer inserts a new marker {_id: random, collection, doc, at} into `outbox_markers` (inserts only,
so writers and the relay never race on one marker). The relay reads the markers, fetches their
documents by _id and publishes what is unpublished. A marker found clean is looked at once more
after MARKER_GRACE (far longer than the moment between a marker and its document write) and then
deleted; a crash between marker and write leaves a marker to a document without new events, which
is cleaned up the same way. Several relay processes may publish the same event twice; consumers
drop the duplicate.

Hand-off. Each read above is a round trip through FerretDB to PostgreSQL and back (by _id an index
search, deploy/local/patches; the marker scan reads every marker of the tenant). A creation (`save(force_insert=True)`)
therefore also hands its events to this process's own relay once its write succeeded: the relay
publishes them from memory (no document read, no `outbox_published` look-up: nobody else can have
published events of a document this process just created, short of another relay seeing its marker,
which is the duplicate consumers already drop), records them in `outbox_published` with the other
creations of its tenant at most a second later (one insert per tenant and second under load, where each
creation took its own; a crash in that second republishes them, which consumers drop), and deletes
the marker after its grace without reading the document. Nothing else changes: the marker is written before the
document, so after a crash, a failed publish or in another process the marker path above finds the
events as before. Creations have no earlier events, so publishing them first keeps the order per
aggregate; a document with a creation still under way or handed over is skipped by the marker scan.
Measured (issue 15, with the `_id` index patched in): without the hand-off the relay fell behind at 50
issues/s, an IssueReceived reached Kafka 22 s (p50; p99 46 s) after it was recorded; with it 0.9 s (p99 3.7 s)
on the same 2-core machine, all else equal. The CPU it costs (within noise in bench/intake_throughput.py)
buys that. Changes (not creations) signal the relay at once: it reads the markers this process wrote for them
(and, until their write is surely over, the young markers it saw) by _id, instead of scanning the
markers of every tenant for each change; the full marker scan runs every `interval`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import mongoengine as me
import pymongo.errors
from google.protobuf.message import Message
from kafka import KafkaProducer

from services.common import groupcommit, metrics
from services.common.context import require_tenant
from services.common.events import CloudEvent, record_key, topic_for
from services.common.mongo import TenantDocument, tenant_database
from services.common.tenants import tenant_slugs

log = logging.getLogger(__name__)

# Set whenever a handler saves events, so the relay publishes at once instead of at its next poll.
OUTBOX_SIGNAL = threading.Event()
# Set when a write other than a creation is about to carry events (the relay looks at its marker at once).
CHANGE_SIGNAL = threading.Event()
# The markers behind CHANGE_SIGNAL: (tenant, collection) -> marker ids written by this process. The relay
# reads them by _id (an index look-up on the local FerretDB, where the full marker scan reads every marker
# of every tenant) instead of scanning all markers for each change; the full scan still runs every interval.
_CHANGED_LOCK = threading.Lock()
_CHANGED: dict[tuple[str, str], set[str]] = defaultdict(set)
MARKERS = "outbox_markers"
PUBLISHED = "outbox_published"
MARKER_GRACE = timedelta(seconds=10)
# A marker younger than this may belong to a write still under way: look at it on every pass.
MARKER_YOUNG = timedelta(seconds=2)
KNOWN_PUBLISHED_MAX = 200_000
HANDOFF_MAX = 20_000
YOUNG_RESCAN_SECONDS = 0.05
RELAY_LINGER_SECONDS = 0.01
# Published hand-off events are recorded at least this often, or once this many are waiting.
RECORD_SECONDS = 1.0
RECORD_MAX = 2000


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class _Handoff:
    """This process's creations, handed to its own relay (see "Hand-off" in the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # marker id -> (tenant, collection, doc id): a creation whose write is under way.
        self.in_flight: dict[str, tuple[str, str, Any]] = {}
        # marker id -> (tenant, collection, doc id, events): a creation written with these events.
        self.ready: OrderedDict[str, tuple[str, str, Any, list[dict[str, Any]]]] = OrderedDict()

    def begin(self, marker_id: str, key: tuple[str, str, Any]) -> None:
        with self.lock:
            self.in_flight[marker_id] = key

    def end(self, marker_id: str, events: list[dict[str, Any]] | None) -> None:
        """The write of this marker's creation is over: written with `events`, or failed (None)."""
        with self.lock:
            key = self.in_flight.pop(marker_id, None)
            if key is not None and events:
                self.ready[marker_id] = (*key, events)
                while len(self.ready) > HANDOFF_MAX:
                    self.ready.popitem(last=False)  # the relay is far behind: these take the marker path

    def busy(self) -> set[tuple[str, str, Any]]:
        """The documents this process's relay publishes from the hand-off (or is about to)."""
        with self.lock:
            return {*self.in_flight.values(), *((t, c, d) for t, c, d, _ in self.ready.values())}


HANDOFF = _Handoff()


def _marker(collection: str, doc_id: str, at: datetime) -> dict[str, Any]:
    """A new marker: the document `doc_id` of `collection` is about to carry new events."""
    return {"_id": uuid.uuid4().hex, "collection": collection, "doc": doc_id, "at": at}


def mark_pending(doc_cls: type[Any], doc_id: str, *, creation: bool = False) -> str:
    """Tell the relay that this document is about to carry new events (call before the write);
    returns the marker's id. A `creation` must be followed by `hand_over` once its write is over."""
    name = doc_cls._get_collection_name()
    marker = _marker(name, doc_id, datetime.now(UTC))
    marker_id = marker["_id"]
    groupcommit.insert(doc_cls._get_db()[MARKERS], marker)
    if creation:
        HANDOFF.begin(marker_id, (require_tenant(), name, doc_id))
    else:
        with _CHANGED_LOCK:
            _CHANGED[(require_tenant(), name)].add(marker_id)
        CHANGE_SIGNAL.set()  # found through its marker: the relay looks at it at once
    return marker_id


def stored_event(message: Message, subject: str, at: datetime) -> dict[str, Any]:
    """An event as it is stored in a document's `outbox` (by `OutboxDocument.record`, or in a document
    written as a plain dict)."""
    return {
        "id": uuid.uuid4().hex,
        "type": message.DESCRIPTOR.full_name,
        "subject": subject,
        "time": at,
        "data": message.SerializeToString(),
    }


def insert_created(docs: Sequence[tuple[type[OutboxDocument], dict[str, Any]]]) -> list[bool]:
    """Create documents given as stored (each with its _id and its events in `outbox`, from stored_event), in
    the order given, as `save(force_insert=True)` of each would, without building mongoengine documents (for a
    call with many targets that was a fifth of the work of handling its event): every marker in one insert
    first (each save writes its own), then each document (sharing the command with concurrent inserts into
    its collection, groupcommit), handed to this process's relay once written. Per document: True when
    written, False when one with its _id existed already (a replay); other errors raise, and a document not
    written gives its marker back (the relay cleans it up)."""
    if not docs:
        return []
    tenant = require_tenant()
    now = datetime.now(UTC)
    markers = [_marker(cls._get_collection_name(), str(son["_id"]), now) for cls, son in docs]
    for marker in markers:
        HANDOFF.begin(marker["_id"], (tenant, marker["collection"], marker["doc"]))
    written: list[bool] = []
    try:
        failed = next((e for e in groupcommit.insert_all(docs[0][0]._get_db()[MARKERS], markers) if e), None)
        if failed is not None:
            raise failed
        for (cls, son), marker in zip(docs, markers, strict=True):
            try:
                groupcommit.insert(cls._get_collection(), son)
            except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
                hand_over(marker["_id"], None)
                written.append(False)
                continue
            hand_over(marker["_id"], son.get("outbox") or [])
            written.append(True)
    finally:
        for marker in markers[len(written) :]:
            HANDOFF.end(marker["_id"], None)
    return written


def hand_over(marker_id: str, events: Sequence[Any] | None) -> None:
    """A creation's write is over: written with these new events (PendingEvents or their stored dicts), or
    failed (None)."""
    HANDOFF.end(
        marker_id,
        None if events is None else [{f: ev[f] for f in ("id", "type", "subject", "time", "data")} for ev in events],
    )
    OUTBOX_SIGNAL.set()


class PendingEvent(me.EmbeddedDocument):
    id = me.StringField(required=True)
    type = me.StringField(required=True)
    subject = me.StringField(required=True)
    time = me.DateTimeField(required=True)
    data = me.BinaryField(required=True)


class OutboxDocument(TenantDocument):
    """An aggregate that carries its own not-yet-published events."""

    meta: ClassVar[dict[str, Any]] = {"abstract": True}

    outbox = me.EmbeddedDocumentListField(PendingEvent)

    def record(self, message: Message, subject: str, *, at: datetime | None = None) -> str:
        """Queue an event to be written with this document's next save(); returns its id."""
        stored = stored_event(message, subject, at or datetime.now(UTC))
        self.outbox.append(PendingEvent(**stored))
        self._new_count = getattr(self, "_new_count", 0) + 1 if getattr(self, "_new_events", False) else 1
        self._new_events = True
        return str(stored["id"])

    def new_events(self) -> list[PendingEvent]:
        """The events recorded since the last save (the tail of `outbox`)."""
        count = getattr(self, "_new_count", 0) if getattr(self, "_new_events", False) else 0
        return list(self.outbox[len(self.outbox) - count :]) if count else []

    def save(self, *args: Any, **kwargs: Any) -> Any:
        new_events = getattr(self, "_new_events", False)
        creation = bool(kwargs.get("force_insert"))  # a new document: no earlier events, no other writer
        marker_id = mark_pending(type(self), str(self.pk), creation=creation) if new_events else ""
        pending = self.new_events() if new_events else []
        try:
            result = super().save(*args, **kwargs)
        except BaseException:
            if marker_id and creation:
                hand_over(marker_id, None)
            raise
        if new_events:
            self._new_events = False
            self._new_count = 0
            if creation:
                hand_over(marker_id, pending)
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
        batch: int = 5000,
    ) -> None:
        self.name = f"{service}-outbox-relay"
        self.service = service
        self.documents = list(documents)
        self.bootstrap = bootstrap
        self.interval = interval
        self.batch = batch
        self.topic = topic_for(service)
        # Markers found clean once, waiting out their grace period before a last look (id -> at).
        self._clean: dict[str, datetime] = {}
        # Event ids known to be published, so a document's history is not looked up again and again.
        self._known: OrderedDict[str, None] = OrderedDict()
        # Markers of handed-over creations, published: deleted after their grace without a look (id -> at).
        self._done: dict[str, datetime] = {}
        self._young = False  # the last scan saw a marker whose write may be under way
        # Markers to look at again soon by _id (their write may be under way): tenant -> ids.
        self._young_ids: dict[str, set[str]] = defaultdict(set)
        # Published hand-off events not yet recorded in PUBLISHED (tenant -> records), see record_published.
        self._unrecorded: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._recorded = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        producer = make_producer(self.bootstrap, self.name)
        try:
            next_scan = 0.0  # the next full scan of every tenant's markers
            next_look = 0.0  # the next look, by _id, at the markers of this process's changes and young ones
            while not stop.is_set():
                OUTBOX_SIGNAL.clear()
                published = self.publish_handed(producer)
                self.record_published(due=True)
                now = time.monotonic()
                if now >= next_scan:
                    CHANGE_SIGNAL.clear()
                    self.take_changed()  # the full scan reads them anyway
                    published += self.scan_markers(producer)
                    next_scan = time.monotonic() + self.interval
                    next_look = time.monotonic() + YOUNG_RESCAN_SECONDS
                elif CHANGE_SIGNAL.is_set() or (self._young_ids and now >= next_look):
                    CHANGE_SIGNAL.clear()
                    published += self.look_at_markers(producer)
                    next_look = time.monotonic() + YOUNG_RESCAN_SECONDS
                if published == 0:
                    wake = min(next_scan, next_look) if self._young_ids else next_scan
                    if OUTBOX_SIGNAL.wait(max(0.0, wake - time.monotonic())):
                        # Let the writes of the same moment (a handler's task and call, other threads') join
                        # this pass: one flush and one record of what was published for all of them.
                        stop.wait(RELAY_LINGER_SECONDS)
        finally:
            try:
                self.record_published()
            finally:
                producer.close(timeout=10)

    def publish_pending(self, producer: KafkaProducer) -> int:
        """One full pass: the hand-off, then every tenant's markers; returns how many events were published."""
        published = self.publish_handed(producer)
        self.record_published()
        return published + self.scan_markers(producer)

    def publish_handed(self, producer: KafkaProducer) -> int:
        """Publish the creations this process handed over, from memory: no reads (see the module docstring)."""
        collections = {d._get_collection_name() for d in self.documents}
        with HANDOFF.lock:
            taken = [(m, e) for m, e in HANDOFF.ready.items() if e[1] in collections]
            for m, _ in taken:
                del HANDOFF.ready[m]
        if not taken:
            return 0
        sends: list[tuple[str, str, Any, list[dict[str, Any]], list[Any]]] = []
        try:
            for marker_id, (tenant, _name, doc_id, events) in taken:
                futures = [
                    producer.send(self.topic, key=record_key(tenant, str(doc_id)), value=ce.data, headers=ce.headers())
                    for ce in (self._cloud_event(tenant, ev) for ev in events)
                ]
                sends.append((marker_id, tenant, doc_id, events, futures))
            producer.flush(timeout=15)
        except Exception:
            log.exception("publishing %d handed-over creation(s) failed; their markers lead to them", len(taken))
        total = 0
        now = datetime.now(UTC)
        done: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for marker_id, tenant, doc_id, events, futures in sends:
            try:
                for f in futures:
                    f.get(timeout=15)
            except Exception:
                # Left to the marker (the next scan reads the document and publishes what is unpublished).
                metrics.OUTBOX_ERRORS.labels(self.service).inc()
                log.warning("publishing the events of %s failed; they stay pending", doc_id, exc_info=True)
                continue
            for ev in events:
                done[tenant].append({"_id": ev["id"], "at": now, "doc": doc_id})
                self._remember(ev["id"])
                metrics.OUTBOX_PUBLISHED.labels(self.service, tenant, ev["type"]).inc()
            self._done[marker_id] = now
            total += len(events)
        for tenant, records in done.items():
            self._unrecorded[tenant].extend(records)
        if sum(map(len, self._unrecorded.values())) >= RECORD_MAX:
            self.record_published()
        return total

    def record_published(self, *, due: bool = False) -> None:
        """Write the ids of the handed-over events published since the last call, one insert per tenant.
        With `due`, only once RECORD_SECONDS have passed since the last call: under load a tenant's creations
        then share one insert a second instead of taking one each (a crash before it republishes them at
        most; consumers drop the duplicates)."""
        if not self._unrecorded or (due and time.monotonic() - self._recorded < RECORD_SECONDS):
            return
        pending, self._unrecorded = self._unrecorded, defaultdict(list)
        self._recorded = time.monotonic()
        for tenant, records in pending.items():
            try:
                tenant_database(tenant)[PUBLISHED].insert_many(records, ordered=False)
            except pymongo.errors.BulkWriteError:
                pass  # duplicates: recorded already
            except Exception:
                # Not recorded: a relay reading these documents again later publishes them once more, which
                # consumers drop as duplicates. Nothing is lost.
                metrics.OUTBOX_ERRORS.labels(self.service).inc()
                log.warning("recording %d published event(s) of %s failed", len(records), tenant, exc_info=True)

    def take_changed(self) -> dict[str, set[str]]:
        """The markers of this process's changes to this relay's collections, signalled since the last call."""
        collections = {d._get_collection_name() for d in self.documents}
        taken: dict[str, set[str]] = defaultdict(set)
        with _CHANGED_LOCK:
            for key in [k for k in _CHANGED if k[1] in collections]:
                taken[key[0]] |= _CHANGED.pop(key)
        return taken

    def scan_markers(self, producer: KafkaProducer) -> int:
        """One pass over every tenant's markers; returns how many events were published."""
        total = 0
        self._young = False
        self._young_ids.clear()
        for tenant in tenant_slugs():
            db = tenant_database(tenant)
            total += self._markers_pass(producer, tenant, db, db[MARKERS].find().limit(self.batch), full=True)
        return total

    def look_at_markers(self, producer: KafkaProducer) -> int:
        """A pass over just the markers of this process's changes and the young markers of earlier passes,
        read by _id; returns how many events were published. Markers from elsewhere wait for the full scan."""
        wanted = self.take_changed()
        for tenant, ids in self._young_ids.items():
            wanted[tenant] |= ids
        self._young_ids.clear()
        self._young = False
        total = 0
        for tenant, ids in wanted.items():
            db = tenant_database(tenant)
            ordered = sorted(ids)
            for i in range(0, len(ordered), 1000):  # the local FerretDB pushes `$in` down up to 1000 ids
                found = db[MARKERS].find({"_id": {"$in": ordered[i : i + 1000]}})
                total += self._markers_pass(producer, tenant, db, found, full=False)
        return total

    def _markers_pass(self, producer: KafkaProducer, tenant: str, db: Any, found: Any, *, full: bool) -> int:
        """Publish what the documents of these markers of one tenant hold unpublished, and clean the markers up."""
        total = 0
        collections = {d._get_collection_name() for d in self.documents}
        now = datetime.now(UTC)
        by_doc: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
        for marker in found:
            if marker.get("collection") in collections:
                by_doc[(marker["collection"], marker["doc"])].append(marker)
        backlog = 0
        busy = HANDOFF.busy()
        gone: list[str] = []
        for (name, doc_id), markers in by_doc.items():
            if (tenant, name, doc_id) in busy:
                continue  # a creation of this process, published from the hand-off
            expired = [m for m in markers if now - _aware(m["at"]) > MARKER_GRACE]
            if all(m["_id"] in self._done for m in markers):
                # Its write is known to be over and its events published: no need to read it.
                gone.extend(m["_id"] for m in expired)
                continue
            if not expired and all(m["_id"] in self._clean for m in markers):
                continue  # looked at already; wait for the grace period before the last look
            doc = db[name].find_one({"_id": doc_id}, {"outbox": 1, "deleted": 1})
            events = (doc or {}).get("outbox") or []
            unpublished = [ev for ev in events if not self._published(db, ev["id"])]
            backlog += len(unpublished)
            if unpublished:
                sent = self._publish(producer, db, tenant, doc_id, unpublished)
                total += sent
                if sent < len(unpublished):
                    continue  # failed: keep the markers for the next pass
            for marker in markers:
                if marker in expired:
                    db[MARKERS].delete_one({"_id": marker["_id"]})
                    self._clean.pop(marker["_id"], None)
                    self._done.pop(marker["_id"], None)
                elif now - _aware(marker["at"]) > MARKER_YOUNG:
                    # Found clean and not so young that its write could still be on the way:
                    # skip it until the last look after the grace period.
                    self._clean[marker["_id"]] = now
                else:
                    self._young = True  # its write may still be on the way: look again soon
                    self._young_ids[tenant].add(marker["_id"])
            if doc is not None and doc.get("deleted") and not db[MARKERS].find_one({"doc": doc_id}):
                # A tombstone (kept only to carry its deletion event) goes once that event is out.
                db[name].delete_one({"_id": doc_id, "deleted": True})
        if gone:
            db[MARKERS].delete_many({"_id": {"$in": gone}})
            for marker_id in gone:
                self._done.pop(marker_id, None)
        if full:
            metrics.OUTBOX_BACKLOG.labels(self.service, tenant).set(backlog)
        return total

    def _published(self, db: Any, event_id: str) -> bool:
        if event_id in self._known:
            return True
        if db[PUBLISHED].find_one({"_id": event_id}, {"_id": 1}) is None:
            return False
        self._remember(event_id)
        return True

    def _remember(self, event_id: str) -> None:
        self._known[event_id] = None
        if len(self._known) > KNOWN_PUBLISHED_MAX:
            self._known.popitem(last=False)

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

    def _publish(self, producer: KafkaProducer, db: Any, tenant: str, doc_id: Any, events: list[dict[str, Any]]) -> int:
        """Send the events in order and record them as published; returns how many were recorded."""
        try:
            futures = [
                producer.send(self.topic, key=record_key(tenant, str(doc_id)), value=ce.data, headers=ce.headers())
                for ce in (self._cloud_event(tenant, ev) for ev in events)
            ]
            producer.flush(timeout=15)
            for f in futures:
                f.get(timeout=15)
        except Exception:
            metrics.OUTBOX_ERRORS.labels(self.service).inc()
            log.exception("publishing %d event(s) failed; they stay pending for the next pass", len(events))
            return 0
        now = datetime.now(UTC)
        for ev in events:
            # A duplicate means an earlier pass recorded it and crashed before removing its marker.
            with contextlib.suppress(pymongo.errors.DuplicateKeyError):
                db[PUBLISHED].insert_one({"_id": ev["id"], "at": now, "doc": doc_id})
            self._remember(ev["id"])
            metrics.OUTBOX_PUBLISHED.labels(self.service, tenant, ev["type"]).inc()
        return len(events)
