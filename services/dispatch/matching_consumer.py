"""Kafka events -> the matching read model (consumer group "dispatch-matching").

Dispatch's own events (hongling.dispatch.v1) say who is on which task and when it closed; evaluation's
(hongling.evaluation.v1) how residents rated it. See services.dispatch.helpers_model for what each one
changes. The group's dead-letter topic is created with the others (services.common.topics EXTRA_GROUPS).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev

from services.common.consumer import EventConsumer
from services.common.events import CloudEvent, PoisonEvent, topic_for
from services.common.settings import Settings
from services.dispatch import helpers_model as model
from services.dispatch.domain import task_id_for_issue

GROUP = "dispatch-matching"


def _at(ts: Timestamp, event: CloudEvent) -> datetime:
    if ts.seconds or ts.nanos:
        return ts.ToDatetime(tzinfo=UTC)
    return event.time.astimezone(UTC)


def on_task_assigned(event: CloudEvent, msg: dev.TaskAssigned) -> None:
    if not msg.task_id or not msg.assignee_id or not msg.assignee_kind:
        raise PoisonEvent(f"TaskAssigned {event.id} names no task or assignee")
    at = _at(msg.assigned_at, event)
    model.task_taken(msg.task_id, msg.issue_id, msg.assignee_kind, msg.assignee_id, at, replaces=True)


def on_task_claimed(event: CloudEvent, msg: dev.TaskClaimed) -> None:
    if not msg.task_id or not msg.claimant_id or not msg.claimant_kind:
        raise PoisonEvent(f"TaskClaimed {event.id} names no task or claimant")
    at = _at(msg.claimed_at, event)
    # The lead place makes the claimant the task's assignee (dispatch also sends TaskAssigned for it).
    lead = msg.role == "lead"
    model.task_taken(msg.task_id, msg.issue_id, msg.claimant_kind, msg.claimant_id, at, replaces=lead)


def on_task_status_changed(event: CloudEvent, msg: dev.TaskStatusChanged) -> None:
    if not msg.task_id or not msg.to_status:
        raise PoisonEvent(f"TaskStatusChanged {event.id} names no task or status")
    model.status_changed(msg.task_id, msg.issue_id, msg.from_status, msg.to_status, _at(msg.changed_at, event))


def on_deadline_missed(event: CloudEvent, msg: dev.DeadlineMissed) -> None:
    if msg.deadline == "completion" and msg.task_id:
        model.deadline_missed(msg.task_id)


def on_issue_rated(event: CloudEvent, msg: eev.IssueRated) -> None:
    if not msg.task_id and not msg.issue_id:
        raise PoisonEvent(f"IssueRated {event.id} names no task or issue")
    if not 1 <= msg.score <= 5:
        raise PoisonEvent(f"IssueRated {event.id}: score {msg.score} is not 1..5")
    task_id = msg.task_id or task_id_for_issue(msg.issue_id)
    # The n-th rating of the task (ratings counts them); without a count, the event itself is the rating.
    rating = f"r{msg.ratings}" if msg.ratings > 0 else f"e{event.id}"
    model.rated(task_id, msg.issue_id, rating, msg.score)


def build_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        GROUP,
        [topic_for("dispatch"), topic_for("evaluation")],
        {
            dev.TaskAssigned: on_task_assigned,
            dev.TaskClaimed: on_task_claimed,
            dev.TaskStatusChanged: on_task_status_changed,
            dev.DeadlineMissed: on_deadline_missed,
            eev.IssueRated: on_issue_rated,
        },
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
        gather_ms=settings.consumer_gather_ms,
        mark_prefix=f"{GROUP}:",
    )
