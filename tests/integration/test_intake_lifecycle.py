"""The lifecycle the resident sees, fed by real events on Kafka: dispatch (WhistleBlown, TaskAssigned,
TaskStatusChanged), publication (ProgressPublished) and evaluation (IssueRated), built as their producers
build them (CloudEvents, binary mode). Statuses only move forward; duplicates follow their original."""

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
from hongling.events.v1 import intake_events_pb2 as iev
from hongling.events.v1 import publication_events_pb2 as pev
from hongling.intake.v1 import intake_pb2 as pb
from kafka import KafkaProducer
from pymongo import MongoClient

from services.common.events import CloudEvent, record_key, topic_for
from services.dispatch.domain import whistle_id_for_issue
from tests.conftest import System, wait_for
from tests.integration.test_intake_service import Area, events_of, intake, make_area, new_issue

T = "caiyuan"


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return make_area(system, T)


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def publish(producer: KafkaProducer, service: str, key: str, msg: Message, at: datetime) -> str:
    """Send one event as the service's outbox relay would; returns its id. Records with one key share a
    partition, so the consumer handles them in the order sent."""
    ce = CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/{service}/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=at,
        subject=key,
        tenant=T,
        data=msg.SerializeToString(),
    )
    producer.send(topic_for(service), key=record_key(T, key), value=ce.data, headers=ce.headers()).get(timeout=15)
    return ce.id


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0)

    def next(self) -> datetime:
        self.at += timedelta(minutes=1)
        return self.at


def status_of(system: System, issue_id: str) -> pb.Issue:
    return intake(system, tenant=T).GetIssue(pb.GetIssueRequest(id=issue_id))


def reaches(system: System, issue_id: str, status: str) -> pb.Issue:
    return wait_for(lambda: (i := status_of(system, issue_id)).status == status and i, timeout=30)  # type: ignore[no-any-return]


def task_status(issue_id: str, to: str, at: datetime, frm: str = "") -> dev.TaskStatusChanged:
    return dev.TaskStatusChanged(
        task_id=f"task-{issue_id}",
        issue_id=issue_id,
        tenant=T,
        from_status=frm,
        to_status=to,
        by="worker-1",
        changed_at=ts(at),
    )


def test_events_move_the_issue_forward_and_its_duplicate_follows(
    system: System, area: Area, producer: KafkaProducer, mongo_client: MongoClient[Any]
) -> None:
    svc = intake(system, tenant=T)
    original = svc.CreateIssue(new_issue(area.point(1), category="water_supply", title="整栋楼停水"))
    dup = svc.CreateIssue(new_issue(area.point(1, north_m=20), category="water_supply", title="家里没水了"))
    assert original.urgency == "major" and dup.duplicate_of == original.id
    claims = mongo_client[f"hl_intake_{T}"]["duplicate_claims"]
    assert claims.count_documents({"issue_id": original.id}) == 1
    clock = Clock()
    key = original.id

    # The running dispatch service blows the call of the classified original (a major issue: tackling);
    # the synthetic events below are dated after it, as later steps are.
    got = reaches(system, original.id, "whistle_blown")
    calls = mongo_client[f"hl_dispatch_{T}"]["whistles"]
    call = wait_for(lambda: calls.find_one({"_id": whistle_id_for_issue(original.id)}))
    blown_at = call["blown_at"]
    # The duplicate's link may land before or after the whistle (the call is blown while the second report is
    # being taken on a busy machine): the whistle's step is found by its kind.
    [blown] = [h for h in got.history if h.kind == "whistle_blown"]
    assert "攻坚集结号" in blown.note_zh
    heard = blown.at.ToDatetime(tzinfo=UTC)
    assert abs(heard - blown_at) < timedelta(milliseconds=1)  # when it happened, not when it was heard
    follower = reaches(system, dup.id, "whistle_blown")
    assert follower.history[-1].note_zh.startswith(f"随原事项 {original.id}：")
    assert "follows the original" in follower.history[-1].note_en

    at = clock.next()
    publish(
        producer,
        "dispatch",
        key,
        dev.TaskAssigned(
            task_id="t1",
            issue_id=original.id,
            tenant=T,
            assignee_kind="member_unit",
            assignee_id="u1",
            by="w",
            assigned_at=ts(at),
        ),
        at,
    )
    reaches(system, original.id, "assigned")
    for to in ("accepted", "in_progress"):
        at = clock.next()
        publish(producer, "dispatch", key, task_status(original.id, to, at), at)
    reaches(system, original.id, "in_progress")
    done_at = clock.next()
    publish(producer, "dispatch", key, task_status(original.id, "done", done_at), done_at)
    reaches(system, original.id, "done")
    reaches(system, dup.id, "done")
    version = status_of(system, original.id).version

    # A late, older event (a second whistle from before) adds nothing; the next event still applies.
    publish(
        producer,
        "dispatch",
        key,
        dev.WhistleBlown(
            whistle_id="w0", tenant=T, issue_ids=[original.id], blown_at=ts(blown_at - timedelta(minutes=1))
        ),
        blown_at - timedelta(minutes=1),
    )
    # Rejected at verification: back to work (reopened → in_progress), and the duplicate with it.
    rejected_at = clock.next()
    publish(producer, "dispatch", key, task_status(original.id, "rejected", rejected_at, "done"), rejected_at)
    reopened = reaches(system, original.id, "in_progress")
    assert reopened.version == version + 1  # only the reopening changed it
    assert reopened.history[-1].kind == "reopened"
    assert [h.kind for h in reopened.history].count("whistle_blown") == 1
    reaches(system, dup.id, "in_progress")
    # The first "done", delivered again late, is older than the reopening: nothing.
    publish(producer, "dispatch", key, task_status(original.id, "done", done_at), done_at)
    for to in ("done", "verified"):
        at = clock.next()
        publish(producer, "dispatch", key, task_status(original.id, to, at), at)
    verified = reaches(system, original.id, "verified")
    assert verified.open311_status == "closed"
    assert [h.kind for h in verified.history].count("done") == 2  # before and after the reopening
    # Closed: it no longer holds its duplicate claim, so a new report here starts an issue of its own.
    wait_for(lambda: claims.count_documents({"issue_id": original.id}) == 0)
    fresh = svc.CreateIssue(new_issue(area.point(1, north_m=10), category="water_supply", title="又停水了"))
    assert fresh.status == "classified" and not fresh.duplicate_of

    at = clock.next()
    publish(
        producer,
        "publication",
        key,
        pev.ProgressPublished(
            publication_id="p1",
            tenant=T,
            community_id=area.community_id,
            period=at.strftime("%Y-%m"),
            issue_ids=[original.id],
            published_at=ts(at),
        ),
        at,
    )
    reaches(system, original.id, "published")
    at = clock.next()
    publish(
        producer,
        "evaluation",
        key,
        eev.IssueRated(issue_id=original.id, tenant=T, score=5, ratings=1, rated_at=ts(at)),
        at,
    )
    rated = reaches(system, original.id, "rated")
    follower = reaches(system, dup.id, "rated")
    assert follower.open311_status == "closed"
    assert [h.kind for h in rated.history] == [
        "received",
        "classified",
        "duplicate_linked",
        "whistle_blown",
        "assigned",
        "in_progress",
        "done",
        "reopened",
        "done",
        "verified",
        "published",
        "rated",
    ]

    # Every change was announced as IssueStatusChanged, in order.
    def changes() -> list[tuple[str, str]]:
        return [
            (m.from_status, m.to_status)
            for k, m in events_of(system, T, original.id)
            if k == "IssueStatusChanged" and isinstance(m, iev.IssueStatusChanged)
        ]

    expected = [
        ("classified", "whistle_blown"),
        ("whistle_blown", "assigned"),
        ("assigned", "in_progress"),
        ("in_progress", "done"),
        ("done", "in_progress"),
        ("in_progress", "done"),
        ("done", "verified"),
        ("verified", "published"),
        ("published", "rated"),
    ]
    wait_for(lambda: changes() == expected)
    dup_changes = [m.to_status for k, m in events_of(system, T, dup.id) if isinstance(m, iev.IssueStatusChanged)]
    assert dup_changes[0] == "whistle_blown" and dup_changes[-1] == "rated"


def test_a_cancelled_task_closes_the_issue_for_good(system: System, area: Area, producer: KafkaProducer) -> None:
    issue = intake(system, tenant=T).CreateIssue(new_issue(area.point(2), category="greening", title="树枝挡路"))
    clock = Clock()
    at = clock.next()
    publish(producer, "dispatch", issue.id, task_status(issue.id, "cancelled", at), at)
    cancelled = reaches(system, issue.id, "cancelled")
    assert cancelled.open311_status == "closed" and cancelled.history[-1].note_zh == "已撤销"
    # Later events change nothing; a marker event on the same partition shows they were handled.
    at = clock.next()
    publish(producer, "dispatch", issue.id, task_status(issue.id, "done", at), at)
    marker = intake(system, tenant=T).CreateIssue(new_issue(area.point(2, north_m=-300), category="parking"))
    at = clock.next()
    publish(
        producer,
        "dispatch",
        issue.id,
        dev.TaskAssigned(task_id="tm", issue_id=marker.id, tenant=T, assigned_at=ts(at)),
        at,
    )
    reaches(system, marker.id, "assigned")
    assert status_of(system, issue.id).status == "cancelled"
    assert status_of(system, issue.id).version == cancelled.version


def test_events_for_unknown_issues_are_ignored(system: System, area: Area, producer: KafkaProducer) -> None:
    clock = Clock()
    at = clock.next()
    publish(producer, "dispatch", "ghost", task_status("no-such-issue", "done", at), at)
    marker = intake(system, tenant=T).CreateIssue(new_issue(area.point(2, north_m=300), category="parking"))
    at = clock.next()
    publish(
        producer,
        "dispatch",
        "ghost",
        dev.TaskAssigned(task_id="tg", issue_id=marker.id, tenant=T, assigned_at=ts(at)),
        at,
    )
    reaches(system, marker.id, "assigned")  # the consumer went past the unknown issue without dead-lettering it
