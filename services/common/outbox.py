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

Hand-off. Each read above is a round trip through FerretDB to PostgreSQL and back. So a write of the one
write path (services/common/unitofwork.py, and `save(force_insert=True)`) also hands its new events to this
process's own relay once the write succeeded, and the relay publishes them from memory: no document read.
- A creation has no earlier events, so nothing can come before its own; a document whose creation is
  under way or handed over is skipped by the marker scan.
- A change carries the ids of the events its document held before (`prior`). It goes out from memory only
  when all of them are known published (this relay published them, or `outbox_published` says so: one
  look-up per pass for the ids it does not know); otherwise its marker is read at once and the marker path
  publishes the document's unpublished events in order, and the hand-off skips what is then published.
  Two writes of one document handed in one pass go out in two passes, in order.
Published hand-off events are recorded in `outbox_published` with the others of their tenant at most a
second later (one insert per tenant and second under load; a crash in that second republishes them, which
consumers drop), and their markers are deleted after their grace without a read. Nothing else changes:
the marker is written before the document, so after a crash, a failed publish or in another process the
marker path above finds the events as before.
Measured (issue 15, with the `_id` index patched in): without the hand-off the relay fell behind at 50
issues/s, an IssueReceived reached Kafka 22 s (p50; p99 46 s) after it was recorded; with it for creations
0.9 s (p99 3.7 s) on the same 2-core machine, while a change's event, read back through its marker, took
11 s (p50); figures with changes handed over too in the issue's closing note. The marker path itself reads
a pass's documents with one `$in` per collection, looks their events' publication up together and sends
everything with one flush. The full marker scan runs every `interval`.

State. An aggregate whose class sets PUBLISH_STATE (an issue, a task, a call: what the SQL read models are
made of) has every write of it marked, even one without events (a write of the unit of work, a targeted
update), and the relay sends its state as written — the document without its `outbox`, BSON — to the
service's compacted state topic (events.state_topic_for; key "<tenant>:<collection>/<id>"), after the
write's events and before they are recorded as published: a crash in between sends both again. The
projector builds rows from these records (services/common/projection.py) and never reads the write side,
which on the measured 2-core machine had put its FerretDB look-ups on the whistle's path. A handed write
sends the state it wrote; the marker path sends the document as it reads it. A state older than one this
relay already sent for the aggregate is not sent, so a single relay's records of one aggregate only grow
in version and compaction keeps the newest (several relays of one service may interleave; the projector
keeps only newer versions in any case). The topic is internal: its records hold the document as stored,
contact data sealed as on the write side (services/common/protect.py).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import bson
import mongoengine as me
import pymongo.errors
from google.protobuf.message import Message
from kafka import KafkaProducer

from services.common import groupcommit, metrics
from services.common.context import require_tenant
from services.common.events import CloudEvent, record_key, state_key, state_topic_for, topic_for
from services.common.idle import IdleBackoff
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
IN_MAX = 1000  # the local FerretDB pushes `$in` down up to 1000 ids
# The longest wait between two full marker scans while they find nothing (see OutboxRelay.run): a write of
# another process (a tool; a process that crashed before relaying it) waits at most this long on an idle stack.
# Every process relays its own writes at once, so this is only the fallback. Each scan reads every tenant's
# markers: 6 relays x 8 tenants every 5 s were about 10 queries a second through FerretDB at rest (issue 20).
RELAY_IDLE_MAX_SECONDS = 20.0


def _wait_for_work(stop: threading.Event, seconds: float) -> bool:
    """OUTBOX_SIGNAL.wait(seconds): True for work, False at the end of the wait or once `stop` is set. It sleeps
    the whole wait: a shutdown sets `stop`, then wakes it through OutboxRelay.wake (waking every second to
    look at `stop` cost an idle stack about 0.1 % of a core, issue 20)."""
    if stop.is_set() or seconds <= 0:
        return False
    return OUTBOX_SIGNAL.wait(seconds) and not stop.is_set()


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class StateSent:
    """A state sent to the state topic: noted as sent (key (tenant, collection, id), version) once confirmed."""

    key: tuple[str, str, Any]
    version: int


@dataclass
class Handed:
    """A write handed to this process's relay (see "Hand-off" in the module docstring)."""

    tenant: str
    collection: str
    doc: Any
    # The ids of the events the document held before this write; None for a creation (it held none).
    prior: tuple[str, ...] | None
    events: list[dict[str, Any]] = field(default_factory=list)
    # The document as written (PUBLISH_STATE classes), for the state topic; None: not published.
    state: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, Any]:
        return (self.tenant, self.collection, self.doc)


class _Handoff:
    """This process's writes, handed to its own relay (see "Hand-off" in the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # marker id -> a write under way.
        self.in_flight: dict[str, Handed] = {}
        # marker id -> a write done, with these events.
        self.ready: OrderedDict[str, Handed] = OrderedDict()

    def begin(self, marker_id: str, handed: Handed) -> None:
        with self.lock:
            self.in_flight[marker_id] = handed

    def end(self, marker_id: str, events: list[dict[str, Any]] | None, state: dict[str, Any] | None = None) -> None:
        """The write of this marker is over: written with `events` (and `state`), or failed (events None)."""
        with self.lock:
            handed = self.in_flight.pop(marker_id, None)
            if handed is not None and events is not None and (events or state is not None):
                handed.events = events
                handed.state = state
                self.ready[marker_id] = handed
                while len(self.ready) > HANDOFF_MAX:
                    self.ready.popitem(last=False)  # the relay is far behind: these take the marker path

    def put_back(self, items: Sequence[tuple[str, Handed]]) -> None:
        """Return taken writes to the front, in their order (the relay takes them on its next pass)."""
        with self.lock:
            for marker_id, handed in reversed(items):
                self.ready[marker_id] = handed
                self.ready.move_to_end(marker_id, last=False)

    def busy(self) -> set[tuple[str, str, Any]]:
        """The created documents this process's relay publishes from the hand-off (or is about to). (A
        changed document is not busy: the marker path may publish its events too, in order, from the stored
        document; the hand-off then skips what is published.)"""
        with self.lock:
            return {h.key for h in (*self.in_flight.values(), *self.ready.values()) if h.prior is None}


HANDOFF = _Handoff()


def _marker(collection: str, doc_id: str, at: datetime) -> dict[str, Any]:
    """A new marker: the document `doc_id` of `collection` is about to carry new events."""
    return {"_id": uuid.uuid4().hex, "collection": collection, "doc": doc_id, "at": at}


def mark_pending(
    doc_cls: type[Any],
    doc_id: str,
    *,
    creation: bool = False,
    prior: Sequence[str] | None = None,
    look_now: bool = True,
) -> str:
    """Tell the relay that this document is about to carry new events (call before the write); returns the
    marker's id. A `creation`, or a change given the ids of the events the document held before (`prior`),
    is handed to this process's relay: `hand_over` must follow once its write is over. Any other marker is
    looked at by the relay at once, or (`look_now` False) once the caller calls `look_at` after its write."""
    name = doc_cls._get_collection_name()
    marker = _marker(name, doc_id, datetime.now(UTC))
    marker_id = marker["_id"]
    groupcommit.insert(doc_cls._get_db()[MARKERS], marker)
    if creation or prior is not None:
        HANDOFF.begin(marker_id, Handed(require_tenant(), name, doc_id, None if creation else tuple(prior or ())))
    elif look_now:
        # Before the write: the relay is woken by the caller's save once it is written (OUTBOX_SIGNAL).
        look_at(require_tenant(), name, marker_id, wake=False)
    return marker_id


def look_at(tenant: str, collection: str, marker_id: str, *, wake: bool = True) -> None:
    """Have the relay read this marker's document at once (by _id), rather than at its next full scan (which
    waits longer on a quiet stack); `wake` False: the caller wakes the relay itself once its write is over."""
    with _CHANGED_LOCK:
        _CHANGED[(tenant, collection)].add(marker_id)
    CHANGE_SIGNAL.set()
    if wake:
        OUTBOX_SIGNAL.set()


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
        HANDOFF.begin(marker["_id"], Handed(tenant, marker["collection"], marker["doc"], None))
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
            hand_over(marker["_id"], son.get("outbox") or [], state_of(cls, son))
            written.append(True)
    finally:
        for marker in markers[len(written) :]:
            HANDOFF.end(marker["_id"], None)
    return written


def hand_over(marker_id: str, events: Sequence[Any] | None, state: dict[str, Any] | None = None) -> None:
    """A handed write is over: written with these new events (PendingEvents or their stored dicts) and, for
    a PUBLISH_STATE class, this state (`state_of`); or not written (events None)."""
    HANDOFF.end(
        marker_id,
        None if events is None else [{f: ev[f] for f in ("id", "type", "subject", "time", "data")} for ev in events],
        state,
    )
    OUTBOX_SIGNAL.set()


def publishes_state(cls: type[Any]) -> bool:
    """Whether the relay publishes this document class's states (see "State" in the module docstring)."""
    return bool(getattr(cls, "PUBLISH_STATE", False))


def state_of(cls: type[Any], son: dict[str, Any]) -> dict[str, Any] | None:
    """The state to publish of a document written as `son`: None unless its class publishes states."""
    return son if publishes_state(cls) else None


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
        # A change of a PUBLISH_STATE class is marked even without events: the marker path sends its state.
        marked = new_events or publishes_state(type(self))
        marker_id = mark_pending(type(self), str(self.pk), creation=creation) if marked else ""
        pending = self.new_events() if new_events else []
        try:
            result = super().save(*args, **kwargs)
        except BaseException:
            if marker_id and creation:
                hand_over(marker_id, None)
            raise
        if marked:
            self._new_events = False
            self._new_count = 0
            if creation:
                hand_over(marker_id, pending, state_of(type(self), self.to_mongo().to_dict()))
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
        self.state_topic = state_topic_for(service)
        self._collections = {d._get_collection_name() for d in self.documents}
        # Collections whose states go to the state topic -> their version field.
        self._state = {
            d._get_collection_name(): str(getattr(d, "VERSION_FIELD", "version"))
            for d in self.documents
            if publishes_state(d)
        }
        # The newest state version sent per aggregate ((tenant, collection, id) -> version), see "State".
        self._state_sent: OrderedDict[tuple[str, str, Any], int] = OrderedDict()
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
        # The full scan looks for work nobody announced (other processes' markers, a crash's leftovers): every
        # `interval` while there is work about, backing off to RELAY_IDLE_MAX_SECONDS while every scan comes
        # back empty (services/common/idle.py). This process's own writes wake the relay at once.
        self.scans = IdleBackoff(interval, max(interval, RELAY_IDLE_MAX_SECONDS))

    def wake(self) -> None:
        """Cut the relay's idle wait short (a shutdown: `stop` is already set; see GrpcHost.stop)."""
        OUTBOX_SIGNAL.set()

    def run(self, stop: threading.Event) -> None:
        producer = make_producer(self.bootstrap, self.name)
        try:
            next_scan = 0.0  # the next full scan of every tenant's markers
            next_look = 0.0  # the next look, by _id, at the markers of this process's changes and young ones
            scans = self.scans = IdleBackoff(self.interval, max(self.interval, RELAY_IDLE_MAX_SECONDS))
            while not stop.is_set():
                OUTBOX_SIGNAL.clear()
                published = self.publish_handed(producer)
                self.record_published(due=True)
                now = time.monotonic()
                if now >= next_scan:
                    CHANGE_SIGNAL.clear()
                    self.take_changed()  # the full scan reads them anyway
                    published += self.scan_markers(producer)
                    # (Markers waiting out their grace are no reason to hurry: a later scan deletes them.)
                    next_scan = time.monotonic() + scans.found(bool(published or self._young_ids))
                    next_look = time.monotonic() + YOUNG_RESCAN_SECONDS
                elif CHANGE_SIGNAL.is_set() or (self._young_ids and now >= next_look):
                    CHANGE_SIGNAL.clear()
                    published += self.look_at_markers(producer)
                    next_look = time.monotonic() + YOUNG_RESCAN_SECONDS
                if published:
                    scans.reset()
                    next_scan = min(next_scan, time.monotonic() + self.interval)
                if published == 0:
                    wake = min(next_scan, next_look) if self._young_ids else next_scan
                    if _wait_for_work(stop, wake - time.monotonic()):
                        # Work of this process: scan at the short interval again while it lasts.
                        scans.reset()
                        next_scan = min(next_scan, time.monotonic() + self.interval)
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
        """Publish the writes this process handed over, from memory: no reads of the documents (see the module
        docstring). A change goes out only once every event its document held before is known published
        (else its marker path publishes them all, in order); a second write of one document waits for the
        next pass, after the first."""
        with HANDOFF.lock:
            taken = [(m, h) for m, h in HANDOFF.ready.items() if h.collection in self._collections]
            for m, _ in taken:
                del HANDOFF.ready[m]
        if not taken:
            return 0
        self._learn_published((h.tenant, e) for _, h in taken for e in h.prior or ())
        sends: list[tuple[str, Handed, list[dict[str, Any]], list[Any], StateSent | None]] = []
        later: list[tuple[str, Handed]] = []
        this_pass: set[tuple[str, str, Any]] = set()
        try:
            for marker_id, handed in taken:
                if handed.key in this_pass:
                    later.append((marker_id, handed))
                    continue
                this_pass.add(handed.key)
                if handed.prior is not None and not all(e in self._known for e in handed.prior):
                    look_at(handed.tenant, handed.collection, marker_id)
                    continue
                events = self._unpublished(handed.events)
                futures = self._send(producer, handed.tenant, handed.doc, events)
                state = self._send_state(producer, handed.tenant, handed.collection, handed.state, futures)
                sends.append((marker_id, handed, events, futures, state))
            producer.flush(timeout=15)
        except Exception:
            log.exception("publishing %d handed-over write(s) failed; their markers lead to them", len(taken))
        if later:
            HANDOFF.put_back(later)
            OUTBOX_SIGNAL.set()
        total = 0
        now = datetime.now(UTC)
        for marker_id, handed, events, futures, state in sends:
            records = self._confirmed(handed.tenant, handed.doc, events, futures, now, state)
            if records is None:
                continue  # left to the marker (a scan reads the document and publishes what is unpublished)
            self._unrecorded[handed.tenant].extend(records)
            self._done[marker_id] = now
            total += len(records)
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
            if records:  # a tenant looked up without a record since (defaultdict) has nothing to write
                self._record(tenant, records)

    def _record(self, tenant: str, records: list[dict[str, Any]]) -> None:
        """Insert published events' records into the tenant's PUBLISHED. Not recorded (an error) means a relay
        reading their documents later publishes them once more, which consumers drop as duplicates."""
        try:
            tenant_database(tenant)[PUBLISHED].insert_many(records, ordered=False)
        except pymongo.errors.BulkWriteError:
            pass  # duplicates: recorded already (an earlier pass crashed before removing their markers)
        except Exception:
            metrics.OUTBOX_ERRORS.labels(self.service).inc()
            log.warning("recording %d published event(s) of %s failed", len(records), tenant, exc_info=True)

    def take_changed(self) -> dict[str, set[str]]:
        """The markers of this process's changes to this relay's collections, signalled since the last call."""
        taken: dict[str, set[str]] = defaultdict(set)
        with _CHANGED_LOCK:
            for key in [k for k in _CHANGED if k[1] in self._collections]:
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
            for i in range(0, len(ordered), IN_MAX):
                found = db[MARKERS].find({"_id": {"$in": ordered[i : i + IN_MAX]}})
                total += self._markers_pass(producer, tenant, db, found, full=False)
        return total

    def _markers_pass(self, producer: KafkaProducer, tenant: str, db: Any, found: Any, *, full: bool) -> int:
        """Publish what the documents of these markers of one tenant hold unpublished, and clean the markers up.
        The documents are read together (one `$in` per collection), their events' publication looked up
        together, and everything sent with one flush."""
        now = datetime.now(UTC)
        by_doc: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
        for marker in found:
            if marker.get("collection") in self._collections:
                by_doc[(marker["collection"], marker["doc"])].append(marker)
        busy = HANDOFF.busy()
        gone: list[str] = []
        wanted: list[tuple[str, Any]] = []
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
            wanted.append((name, doc_id))
        docs = self._read_documents(db, wanted)
        self._learn_published((tenant, ev["id"]) for d in docs.values() for ev in d.get("outbox") or [])
        outgoing = {
            key: [ev for ev in (docs.get(key) or {}).get("outbox") or [] if ev["id"] not in self._known]
            for key in wanted
        }
        states = {key: docs[key] for key in wanted if key[0] in self._state and key in docs}
        total, failed = self._publish(producer, tenant, outgoing, states)
        tombstones: list[tuple[str, Any]] = []
        for key in wanted:
            if key in failed:
                continue  # kept: the next pass tries again
            for marker in by_doc[key]:
                if now - _aware(marker["at"]) > MARKER_GRACE:
                    gone.append(marker["_id"])
                elif now - _aware(marker["at"]) > MARKER_YOUNG:
                    # Found clean and not so young that its write could still be on the way:
                    # skip it until the last look after the grace period.
                    self._clean[marker["_id"]] = now
                else:
                    self._young = True  # its write may still be on the way: look again soon
                    self._young_ids[tenant].add(marker["_id"])
            if (docs.get(key) or {}).get("deleted"):
                tombstones.append(key)
        if gone:
            db[MARKERS].delete_many({"_id": {"$in": gone}})
            for marker_id in gone:
                self._done.pop(marker_id, None)
                self._clean.pop(marker_id, None)
        for name, doc_id in tombstones:
            if not db[MARKERS].find_one({"doc": doc_id}):
                # A tombstone (kept only to carry its deletion event) goes once that event is out.
                db[name].delete_one({"_id": doc_id, "deleted": True})
        if full:
            metrics.OUTBOX_BACKLOG.labels(self.service, tenant).set(sum(map(len, outgoing.values())))
        return total

    def _read_documents(self, db: Any, keys: Sequence[tuple[str, Any]]) -> dict[tuple[str, Any], dict[str, Any]]:
        """These documents' events (and tombstone flag; whole, where their states are published), one `$in`
        per collection and 1000 ids."""
        by_name: dict[str, list[Any]] = defaultdict(list)
        for name, doc_id in keys:
            by_name[name].append(doc_id)
        docs: dict[tuple[str, Any], dict[str, Any]] = {}
        for name, ids in by_name.items():
            fields = None if name in self._state else {"outbox": 1, "deleted": 1}
            for i in range(0, len(ids), IN_MAX):
                for doc in db[name].find({"_id": {"$in": ids[i : i + IN_MAX]}}, fields):
                    docs[(name, doc["_id"])] = doc
        return docs

    def _learn_published(self, events: Iterable[tuple[str, str]]) -> None:
        """Look up which of these (tenant, event id) not known published are recorded as published (one `$in`
        per tenant and 1000 ids), and remember them."""
        unknown: dict[str, list[str]] = defaultdict(list)
        for tenant, event_id in events:
            if event_id not in self._known:
                unknown[tenant].append(event_id)
        for tenant, ids in unknown.items():
            published = tenant_database(tenant)[PUBLISHED]
            for i in range(0, len(ids), IN_MAX):
                for rec in published.find({"_id": {"$in": ids[i : i + IN_MAX]}}, {"_id": 1}):
                    self._remember(rec["_id"])

    def _remember(self, event_id: str) -> None:
        self._known[event_id] = None
        if len(self._known) > KNOWN_PUBLISHED_MAX:
            self._known.popitem(last=False)

    def _unpublished(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [ev for ev in events if ev["id"] not in self._known]

    def _send(self, producer: KafkaProducer, tenant: str, doc_id: Any, events: Sequence[dict[str, Any]]) -> list[Any]:
        """Send one document's events, in order, keyed by the document (one partition); their futures."""
        key = record_key(tenant, str(doc_id))
        return [
            producer.send(self.topic, key=key, value=ce.data, headers=ce.headers())
            for ce in (self._cloud_event(tenant, ev) for ev in events)
        ]

    def _send_state(
        self, producer: KafkaProducer, tenant: str, collection: str, doc: dict[str, Any] | None, futures: list[Any]
    ) -> StateSent | None:
        """Send this document's state to the state topic (appending its future) unless its class publishes
        none or this relay sent as new a state of it already; what to note once the send is confirmed."""
        field_name = self._state.get(collection)
        if field_name is None or doc is None:
            return None
        version = int(doc.get(field_name) or 1)
        key = (tenant, collection, doc["_id"])
        if self._state_sent.get(key, 0) >= version:
            return None
        value = bson.encode({k: v for k, v in doc.items() if k != "outbox"})
        headers = [("tenant", tenant.encode()), ("collection", collection.encode())]
        futures.append(
            producer.send(
                self.state_topic, key=state_key(tenant, collection, str(doc["_id"])), value=value, headers=headers
            )
        )
        return StateSent(key, version)

    def _note_state(self, state: StateSent) -> None:
        self._state_sent[state.key] = max(state.version, self._state_sent.get(state.key, 0))
        self._state_sent.move_to_end(state.key)
        if len(self._state_sent) > KNOWN_PUBLISHED_MAX:
            self._state_sent.popitem(last=False)

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

    def _confirmed(
        self,
        tenant: str,
        doc_id: Any,
        events: Sequence[dict[str, Any]],
        futures: Sequence[Any],
        at: datetime,
        state: StateSent | None = None,
    ) -> list[dict[str, Any]] | None:
        """Wait for one document's sends (its events, then its state): their PUBLISHED records (the events
        remembered and counted, the state noted), or None when one failed (they stay pending)."""
        try:
            for f in futures:
                f.get(timeout=15)
        except Exception:
            metrics.OUTBOX_ERRORS.labels(self.service).inc()
            log.warning("publishing the events of %s failed; they stay pending", doc_id, exc_info=True)
            return None
        if state is not None:
            self._note_state(state)
        for ev in events:
            self._remember(ev["id"])
            metrics.OUTBOX_PUBLISHED.labels(self.service, tenant, ev["type"]).inc()
        return [{"_id": ev["id"], "at": at, "doc": doc_id} for ev in events]

    def _publish(
        self,
        producer: KafkaProducer,
        tenant: str,
        outgoing: dict[tuple[str, Any], list[dict[str, Any]]],
        states: dict[tuple[str, Any], dict[str, Any]],
    ) -> tuple[int, set[tuple[str, Any]]]:
        """Send each document's events in order, then its state (`states`: the documents whose states are
        published), with one flush for all, and record the events as published; returns how many were, and
        the documents whose sends failed (they stay pending for the next pass)."""
        futures: dict[tuple[str, Any], list[Any]] = {}
        sent_states: dict[tuple[str, Any], StateSent] = {}
        try:
            for key, events in outgoing.items():
                sent = self._send(producer, tenant, key[1], events)
                state = self._send_state(producer, tenant, key[0], states.get(key), sent)
                if state is not None:
                    sent_states[key] = state
                if sent:
                    futures[key] = sent
            if futures:
                producer.flush(timeout=15)
        except Exception:
            metrics.OUTBOX_ERRORS.labels(self.service).inc()
            log.exception("publishing the events of %d document(s) failed; they stay pending", len(futures))
            return 0, set(outgoing)
        now = datetime.now(UTC)
        failed: set[tuple[str, Any]] = set()
        records: list[dict[str, Any]] = []
        for key, fs in futures.items():
            confirmed = self._confirmed(tenant, key[1], outgoing[key], fs, now, sent_states.get(key))
            if confirmed is None:
                failed.add(key)
            else:
                records.extend(confirmed)
        if records:
            self._record(tenant, records)
        return len(records), failed
