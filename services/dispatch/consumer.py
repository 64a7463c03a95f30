"""Kafka events -> dispatch handlers."""

from __future__ import annotations

from hongling.events.v1 import intake_events_pb2 as iev

from services.common.consumer import EventConsumer
from services.common.events import topic_for
from services.common.settings import Settings
from services.dispatch import handlers

GROUP = "dispatch"


def build_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        GROUP,
        [topic_for("intake")],
        {iev.IssueReceived: handlers.on_issue_received},
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
    )
