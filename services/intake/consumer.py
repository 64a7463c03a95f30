"""Kafka events -> intake's lifecycle handlers (consumer group "intake-lifecycle").

What the resident sees of an issue after intake is fed by the other services' events: dispatch
(WhistleBlown, TaskAssigned, TaskStatusChanged), evaluation (IssueRated) and publication
(ProgressPublished). Intake also reads its own IssueMarkedDuplicate, the at-least-once path of linking
a duplicate to its original (CreateIssue links it at once; the event makes sure). TaskCreated is the
walking skeleton's and is not handled.
"""

from __future__ import annotations

import logging

from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.events.v1 import intake_events_pb2 as iev
from hongling.events.v1 import publication_events_pb2 as pev

from services.common.consumer import EventConsumer
from services.common.events import topic_for
from services.common.settings import Settings
from services.intake import handlers

log = logging.getLogger(__name__)
GROUP = "intake-lifecycle"


def build_consumer(settings: Settings) -> EventConsumer:
    """The group's dead-letter topic is created with the others (services.common.topics EXTRA_GROUPS)."""
    return EventConsumer(
        GROUP,
        [topic_for("dispatch"), topic_for("evaluation"), topic_for("publication"), topic_for("intake")],
        {
            dev.WhistleBlown: handlers.on_whistle_blown,
            dev.TaskAssigned: handlers.on_task_assigned,
            dev.TaskStatusChanged: handlers.on_task_status_changed,
            eev.IssueRated: handlers.on_issue_rated,
            pev.ProgressPublished: handlers.on_progress_published,
            iev.IssueMarkedDuplicate: handlers.on_issue_marked_duplicate,
        },
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
        gather_ms=settings.consumer_gather_ms,
        # The lifecycle only moves forward (domain.next_status: an event older than the issue's last change
        # or its reopening adds nothing) and linking a duplicate is by its ids: a replay changes nothing, so
        # no processed-event mark (two commands per event) is needed.
        idempotent=(
            dev.WhistleBlown,
            dev.TaskAssigned,
            dev.TaskStatusChanged,
            eev.IssueRated,
            pev.ProgressPublished,
            iev.IssueMarkedDuplicate,
        ),
    )
