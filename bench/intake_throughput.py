"""Sustained intake throughput through the gateway, next to the raw insert rate of the same database.

All three phases run in this one process against the running stack, each starting from a quiet stack
(the last phase's backlog worked off: dispatch caught up, events published), with the same number of
concurrent workers (HONGLING_BENCH_WORKERS, default 16) for the same time (HONGLING_BENCH_SECONDS,
default 20):

1. full path: POST /api/v1/tenants/<t>/issues at the gateway (policy, rate limits) -> intake
   CreateIssue (validation, ResolveLocation at the org service, classification, duplicate look-ups,
   one document write with its events) -> 201; random points in a benchmark grid and random
   categories, as residents report; the outbox relay publishes the events to Kafka meanwhile;
2. the hop alone: the same POST with a category the tenant does not have, which intake refuses (400)
   at its first check, before placement, the database or Kafka: what the gateway and the gRPC hop to
   intake cost with no work behind them, the ceiling of any full path through them on this machine;
3. raw database: insert_one of a document of the same shape and size (an issue with its two pending
   events) into a scratch collection of the same FerretDB, through pymongo, nothing else.

Prints requests/s, p50/p99 latency of each and their ratios to the raw insert rate (goal: the full
path sustains at least half of it), and where the CPU went: each process of the stack's CPU
milliseconds per operation in each phase (from /proc, pid files under HONGLING_STATE_DIR/run), so the
ratio can be read against what one issue costs the whole machine compared with one raw insert.

`make bench` runs every benchmark; this one alone:

    bash deploy/local/test.sh bench bench/intake_throughput.py
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from benchlib import (
    PROJECTIONS,
    admin_headers,
    cpu_seconds,
    ensure_grid,
    mongo_commands,
    percentile,
    random_point,
    record,
    settle,
    show_commands,
    show_cpu,
)
from pymongo import MongoClient

from services.common.settings import get_settings

WORKERS = int(os.environ.get("HONGLING_BENCH_WORKERS", "16"))
SECONDS = float(os.environ.get("HONGLING_BENCH_SECONDS", "20"))
TENANT = "shengzhuang"
RUN_SEED = int(os.environ.get("HONGLING_BENCH_SEED", time.time_ns()))
CATEGORIES = ("property_repair", "sanitation", "parking", "greening", "noise", "road_facility", "elderly_care")


def run(name: str, op: Callable[[random.Random], None]) -> tuple[float, list[float], int]:
    """Run op from WORKERS threads for SECONDS; (ops/s, latencies in ms, errors). Progress every 5 s."""
    latencies: list[list[float]] = [[] for _ in range(WORKERS)]
    errors = [0] * WORKERS
    stop = threading.Event()

    def worker(i: int) -> None:
        # A seed of its own per run: a run repeating the last one's points on a reused stack would file
        # nearly every report as a duplicate of the last run's (same category within 100 m and 72 h).
        rng = random.Random(f"{RUN_SEED}-{i}")
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                op(rng)
            except Exception as exc:  # counted, and the first one shown
                if errors[i] == 0:
                    print(f"[bench] {name}: {exc}", file=sys.stderr)
                errors[i] += 1
                continue
            latencies[i].append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    while (elapsed := time.perf_counter() - started) < SECONDS:
        time.sleep(min(5.0, SECONDS - elapsed))
        done = sum(len(x) for x in latencies)
        print(f"[bench] {name}: {done} in {time.perf_counter() - started:.0f} s", flush=True)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = [v for x in latencies for v in x]
    return len(flat) / elapsed, flat, sum(errors)


def issue_like(rng: random.Random) -> dict[str, Any]:
    """A document shaped like a stored issue with its two pending events (same fields, similar size)."""
    now = datetime.now(UTC)
    event = {"id": uuid.uuid4().hex, "type": "hongling.events.v1.IssueReceived", "payload": rng.randbytes(220)}
    return {
        "_id": uuid.uuid4().hex,
        "title": "楼道灯不亮，晚上看不见",
        "description": "3号楼2单元楼道灯坏了一周，老人晚上上下楼不方便。" * 3,
        "channel": "online",
        "category": rng.choice(CATEGORIES),
        "location": random_point(rng),
        "place": {"community_id": "bench-place", "grid_id": "bench-place-g", "community_name_zh": "基准测试社区"},
        "urgency": "routine",
        "urgency_reasons": ["类别默认：日常 (category default: routine)"],
        "status": "classified",
        "history": [{"at": now, "kind": "received"}, {"at": now, "kind": "classified"}],
        "created_by": "anonymous",
        "created_at": now,
        "version": 1,
        "outbox": [event, {**event, "id": uuid.uuid4().hex, "type": "hongling.events.v1.IssueClassified"}],
    }


def show(name: str, rate: float, values: list[float], errors: int) -> None:
    if not values:
        print(f"{name:34s} no successful operations ({errors} errors)")
        return
    print(
        f"{name:34s} {rate:8.1f}/s  n={len(values)} errors={errors}  p50={percentile(values, 50):.1f} ms "
        f"p99={percentile(values, 99):.1f} ms  mean={statistics.fmean(values):.1f} ms"
    )


def main() -> int:
    settings = get_settings()
    ensure_grid(settings, TENANT, admin_headers(settings))
    url = f"http://127.0.0.1:{settings.gateway_port}/api/v1/tenants/{TENANT}/issues"
    local = threading.local()

    def report(rng: random.Random, category: str, expect: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body = {
            "title": f"基准事项 {rng.randrange(10**6)}",
            "description": "bench: sustained intake throughput (持续受理吞吐)",
            "channel": "online",
            "category": category,
            "location": random_point(rng),
        }
        resp = session.post(url, json=body, timeout=30)
        if resp.status_code != expect:
            raise RuntimeError(f"{resp.status_code} {resp.text[:200]}")

    def post(rng: random.Random) -> None:
        report(rng, rng.choice(CATEGORIES), 201)

    def refused(rng: random.Random) -> None:
        report(rng, "bench_no_such_category", 400)

    client: MongoClient[Any] = MongoClient(settings.mongo_uri, maxPoolSize=WORKERS + 4)
    scratch = client["hl_bench_raw"]["issues"]
    scratch.drop()

    def insert(rng: random.Random) -> None:
        scratch.insert_one(issue_like(rng))

    print(
        f"[bench] {WORKERS} workers, {SECONDS:.0f} s per phase, seed {RUN_SEED}; load average {os.getloadavg()[0]:.1f}"
    )
    post(random.Random(0))  # warm the path (connections, the org index) before measuring

    # Per phase: (CPU seconds per process, database commands per service) before and after it.
    seen: list[tuple[dict[str, float], dict[str, float], Counter[Any], Counter[Any]]] = []

    def phase(name: str, op: Callable[[random.Random], None]) -> tuple[float, list[float], int]:
        """run() from a quiet stack (settle()), noting what each process used meanwhile."""
        print(f"[bench] {name}: the stack settled in {settle():.0f} s", flush=True)
        cpu0, commands0 = cpu_seconds(), mongo_commands()
        result = run(name, op)
        seen.append((cpu0, cpu_seconds(), commands0, mongo_commands()))
        return result

    full = phase("gateway POST /issues", post)
    hop = phase("gateway POST /issues refused by intake", refused)
    raw = phase("raw insert_one", insert)
    client.drop_database("hl_bench_raw")
    show("full path (gateway -> intake, 201)", *full)
    show("hop alone (refused by intake, 400)", *hop)
    show("raw FerretDB insert_one", *raw)
    base = f"raw: FerretDB insert_one, {WORKERS} threads"
    record(base, raw[0], "docs/s", better="higher")
    record("intake: full path POST /issues", full[0], "issues/s", better="higher", baseline=base)
    record("intake: hop alone (400)", hop[0], "req/s", better="higher", baseline=base)
    if full[1]:
        record("intake: full path p99", percentile(full[1], 99), "ms")
    if raw[0]:
        record("intake: full path / raw insert rate", full[0] / raw[0], "x", goal=0.5, better="higher")
        print(f"full path / raw insert rate = {full[0] / raw[0]:.2f} (goal >= 0.50)")
        print(f"hop alone / raw insert rate = {hop[0] / raw[0]:.2f} (the ceiling of any full path here)")
    for (cpu0, cpu1, _, _), (name, result) in zip(
        seen, (("full path", full), ("hop alone", hop), ("raw insert", raw)), strict=True
    ):
        show_cpu(cpu0, cpu1, len(result[1]), name)
    # The stack's processes only (the load generator aside), as the per-process lines above show them.
    stack = [sum(v - c0.get(k, 0.0) for k, v in c1.items() if k != "bench (client)") for c0, c1, _, _ in seen]
    if full[1] and raw[1] and stack[2] > 0:
        ratio = (stack[0] / len(full[1])) / (stack[2] / len(raw[1]))
        print(f"CPU per accepted issue / CPU per raw insert (the stack's processes, this run) = {ratio:.1f}x")
        c0, c1 = seen[0][0], seen[0][1]
        projections = sum(c1.get(k, 0.0) - c0.get(k, 0.0) for k in PROJECTIONS)
        print(
            f"  of which the projections (projector + PostgreSQL's read-side backends): "
            f"{1000 * projections / len(full[1]):.2f} ms per issue = {100 * projections / stack[0]:.0f}% of the stack; "
            f"without them {((stack[0] - projections) / len(full[1])) / (stack[2] / len(raw[1])):.1f}x"
        )
    show_commands(seen[0][2], seen[0][3], len(full[1]))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0 if full[2] == 0 and hop[2] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
