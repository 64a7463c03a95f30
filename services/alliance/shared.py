"""What the alliance's areas share besides their process: times as stored and as sent, the conflict answers
of the one write path (services/common/unitofwork.py), and whether a person attends for a member unit (asked
of org). Plain helpers, no area's rules."""

from __future__ import annotations

import grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common.errors import Aborted, InvalidArgument
from services.common.grpc_client import LazyStub, peer_call
from services.common.times import aware, ts, utcnow  # noqa: F401  (the areas import them from here)
from services.common.unitofwork import Conflicts


def conflicts(noun: str, noun_zh: str = "记录") -> Conflicts:
    """The ABORTED answers of a record of this kind changed under a change: stale, raced or busy."""
    return Conflicts(
        stale=lambda i, v, e: Aborted(f"{noun} {i!r} is at version {v}, not {e}: reload and retry ({noun_zh}已被修改)"),
        raced=lambda i: Aborted(
            f"{noun} {i!r} was changed at the same moment: reload and retry ({noun_zh}已被同时修改)"
        ),
        busy=lambda i: Aborted(
            f"{noun} {i!r} kept changing under this change: retry shortly ({noun_zh}正被频繁修改，请重试)"
        ),
    )


_org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", "hongling.org.v1.OrgService", "alliance")


def require_unit_person(unit_id: str, person_id: str, field: str = "person_id") -> str:
    """A member unit claims, signs up or attends only through one of its own people: the person must exist at
    org and name this unit as the one it attends for (org's Person.member_unit_id), or hours would be credited to
    anyone the unit named. INVALID_ARGUMENT naming `field` otherwise; asked as the alliance service, before any
    write. The same check for posts, activities and meetings. Returns the person's name (name_zh)."""
    try:
        found = peer_call(
            lambda: _org().GetPerson(org_pb2.GetRequest(id=person_id)), "alliance", as_service_principal=True
        )
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise InvalidArgument(
                f"未找到该人员 ({field}: no person {person_id!r} in this tenant)", field=field, reason="no_such_person"
            ) from None
        raise
    if found.member_unit_id != unit_id:
        raise InvalidArgument(
            f"该人员不属于本成员单位 ({field}: person {person_id!r} does not attend for member unit {unit_id!r}; "
            "org records the unit a person attends for)",
            field=field,
            reason="not_of_unit",
        )
    return str(found.name_zh)
