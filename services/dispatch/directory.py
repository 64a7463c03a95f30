"""Who is who, asked of the org service over gRPC: the member units serving a community, and the name of a
unit, person or team (which also proves it exists in the tenant).

Dispatch calls org as itself (a "service" principal scoped to the call's tenant). Answers are cached per
tenant (the tenant's active units, names for NAMES_TTL): a call is blown for every classified issue, and
the alliance of a community changes rarely. Every change of a member unit at org (OrgEntityChanged, entity
member_unit, consumed by the "dispatch" group) writes a new generation into the tenant's
`directory_generation` document; a call reads that one document by _id (at most every GENERATION_CHECK
seconds per tenant: at 50 calls a second the read was one database command per call) and reads the units
again when the generation moved, so a unit that joined is called within a second in every dispatch
process, and by the very next whistle in the one that consumed the event. UNITS_TTL is the backstop should
an event be late.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common import context
from services.common.errors import InvalidArgument, Unavailable
from services.common.grpc_client import LazyStub
from services.common.mongo import tenant_database
from services.common.principal import Principal
from services.common.recent import RecentRead
from services.common.settings import Settings
from services.dispatch import domain

log = logging.getLogger(__name__)

ORG_SERVICE = "hongling.org.v1.OrgService"
UNITS_TTL = 60.0
NAMES_TTL = 300.0
PAGE = 500
MAX_UNITS = 20000
GENERATION_CHECK = 1.0  # seconds a generation read is trusted (per tenant and process)
GENERATION = "directory_generation"  # collection of the tenant's dispatch database: {_id: "member_units", gen}


@dataclass(frozen=True)
class Unit:
    id: str
    name_zh: str
    community_id: str
    serves_grid_ids: tuple[str, ...]


def _read_generation() -> str:
    found = tenant_database(context.require_tenant())[GENERATION].find_one({"_id": "member_units"}, {"gen": 1})
    return str((found or {}).get("gen", ""))


class Directory:
    def __init__(self, settings: Settings | None = None) -> None:
        self._org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", ORG_SERVICE, "dispatch", settings)
        # tenant -> (read at, generation read before, community -> units)
        self._units: dict[str, tuple[float, str, dict[str, list[Unit]]]] = {}
        self._refreshing: set[str] = set()
        self._generation = RecentRead(_read_generation, GENERATION_CHECK)
        self._names: dict[tuple[str, str, str], tuple[float, str]] = {}

    def _call(self, method: str, request: Any) -> Any:
        tenant = context.require_tenant()
        me = Principal(sub="dispatch", role="service", tenants=(tenant,))
        try:
            with context.bound(principal=me):
                return getattr(self._org(), method)(request)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    "the organisation service cannot be reached; retry shortly (组织架构服务暂不可用，请稍后重试)"
                ) from None
            raise

    def units_of(self, community_id: str) -> list[Unit]:
        """The active member units of a community, from the tenant's list (read whole; read again at once
        when org reported a change of a unit, and in the background after UNITS_TTL)."""
        if not community_id:
            return []
        tenant = context.require_tenant()
        generation = self._generation.get()
        hit = self._units.get(tenant)
        if hit is None or hit[1] != generation:
            return self._load_units(tenant, generation).get(community_id, [])
        if time.monotonic() - hit[0] >= UNITS_TTL and tenant not in self._refreshing:
            self._refreshing.add(tenant)
            threading.Thread(
                target=self._refresh, args=(tenant, generation), name="dispatch-units", daemon=True
            ).start()
        return hit[2].get(community_id, [])

    def units_changed(self) -> None:
        """A member unit of the call's tenant changed at org: every process reads the units again."""
        tenant = context.require_tenant()
        tenant_database(tenant)[GENERATION].replace_one(
            {"_id": "member_units"},
            {"_id": "member_units", "gen": uuid.uuid4().hex, "at": datetime.now(UTC)},
            upsert=True,
        )
        self._generation.forget(tenant)
        self._units.pop(tenant, None)

    def _refresh(self, tenant: str, generation: str) -> None:
        try:
            with context.bound(tenant=tenant):
                self._load_units(tenant, generation)
        except Exception:
            log.warning("member units of %s could not be read again: the last list stays", tenant, exc_info=True)
        finally:
            self._refreshing.discard(tenant)

    def _load_units(self, tenant: str, generation: str) -> dict[str, list[Unit]]:
        read_at = time.monotonic()
        by_community: dict[str, list[Unit]] = {}
        token = ""
        count = 0
        while count < MAX_UNITS:
            resp = self._call(
                "ListMemberUnits", org_pb2.ListRequest(page_size=PAGE, page_token=token, filter={"status": "active"})
            )
            for u in resp.items:
                by_community.setdefault(u.community_id, []).append(
                    Unit(u.id, u.name_zh, u.community_id, tuple(u.serves_grid_ids))
                )
                self._names[(tenant, domain.MEMBER_UNIT, u.id)] = (read_at, u.name_zh)
            count += len(resp.items)
            token = resp.next_page_token
            if not token:
                break
        self._units[tenant] = (read_at, generation, by_community)
        return by_community

    def name_of(self, kind: str, helper_id: str, field: str) -> str:
        """The name of a unit, person or team of this tenant; INVALID_ARGUMENT naming `field` if there is none."""
        key = (context.require_tenant(), kind, helper_id)
        hit = self._names.get(key)
        if hit is not None and time.monotonic() - hit[0] < NAMES_TTL:
            return hit[1]
        method = {domain.MEMBER_UNIT: "GetMemberUnit", domain.PERSON: "GetPerson", domain.TEAM: "GetVolunteerTeam"}[
            kind
        ]
        try:
            found = self._call(method, org_pb2.GetRequest(id=helper_id))
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise InvalidArgument(
                    f"{field}: no {kind} {helper_id!r} in this tenant (未找到该{domain.KIND_ZH[kind]})",
                    field=f"{field}.id",
                ) from None
            raise
        self._names[key] = (time.monotonic(), found.name_zh)
        return str(found.name_zh)

    def remember(self, kind: str, helper_id: str, name_zh: str) -> None:
        """A name learnt elsewhere (a ranked candidate): no look-up needed for it."""
        if name_zh:
            self._names[(context.require_tenant(), kind, helper_id)] = (time.monotonic(), name_zh)


directory = Directory()
