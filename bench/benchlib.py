"""Shared by the benchmarks: percentiles, an admin token, and a grid to report issues in.

The benchmarks run against a running system (deploy/local/test.sh bench starts a private one). Issues are
placed by intake in a grid of the tenant, so a benchmark first makes sure its tenant has one: a community
and a 0.02° square grid (about 2 km) around BENCH_POINT, created through the gateway with an API token the
benchmark writes into the gateway's token file (read without a restart).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter

import requests
from prometheus_client.parser import text_string_to_metric_families

# `make bench`'s one table: each benchmark records its figures here (bench/results.py, light to import).
from results import goal_ratio, read_results, record, results_path, table  # noqa: F401

from gateway.tokens import TokenFile
from services.common.settings import SERVICES, Settings, get_settings
from services.org.seed import Rect

BENCH_POINT = (36.40, 117.40)  # away from the demo area (lat 36.15-36.25) and the scale area (36.03-36.14)
# Half the side of the benchmark grid, in degrees (0.01 ≈ 1.1 km north-south, 0.9 km east-west here).
# The default 0.035 makes a square of about 7.8 x 6.3 km ≈ 49 km², the area of an average subdistrict
# (Taishan District, 337 km², has 7): reports spread over it as over a subdistrict, so duplicates (same
# category within 100 m, 72 h) stay the minority they are. A smaller square piles a run's thousands of
# reports onto a few streets: most become duplicates of a few originals (HONGLING_BENCH_HALF_DEG=0.01).
HALF = float(os.environ.get("HONGLING_BENCH_HALF_DEG", "0.035"))
COMMUNITY = "bench-place"


def stop_unwanted() -> None:
    """Stop the services named in HONGLING_BENCH_WITHOUT (e.g. "projector"), to measure a run without them
    against one with them (same stack, same machine)."""
    names = [n for n in os.environ.get("HONGLING_BENCH_WITHOUT", "").split(",") if n]
    if names:
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run(["bash", os.path.join(here, "..", "deploy", "local", "services.sh"), "stop", *names], check=True)
        print(f"[bench] without {', '.join(names)} (HONGLING_BENCH_WITHOUT)", flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def admin_headers(settings: Settings) -> dict[str, str]:
    """A fresh, one-day subdistrict admin token for every tenant."""
    token, _ = TokenFile(settings.api_tokens_file).create("bench-admin", "subdistrict_admin", ["*"], days=1)
    return {"Authorization": f"Bearer {token}"}


def ensure_grid(settings: Settings, tenant: str, headers: dict[str, str]) -> None:
    """The benchmark community and grid of the tenant (created once per stack; 409 = there already)."""
    lat, lon = BENCH_POINT
    boundary = Rect(lon - HALF, lat - HALF, lon + HALF, lat + HALF).geojson()
    base = f"http://127.0.0.1:{settings.gateway_port}/api/v1/tenants/{tenant}/org"
    for path, body in (
        ("communities", {"id": COMMUNITY, "name_zh": "基准测试社区"}),
        (
            "grids",
            {
                "id": f"{COMMUNITY}-g",
                "community_id": COMMUNITY,
                "name_zh": "基准测试网格",
                "boundary_geojson": boundary,
            },
        ),
    ):
        resp = requests.post(f"{base}/{path}", json=body, headers=headers, timeout=30)
        if resp.status_code == 409 and path == "grids":  # there already: give it this run's area
            url = f"{base}/grids/{body['id']}"
            have = requests.get(url, headers=headers, timeout=30)
            if have.ok and have.json().get("boundary_geojson") != boundary:
                resp = requests.put(
                    url, json={**have.json(), **body}, headers={**headers, "If-Match": have.headers["ETag"]}, timeout=30
                )
        if resp.status_code not in (200, 201, 409):
            raise SystemExit(f"cannot create the bench {path} in {tenant}: {resp.status_code} {resp.text}")


def random_point(rng: random.Random) -> dict[str, float]:
    """A point well inside the benchmark grid."""
    lat, lon = BENCH_POINT
    return {"lat": round(lat + rng.uniform(-0.9, 0.9) * HALF, 6), "lon": round(lon + rng.uniform(-0.9, 0.9) * HALF, 6)}


def _proc_stats() -> dict[str, list[str]]:
    """The /proc/<pid>/stat fields (after the command name) of every process, by pid."""
    out: dict[str, list[str]] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    out[pid] = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
    return out


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process of the stack and by this benchmark.

    A process counts with its descendants, the living ones and those it has reaped: PostgreSQL works in a
    backend process per connection, which its postmaster (the pid file's process) forks."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    run_dir = os.path.join(os.environ.get("HONGLING_STATE_DIR", ".local"), "run")
    pids = {"bench (client)": str(os.getpid())}
    if os.path.isdir(run_dir):
        for name in sorted(os.listdir(run_dir)):
            if name.endswith(".pid"):
                with open(os.path.join(run_dir, name)) as f:
                    pids[name[:-4]] = f.read().strip()
    stats = _proc_stats()
    children: dict[str, list[str]] = {}
    for pid, fields in stats.items():
        children.setdefault(fields[1], []).append(pid)  # fields[1]: the parent's pid
    for name, pid in pids.items():
        if pid not in stats:
            continue
        own = stats[pid]
        ticks = int(own[11]) + int(own[12]) + int(own[13]) + int(own[14])  # its own, and its reaped children's
        read_side = 0
        todo = list(children.get(pid, []))
        while todo:
            child = todo.pop()
            used = int(stats[child][11]) + int(stats[child][12])
            if name == "postgres" and _serves_read_side(child):
                read_side += used
            else:
                ticks += used
            todo.extend(children.get(child, []))
        out[name] = ticks / tick
        if read_side:
            out[READ_SIDE] = read_side / tick
    return out


# PostgreSQL's backends that serve the SQL read models (database hongling_read): counted apart from the
# postmaster's others (FerretDB's), so that the projections' share shows (with the projector process).
READ_SIDE = "postgres (read side)"
PROJECTIONS = ("projector", READ_SIDE)


def _serves_read_side(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b" hongling_read " in f.read().replace(b"\0", b" ")
    except OSError:
        return False


def settle(limit_s: float = 120.0, busy_share: float = 0.3) -> float:
    """Wait until the stack is quiet again after a phase (its processes, this benchmark aside, use less
    than busy_share of one core over a second: dispatch has caught up with the issues it was sent, the
    relays have published), at most limit_s; a counted line every 5 s. Returns the seconds waited.

    So each phase starts from the same quiet machine, not with the last one's backlog still running."""
    started = time.monotonic()
    before = cpu_seconds()
    while (waited := time.monotonic() - started) < limit_s:
        time.sleep(1.0)
        after = cpu_seconds()
        used = sum(v - before.get(k, 0.0) for k, v in after.items() if k != "bench (client)")
        before = after
        if used < busy_share:
            return time.monotonic() - started
        if int(waited + 1) % 5 == 0:
            print(f"[bench] waiting for the stack to settle: {used:.2f} cores busy at {waited + 1:.0f} s", flush=True)
    print(f"[bench] the stack is still busy after {limit_s:.0f} s; measuring anyway", flush=True)
    return limit_s


def show_cpu(before: dict[str, float], after: dict[str, float], ops: int, name: str) -> None:
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    busy = {k: v for k, v in used.items() if v >= 0.05}
    total = sum(used.values())
    parts = ", ".join(f"{k} {1000 * v / ops:.2f}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1]))
    print(f"CPU ms per operation, {name}: total {1000 * total / max(ops, 1):.2f} = {parts}")


def mongo_commands() -> Counter[tuple[str, str, str]]:
    """Database commands sent so far by each service process: (service, command, collection) -> count,
    from hongling_mongo_commands_total on their /metrics."""
    settings = get_settings()
    out: Counter[tuple[str, str, str]] = Counter()
    for service in ("gateway", *SERVICES):
        try:
            text = requests.get(f"http://{settings.host}:{settings.metrics_port(service)}/metrics", timeout=5).text
        except (requests.RequestException, ValueError, AttributeError):
            continue
        for family in text_string_to_metric_families(text):
            if family.name != "hongling_mongo_commands":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (service, sample.labels["command"], sample.labels["collection"])
                    out[key] += int(sample.value)
    return out


def show_commands(before: Counter[tuple[str, str, str]], after: Counter[tuple[str, str, str]], ops: int) -> None:
    """Print the database commands per operation, by service, command and collection (largest first)."""
    used = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    skip = {"hello", "ismaster", "isMaster", "endSessions", "ping", "buildInfo", "listCollections", "listIndexes"}
    rows = sorted(((k, v) for k, v in used.items() if k[1] not in skip), key=lambda kv: -kv[1])
    total = sum(v for _, v in rows)
    print(f"database commands per operation: {total / max(ops, 1):.2f}")
    for (service, command, collection), n in rows:
        if n / max(ops, 1) >= 0.02:
            print(f"  {n / max(ops, 1):6.2f}  {service:<11} {command:<8} {collection}")
