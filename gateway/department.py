"""A district department's call under its grant: checked, counted and written to the audit log.

Used by the HTTP gateway (policy hook + views) and by the gRPC front door (gateway/frontdoor.py) alike,
so both doors apply one rule. A department names the grant it acts under (HTTP header `X-Hongling-Grant`,
front-door field `grant_id`). A call goes through in two steps:

1. `check(call)`: the grant exists, belongs to the caller, is in force, covers the tenant, the community,
   the operation, every field asked for (and every filter used: a filter on a field is a read of it) and,
   for an assistance task, that task; its quota is not used up. A refusal is written to the audit log
   (linked to the grant when there is one, so the community sees it) and raised as `Refused`, naming
   what is missing (grant, period, tenant, community, operation:…, fields:…, task, quota).
2. `Access.admit(target, community_id)`: just before the service call, once the record's own community
   is known (a single read names its record's community only after fetching it). It checks that
   community, counts the use atomically against the quota (store.use: an insert of the next numbered
   slot, never past the quota) and appends the `allowed` entry. Only then does the answer leave the gateway.

A call refused after the record was fetched is refused whole: nothing of the record is returned.
Answers carry only `id` and the granted fields (`project`); personal data stays masked whatever is
granted (the org service reveals it only to community workers and subdistrict admins).

Every other call by a district department (filing a request, reading its requests and grants) and
every call the policy table refuses it is written to the audit log too (`audit_plain_call`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.org.v1 import org_pb2

from gateway.errors import ApiError
from gateway.governance import domain
from gateway.governance.store import GovernanceStore, grant_from_document, is_grant_id
from services.common.audit import AuditLog
from services.common.principal import Principal

log = logging.getLogger("gateway.department")

GRANT_HEADER = "X-Hongling-Grant"
ACTION = "department.call"
# Filters that read other fields than their name: text searches title and description, a time window
# reads created_at; community_id is the grant's own scope, ids only name records.
FILTER_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("title", "description"),
    "created_from": ("created_at",),
    "created_to": ("created_at",),
    "community_id": (),
    "ids": (),
}
# Query parameters that are not filters on the records (paging, projection, scope).
NON_FILTER_ARGS = frozenset({"page_size", "page_token", "fields", "community_id", "reveal", "format"})


@dataclass(frozen=True)
class Call:
    """One department call, as the door received it (no personal data: ids, names of fields)."""

    principal: Principal
    grant_id: str
    operation: str  # e.g. org.read:people, intake.create:assistance_task
    tenant: str
    door: str  # "http" or "grpc"
    method: str  # "GET /api/v1/tenants/{tenant}/org/{collection}" or the gRPC method's full name
    community_id: str = ""  # asked for ("" = the grant's community)
    fields: tuple[str, ...] = ()  # asked for (() = the grant's fields)
    filters: tuple[str, ...] = ()  # filter keys used (each must be a granted field, or community_id)
    task: str | None = None  # assistance: the task title handed over
    target: str = ""  # the record or collection
    request_id: str = ""


class Refused(Exception):
    """A department call refused: `missing` names what the grant lacks; `message` says it in full."""

    def __init__(self, missing: str, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.missing = missing
        self.message = message
        self.status = status


@dataclass
class Access:
    """A call that passed its grant check; `admit` completes it."""

    call: Call
    grant: domain.Grant
    community_id: str
    fields: frozenset[str]
    store: GovernanceStore
    audit: AuditLog
    admitted: bool = False
    recorded: bool = False  # the call's outcome is in the audit log (admitted, or refused by admit)
    use: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def admit(self, *, target: str = "", community_id: str | None = None, now: datetime | None = None) -> None:
        """Count the use and record it, or raise Refused (recorded too). `community_id`: the community
        of the record about to be returned, when the call reads one record."""
        at = now or datetime.now(UTC)
        call = self.call if not target else _with_target(self.call, target)
        self.recorded = True  # from here on, admit records the outcome itself, allowed or refused
        if community_id is not None and community_id != self.community_id:
            _refuse(
                call,
                self.grant,
                "community",
                f"{target or 'the record'} belongs to community {community_id or '(none)'}, "
                f"not to {self.community_id} which grant {self.grant.id} covers",
                self.store,
                self.audit,
            )
        self.use = self.store.use(self.grant.id, at)
        if not self.use:
            # In force a moment ago (check): the quota was used up meanwhile, or the grant just ended.
            _refuse(
                call,
                self.grant,
                "quota",
                f"grant {self.grant.id} quota of {self.grant.quota} is used up",
                self.store,
                self.audit,
            )
        self.admitted = True
        _record(call, self.grant, "allowed", self.store, self.audit, self._detail())

    def record_failure(self, status: str, code: str) -> None:
        """A call that passed its grant check but ended in an error before it was admitted (e.g. the
        record does not exist, or the service refused): recorded as refused with the error."""
        _record(self.call, self.grant, "refused", self.store, self.audit, {"status": status, "error": code})

    def _detail(self) -> dict[str, Any]:
        return {"community_id": self.community_id, "fields": sorted(self.fields), "use": self.use, **self.detail}


def _with_target(call: Call, target: str) -> Call:
    return Call(**{**call.__dict__, "target": target})


def _detail(call: Call, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"operation": call.operation, "door": call.door, "method": call.method}
    if call.community_id:
        out["community_id"] = call.community_id
    if call.fields:
        out["fields"] = list(call.fields)
    if call.filters:
        out["filters"] = list(call.filters)
    return out | extra


def _record(
    call: Call,
    grant: domain.Grant | None,
    outcome: str,
    store: GovernanceStore,
    audit: AuditLog,
    detail: Mapping[str, Any],
) -> None:
    entry = audit.append(
        actor=call.principal.sub,
        role=call.principal.role,
        action=ACTION,
        outcome=outcome,
        tenant=call.tenant,
        target=call.target,
        grant_id=grant.id if grant is not None else "",
        request_id=call.request_id,
        detail=_detail(call, **detail),
    )
    if grant is not None:
        store.link_audit(grant.id, entry)


def _refuse(
    call: Call, grant: domain.Grant | None, missing: str, message: str, store: GovernanceStore, audit: AuditLog
) -> None:
    _record(call, grant, "refused", store, audit, {"missing": missing, "reason": message})
    raise Refused(missing, message)


def check(call: Call, store: GovernanceStore, audit: AuditLog, *, now: datetime | None = None) -> Access:
    """Step 1: whether the call fits its grant (see the module doc). Raises Refused, after recording it."""
    at = now or datetime.now(UTC)
    if not call.grant_id:
        where = f"{GRANT_HEADER}: gr-…" if call.door == "http" else "grant_id: gr-…"
        _refuse(
            call,
            None,
            "grant",
            f"name the approved grant you act under ({where}); district departments reach "
            "community data and hand over tasks only under one (须经区委区政府审核授权)",
            store,
            audit,
        )
    doc = store.grant(call.grant_id, trail=False) if is_grant_id(call.grant_id) else None
    if doc is None:
        _refuse(call, None, "grant", f"there is no grant {call.grant_id!r}", store, audit)
    assert doc is not None
    grant = grant_from_document(doc)
    asked = set(call.fields) or set(grant.fields)
    decision = domain.check(
        grant,
        department=call.principal.sub,
        operation=call.operation,
        tenant=call.tenant,
        community_id=call.community_id or grant.community_id,
        fields=asked | filter_fields(call.filters),
        task=call.task,
        now=at,
    )
    if not decision.allowed:
        _refuse(call, grant, decision.missing, decision.reason, store, audit)
    return Access(call, grant, grant.community_id, frozenset(asked), store, audit)


def audit_plain_call(
    principal: Principal,
    *,
    outcome: str,
    door: str,
    method: str,
    tenant: str = "",
    target: str = "",
    request_id: str = "",
    detail: Mapping[str, Any] | None = None,
    audit: AuditLog,
) -> None:
    """A department call outside any grant (its own requests and grants, or one the policy refused)."""
    audit.append(
        actor=principal.sub,
        role=principal.role,
        action=ACTION,
        outcome=outcome,
        tenant=tenant,
        target=target,
        request_id=request_id,
        detail={"door": door, "method": method, **(detail or {})},
    )


def task_community(resolve: Callable[[Any], Any], location: common_pb2.Location) -> str:
    """The community an assistance task's location lies in, by the org service's ResolveLocation (passed
    in, bound to the caller): admit() then checks it is the grant's before anything is counted or stored.
    ApiError 400 naming `location` when it cannot be placed in a grid of the tenant."""
    if location.compound_id:
        req = org_pb2.ResolveLocationRequest(compound_id=location.compound_id)
    elif location.HasField("lat") and location.HasField("lon"):
        req = org_pb2.ResolveLocationRequest(point=org_pb2.Point(lat=location.lat, lon=location.lon))
    else:
        raise ApiError(
            400,
            "invalid_argument",
            "location needs a point (lat, lon) or a compound_id, to check it lies in the granted community "
            "(请提供经纬度或小区)",
            field="location",
        )
    try:
        found = resolve(req)
    except grpc.RpcError as exc:
        if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise
        raise ApiError(
            400, "invalid_argument", f"{exc.details()} (任务地点无法定位到本辖区网格)", field="location"
        ) from None
    return str(found.community_id)


def filter_fields(filters: Iterable[str]) -> set[str]:
    """The record fields a set of filters reads (a filter on a field reveals it as surely as the field)."""
    out: set[str] = set()
    for key in filters:
        out |= set(FILTER_FIELDS.get(key, (key,)))
    return out


def project(record: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """Only `id` and the granted fields of a record (in the record's order)."""
    keep = set(fields) | {"id"}
    return {k: v for k, v in record.items() if k in keep}


def parse_fields(raw: str | None) -> tuple[str, ...]:
    """`fields=a,b` as a tuple (empty: none asked, i.e. the grant's)."""
    return tuple(sorted({f.strip() for f in (raw or "").split(",") if f.strip()}))
