"""Kafka events -> the time bank (consumer group "alliance-timebank", in the alliance process).

Hours are credited only from verified facts: an attended activity (ActivityAttended) and a served shift
(ShiftServed) on hongling.alliance.v1, and a task dispatch marked verified (TaskStatusChanged to "verified"
on hongling.dispatch.v1), each person on its crew for the tenant's hours per call type. A credit's _id is
derived from its source and person, so a redelivered or re-sent event credits nothing more; the alliance's
events are also dropped by event id (the consumer's processed-event mark). Poison goes to the group's
dead-letter topic (services/common/topics.py EXTRA_GROUPS).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import alliance_events_pb2 as aev
from hongling.events.v1 import dispatch_events_pb2 as dev

from services.common.consumer import EventConsumer
from services.common.events import CloudEvent, PoisonEvent, topic_for
from services.common.settings import Settings

from . import domain, handlers

GROUP = "alliance-timebank"
VERIFIED = "verified"


def _at(stamp: Timestamp, event: CloudEvent) -> datetime:
    at = stamp.ToDatetime(tzinfo=UTC) if (stamp.seconds or stamp.nanos) else event.time.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def on_activity_attended(event: CloudEvent, msg: aev.ActivityAttended) -> None:
    if not msg.activity_id:
        raise PoisonEvent(f"ActivityAttended {event.id} names no activity")
    if not msg.person_id:
        return  # a unit attending as a whole: no person to credit
    handlers.credit(
        domain.ACTIVITY_SOURCE,
        msg.activity_id,
        msg.person_id,
        msg.hours,
        _at(msg.at, event),
        community_id=msg.community_id,
        unit_id=msg.unit_id,
    )


def on_shift_served(event: CloudEvent, msg: aev.ShiftServed) -> None:
    if not msg.shift_id:
        raise PoisonEvent(f"ShiftServed {event.id} names no shift")
    if not msg.person_id:
        return
    handlers.credit(
        domain.SHIFT_SOURCE,
        f"{msg.post_id}/{msg.shift_id}" if msg.post_id else msg.shift_id,
        msg.person_id,
        msg.hours,
        _at(msg.at, event),
        community_id=msg.community_id,
        unit_id=msg.unit_id,
    )


def on_task_status_changed(event: CloudEvent, msg: dev.TaskStatusChanged) -> None:
    if msg.to_status != VERIFIED:
        return
    if not msg.task_id:
        raise PoisonEvent(f"TaskStatusChanged {event.id} names no task")
    people = domain.crew_people(list(msg.crew_ids))
    if not people:
        return
    rules, _ = handlers.current_rules()
    hours = domain.task_hours(rules, msg.call_type or "service")
    at = _at(msg.changed_at, event)
    for person in people:
        handlers.credit(domain.TASK_SOURCE, msg.task_id, person, hours, at, community_id=msg.community_id)


def build_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        GROUP,
        [topic_for("alliance"), topic_for("dispatch")],
        {
            aev.ActivityAttended: on_activity_attended,
            aev.ShiftServed: on_shift_served,
            dev.TaskStatusChanged: on_task_status_changed,
        },
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
        mark_prefix=f"{GROUP}:",
        # Every task's status changes pass by; only "verified" ones credit, each by a derived _id: no
        # processed-event mark (two database commands) for each of them.
        idempotent=(dev.TaskStatusChanged,),
    )
