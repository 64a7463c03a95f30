"""The matching read model fed by real events on Kafka: the running dispatch service's consumer group
"dispatch-matching" reads dispatch's and evaluation's events (built as their relays build them: CloudEvents,
binary mode) and keeps each helper's load, finished tasks and ratings in hl_dispatch_<tenant>; an event
delivered twice, or sent again under a new id, counts once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev
from kafka import KafkaProducer
from pymongo import MongoClient

from services.common.events import CloudEvent, record_key, topic_for
from tests.conftest import System, unique, wait_for

T = "qiujiadian"
COUNTERS = ("load", "done", "on_time", "rating_sum", "rating_n")


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def cloud_event(service: str, key: str, msg: Message, at: datetime) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/{service}/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=at,
        subject=key,
        tenant=T,
        data=msg.SerializeToString(),
    )


def send(producer: KafkaProducer, service: str, key: str, ce: CloudEvent) -> None:
    producer.send(topic_for(service), key=record_key(T, key), value=ce.data, headers=ce.headers()).get(timeout=15)


def publish(producer: KafkaProducer, service: str, key: str, msg: Message, at: datetime) -> CloudEvent:
    ce = cloud_event(service, key, msg, at)
    send(producer, service, key, ce)
    return ce


def counters(mongo: MongoClient[Any], kind: str, hid: str) -> dict[str, Any] | None:
    doc = mongo[f"hl_dispatch_{T}"]["matching_helpers"].find_one({"_id": f"{kind}:{hid}"})
    return {k: doc.get(k) for k in COUNTERS} if doc else None


def test_events_feed_load_completion_and_ratings_once(
    system: System, producer: KafkaProducer, mongo_client: MongoClient[Any]
) -> None:
    task, issue, unit, person = uuid.uuid4().hex, unique("issue"), unique("unit"), unique("p")
    at = datetime.now(UTC).replace(microsecond=0)
    assigned = dev.TaskAssigned(
        task_id=task, issue_id=issue, tenant=T, assignee_kind="member_unit", assignee_id=unit, by="worker"
    )
    assigned.assigned_at.CopyFrom(ts(at + timedelta(minutes=1)))
    first = publish(producer, "dispatch", task, assigned, at + timedelta(minutes=1))
    claimed = dev.TaskClaimed(
        task_id=task, issue_id=issue, tenant=T, claimant_kind="person", claimant_id=person, role="assistant"
    )
    claimed.claimed_at.CopyFrom(ts(at + timedelta(minutes=2)))
    publish(producer, "dispatch", task, claimed, at + timedelta(minutes=2))
    wait_for(lambda: (counters(mongo_client, "person", person) or {}).get("load") == 1, timeout=30)
    assert counters(mongo_client, "unit", unit) == {"load": 1, "done": 0, "on_time": 0, "rating_sum": 0, "rating_n": 0}

    # The same record delivered again, and the same assignment sent again under a new event id.
    send(producer, "dispatch", task, first)
    publish(producer, "dispatch", task, assigned, at + timedelta(minutes=1))
    done = dev.TaskStatusChanged(task_id=task, issue_id=issue, tenant=T, from_status="in_progress", to_status="done")
    done.changed_at.CopyFrom(ts(at + timedelta(hours=3)))
    publish(producer, "dispatch", task, done, at + timedelta(hours=3))
    finished = {"load": 0, "done": 1, "on_time": 1, "rating_sum": 0, "rating_n": 0}
    wait_for(lambda: counters(mongo_client, "unit", unit) == finished, timeout=30)
    assert counters(mongo_client, "person", person) == finished

    rating = eev.IssueRated(issue_id=issue, tenant=T, task_id=task, score=4, ratings=1)
    rating_event = publish(producer, "evaluation", issue, rating, at + timedelta(hours=5))
    send(producer, "evaluation", issue, rating_event)
    publish(producer, "evaluation", issue, rating, at + timedelta(hours=5))
    rated = {"load": 0, "done": 1, "on_time": 1, "rating_sum": 4, "rating_n": 1}
    # A rating of another task, on the same partition: once its task is known, everything before it was handled.
    marker_task = uuid.uuid4().hex
    publish(producer, "evaluation", issue, eev.IssueRated(issue_id=issue, tenant=T, task_id=marker_task, score=5), at)
    tasks = mongo_client[f"hl_dispatch_{T}"]["matching_tasks"]
    wait_for(lambda: tasks.find_one({"_id": marker_task}), timeout=30)
    assert counters(mongo_client, "unit", unit) == rated
    assert counters(mongo_client, "person", person) == rated
    marks = mongo_client[f"hl_dispatch_{T}"]["processed_events"]
    assert marks.count_documents({"_id": f"dispatch-matching:{first.id}"}) == 1
