"""Placing an issue: its location → community and grid, asked of the org service over gRPC.

Intake calls org as itself (a "service" principal scoped to the call's tenant), not as the caller: a
resident reporting a problem may not read org data, but the issue must still be placed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common import context
from services.common.errors import HonglingError, InvalidArgument, Unavailable
from services.common.grpc_client import LazyStub
from services.common.principal import Principal
from services.common.settings import Settings
from services.common.tenants import get_tenant
from services.intake.domain import Location

log = logging.getLogger(__name__)
ORG_SERVICE = "hongling.org.v1.OrgService"


@dataclass(frozen=True)
class Place:
    community_id: str
    grid_id: str
    community_name_zh: str = ""
    grid_name_zh: str = ""
    compound_id: str = ""
    # The point used for duplicate detection: the issue's own, or its compound's (None: no detection).
    lat: float | None = None
    lon: float | None = None


class Placer(Protocol):
    def place(self, location: Location) -> Place: ...


class OrgPlacer:
    """Resolves locations through OrgService.ResolveLocation (and GetCompound for a compound's point)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", ORG_SERVICE, "intake", settings)

    def _call(self, method: str, request: Any) -> Any:
        tenant = context.require_tenant()
        me = Principal(sub="intake", role="service", tenants=(tenant,))
        with context.bound(principal=me):
            return getattr(self._org(), method)(request)

    def place(self, location: Location) -> Place:
        tenant = context.require_tenant()
        tenant_zh = get_tenant(tenant).name_zh
        compound: org_pb2.ResolveLocationResponse | None = None
        if location.compound_id:
            try:
                compound = self._call(
                    "ResolveLocation", org_pb2.ResolveLocationRequest(compound_id=location.compound_id)
                )
            except grpc.RpcError as exc:
                raise self._error(
                    exc, "location.compound_id", f"no compound {location.compound_id!r} in {tenant_zh} (未找到该小区)"
                ) from None
        if location.has_point:
            assert location.lat is not None and location.lon is not None
            try:
                found = self._call(
                    "ResolveLocation",
                    org_pb2.ResolveLocationRequest(point=org_pb2.Point(lat=location.lat, lon=location.lon)),
                )
            except grpc.RpcError as exc:
                raise self._error(
                    exc,
                    "location",
                    f"({location.lat}, {location.lon}) lies outside every grid of {tenant_zh} ({tenant}): "
                    "check the point, or report it to the subdistrict it belongs to (不在本街道/镇任何网格内)",
                ) from None
            # The point says where the problem is; a compound named beside it is recorded with it.
            return Place(
                community_id=found.community_id,
                grid_id=found.grid_id,
                community_name_zh=found.community_name_zh,
                grid_name_zh=found.grid_name_zh,
                compound_id=location.compound_id,
                lat=location.lat,
                lon=location.lon,
            )
        assert compound is not None  # validate_location guarantees a point or a compound
        lat, lon = self._compound_point(location.compound_id)
        return Place(
            community_id=compound.community_id,
            grid_id=compound.grid_id,
            community_name_zh=compound.community_name_zh,
            grid_name_zh=compound.grid_name_zh,
            compound_id=location.compound_id,
            lat=lat,
            lon=lon,
        )

    def _compound_point(self, compound_id: str) -> tuple[float | None, float | None]:
        """The compound's own point, for duplicate detection (best effort: None, None without it)."""
        try:
            found = self._call("GetCompound", org_pb2.GetRequest(id=compound_id))
        except grpc.RpcError as exc:
            log.warning("no point for compound %s (%s): duplicate detection skipped", compound_id, exc.code())
            return None, None
        if not found.HasField("point") or (found.point.lat == 0 and found.point.lon == 0):
            return None, None
        return found.point.lat, found.point.lon

    @staticmethod
    def _error(exc: grpc.RpcError, field: str, not_found: str) -> HonglingError:
        code = exc.code()
        if code == grpc.StatusCode.NOT_FOUND:
            return InvalidArgument(not_found, field=field, reason="outside_grids" if field == "location" else None)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidArgument(f"{field}: {exc.details()}", field=field)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Unavailable(
                "the organisation service cannot place the issue right now; nothing was stored, retry shortly "
                "(暂时无法定位网格，请稍后重试)"
            )
        log.error("org ResolveLocation failed: %s %s", code, exc.details())
        return HonglingError("placing the issue failed; the operators have the details")
