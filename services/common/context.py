"""Per-call context: tenant, principal, request id and call chain, carried in contextvars.

gRPC runs each call on a worker thread; the interceptor sets these at the start of the call and
resets them at the end, so code below never passes them around and never sees another call's values.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.common.principal import Principal

current_tenant: ContextVar[str | None] = ContextVar("current_tenant", default=None)
current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
# The call chain: "gateway>intake.CreateIssue>..." so a log line shows how the call got here.
current_trace: ContextVar[str | None] = ContextVar("current_trace", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def bound(
    *,
    tenant: str | None = None,
    principal: Principal | None = None,
    request_id: str | None = None,
    trace: str | None = None,
) -> Iterator[None]:
    """Bind the given values for the duration of the block (None leaves a value as it is)."""
    tokens: list[tuple[ContextVar[Any], Token[Any]]] = []
    pairs: tuple[tuple[ContextVar[Any], object], ...] = (
        (current_tenant, tenant),
        (current_principal, principal),
        (current_request_id, request_id),
        (current_trace, trace),
    )
    for var, value in pairs:
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def require_tenant() -> str:
    tenant = current_tenant.get()
    if tenant is None:
        raise RuntimeError("no tenant bound to this call: data access outside a tenant context")
    return tenant
