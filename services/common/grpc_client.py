"""gRPC client helper: deadlines on every call, UNAVAILABLE retried by service config, and the
caller's principal, tenant, request id and call chain forwarded in metadata."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, NamedTuple, TypeVar

import grpc

from services.common import context
from services.common.errors import Unavailable

# Spreadsheet imports and exports travel as one message; 16 MiB leaves room above the 5 MB file limit.
from services.common.grpc_server import MAX_MESSAGE_BYTES, REQUEST_ID_KEY, TENANT_KEY, TRACE_KEY
from services.common.principal import METADATA_KEY, Principal, token_for
from services.common.settings import Settings, get_settings

S = TypeVar("S")
T = TypeVar("T")


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


# A peer that was down is used again within about a second of its return. gRPC's default reconnect backoff
# starts at 1 s and grows by 1.6x up to 120 s: after a 90 s outage the gateway went on answering 503 for
# 14 s after intake was back (more than 30 s after longer ones). A fixed 1 s costs one TCP connect a second
# per channel while a peer is down, nothing while it is up.
RECONNECT_BACKOFF_MS = 1000
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
    ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
]


def channel_options(service_names: list[str]) -> list[tuple[str, str | int]]:
    """The options of every channel the project opens (make_channel): retries, message sizes, reconnect."""
    return [
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.service_config", service_config(service_names)),
        *RECONNECT_OPTIONS,
    ]


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
            md.append((METADATA_KEY, token_for(principal, self.secret, self.ttl_seconds)))
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
    channel = grpc.insecure_channel(address, options=channel_options(service_names))
    return grpc.intercept_channel(channel, ContextInterceptor(secret, default_timeout, caller))


class LazyStub(Generic[S]):
    """A stub of another service, its channel opened on first use: calls carry this service's identity
    (`caller`), deadlines and UNAVAILABLE retries (make_channel). Thread-safe; one channel per instance."""

    def __init__(
        self,
        stub_class: Callable[[grpc.Channel], S],
        service: str,
        full_name: str,
        caller: str,
        settings: Settings | None = None,
    ) -> None:
        self._stub_class = stub_class
        self._service = service
        self._full_name = full_name
        self._caller = caller
        self._settings = settings
        self._lock = threading.Lock()
        self._stub: S | None = None

    def __call__(self) -> S:
        with self._lock:
            if self._stub is None:
                settings = self._settings or get_settings()
                channel = make_channel(
                    settings.address(self._service),
                    [self._full_name],
                    secret=settings.principal_secret,
                    caller=self._caller,
                    default_timeout=settings.call_timeout_seconds,
                )
                self._stub = self._stub_class(channel)
            return self._stub


@contextmanager
def as_service(caller: str) -> Iterator[None]:
    """Run look-ups at another service as the calling service itself: a "service" principal of the call's
    tenant (the caller's own scope was checked before, by the service that asks)."""
    me = Principal(sub=caller, role="service", tenants=(context.require_tenant(),))
    with context.bound(principal=me):
        yield


def peer_call(fn: Callable[[], T], caller: str, *, as_service_principal: bool = True) -> T:
    """One call to another service: as `caller` itself (or with the caller's principal when
    as_service_principal is False); a peer that cannot be reached is Unavailable, with what to do."""
    try:
        if as_service_principal:
            with as_service(caller):
                return fn()
        return fn()
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise Unavailable(
                "a service this needs cannot be reached; retry shortly (相关服务暂不可用，请稍后重试)"
            ) from None
        raise
