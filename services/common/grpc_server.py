"""One gRPC server bootstrap for every service: interceptors, health, reflection, metrics, shutdown."""

from __future__ import annotations

import logging
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from typing import Any, Protocol

import grpc
import mongoengine
import pymongo.errors
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import context, dependencies, metrics
from services.common.errors import HonglingError, InvalidArgument, Unauthenticated
from services.common.principal import METADATA_KEY, verify
from services.common.settings import Settings
from services.common.tenants import get_tenant

MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # gRPC messages either way: an issue with 5 attachments of 5 MiB fits

log = logging.getLogger(__name__)

TENANT_KEY = "x-hongling-tenant"
REQUEST_ID_KEY = "x-request-id"
TRACE_KEY = "x-hongling-trace"
ERROR_REASON_KEY = "x-hongling-error-reason"
ERROR_FIELD_KEY = "x-hongling-error-field"
# gRPC metadata values are printable ASCII: the reason and field go percent-encoded (UTF-8) beyond it, so a
# field named after a caller's odd query key (control characters, Chinese) still reaches the caller. Any
# other value would make the call fail as INTERNAL instead. error_trailers() writes them, error_details()
# reads them (the gateway's two doors).
METADATA_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def error_trailers(reason: str, field: str | None) -> list[tuple[str, str]]:
    """The trailing metadata that names an error's reason and (if any) its field."""
    trailing = [(ERROR_REASON_KEY, urllib.parse.quote(reason, safe=METADATA_SAFE))]
    if field:
        trailing.append((ERROR_FIELD_KEY, urllib.parse.quote(field, safe=METADATA_SAFE)))
    return trailing


def error_details(call: grpc.Call, default_reason: str) -> tuple[str, str | None]:
    """(reason, field) that error_trailers() wrote into a failed call's trailing metadata."""
    trailing = {k: v for k, v in (call.trailing_metadata() or ()) if isinstance(v, str)}
    field = trailing.get(ERROR_FIELD_KEY)
    reason = urllib.parse.unquote(trailing.get(ERROR_REASON_KEY) or default_reason)
    return reason, urllib.parse.unquote(field) if field else None


# Probes from stock tools (grpc_health_probe, grpcurl) need no principal.
OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


class Worker(Protocol):
    """A background loop run beside the server (outbox relay, event consumer)."""

    name: str

    def run(self, stop: threading.Event) -> None: ...


def wake_workers(workers: Iterable[object]) -> None:
    """After `stop` is set: wake the workers that sleep until there is work (their `wake()`, if they have one),
    so that a long idle wait does not hold up a shutdown."""
    for worker in workers:
        wake = getattr(worker, "wake", None)
        if callable(wake):
            wake()


def _split(method: str) -> tuple[str, str]:
    _, service, name = method.split("/")
    return service, name


def _map_exception(exc: BaseException) -> HonglingError | None:
    if isinstance(exc, HonglingError):
        return exc
    if isinstance(exc, mongoengine.ValidationError):
        return InvalidArgument(f"invalid value: {exc.message}")
    if isinstance(exc, pymongo.errors.DuplicateKeyError | mongoengine.NotUniqueError):
        from services.common.errors import AlreadyExists

        return AlreadyExists("a record with the same key already exists")
    return dependencies.unavailable_error(exc)  # a database that cannot be reached: UNAVAILABLE, retry


class ServerInterceptor(grpc.ServerInterceptor):
    """Principal + tenant verification, Prometheus metrics and error mapping for unary calls."""

    def __init__(self, secret: str, tenantless: Iterable[str] = (), accepted: Sequence[str] = ()) -> None:
        self.secret = secret
        self.accepted = tuple(accepted)  # a rotation's other principal secret (services/common/principal.py)
        self.tenantless = set(tenantless)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming methods: only the open probe services use them here
        method = handler_call_details.method
        service, name = _split(method)
        if service in OPEN_SERVICES:
            return handler
        inner = handler.unary_unary
        tenantless = method in self.tenantless or name in self.tenantless

        def wrapped(request: Any, ctx: grpc.ServicerContext) -> Any:
            metrics.GRPC_STARTED.labels("unary", service, name).inc()
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            md = dict(ctx.invocation_metadata())
            request_id = str(md.get(REQUEST_ID_KEY) or context.new_request_id())
            trace = f"{md.get(TRACE_KEY) or 'client'}>{service.split('.')[1]}.{name}"
            try:
                with context.bound(request_id=request_id, trace=trace):
                    try:
                        principal = verify(_str(md.get(METADATA_KEY)), self.secret, self.accepted)
                        tenant = _str(md.get(TENANT_KEY))
                        if tenant:
                            get_tenant(tenant)
                            principal.require_tenant(tenant)
                        elif not tenantless:
                            raise Unauthenticated(f"no tenant in call metadata ({TENANT_KEY})")
                        dependencies.refuse_if_down()  # the database is down: UNAVAILABLE now, not after 5 s
                        with context.bound(tenant=tenant or None, principal=principal):
                            return inner(request, ctx)
                    except Exception as exc:  # mapped below; everything else is INTERNAL
                        mapped = _map_exception(exc)
                        if mapped is None:
                            log.exception("unhandled error in %s", method)
                            mapped = HonglingError(
                                f"internal error (request id {request_id}); the operators have the details"
                            )
                        code = mapped.code
                        ctx.set_trailing_metadata(tuple(error_trailers(mapped.reason, mapped.field)))
                        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                            log.warning("refused %s: %s", method, mapped.message)
                        ctx.abort(code, mapped.message)
            finally:
                metrics.GRPC_HANDLED.labels("unary", service, name, code.name).inc()
                metrics.GRPC_HANDLING_SECONDS.labels("unary", service, name).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _str(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value


class ServiceHost:
    """Runs one service: its gRPC server, background workers and metrics endpoint, until SIGTERM."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        register: Callable[[grpc.Server], Sequence[str]],
        *,
        workers: Sequence[Worker] = (),
        tenantless: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.settings = settings
        self.stop_event = threading.Event()
        self.workers = list(workers)
        self._threads: list[threading.Thread] = []
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix=f"{name}-rpc"),
            interceptors=[ServerInterceptor(settings.principal_secret, tenantless, settings.principal_secrets()[1:])],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        service_names = list(register(self.server))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        self.service_names = service_names
        # Health tells the truth: NOT_SERVING while a store this service needs is down (its checks).
        self.dependencies = dependencies.DependencyMonitor(dependencies.checks_for(name), self._set_serving)
        self.port = settings.grpc_port(name)
        bound = self.server.add_insecure_port(f"{settings.host}:{self.port}")
        if bound == 0:
            raise SystemExit(
                f"{name}: cannot listen on {settings.host}:{self.port} (port in use?); "
                f"change HONGLING_{name.upper()}_PORT or HONGLING_PORT_BASE"
            )

    def start(self) -> None:
        metrics.serve_metrics(self.settings.metrics_port(self.name), self.settings.host)
        self.server.start()
        for worker in self.workers:
            t = threading.Thread(target=self._run_worker, args=(worker,), name=worker.name, daemon=True)
            t.start()
            self._threads.append(t)
        self.dependencies.start(self.stop_event)  # sets SERVING, or NOT_SERVING while the database is down
        log.info(
            "%s serving gRPC on %s:%d, metrics on :%d",
            self.name,
            self.settings.host,
            self.port,
            self.settings.metrics_port(self.name),
        )

    def _set_serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        if self.stop_event.is_set():
            return  # shutting down: enter_graceful_shutdown() said NOT_SERVING for good
        for svc in [*self.service_names, ""]:
            self.health.set(svc, status)

    def _run_worker(self, worker: Worker) -> None:
        while not self.stop_event.is_set():
            try:
                worker.run(self.stop_event)
            except Exception:
                log.exception("worker %s crashed; restarting in 1 s", worker.name)
                self.stop_event.wait(1.0)

    def stop(self, grace: float = 5.0) -> None:
        log.info("%s shutting down", self.name)
        self.health.enter_graceful_shutdown()
        self.stop_event.set()
        wake_workers(self.workers)
        self.server.stop(grace).wait()
        for t in self._threads:
            t.join(timeout=grace + 10)
        log.info("%s stopped", self.name)

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT, then shut down gracefully."""
        run_until_signalled(self.start, self.stop)


def run_until_signalled(start: Callable[[], object], stop: Callable[[], object]) -> None:
    """start(), block until SIGTERM or SIGINT, then stop() (a graceful shutdown: calls in flight finish)."""
    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    start()
    done.wait()
    stop()
