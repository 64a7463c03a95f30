"""The other services the ratings need, over gRPC only (services/common/grpc_client.py):

- intake: CheckReporter, asked AS THE CALLER (its principal: a resident is the reporter by its account, and
  anyone with the follow-up code by the code); the issue a reporter follows (GetIssue, as this service);
- dispatch: the issue's task and its progress (GetTaskForIssue, as this service);
- org: a member unit (its name and community), a person (community and roles), a member's own community.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from hongling.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from hongling.intake.v1 import intake_pb2, intake_pb2_grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common.errors import InvalidArgument, PermissionDenied
from services.common.grpc_client import LazyStub, peer_call

T = TypeVar("T")
CALLER = "evaluation"
_org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", "hongling.org.v1.OrgService", CALLER)
_intake = LazyStub(intake_pb2_grpc.IntakeServiceStub, "intake", "hongling.intake.v1.IntakeService", CALLER)
_dispatch = LazyStub(dispatch_pb2_grpc.DispatchServiceStub, "dispatch", "hongling.dispatch.v1.DispatchService", CALLER)
MISSING = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def _call(fn: Callable[[], T], *, as_service: bool = True) -> T:
    return peer_call(fn, CALLER, as_service_principal=as_service)


@dataclass(frozen=True)
class Reporter:
    issue_id: str
    community_id: str
    by: str  # code | resident


def check_reporter(issue_id: str, follow_code: str) -> Reporter:
    """Whether the caller reported the issue (intake decides, as the caller); PermissionDenied otherwise."""
    try:
        found = _call(
            lambda: _intake().CheckReporter(
                intake_pb2.CheckReporterRequest(issue_id=issue_id, follow_code=follow_code)
            ),
            as_service=False,
        )
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.PERMISSION_DENIED, *MISSING):
            raise PermissionDenied(
                "查询码不正确，或您不是该事项的反映人 (the follow-up code does not match this issue, or you did not "
                "report it)",
                reason="not_reporter",
            ) from None
        raise
    return Reporter(found.issue_id, found.community_id, found.by)


def issue(issue_id: str) -> intake_pb2.Issue:
    result: intake_pb2.Issue = _call(lambda: _intake().GetIssue(intake_pb2.GetIssueRequest(id=issue_id)))
    return result


def task_for_issue(issue_id: str) -> dispatch_pb2.Task | None:
    try:
        result: dispatch_pb2.Task = _call(
            lambda: _dispatch().GetTaskForIssue(dispatch_pb2.GetTaskForIssueRequest(issue_id=issue_id))
        )
        return result
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            return None
        raise


@dataclass(frozen=True)
class Entity:
    id: str
    name_zh: str
    community_id: str
    roles: tuple[str, ...] = ()


def _get(method: str, ident: str, field: str, what_zh: str, what: str) -> Any:
    try:
        return _call(lambda: getattr(_org(), method)(org_pb2.GetRequest(id=ident)))
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            raise InvalidArgument(
                f"未找到该{what_zh} ({field}: no {what} {ident!r} in this tenant)", field=field
            ) from None
        raise


def member_unit(unit_id: str, field: str = "unit_id") -> Entity:
    u = _get("GetMemberUnit", unit_id, field, "成员单位", "member unit")
    return Entity(u.id, u.name_zh, u.community_id)


def person(person_id: str, field: str) -> Entity:
    p = _get("GetPerson", person_id, field, "人员", "person")
    return Entity(p.id, "", p.community_id, tuple(p.roles))
