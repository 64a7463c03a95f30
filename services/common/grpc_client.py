"""gRPC client helper: deadlines on every call, UNAVAILABLE retried by service config, and the
caller's principal, tenant, request id and call chain forwarded in metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from services.common import context

# Spreadsheet imports and exports travel as one message; 16 MiB leaves room above the 5 MB file limit.
from services.common.grpc_server import MAX_MESSAGE_BYTES, REQUEST_ID_KEY, TENANT_KEY, TRACE_KEY
from services.common.principal import METADATA_KEY, mint


def service_config(service_names: list[str]) -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": s} for s in service_names],
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class ContextInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds deadline and identity metadata taken from the current call context."""

    def __init__(self, secret: str, default_timeout: float, caller: str, ttl_seconds: int = 60) -> None:
        self.secret = secret
        self.default_timeout = default_timeout
        self.caller = caller
        self.ttl_seconds = ttl_seconds

    def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: Any, request: Any) -> Any:
        md = list(client_call_details.metadata or [])
        keys = {k for k, _ in md}
        principal = context.current_principal.get()
        if METADATA_KEY not in keys and principal is not None:
            md.append((METADATA_KEY, mint(principal, self.secret, self.ttl_seconds)))
        tenant = context.current_tenant.get()
        if TENANT_KEY not in keys and tenant:
            md.append((TENANT_KEY, tenant))
        md.append((REQUEST_ID_KEY, context.current_request_id.get() or context.new_request_id()))
        md.append((TRACE_KEY, context.current_trace.get() or self.caller))
        details = _Details(
            client_call_details.method,
            client_call_details.timeout if client_call_details.timeout is not None else self.default_timeout,
            md,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
            client_call_details.compression,
        )
        return continuation(details, request)


def make_channel(
    address: str,
    service_names: list[str],
    *,
    secret: str,
    caller: str,
    default_timeout: float = 5.0,
) -> grpc.Channel:
    """A channel whose calls carry a deadline and the caller's identity, retrying UNAVAILABLE."""
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.service_config", service_config(service_names)),
        ],
    )
    return grpc.intercept_channel(channel, ContextInterceptor(secret, default_timeout, caller))
