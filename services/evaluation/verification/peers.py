"""The other services verification needs, over gRPC only (services/common/grpc_client.py):

- dispatch: a task (GetTask: that it is done, its community, call type, crew and done steps) and the queue of
  a community's done tasks (ListTasks status=done, answered from dispatch's SQL read model);
- intake: the issue's point (GetIssue), to flag an on-site check made too far from it.

Look-ups run as the evaluation service itself (a "service" principal of the call's tenant); the caller's
community scope is checked here before (services/common/community.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from hongling.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from hongling.intake.v1 import intake_pb2, intake_pb2_grpc

from services.common import community
from services.common.errors import InvalidArgument, NotFound
from services.common.grpc_client import LazyStub, peer_call
from services.evaluation.verification import domain

T = TypeVar("T")
_dispatch = LazyStub(
    dispatch_pb2_grpc.DispatchServiceStub, "dispatch", "hongling.dispatch.v1.DispatchService", "evaluation"
)
_intake = LazyStub(intake_pb2_grpc.IntakeServiceStub, "intake", "hongling.intake.v1.IntakeService", "evaluation")
MISSING = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def _call(fn: Callable[[], T]) -> T:
    return peer_call(fn, "evaluation")


@dataclass(frozen=True)
class TaskInfo:
    id: str
    issue_id: str
    status: str
    community_id: str
    grid_id: str
    call_type: str
    title: str
    category: str
    crew_ids: tuple[str, ...]
    attempt: int
    done_at: datetime | None
    version: int


def task_info(t: dispatch_pb2.Task) -> TaskInfo:
    done_steps = [h for h in t.history if h.to_status == domain.DONE]
    done_at = done_steps[-1].at.ToDatetime(tzinfo=UTC) if done_steps else None
    if done_at is None and t.HasField("finished_at"):
        done_at = t.finished_at.ToDatetime(tzinfo=UTC)
    return TaskInfo(
        id=t.id,
        issue_id=t.issue_id,
        status=t.status,
        community_id=t.community_id,
        grid_id=t.grid_id,
        call_type=t.call_type or domain.SERVICE,
        title=t.title,
        category=t.category,
        crew_ids=tuple(f"{c.kind}:{c.id}" for c in t.crew),
        attempt=domain.attempt_of(h.to_status for h in t.history),
        done_at=done_at,
        version=int(t.version),
    )


def task(task_id: str, field: str = "task_id") -> TaskInfo:
    """The task, if the caller may see it (another community's is NOT_FOUND as a missing one)."""
    try:
        found = _call(lambda: _dispatch().GetTask(dispatch_pb2.GetTaskRequest(id=task_id)))
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            raise NotFound(community.not_found_message("task", task_id), field=field) from None
        raise
    info = task_info(found)
    if not community.sees(info.community_id):
        raise NotFound(community.not_found_message("task", task_id), field=field)
    return info


def done_tasks(community_id: str, call_type: str, page_size: int, page_token: str) -> tuple[list[TaskInfo], str]:
    """A community's (or "": the tenant's) done tasks, newest first, one page (dispatch's read model)."""
    request = dispatch_pb2.ListTasksRequest(
        status=domain.DONE,
        community_id=community_id,
        call_type=call_type,
        page_size=page_size,
        page_token=page_token,
    )
    try:
        found = _call(lambda: _dispatch().ListTasks(request))
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:  # the caller's filters or page token, as dispatch read them
            details = exc.details() or "invalid filter (筛选条件无效)"
            named = re.match(r"([a-z_]+) ", details)  # dispatch names the field first ("page_token is not …")
            raise InvalidArgument(details, field=named.group(1) if named else None) from None
        raise
    return [task_info(t) for t in found.tasks], found.next_page_token


def issue_point(issue_id: str) -> tuple[float, float] | None:
    """The issue's point (WGS-84), or None when it has none (or is not found)."""
    if not issue_id:
        return None
    try:
        found = _call(lambda: _intake().GetIssue(intake_pb2.GetIssueRequest(id=issue_id)))
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            return None
        raise
    loc = found.location
    if loc.HasField("lat") and loc.HasField("lon"):
        return (loc.lat, loc.lon)
    return None
