"""The other services a meeting needs, over gRPC only (services/common/grpc_client.py):

- org: a grid station (the place: its name, community, point), the invited units and people (that they
  exist, their names and communities), a community (that it exists, its name), a grid's name, the name of a
  person attending for a unit (names for the minutes cached ten minutes);
- intake: an open issue put on the agenda (its title kept), the categories' names, and the issue an action
  item opens (CreateIssue with an idempotency key and the meeting as its origin), and its status;
- dispatch: the task of an action item's issue (GetTaskForIssue) and its status.

Look-ups run as the alliance service itself (a "service" principal of the call's tenant), as dispatch calls
org; an action item's issue is filed as the caller (its history names the worker who opened it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import grpc
from hongling.common.v1 import location_pb2 as loc_pb2
from hongling.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from hongling.intake.v1 import intake_pb2, intake_pb2_grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common.context import require_tenant
from services.common.errors import InvalidArgument, Unavailable
from services.common.grpc_client import LazyStub, peer_call

T = TypeVar("T")
_org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", "hongling.org.v1.OrgService", "alliance")
_intake = LazyStub(intake_pb2_grpc.IntakeServiceStub, "intake", "hongling.intake.v1.IntakeService", "alliance")
_dispatch = LazyStub(
    dispatch_pb2_grpc.DispatchServiceStub, "dispatch", "hongling.dispatch.v1.DispatchService", "alliance"
)
MISSING = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
# Names for the minutes (a community's, the people attending for units), as publication/names.py caches them.
NAME_TTL_SECONDS = 600.0
NAMES_MAX = 10_000
_names: dict[tuple[str, str, str], tuple[float, str]] = {}
_names_lock = threading.Lock()


def _call(fn: Callable[[], T], *, as_service: bool = True) -> T:
    return peer_call(fn, "alliance", as_service_principal=as_service)


@dataclass(frozen=True)
class Station:
    id: str
    name_zh: str
    community_id: str
    lat: float | None
    lon: float | None


def station(station_id: str) -> Station:
    try:
        s = _call(lambda: _org().GetGridStation(org_pb2.GetRequest(id=station_id)))
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            raise InvalidArgument(
                f"未找到该网格驿站 (station_id: no grid station {station_id!r} in this tenant)", field="station_id"
            ) from None
        raise
    point = s.point if s.HasField("point") else None
    return Station(s.id, s.name_zh, s.community_id, point.lat if point else None, point.lon if point else None)


def community_exists(community_id: str) -> bool:
    try:
        _call(lambda: _org().GetCommunity(org_pb2.GetRequest(id=community_id)))
        return True
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            return False
        raise


def invitee(kind: str, ident: str, field: str) -> tuple[str, str]:
    """(name_zh, community_id) of a member unit or person; INVALID_ARGUMENT naming `field` when there is none."""
    method = "GetMemberUnit" if kind == "member_unit" else "GetPerson"
    try:
        found: Any = _call(lambda: getattr(_org(), method)(org_pb2.GetRequest(id=ident)))
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            zh = "成员单位" if kind == "member_unit" else "人员"
            raise InvalidArgument(f"未找到该{zh} ({field}: no {kind} {ident!r} in this tenant)", field=field) from None
        raise
    return str(found.name_zh), str(found.community_id)


def _named(kind: str, ident: str, look_up: Callable[[], Any]) -> str:
    """An entity's name_zh from org, cached NAME_TTL_SECONDS per tenant ("" when org has no such entity)."""
    key = (require_tenant(), kind, ident)
    now = time.monotonic()
    with _names_lock:
        hit = _names.get(key)
    if hit is not None and now - hit[0] < NAME_TTL_SECONDS:
        return hit[1]
    try:
        name = str(_call(look_up).name_zh)
    except grpc.RpcError as exc:
        if exc.code() not in MISSING:
            raise
        name = ""
    with _names_lock:
        if len(_names) >= NAMES_MAX:
            _names.clear()
        _names[key] = (now, name)
    return name


def community_name(community_id: str) -> str:
    """The community's name (its id if org has none: never a guess)."""
    found = _named("community", community_id, lambda: _org().GetCommunity(org_pb2.GetRequest(id=community_id)))
    return found or community_id


def person_name(person_id: str) -> str:
    """A person's name_zh only (nothing else of the person is kept: no phone, no contact); "" if unknown."""
    return _named("person", person_id, lambda: _org().GetPerson(org_pb2.GetRequest(id=person_id)))


def grid_name(grid_id: str) -> str:
    try:
        return str(_call(lambda: _org().GetGrid(org_pb2.GetRequest(id=grid_id))).name_zh)
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            return grid_id
        raise


@dataclass(frozen=True)
class IssueInfo:
    id: str
    title: str
    community_id: str
    status: str
    open311_status: str = ""


def issue(issue_id: str, field: str) -> IssueInfo:
    try:
        found = _call(lambda: _intake().GetIssue(intake_pb2.GetIssueRequest(id=issue_id)))
    except grpc.RpcError as exc:
        if exc.code() in MISSING:
            raise InvalidArgument(
                f"未找到该事项 ({field}: no issue {issue_id!r} in this tenant)", field=field
            ) from None
        raise
    return IssueInfo(found.id, found.title, found.place.community_id, found.status, found.open311_status)


def topic_counts(community_id: str, first: date, last: date) -> dict[str, dict[str, int]]:
    """Issues received per category and per grid in the local days first..last of one community ("": the
    tenant), from intake (GetTopicCounts, its rollup), asked as the caller: a community worker gets its own
    community's figures only. kind -> topic -> n."""
    request = intake_pb2.GetIssueStatsRequest(
        community_id=community_id, from_day=first.isoformat(), to_day=last.isoformat()
    )
    found = _call(lambda: _intake().GetTopicCounts(request), as_service=False)
    out: dict[str, dict[str, int]] = {"category": {}, "grid": {}}
    for t in found.topics:
        out.setdefault(t.kind, {})[t.topic] = int(t.count)
    return out


def category_names() -> dict[str, str]:
    rules = _call(lambda: _intake().GetClassificationRules(intake_pb2.GetClassificationRulesRequest()))
    return {c.code: c.name_zh for c in rules.categories}


def create_issue(
    *,
    title: str,
    description: str,
    category: str,
    compound_id: str,
    point: tuple[float, float] | None,
    address: str,
    idempotency_key: str,
    origin: str,
) -> str:
    """File the action item's issue as the caller (a retry with the same key returns the same issue)."""
    location = loc_pb2.Location(address=address, compound_id=compound_id)
    if not compound_id and point is not None:
        location.lat, location.lon = point
    request = intake_pb2.CreateIssueRequest(
        title=title,
        description=description,
        channel="resident_report",
        category=category,
        location=location,
        idempotency_key=idempotency_key,
        origin=origin,
    )
    return str(_call(lambda: _intake().CreateIssue(request), as_service=False).id)


@dataclass(frozen=True)
class Follow:
    status: str
    task_id: str = ""
    task_status: str = ""
    task_status_zh: str = ""


def follow(issue_id: str) -> Follow:
    """The issue's status and its dispatch task's (empty where there is none yet or it cannot be read now)."""
    try:
        found = _call(lambda: _intake().GetIssue(intake_pb2.GetIssueRequest(id=issue_id)))
    except (grpc.RpcError, Unavailable):
        return Follow("")
    try:
        task = _call(lambda: _dispatch().GetTaskForIssue(dispatch_pb2.GetTaskForIssueRequest(issue_id=issue_id)))
    except (grpc.RpcError, Unavailable):
        return Follow(found.status)
    return Follow(found.status, task.id, task.status, task.status_zh)
