"""Kafka events -> dispatch handlers (consumer group "dispatch", topics hongling.intake.v1, hongling.org.v1 and
hongling.evaluation.v1).

- IssueClassified: the issue's task and its call (a duplicate is never classified: it gets neither).
- IssueReclassified: a more urgent class upgrades the open call and the task's deadlines.
- IssueMarkedDuplicate: remember the original a duplicate follows (GetTaskForIssue answers with its task).
- OrgEntityChanged of a member unit: the next calls read the community's units again (directory.py).
- TaskVerified / TaskVerificationFailed (evaluation's verdicts, 验单): done → verified; done → rejected → reopened;
  verified → reopened for a resident's rejection. Each verdict applies once (its id is kept on the task).
IssueReceived is not handled any more: a task waits for the class, which picks the call.

A process runs THREADS consumers of the group, one per partition of hongling.intake.v1 (3): handling an
event waits mostly on the database and org (about 50-100 ms on the local FerretDB), so one consumer alone
would cap a process near 10-20 events/s. Kafka gives each its own partitions (an issue's events stay in
order: its key picks its partition); more processes in the group share them the same way. Each consumer
also handles the records of one poll that belong to different issues at once, CONCURRENCY at a time (an
issue's records still one after another): their inserts then share commands (services/common/groupcommit.py).
"""

from __future__ import annotations

from collections.abc import Callable

from hongling.events.v1 import evaluation_events_pb2 as vev
from hongling.events.v1 import intake_events_pb2 as iev
from hongling.events.v1 import org_events_pb2 as oev

from services.common.consumer import EventConsumer
from services.common.events import topic_for
from services.common.settings import Settings
from services.dispatch import handlers

GROUP = "dispatch"
THREADS = 3
CONCURRENCY = 8


def build_consumer(settings: Settings) -> EventConsumer:
    return EventConsumer(
        GROUP,
        [topic_for("intake"), topic_for("org"), topic_for("evaluation")],
        {
            iev.IssueClassified: handlers.on_issue_classified,
            iev.IssueReclassified: handlers.on_issue_reclassified,
            iev.IssueMarkedDuplicate: handlers.on_issue_marked_duplicate,
            oev.OrgEntityChanged: handlers.on_org_entity_changed,
            vev.TaskVerified: handlers.on_task_verified,
            vev.TaskVerificationFailed: handlers.on_task_verification_failed,
        },
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
        concurrency=CONCURRENCY,
        # Inserts by deterministic _id (task, call, link, timers by key) and a cache drop: a replay changes
        # nothing, so these skip the processed-event mark. A replayed reclassification could undo a later one.
        idempotent=(iev.IssueClassified, iev.IssueMarkedDuplicate, oev.OrgEntityChanged),
    )


def consumer_workers() -> list[Callable[[Settings], EventConsumer]]:
    """The factories of this process's consumers of the group (run_service workers)."""
    return [build_consumer] * THREADS
