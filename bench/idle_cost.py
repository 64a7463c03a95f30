"""Idle cost: how much CPU the whole local stack uses at rest (issue 20: 12.6 % of a core before, goal < 3 %).

The stack at rest: every service, the projector, the gateway and the front door, Kafka, FerretDB and PostgreSQL,
running, with nothing asked of them. Their CPU time (user + system, /proc/<pid>/stat) is read at the start and
the end of a window, each process with its descendants (PostgreSQL's backends), from the pid files under
$HONGLING_STATE_DIR/run (services.sh writes the services', stack.sh Kafka's, PostgreSQL's and FerretDB's).
It first waits for the stack to settle (the benchmark before it may have left work behind). Prints the share of
one core of each process and in all, and records the total and each process (benchlib.record).

    HONGLING_BENCH_IDLE_SECONDS=60 bash deploy/local/test.sh bench bench/idle_cost.py
"""

from __future__ import annotations

import os
import sys
import time

from benchlib import cpu_seconds, record, settle

WINDOW = float(os.environ.get("HONGLING_BENCH_IDLE_SECONDS", "60"))
# Run first on a stack just started (deploy/local/test.sh bench): its consumers join their groups and Kafka's
# JIT compiles for a while after every process answers, so the window starts this much later.
WARMUP = float(os.environ.get("HONGLING_BENCH_IDLE_WARMUP_SECONDS", "45"))
GOAL_PERCENT = 3.0  # of one core, the whole stack (issue 20)
CLIENT = "bench (client)"


def shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Percent of one core each process used between two cpu_seconds() readings `seconds` apart (this
    benchmark's own process left out), largest first."""
    used = {k: max(0.0, v - before.get(k, 0.0)) for k, v in after.items() if k != CLIENT}
    return dict(sorted(((k, 100 * v / seconds) for k, v in used.items()), key=lambda kv: -kv[1]))


def measure(window: float) -> dict[str, float]:
    """Percent of one core per process of the stack over `window` seconds of rest."""
    before = cpu_seconds()
    started = time.monotonic()
    time.sleep(window)
    after = cpu_seconds()
    return shares(before, after, time.monotonic() - started)


def main() -> int:
    run_dir = os.path.join(os.environ.get("HONGLING_STATE_DIR", ".local/state"), "run")
    if not os.path.isdir(run_dir):
        print(f"no stack: {run_dir} does not exist", file=sys.stderr)
        return 1
    time.sleep(WARMUP)
    waited = settle(limit_s=120.0, busy_share=0.1)
    print(f"[bench] the stack settled in {WARMUP + waited:.0f} s; measuring {WINDOW:.0f} s at rest", flush=True)
    found = measure(WINDOW)
    total = sum(found.values())
    for name, pct in found.items():
        print(f"  {name:<22} {pct:6.2f} % of a core")
    print(f"  {'the whole stack':<22} {total:6.2f} % of a core  (goal < {GOAL_PERCENT:g} %)")
    record("idle: the whole stack", total, "% core", goal=GOAL_PERCENT, better="lower")
    for name, pct in found.items():
        record(f"idle: {name}", pct, "% core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
