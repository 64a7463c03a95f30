"""Idle floor: what the libraries the stack is built on cost at rest, with none of our code running.

bench/idle_cost.py measures the whole stack at rest against its goal (< 3 % of a core). Most of what is left
there is not our loops but the clients every service process holds: a gRPC server, a MongoDB client, and a
Kafka consumer per consumer group (each with its own I/O thread, fetching and heartbeating). This benchmark
runs each of those alone, in a process of its own, side by side for one window, on the same stack:

- a Python process that only serves gRPC (grpc.server with the health service, nothing called);
- the same with a MongoDB client connected to the stack's FerretDB (pymongo's monitor threads);
- a Python process with one idle Kafka consumer in a group of its own, with the settings every consumer of
  the stack uses (services/common/consumer.py), subscribed to one of the stack's topics.

Each figure times the number of such things in the stack gives the part of the stack's idle cost that no
change to our code removes (short of fewer processes or consumers).

    HONGLING_BENCH_IDLE_SECONDS=60 bash deploy/local/test.sh bench bench/idle_floor.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchlib import record

WINDOW = float(os.environ.get("HONGLING_BENCH_IDLE_SECONDS", "60"))
WARMUP = 20.0  # after every floor process says it is ready: imports, connections, the consumer's group join

_GRPC = """
import grpc, time
from concurrent import futures
from grpc_health.v1 import health, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
server.add_insecure_port("127.0.0.1:0")
server.start()
"""
_MONGO = """
from pymongo import MongoClient
from services.common.settings import get_settings
client = MongoClient(get_settings().mongo_uri, serverSelectionTimeoutMS=30000)
client.admin.command("ping")
"""
_CONSUMER = """
import os
from kafka import KafkaConsumer
from services.common import consumer as c
from services.common.events import topic_for
from services.common.settings import get_settings
kc = KafkaConsumer(
    bootstrap_servers=get_settings().kafka_bootstrap, group_id=f"bench-idle-floor-{os.getpid()}",
    enable_auto_commit=False, auto_offset_reset="latest", session_timeout_ms=c.SESSION_TIMEOUT_MS,
    heartbeat_interval_ms=c.HEARTBEAT_INTERVAL_MS, fetch_max_wait_ms=c.FETCH_MAX_WAIT_MS, max_poll_records=100,
)
kc.subscribe([topic_for("org")])
kc.poll(timeout_ms=c.POLL_TIMEOUT_MS)
"""
_READY = """
print("ready", flush=True)
"""
_LOOP_SLEEP = """
while True:
    time.sleep(3600)
"""
_LOOP_POLL = """
while True:
    kc.poll(timeout_ms=c.POLL_TIMEOUT_MS)
"""

FLOORS: dict[str, str] = {
    "a gRPC server process": _GRPC + _READY + _LOOP_SLEEP,
    "gRPC server + MongoDB client": _GRPC + _MONGO + _READY + _LOOP_SLEEP,
    "one idle Kafka consumer": _CONSUMER + _READY + _LOOP_POLL,
}


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, code in FLOORS.items():
            procs[name] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for name, proc in procs.items():
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()  # blocks until ready (or the process ends: "")
            if line != "ready":
                print(f"[bench] {name}: did not start (exit {proc.wait()})", file=sys.stderr)
                return 1
        print(f"[bench] the floor processes are ready; measuring {WINDOW:.0f} s after {WARMUP:.0f} s", flush=True)
        time.sleep(WARMUP)
        before = {name: cpu_of(p.pid) for name, p in procs.items()}
        started = time.monotonic()
        time.sleep(WINDOW)
        seconds = time.monotonic() - started
        for name, p in procs.items():
            pct = 100 * (cpu_of(p.pid) - before[name]) / seconds
            print(f"  {name:<30} {pct:6.2f} % of a core")
            record(f"idle floor: {name}", pct, "% core")
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
