"""Skeleton flow latency: POST an issue at the gateway -> its task visible through the gateway.

Runs against a running system (make bench starts a private one; or point it at `make up` with the same
environment). Prints p50/p90/p99/max over N issues, created one after another.

    HONGLING_BENCH_ISSUES=200 make bench
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

import requests
from benchlib import admin_headers, ensure_grid, percentile, random_point, record

from services.common.settings import get_settings

N = int(os.environ.get("HONGLING_BENCH_ISSUES", "200"))
POLL = 0.005


def main() -> int:
    settings = get_settings()
    ensure_grid(settings, "taiqian", admin_headers(settings))
    base = f"http://127.0.0.1:{settings.gateway_port}/api/v1/tenants/taiqian/issues"
    session = requests.Session()
    rng = random.Random(7)
    post_ms: list[float] = []
    visible_ms: list[float] = []
    for i in range(N):
        body = {
            "title": f"基准事项 {i}",
            "description": "bench: skeleton latency",
            "channel": "online",
            "location": random_point(rng),
        }
        t0 = time.perf_counter()
        resp = session.post(base, json=body, timeout=10)
        if resp.status_code != 201:
            print(f"POST failed: {resp.status_code} {resp.text}", file=sys.stderr)
            return 1
        t1 = time.perf_counter()
        url = f"{base}/{resp.json()['issue']['id']}"
        while session.get(url, timeout=10).json()["task"] is None:
            if time.perf_counter() - t0 > 30:
                print(f"task for issue {i} not visible after 30 s", file=sys.stderr)
                return 1
            time.sleep(POLL)
        t2 = time.perf_counter()
        post_ms.append((t1 - t0) * 1000)
        visible_ms.append((t2 - t0) * 1000)
        if (i + 1) % 50 == 0:
            print(f"[bench] {i + 1}/{N} issues", flush=True)
    for name, values in (("POST /issues (201)", post_ms), ("POST -> task visible", visible_ms)):
        print(
            f"{name:24s} n={len(values)} p50={percentile(values, 50):.1f} ms p90={percentile(values, 90):.1f} ms "
            f"p99={percentile(values, 99):.1f} ms max={max(values):.1f} ms mean={statistics.fmean(values):.1f} ms"
        )
    # The whistle's latency: a report's task visible through the gateway (no goal stated for it; the dispatch
    # pipeline's event→whistle p99 has one, bench/dispatch_pipeline.py).
    record("whistle: POST /issues p50", percentile(post_ms, 50), "ms")
    record("whistle: POST -> task visible p50", percentile(visible_ms, 50), "ms")
    record("whistle: POST -> task visible p99", percentile(visible_ms, 99), "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
