"""python -m services.common.healthcheck <process>: exit 0 if the process on this host answers healthy, else 1.

For container healthchecks (docker-compose.yml) and anything else that probes by running a command: the image
holds no curl or grpc_health_probe, but it holds Python, grpcio and grpc_health. The port is the process's own
setting (HONGLING_<NAME>_PORT, or the port base's default), so the probe and the server never disagree.

- a service (org, intake, dispatch, evaluation, publication, alliance, projector) and the front door: the
  standard grpc.health.v1 Check, SERVING (the front door's on HONGLING_FRONTDOOR_HEALTH_PORT under mutual TLS,
  where it serves its health alone in plaintext: this probe holds no client certificate);
- the gateway: HTTP GET /healthz, 200.
"""

from __future__ import annotations

import sys
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.settings import SERVICE_PORT_OFFSETS, Settings, get_settings

PROCESSES = (*SERVICE_PORT_OFFSETS, "frontdoor", "gateway")
TIMEOUT_SECONDS = 2.0


def port_of(settings: Settings, process: str) -> int:
    """The port the process listens on, from the same settings it reads itself."""
    if process in SERVICE_PORT_OFFSETS:
        return settings.grpc_port(process)
    if process == "frontdoor" and settings.frontdoor_mtls():
        port = settings.frontdoor_health_port  # under mutual TLS its health alone is served in plaintext there
    else:
        port = settings.frontdoor_port if process == "frontdoor" else settings.gateway_port
    assert port is not None  # derived from the port base when unset
    return port


def grpc_serving(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_SECONDS)
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def http_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_SECONDS) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in PROCESSES:
        print(f"usage: python -m services.common.healthcheck {{{'|'.join(PROCESSES)}}}", file=sys.stderr)
        return 2
    process = argv[0]
    port = port_of(get_settings(), process)  # the process's own environment: a bad one exits 2, named
    healthy = http_healthy(port) if process == "gateway" else grpc_serving(port)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
