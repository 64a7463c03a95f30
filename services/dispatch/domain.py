"""Dispatch domain rules. Plain Python, no infrastructure.

The full lifecycle (whistle, claims, assignment, clocks) arrives with the dispatch issue; the
skeleton opens one task per issue, with an id derived from the issue so a replay finds the same task.
"""

from __future__ import annotations

import uuid

STATUS_OPEN = "open"
TASK_NAMESPACE = uuid.UUID("0b7a4f0e-2f59-4d8e-8f55-3c1c9e6f7a10")


def task_id_for_issue(issue_id: str) -> str:
    return uuid.uuid5(TASK_NAMESPACE, issue_id).hex
