"""Calling the services from a request: the clients, and the tenant + principal every call carries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from flask import current_app, g

from gateway import department
from gateway.clients import Clients
from gateway.errors import ApiError, from_rpc_error
from services.common import context
from services.common.errors import UnknownTenant
from services.common.principal import Principal
from services.common.tenants import get_tenant


def clients() -> Clients:
    found: Clients = current_app.extensions["hongling.clients"]
    return found


def precondition_failed(exc: grpc.RpcError) -> ApiError | None:
    """A stale version on a conditional write (the service's ABORTED) as HTTP 412."""
    if exc.code() != grpc.StatusCode.ABORTED:
        return None
    return ApiError(
        412,
        "precondition_failed",
        f"{exc.details()} (数据已被他人修改，请重新读取后再提交)",
        field="If-Match",
    )


@contextmanager
def tenant_call(tenant: str, *, conditional: bool = False) -> Iterator[None]:
    """Bind the tenant and the authenticated caller's principal for the service calls inside the block.

    The principal forwarded is the one the policy hook authenticated, narrowed to this call's tenant (a
    community worker's with its community, which the services hold it to).
    `conditional`: the block makes a write conditional on If-Match, so a version conflict is a 412.
    """
    try:
        get_tenant(tenant)
    except UnknownTenant as exc:
        raise ApiError(404, "unknown_tenant", exc.message, field="tenant") from None
    caller: Principal | None = g.get("principal")
    if caller is None or not caller.may_act_on(tenant):  # the policy hook guarantees this; never assume it
        raise ApiError(403, "tenant_out_of_scope", f"no scope on tenant {tenant!r} (无权访问该街道/镇数据)")
    principal = Principal(
        sub=caller.sub,
        role=caller.role,
        tenants=(tenant,),
        grant_id=caller.grant_id,
        responder=caller.responder,
        community=caller.community,
    )
    with context.bound(tenant=tenant, principal=principal):
        try:
            yield
        except grpc.RpcError as exc:
            stale = precondition_failed(exc) if conditional else None
            raise stale or from_rpc_error(exc) from None


def department_access() -> department.Access | None:
    """The grant check a district department's call passed (gateway/policy.py), or None for anyone else."""
    access: department.Access | None = g.get("department_access")
    return access


def admit(access: department.Access, *, target: str = "", community_id: str | None = None) -> None:
    """Complete a department's call: its record's community checked, the use counted and recorded."""
    try:
        access.admit(target=target, community_id=community_id)
    except department.Refused as exc:
        raise ApiError(403, "outside_grant", f"{exc.message} (超出授权范围)", field=exc.missing) from None
