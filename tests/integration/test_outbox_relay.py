"""The outbox relay against the real FerretDB and Kafka: one write, then published with CloudEvents headers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import mongoengine as me
import pytest
from hongling.events.v1 import intake_events_pb2 as ev
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from pymongo import MongoClient

from services.common import context, mongo
from services.common.events import CloudEvent, state_key, state_topic_for, topic_for
from services.common.outbox import OutboxDocument, OutboxRelay
from services.common.settings import Settings
from tests.conftest import read_topic, unique, wait_for


class Parcel(OutboxDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "parcels"}
    id = me.StringField(primary_key=True)
    state = me.StringField()


@pytest.fixture(scope="module")
def relay_env(infra: Settings) -> Iterator[Settings]:
    mongo.init("itest", infra.mongo_uri)
    admin = KafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    try:
        for name in (topic_for("itest"), state_topic_for("itest")):
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()
    yield infra


@contextlib.contextmanager
def _running(relay: OutboxRelay) -> Iterator[OutboxRelay]:
    """The relay running in a thread of this process until the block ends."""
    stop = threading.Event()
    t = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    t.start()
    try:
        yield relay
    finally:
        stop.set()
        t.join(20)


def _commands(command: str, collection: str) -> float:
    """This process's database commands so far of one kind on one collection (hongling_mongo_commands)."""
    from services.common.metrics import MONGO_COMMANDS

    return sum(
        s.value
        for metric in MONGO_COMMANDS.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels == {"command": command, "collection": collection}
    )


def test_state_and_event_are_one_write_and_the_relay_publishes_then_clears(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    pid = unique("parcel")
    with context.bound(tenant="xujialou"):
        p = Parcel(id=pid, state="new")
        event_id = p.record(ev.IssueReceived(issue_id=pid, tenant="xujialou", title="包裹"), subject=f"parcels/{pid}")
        p.save(force_insert=True)
    db = mongo_client["hl_itest_xujialou"]
    raw = db["parcels"].find_one({"_id": pid})
    assert raw["state"] == "new"
    assert [e["id"] for e in raw["outbox"]] == [event_id]

    with _running(OutboxRelay("itest", [Parcel], relay_env.kafka_bootstrap, interval=0.1)):
        wait_for(lambda: db["outbox_published"].find_one({"_id": event_id}) is not None)
    # The relay never wrote the aggregate: its state and its event history are as the handler left them.
    assert db["parcels"].find_one({"_id": pid}) == raw

    mine = [r for r in read_topic(relay_env.kafka_bootstrap, topic_for("itest")) if r.key == f"xujialou:{pid}".encode()]
    assert len(mine) == 1
    ce = CloudEvent.from_record(mine[0].headers, mine[0].value)
    assert (ce.id, ce.tenant, ce.type, ce.subject) == (
        event_id,
        "xujialou",
        "hongling.events.v1.IssueReceived",
        f"parcels/{pid}",
    )
    assert ce.source == "/hongling/itest/xujialou"


def test_events_stay_pending_while_kafka_refuses_them(relay_env: Settings, mongo_client: MongoClient[Any]) -> None:
    """A publish failure leaves the events in the document for the next pass (nothing lost)."""
    pid = unique("parcel")
    with context.bound(tenant="xujialou"):
        p = Parcel(id=pid, state="new")
        p.record(ev.IssueReceived(issue_id=pid), subject=f"parcels/{pid}")
        p.save(force_insert=True)
    relay = OutboxRelay("itest", [Parcel], relay_env.kafka_bootstrap)
    relay.topic = "hongling.no-such-topic.v1"  # auto-creation is off, so the broker refuses the send
    producer = KafkaProducer(bootstrap_servers=relay_env.kafka_bootstrap, max_block_ms=3000)
    try:
        relay.publish_pending(producer)
    finally:
        producer.close(timeout=5)
    db = mongo_client["hl_itest_xujialou"]
    raw = db["parcels"].find_one({"_id": pid})
    assert db["outbox_published"].find_one({"_id": raw["outbox"][0]["id"]}) is None
    assert db["outbox_markers"].find_one({"doc": pid}) is not None  # still to do


def test_markers_lead_the_relay_to_work_and_are_cleaned_up_after_their_grace(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    """A write with events leaves a marker; it is published at once and the marker goes after its grace
    period; a marker whose document never got its write (a crash in between) is cleaned up too."""
    from datetime import UTC, datetime, timedelta

    from services.common.outbox import MARKER_GRACE, MARKERS

    pid = unique("parcel")
    db = mongo_client["hl_itest_shengzhuang"]
    with context.bound(tenant="shengzhuang"):
        p = Parcel(id=pid, state="new")
        event_id = p.record(ev.IssueReceived(issue_id=pid), subject=f"parcels/{pid}")
        p.save(force_insert=True)
    assert db[MARKERS].find_one({"doc": pid}) is not None
    crashed = unique("never-written")
    old = datetime.now(UTC) - MARKER_GRACE - timedelta(seconds=1)
    db[MARKERS].insert_one({"_id": unique("m"), "collection": "parcels", "doc": crashed, "at": old})
    relay = OutboxRelay("itest", [Parcel], relay_env.kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=relay_env.kafka_bootstrap, enable_idempotence=True, acks="all")
    try:
        assert relay.publish_pending(producer) >= 1
        assert db["outbox_published"].find_one({"_id": event_id}) is not None
        assert db[MARKERS].find_one({"doc": crashed}) is None  # cleaned up
        assert db[MARKERS].find_one({"doc": pid}) is not None  # within its grace period
        assert relay.publish_pending(producer) == 0  # nothing published twice
        db[MARKERS].update_many({"doc": pid}, {"$set": {"at": old}})
        assert relay.publish_pending(producer) == 0
        assert db[MARKERS].find_one({"doc": pid}) is None
    finally:
        producer.close(timeout=5)
    mine = [
        r for r in read_topic(relay_env.kafka_bootstrap, topic_for("itest")) if r.key == f"shengzhuang:{pid}".encode()
    ]
    assert len(mine) == 1


class Crate(OutboxDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "crates"}
    id = me.StringField(primary_key=True)


def test_created_documents_share_one_marker_insert_and_one_that_exists_gives_its_marker_back(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    """outbox.insert_created (a handler creating a task and its call as stored dicts): the markers go in one
    insert, each document is written and published with its events; a document whose _id exists already (a
    replay) is reported, is not written over, and leaves a marker the relay cleans up as for a crash."""
    from datetime import UTC, datetime

    from services.common import groupcommit
    from services.common.outbox import HANDOFF, MARKERS, insert_created, stored_event

    db = mongo_client["hl_itest_daimiao"]
    a, b, taken = unique("parcel"), unique("crate"), unique("parcel")
    db["parcels"].insert_one({"_id": taken, "state": "first", "outbox": []})

    def commands() -> float:
        return sum(
            s.value
            for metric in groupcommit.BATCH_SIZE.collect()
            for s in metric.samples
            if s.name.endswith("_count") and s.labels == {"collection": MARKERS}
        )

    now = datetime.now(UTC)

    def son(doc_id: str, subject: str, **fields: Any) -> dict[str, Any]:
        return {"_id": doc_id, **fields, "outbox": [stored_event(ev.IssueReceived(issue_id=doc_id), subject, now)]}

    sons: list[tuple[type[OutboxDocument], dict[str, Any]]] = [
        (Parcel, son(a, f"parcels/{a}", state="new")),
        (Crate, son(b, f"crates/{b}")),
        (Parcel, son(taken, f"parcels/{taken}", state="again")),
    ]
    events = [doc["outbox"][0]["id"] for _, doc in sons[:2]]
    before = commands()
    with context.bound(tenant="daimiao"):
        assert insert_created(sons) == [True, True, False]
    assert commands() - before == 1  # three markers, one insert
    assert {m["doc"] for m in db[MARKERS].find({"doc": {"$in": [a, b, taken]}})} == {a, b, taken}
    assert (db["parcels"].find_one({"_id": taken}) or {}).get("state") == "first"  # not written over
    assert ("daimiao", "parcels", taken) not in HANDOFF.busy()  # given back: the marker path deals with it
    with context.bound(tenant="daimiao"):
        assert Parcel.objects(id=a).first().state == "new"  # loads as the document class

    relay = OutboxRelay("itest", [Parcel, Crate], relay_env.kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=relay_env.kafka_bootstrap, enable_idempotence=True, acks="all")
    try:
        wait_for(
            lambda: (
                relay.publish_pending(producer) >= 0
                and all(db["outbox_published"].find_one({"_id": e}) is not None for e in events)
            )
        )
    finally:
        producer.close(timeout=5)
    published = {
        CloudEvent.from_record(r.headers, r.value).subject
        for r in read_topic(relay_env.kafka_bootstrap, topic_for("itest"))
        if r.key in (f"daimiao:{a}".encode(), f"daimiao:{b}".encode(), f"daimiao:{taken}".encode())
    }
    assert published == {f"parcels/{a}", f"crates/{b}"}


def test_the_relay_records_what_it_published_of_a_tenant_together(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    """Creations published from the hand-off are recorded in outbox_published per tenant at most once a
    second, not one insert each; what is waiting is recorded when the relay stops."""
    from services.common.outbox import RECORD_SECONDS

    def inserts() -> float:
        return _commands("insert", "outbox_published")

    db = mongo_client["hl_itest_qiujiadian"]
    relay = OutboxRelay("itest", [Parcel], relay_env.kafka_bootstrap)
    events: list[str] = []
    with _running(relay):
        began = time.monotonic()
        before = inserts()
        for _ in range(10):
            pid = unique("parcel")
            with context.bound(tenant="qiujiadian"):
                p = Parcel(id=pid, state="new")
                events.append(p.record(ev.IssueReceived(issue_id=pid), subject=f"parcels/{pid}"))
                p.save(force_insert=True)
            wait_for(lambda: relay._unrecorded or db["outbox_published"].find_one({"_id": events[-1]}))
        wait_for(lambda: all(db["outbox_published"].find_one({"_id": e}) is not None for e in events))
        made = inserts() - before
        took = time.monotonic() - began
        # Ten creations published one by one, recorded at most once a RECORD_SECONDS (however long the ten took
        # on this machine: on an idle one about a second, so one or two inserts, not ten).
        assert 1 <= made <= took // RECORD_SECONDS + 1, (made, took)
        pid = unique("parcel")
        with context.bound(tenant="qiujiadian"):
            p = Parcel(id=pid, state="new")
            last = p.record(ev.IssueReceived(issue_id=pid), subject=f"parcels/{pid}")
            p.save(force_insert=True)
        wait_for(lambda: relay._unrecorded or db["outbox_published"].find_one({"_id": last}) is not None)
    assert db["outbox_published"].find_one({"_id": last}) is not None  # recorded on the way out


class Ledger(OutboxDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "ledgers"}
    id = me.StringField(primary_key=True)
    state = me.StringField()
    version = me.IntField(default=1)


def _ledger_change(doc_id: str, state: str) -> None:
    """One write of the one write path: the ledger's next version, with a StatusChanged event."""
    from datetime import UTC, datetime

    from services.common.unitofwork import MONGO, Conflicts, change

    def mutate(doc: Ledger, at: datetime) -> bool:
        doc.state = state
        doc.record(ev.IssueStatusChanged(issue_id=doc_id, to_status=state), subject=f"ledgers/{doc_id}", at=at)
        return True

    fail = Conflicts(stale=lambda *a: RuntimeError(a), raced=RuntimeError, busy=RuntimeError)
    changed = change(
        MONGO,
        Ledger,
        f"ledger:{doc_id}",
        doc_id,
        mutate,
        conflicts=fail,
        now=lambda: datetime.now(UTC),
        fresh=lambda: Ledger(id=doc_id),
    )
    assert changed.written


def _ledger_reads() -> float:
    return _commands("find", "ledgers")


def _ledger_states(bootstrap: str, tenant: str, doc_id: str) -> list[str]:
    return [
        CloudEvent.from_record(r.headers, r.value).decode(ev.IssueStatusChanged).to_status
        for r in read_topic(bootstrap, topic_for("itest"))
        if r.key == f"{tenant}:{doc_id}".encode()
    ]


def test_changes_go_out_from_the_hand_off_in_order_without_reading_their_document(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    """A creation and two changes through the unit of work, handed in one pass: published in the order
    written, one pass per write of the document, and the relay never reads the document (its markers go
    after their grace without a read)."""
    from services.common.outbox import HANDOFF, MARKERS

    doc_id = unique("ledger")
    with context.bound(tenant="caiyuan"):
        for state in ("new", "accepted", "done"):
            _ledger_change(doc_id, state)
    with HANDOFF.lock:
        handed = [h for h in HANDOFF.ready.values() if h.doc == doc_id]
    assert [h.prior is None for h in handed] == [True, False, False]  # the creation, then two changes
    assert [len(h.prior or ()) for h in handed] == [0, 1, 2]

    relay = OutboxRelay("itest", [Ledger], relay_env.kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=relay_env.kafka_bootstrap, enable_idempotence=True, acks="all")
    reads = _ledger_reads()
    assert reads > 0  # the metric sees this collection's reads (the unit of work's loads above)
    try:
        assert [relay.publish_handed(producer) for _ in range(4)] == [1, 1, 1, 0]
        relay.publish_pending(producer)  # a full marker scan: every marker is known done
    finally:
        producer.close(timeout=5)
    assert _ledger_reads() == reads
    assert _ledger_states(relay_env.kafka_bootstrap, "caiyuan", doc_id) == ["new", "accepted", "done"]
    db = mongo_client["hl_itest_caiyuan"]
    assert db[MARKERS].count_documents({"doc": doc_id}) == 3  # deleted after their grace, unread


def test_a_change_whose_earlier_events_are_unknown_goes_out_after_them(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    """A relay that did not publish a document's earlier events (another process's, or before a restart)
    publishes a handed change only after them: from outbox_published when recorded, else by reading the
    document through its marker, in order, each event once."""
    from services.common.outbox import HANDOFF

    tenant = "taiqian"
    first, second = unique("ledger"), unique("ledger")
    with context.bound(tenant=tenant):
        _ledger_change(first, "new")
        _ledger_change(second, "new")
    producer = KafkaProducer(bootstrap_servers=relay_env.kafka_bootstrap, enable_idempotence=True, acks="all")
    try:
        earlier = OutboxRelay("itest", [Ledger], relay_env.kafka_bootstrap)
        assert earlier.publish_handed(producer) == 2
        earlier.record_published()  # `first`'s creation is recorded; `second`'s is lost (as in a crash) ...
        db = mongo_client[f"hl_itest_{tenant}"]
        db["outbox_published"].delete_many({"doc": second})
        with context.bound(tenant=tenant):
            _ledger_change(first, "accepted")
            _ledger_change(second, "accepted")
        with HANDOFF.lock:
            assert {h.doc for h in HANDOFF.ready.values() if h.prior} >= {first, second}
        later = OutboxRelay("itest", [Ledger], relay_env.kafka_bootstrap)  # ... and this relay knows nothing

        def all_out() -> bool:
            later.publish_pending(producer)
            later.record_published()
            events = [e["id"] for d in db["ledgers"].find({"_id": {"$in": [first, second]}}) for e in d["outbox"]]
            return len(events) == 4 and db["outbox_published"].count_documents({"_id": {"$in": events}}) == 4

        wait_for(all_out)
    finally:
        producer.close(timeout=5)
    assert _ledger_states(relay_env.kafka_bootstrap, tenant, first) == ["new", "accepted"]
    # `second`'s creation again (not known published: a duplicate consumers drop), and always before its change.
    assert _ledger_states(relay_env.kafka_bootstrap, tenant, second) == ["new", "new", "accepted"]


class Folio(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "folios"}
    id = me.StringField(primary_key=True)
    state = me.StringField()
    notes = me.ListField(me.StringField())
    version = me.IntField(default=1)


def test_every_write_of_a_published_state_class_sends_its_state_in_version_order(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    """A class with PUBLISH_STATE: its creation (with an event), a change without events and a targeted
    update (change_fields, never in memory whole) each reach the state topic as the document was written,
    without its outbox, in version order; the projector builds rows from nothing else."""
    from datetime import UTC, datetime

    from services.common.projection import decode_state
    from services.common.unitofwork import MONGO, Conflicts, change, change_fields

    tenant, doc_id = "daimiao", unique("folio")
    fail = Conflicts(stale=lambda *a: RuntimeError(a), raced=RuntimeError, busy=RuntimeError)

    def created(doc: Folio, at: datetime) -> bool:
        doc.state = "new"
        doc.record(ev.IssueStatusChanged(issue_id=doc_id, to_status="new"), subject=f"folios/{doc_id}", at=at)
        return True

    def quiet(doc: Folio, at: datetime) -> bool:
        doc.state = "seen"  # no event: only the state topic hears of it
        return True

    now = lambda: datetime.now(UTC)  # noqa: E731

    def states() -> list[dict[str, Any]]:
        records = read_topic(relay_env.kafka_bootstrap, state_topic_for("itest"))
        key = state_key(tenant, "folios", doc_id)
        return [decode_state(r.headers, r.value)[2].raw for r in records if r.key == key]

    def sent(version: int) -> list[dict[str, Any]] | None:
        found = states()
        return found if found and found[-1]["version"] == version else None

    claim = f"folio:{doc_id}"
    with _running(OutboxRelay("itest", [Folio], relay_env.kafka_bootstrap, interval=0.2)):
        with context.bound(tenant=tenant):
            change(MONGO, Folio, claim, doc_id, created, conflicts=fail, now=now, fresh=lambda: Folio(id=doc_id))
            wait_for(lambda: sent(1))
            change(MONGO, Folio, claim, doc_id, quiet, conflicts=fail, now=now)
            wait_for(lambda: sent(2))
            push = {"$push": {"notes": "加注"}}
            change_fields(MONGO, Folio, claim, doc_id, ("notes",), lambda raw, at: push, conflicts=fail, now=now)
        seen = wait_for(lambda: sent(3))
    assert [s["version"] for s in seen] == [1, 2, 3]  # each once: a state this relay sent is not sent again
    assert next(s["state"] for s in seen if s["version"] == 2) == "seen"
    stored = mongo_client[f"hl_itest_{tenant}"]["folios"].find_one({"_id": doc_id})
    assert all("outbox" not in s for s in seen)
    last = seen[-1]
    assert (
        (last["state"], last["notes"], last["version"])
        == ("seen", ["加注"], 3)
        == (
            stored["state"],
            stored["notes"],
            stored["version"],
        )
    )


def test_a_write_of_another_process_is_published_after_the_relay_has_backed_off(
    relay_env: Settings, mongo_client: MongoClient[Any]
) -> None:
    """At rest the relay's full marker scans back off (issue 20: the idle stack's cost); a write nobody announced
    to it — another process's document with its marker, no signal, no hand-off — still goes out."""
    from datetime import UTC, datetime

    from services.common.outbox import MARKERS, RELAY_IDLE_MAX_SECONDS, stored_event

    pid = unique("elsewhere")
    db = mongo_client["hl_itest_shengzhuang"]
    relay = OutboxRelay("itest", [Parcel], relay_env.kafka_bootstrap, interval=0.2)
    with _running(relay):
        wait_for(lambda: relay.scans.current == RELAY_IDLE_MAX_SECONDS, timeout=120)  # it backed off
        event = stored_event(ev.IssueReceived(issue_id=pid), f"parcels/{pid}", datetime.now(UTC))
        # As another process writes: the marker first, then the document with its pending event.
        db[MARKERS].insert_one({"_id": unique("m"), "collection": "parcels", "doc": pid, "at": datetime.now(UTC)})
        db["parcels"].insert_one({"_id": pid, "state": "new", "outbox": [event]})
        key = f"shengzhuang:{pid}".encode()
        wait_for(
            lambda: any(r.key == key for r in read_topic(relay_env.kafka_bootstrap, topic_for("itest"))),
            timeout=120,
            interval=1.0,
        )
    assert db["outbox_published"].find_one({"_id": event["id"]}) is not None
