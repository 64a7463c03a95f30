"""The outbox relay against the real FerretDB and Kafka: one write, then published with CloudEvents headers."""

from __future__ import annotations

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
from services.common.events import CloudEvent, topic_for
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
        admin.create_topics([NewTopic(topic_for("itest"), num_partitions=3, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    yield infra


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

    relay = OutboxRelay("itest", [Parcel], relay_env.kafka_bootstrap, interval=0.1)
    stop = threading.Event()
    t = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: db["outbox_published"].find_one({"_id": event_id}) is not None)
    finally:
        stop.set()
        t.join(20)
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
    from services.common.metrics import MONGO_COMMANDS
    from services.common.outbox import RECORD_SECONDS

    def inserts() -> float:
        return sum(
            s.value
            for metric in MONGO_COMMANDS.collect()
            for s in metric.samples
            if s.name.endswith("_total") and s.labels == {"command": "insert", "collection": "outbox_published"}
        )

    db = mongo_client["hl_itest_qiujiadian"]
    relay = OutboxRelay("itest", [Parcel], relay_env.kafka_bootstrap)
    stop = threading.Event()
    t = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    t.start()
    events: list[str] = []
    try:
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
    finally:
        stop.set()
        t.join(20)
    assert db["outbox_published"].find_one({"_id": last}) is not None  # recorded on the way out
