"""Kafka events -> the issues' verdicts (consumer group "evaluation-ratings", in the evaluation process).

The ratings area learns which tasks are verified only from the verification's events on
hongling.evaluation.v1: TaskVerified and TaskVerificationFailed (the reporter's own rejections, emitted by
this area, come back the same way). Each updates the issue's verdict document (handlers.apply_verdict):
a later attempt wins, a failure overrules a pass of the same attempt, an older or repeated verdict changes
nothing, so no processed-event mark is needed. Poison goes to the group's dead-letter topic
(services/common/topics.py EXTRA_GROUPS).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev

from services.common.consumer import EventConsumer
from services.common.events import CloudEvent, PoisonEvent, topic_for
from services.common.settings import Settings
from services.evaluation.ratings import domain, handlers

GROUP = "evaluation-ratings"


def _at(stamp: Timestamp, event: CloudEvent) -> datetime:
    at = stamp.ToDatetime(tzinfo=UTC) if (stamp.seconds or stamp.nanos) else event.time.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _need(event: CloudEvent, issue_id: str, verification_id: str) -> None:
    if not issue_id:
        raise PoisonEvent(f"{event.type} {event.id} names no issue")
    if not verification_id:
        raise PoisonEvent(f"{event.type} {event.id} has no verification_id")


def on_task_verified(event: CloudEvent, msg: eev.TaskVerified) -> None:
    _need(event, msg.issue_id, msg.verification_id)
    at = _at(msg.verified_at, event)
    handlers.apply_verdict(
        msg.issue_id,
        domain.Verdict(
            verification_id=msg.verification_id,
            attempt=msg.attempt or 1,
            status=domain.VERIFIED,
            task_id=msg.task_id,
            community_id=msg.community_id,
            call_type=msg.call_type,
            crew_ids=tuple(msg.crew_ids),
            at=at,
            method=msg.method,
            verified_at=at,
        ),
    )


def on_task_verification_failed(event: CloudEvent, msg: eev.TaskVerificationFailed) -> None:
    _need(event, msg.issue_id, msg.verification_id)
    handlers.apply_verdict(
        msg.issue_id,
        domain.Verdict(
            verification_id=msg.verification_id,
            attempt=msg.attempt or 1,
            status=domain.FAILED,
            task_id=msg.task_id,
            community_id=msg.community_id,
            call_type=msg.call_type,
            crew_ids=tuple(msg.crew_ids),
            at=_at(msg.failed_at, event),
            method=msg.method,
        ),
    )


def build_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        GROUP,
        [topic_for("evaluation")],
        {eev.TaskVerified: on_task_verified, eev.TaskVerificationFailed: on_task_verification_failed},
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
        mark_prefix=f"{GROUP}:",
        idempotent=(eev.TaskVerified, eev.TaskVerificationFailed),
    )
