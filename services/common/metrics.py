"""Prometheus metrics shared by every process (standard gRPC server names plus event pipeline ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on its own port (a daemon thread)."""
    start_http_server(port, addr=host)
