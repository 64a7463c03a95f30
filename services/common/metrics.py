"""Prometheus metrics shared by every process (standard gRPC server names plus event pipeline ones)."""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "Total number of RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PUBLISHED = Counter(
    "hongling_outbox_published_total", "Events the outbox relay published.", ["service", "tenant", "type"]
)
OUTBOX_BACKLOG = Gauge(
    "hongling_outbox_backlog", "Events waiting in the outbox at the relay's last scan.", ["service", "tenant"]
)
OUTBOX_ERRORS = Counter("hongling_outbox_errors_total", "Relay publish or mark failures.", ["service"])
CONSUMED = Counter(
    "hongling_events_consumed_total",
    "Events handled by a consumer, by outcome (handled, duplicate, dead_lettered, skipped).",
    ["group", "tenant", "type", "outcome"],
)
CONSUMER_FAILURES = Counter("hongling_consumer_failures_total", "Handler attempts that raised.", ["group", "type"])
CONSUMER_LAG = Gauge(
    "hongling_consumer_lag", "Records behind the end of the partition.", ["group", "topic", "partition"]
)

MONGO_COMMANDS = Counter(
    "hongling_mongo_commands_total",
    "Commands this process sent to the database, by command and collection (what each event or request costs).",
    ["command", "collection"],
)


# Business and integrity signals the alert rules read (deploy/prometheus/rules). Labels stay bounded: `tenant` is
# one of the seven slugs or "district" (entries of no tenant), never a person's or a record's id.
DLQ_RECORDS = Gauge(
    "hongling_dlq_records",
    "Records held by a consumer group's dead-letter topic (end minus start offsets), read every DLQ_REPORT_SECONDS.",
    ["group", "topic"],
)
AUDIT_ENTRIES = Counter(
    "hongling_audit_entries_total",
    "Entries this process appended to the audit log, by outcome (allowed, refused, done); refused = a refusal.",
    ["tenant", "outcome"],
)
AUDIT_CHAIN_BROKEN = Gauge(
    "hongling_audit_chain_broken",
    "1 once the audit projection found an entry whose hash or link to the previous entry does not verify.",
)
AUDIT_CHAIN_CHECKED_SEQ = Gauge(
    "hongling_audit_chain_checked_seq", "The last audit entry the projection checked (hash and link)."
)
DLQ_REPORT_SECONDS = 30.0  # ListOffsets twice per consumer: cheap at this pace, and a DLQ does not fill in seconds


def tenant_label(tenant: str) -> str:
    """The `tenant` label of a value that may be empty or unknown: bounded to the slugs, "district" or "other"."""
    from services.common.tenants import tenant_slugs

    if not tenant:
        return "district"
    return tenant if tenant in tenant_slugs() else "other"


def init_tenant_series(counter: Counter, *rest: str) -> None:
    """Make a tenant-labelled counter's series exist at 0 for every tenant (and "district"), so that its rate
    and the alerts on it have a series before the first event (a series born at 1 loses its first increase)."""
    from services.common.tenants import tenant_slugs

    for tenant in (*tenant_slugs(), "district"):
        counter.labels(tenant, *rest)


class _MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one every 15 s per process)."""


# How often the metrics server's loop wakes with no request, only to look for a shutdown it is never asked for
# (a daemon thread that ends with the process). prometheus_client's start_http_server wakes twice a second:
# about 0.02 % of a core per process at rest, for nothing (issue 20). A request is answered at once either way.
METRICS_IDLE_WAKE_SECONDS = 3600.0


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on its own port (a daemon thread)."""
    httpd = make_server(host, port, make_wsgi_app(), _MetricsServer, handler_class=_QuietHandler)
    threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": METRICS_IDLE_WAKE_SECONDS},
        name="metrics-http",
        daemon=True,
    ).start()
