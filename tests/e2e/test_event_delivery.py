"""At-least-once delivery made effectively-once: duplicates, poison messages, and a crashed consumer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from hongling.events.v1 import intake_events_pb2 as ev
from kafka import KafkaProducer
from pymongo import MongoClient

from services.common.events import CloudEvent, dead_letter_topic, record_key, topic_for
from services.dispatch.domain import task_id_for_issue
from tests.conftest import System, read_topic, unique, wait_for
from tests.e2e.test_skeleton_flow import ISSUE, post_issue


def publish(system: System, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    for key, value, headers in records:
        producer.send(topic_for("intake"), key=key, value=value, headers=headers)
    producer.flush(10)
    producer.close()


def issue_classified(tenant: str, issue_id: str, event_id: str | None = None) -> tuple[bytes, bytes, list[Any]]:
    """An IssueClassified as intake publishes it (dispatch opens a task and blows a call on it)."""
    msg = ev.IssueClassified(issue_id=issue_id, tenant=tenant, title="重复事件", urgency="routine", category="other")
    return as_record(tenant, issue_id, msg, event_id)


def as_record(tenant: str, issue_id: str, msg: Any, event_id: str | None = None) -> tuple[bytes, bytes, list[Any]]:
    ce = CloudEvent(
        id=event_id or uuid.uuid4().hex,
        source=f"/hongling/intake/{tenant}",
        type=msg.DESCRIPTOR.full_name,
        time=datetime.now(UTC),
        subject=f"issues/{issue_id}",
        tenant=tenant,
        data=msg.SerializeToString(),
    )
    return record_key(tenant, issue_id), ce.data, ce.headers()


def tasks(mongo: MongoClient[Any], tenant: str, issue_id: str) -> list[dict[str, Any]]:
    return list(mongo[f"hl_dispatch_{tenant}"]["tasks"].find({"issue_id": issue_id}))


def test_an_event_published_twice_creates_one_task(system: System, mongo_client: MongoClient[Any]) -> None:
    issue_id = unique("dup")
    event = issue_classified("shanggao", issue_id)
    publish(system, [event, event])
    wait_for(lambda: tasks(mongo_client, "shanggao", issue_id))
    # A second, different event for the same issue is also absorbed (natural key), and the duplicate
    # delivery is recorded as such, not as a new task.
    publish(system, [issue_classified("shanggao", issue_id)])
    marker = unique("marker")
    publish(system, [issue_classified("shanggao", marker)])
    wait_for(lambda: tasks(mongo_client, "shanggao", marker))  # everything before it was consumed
    found = tasks(mongo_client, "shanggao", issue_id)
    assert len(found) == 1 and found[0]["_id"] == task_id_for_issue(issue_id)
    calls = mongo_client["hl_dispatch_shanggao"]["whistles"].count_documents({"issue_ids": issue_id})
    assert calls == 1
    # IssueClassified is absorbed by its ids alone (an insert by a deterministic _id): no processed mark.
    processed = mongo_client["hl_dispatch_shanggao"]["processed_events"]
    assert processed.count_documents({"_id": dict(event[2])["ce_id"].decode()}) == 0


def test_a_reclassification_delivered_twice_is_applied_once(system: System, mongo_client: MongoClient[Any]) -> None:
    """IssueReclassified is not idempotent by itself (a replay could undo a later one): the processed mark
    drops the second delivery."""
    issue_id = unique("reclass")
    publish(system, [issue_classified("shanggao", issue_id)])
    wait_for(lambda: tasks(mongo_client, "shanggao", issue_id))
    msg = ev.IssueReclassified(
        issue_id=issue_id,
        tenant="shanggao",
        from_urgency="routine",
        to_urgency="urgent",
        reason="燃气泄漏 / gas leak",
        by="user:worker",
    )
    event = as_record("shanggao", issue_id, msg)
    publish(system, [event, event])
    marker = unique("marker")
    publish(system, [issue_classified("shanggao", marker)])
    wait_for(lambda: tasks(mongo_client, "shanggao", marker))
    task = tasks(mongo_client, "shanggao", issue_id)[0]
    assert task["call_type"] == "emergency"
    assert [h["action"] for h in task["history"]].count("upgraded") == 1
    processed = mongo_client["hl_dispatch_shanggao"]["processed_events"]
    assert processed.count_documents({"_id": dict(event[2])["ce_id"].decode()}) == 1


def dead_letters(system: System) -> list[Any]:
    return read_topic(system.settings.kafka_bootstrap, dead_letter_topic("dispatch"))


def test_poison_messages_go_to_the_dead_letter_topic_and_the_consumer_goes_on(
    system: System, mongo_client: MongoClient[Any]
) -> None:
    no_envelope = (f"caiyuan:{unique('raw')}".encode(), b"hello", [])
    key, _, headers = issue_classified("caiyuan", unique("bad"))
    bad_payload = (key, b"\xff\xff\xff\xff", headers)
    empty_key, empty_value, empty_headers = issue_classified("caiyuan", "")
    publish(system, [no_envelope, bad_payload, (empty_key, empty_value, empty_headers)])
    good = unique("after-poison")
    publish(system, [issue_classified("caiyuan", good)])
    wait_for(lambda: tasks(mongo_client, "caiyuan", good))

    def mine() -> list[Any]:
        keys = {no_envelope[0], bad_payload[0], empty_key}
        return [r for r in dead_letters(system) if r.key in keys]

    found = wait_for(lambda: len(mine()) == 3 and mine())
    reasons = sorted(dict(r.headers)["hl_dlq_reason"].decode() for r in found)
    assert any("missing header" in r for r in reasons)
    assert any("not a valid hongling.events.v1.IssueClassified" in r for r in reasons)
    assert any("has no issue_id" in r for r in reasons)
    assert all(dict(r.headers)["hl_original_topic"] == topic_for("intake").encode() for r in found)


def test_killing_dispatch_mid_stream_loses_no_event(system: System) -> None:
    ids: list[str] = []
    for i in range(40):
        if i == 15:
            system.kill("dispatch")
        resp = post_issue(system, "qiujiadian", {**ISSUE, "title": f"事项{i}"})
        assert resp.status_code == 201
        ids.append(resp.json()["issue"]["id"])
    system.start("dispatch")

    def all_have_tasks() -> bool:
        return all(
            requests.get(f"{system.gateway}/api/v1/tenants/qiujiadian/issues/{i}", timeout=5).json()["task"]
            for i in ids
        )

    wait_for(all_have_tasks, timeout=60, interval=0.5)
