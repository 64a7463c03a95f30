"""python -m services.common.healthcheck: the probe compose (and anything else) runs inside a process's
container, against real sockets on this host: a gRPC health server and an HTTP server of the test's own."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.healthcheck import PROCESSES, grpc_serving, http_healthy, main, port_of
from services.common.settings import Settings


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def test_a_service_is_healthy_while_it_answers_serving(health_server: tuple[int, health.HealthServicer]) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert grpc_serving(port)
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # a dependency it needs is down
    assert not grpc_serving(port)


def test_nothing_listening_is_unhealthy() -> None:
    with HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as idle:
        free = idle.server_address[1]
    assert not grpc_serving(free)
    assert not http_healthy(free)


def test_the_gateway_is_healthy_when_healthz_answers_200() -> None:
    status = {"code": 200}

    class Healthz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with HTTPServer(("127.0.0.1", 0), Healthz) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        assert http_healthy(port)
        status["code"] = 503
        assert not http_healthy(port)
        server.shutdown()


def test_the_probe_reads_each_process_port_from_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("HONGLING_") and n.endswith("_PORT")]:
        monkeypatch.delenv(name)  # make test's own stack's ports
    settings = Settings(port_base=20000, gateway_port=8080, intake_port=7052)
    assert {p: port_of(settings, p) for p in PROCESSES} == {
        "org": 20051,
        "intake": 7052,
        "dispatch": 20053,
        "evaluation": 20054,
        "publication": 20055,
        "projector": 20056,
        "alliance": 20057,
        "frontdoor": 20050,
        "gateway": 8080,
    }


def test_an_unknown_process_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reporter"]) == 2
    assert "usage: python -m services.common.healthcheck {org|" in capsys.readouterr().err
