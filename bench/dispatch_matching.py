"""Precise assignment (点将) at scale: ranking candidates over 1,089 grids and 12,000 people.

Runs against a running stack (deploy/local/test.sh bench starts a private one). Writes the org scale data
first when it is missing (as bench/org_candidates.py does: `python -m services.org.seed scale`), then gives
the scale helpers a dispatch record — open tasks, finished tasks, ratings — in the dispatch read model
(hl_dispatch_<tenant>.matching_helpers, written directly as the "dispatch-matching" consumer would have
left it; removed again at the end), so ranking reads real records, not empty ones.

What is timed — services.dispatch.matching.rank_candidates, in this process, exactly as the dispatch
service runs it: the need from the task's category and hazards (need_for, services/dispatch/data/needs.toml),
org's FindCandidates over real gRPC (principal and tenant in metadata; org answers from its in-memory index
with its best 50 by fit for a limit of 20), the records of those candidates from the in-process snapshot of
the read model (services.dispatch.helpers_model.RecordCache), and the re-ranking with load and performance.
Random categories and hazards of the intake catalogue, random scale grids over the 7 tenants, limit 20.

Phases: records steady; records changing — another "process" (a thread here, writing to FerretDB directly and
logging each change as helpers_model does) changes HONGLING_BENCH_CHANGES records per second (default 20), so
the snapshots catch up in the background all along. The org call alone and the first
load of each tenant's snapshot are timed beside them.

Then through the dispatch service itself: DispatchService.RankCandidates over gRPC for tasks of scale grids
(opened by IssueClassified events on hongling.intake.v1, as bench/dispatch_pipeline.py sends them): the
service reads the task, ranks as above and marks who is on the crew or reported in. Skipped with a note when
the running dispatch service does not open tasks on IssueClassified or lacks the method.

    bash deploy/local/test.sh bench bench/dispatch_matching.py
    HONGLING_BENCH_CALLS=2000 HONGLING_BENCH_PEOPLE=12000 bash deploy/local/test.sh bench bench/dispatch_matching.py
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import grpc
from benchlib import record
from dispatch_pipeline import classified, grid_communities
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.dispatch.v1 import dispatch_pb2_grpc as dpb_grpc
from org_candidates import Caller, ensure_scale_data, line, percentile, scale_grids
from pymongo import ReturnDocument

from services.common import context, mongo
from services.common.events import record_key, topic_for
from services.common.outbox import make_producer
from services.common.settings import get_settings
from services.dispatch import helpers_model, matching

N = int(os.environ.get("HONGLING_BENCH_CALLS", "2000"))
TASKS = 100  # tasks opened for the RankCandidates phase
CHANGES = float(os.environ.get("HONGLING_BENCH_CHANGES", "20"))
changed = [0]
WARMUP = 200
GOAL_P99_MS = 20.0
REPO = Path(__file__).resolve().parents[1]
CATALOGUE = tomllib.loads((REPO / "services" / "intake" / "data" / "categories.toml").read_text(encoding="utf-8"))
CATEGORIES = [c["code"] for c in CATALOGUE["category"]]
HAZARDS = [h["code"] for h in CATALOGUE["hazard"]]
RECORD_SHARE = 0.6  # of the helpers seen in the warm-up, how many get a dispatch record


def random_task(rng: random.Random, grids: list[tuple[str, Any]], community_of: dict[str, str]) -> matching.Need:
    grid_id = rng.choice(grids)[0]
    hazards = rng.sample(HAZARDS, 1) if rng.random() < 0.15 else []
    return matching.need_for(rng.choice(CATEGORIES), hazards, community_of.get(grid_id, ""), grid_id)


def give_records(tenant: str, keys: set[str], rng: random.Random) -> list[str]:
    """Dispatch records for some of the helpers seen, as the consumer leaves them; returns their _ids."""
    docs: list[dict[str, Any]] = []
    for key in sorted(keys):
        if rng.random() >= RECORD_SHARE:
            continue
        done = rng.choice((0, 0, 1, 2, 5, 10, 20))
        ratings = rng.randint(0, done)
        docs.append(
            {
                "_id": key,
                "load": rng.choice((0, 0, 0, 1, 1, 2, 3, 4)),
                "done": done,
                "on_time": rng.randint(0, done),
                "rating_sum": float(sum(rng.randint(2, 5) for _ in range(ratings))),
                "rating_n": ratings,
                "open": {},
                "rated": {},
                "bench": True,
            }
        )
    with context.bound(tenant=tenant):
        coll = helpers_model.HelperRecordDoc._get_collection()
        coll.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        for i in range(0, len(docs), 500):
            coll.insert_many(docs[i : i + 500])
    return [d["_id"] for d in docs]


def remove_records(tenant: str, ids: list[str]) -> None:
    with context.bound(tenant=tenant):
        coll = helpers_model.HelperRecordDoc._get_collection()
        for i in range(0, len(ids), 500):
            coll.delete_many({"_id": {"$in": ids[i : i + 500]}})


def change_records(written: dict[str, list[str]], stop: threading.Event) -> None:
    """Another process at work: CHANGES record changes per second, each moving its tenant's generation."""
    rng = random.Random(7)
    pairs = [(t, k) for t, keys in written.items() for k in keys]
    while pairs and not stop.wait(1 / CHANGES):
        tenant, key = rng.choice(pairs)
        with context.bound(tenant=tenant):
            doc = helpers_model.HelperRecordDoc._get_collection().find_one_and_update(
                {"_id": key},
                {"$set": {"load": rng.choice((0, 1, 2, 3, 4))}, "$inc": {"v": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                helpers_model.log_change(key, doc)
        changed[0] += 1


def snapshot_loads(tenants: list[str]) -> list[float]:
    """The first load of each tenant's records, as a new dispatch process makes it."""
    ms = []
    for tenant in tenants:
        t0 = time.perf_counter()
        helpers_model.RecordCache()._load(tenant)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def timed_rank(need: matching.Need) -> tuple[list[matching.Ranked], int, float]:
    t0 = time.perf_counter()
    ranked, considered = matching.rank_candidates(need, limit=20)
    return ranked, considered, (time.perf_counter() - t0) * 1000


def phase(
    name: str,
    rng: random.Random,
    tenants: list[str],
    grids: dict[str, list[tuple[str, Any]]],
    communities: dict[str, dict[str, str]],
) -> tuple[list[float], list[int]]:
    ms: list[float] = []
    considered: list[int] = []
    started = time.monotonic()
    last = started
    for i in range(N):
        tenant = rng.choice(tenants)
        need = random_task(rng, grids[tenant], communities[tenant])
        with context.bound(tenant=tenant):
            _ranked, n, took = timed_rank(need)
        ms.append(took)
        considered.append(n)
        if time.monotonic() - last > 5:
            last = time.monotonic()
            print(f"[bench] {name}: {i + 1}/{N} rankings, p50 so far {percentile(ms, 50):.2f} ms", flush=True)
    return ms, considered


def org_alone(
    rng: random.Random,
    tenants: list[str],
    grids: dict[str, list[tuple[str, Any]]],
    communities: dict[str, dict[str, str]],
) -> list[float]:
    ms = []
    for _ in range(N // 2):
        tenant = rng.choice(tenants)
        need = random_task(rng, grids[tenant], communities[tenant])
        with context.bound(tenant=tenant):
            t0 = time.perf_counter()
            matching._org.find(need, matching.pool_size(20))
            ms.append((time.perf_counter() - t0) * 1000)
    return ms


def open_tasks(
    caller: Caller,
    rng: random.Random,
    tenants: list[str],
    grids: dict[str, list[tuple[str, Any]]],
    communities: dict[str, dict[str, str]],
) -> list[tuple[str, str]]:
    """(tenant, task id) of TASKS tasks opened by IssueClassified events; [] when dispatch opens none."""
    settings = get_settings()
    dispatch = dpb_grpc.DispatchServiceStub(grpc.insecure_channel(settings.address("dispatch")))
    producer = make_producer(settings.kafka_bootstrap, "bench-matching")
    run = f"rank-{os.getpid()}-{int(time.time())}"
    issues = []
    for i in range(TASKS):
        tenant = rng.choice(tenants)
        grid_id = rng.choice(grids[tenant])[0]
        issue_id = f"bench-{run}-{i:04d}"
        ce = classified(rng, tenant, issue_id, grid_id, communities[tenant].get(grid_id, ""))
        producer.send(topic_for("intake"), key=record_key(tenant, issue_id), value=ce.data, headers=ce.headers())
        issues.append((tenant, issue_id))
    producer.flush(timeout=30)
    producer.close(timeout=10)
    found: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + 90
    while len(found) < len(issues) and time.monotonic() < deadline:
        for tenant, issue_id in issues:
            if issue_id in found:
                continue
            try:
                task = dispatch.GetTaskForIssue(
                    dpb.GetTaskForIssueRequest(issue_id=issue_id), metadata=caller.md(tenant), timeout=10
                )
            except grpc.RpcError:
                continue
            found[issue_id] = (tenant, task.id)
        if len(found) < len(issues):
            time.sleep(1)
    print(f"[bench] {len(found)}/{len(issues)} tasks opened by IssueClassified for RankCandidates", flush=True)
    return list(found.values())


def rank_over_grpc(caller: Caller, rng: random.Random, tasks: list[tuple[str, str]]) -> tuple[list[float], str]:
    """RankCandidates for random tasks; (latencies, note) — no latencies when the method is not there."""
    settings = get_settings()
    dispatch = dpb_grpc.DispatchServiceStub(grpc.insecure_channel(settings.address("dispatch")))
    ms: list[float] = []
    last = time.monotonic()
    for i in range(WARMUP + N):
        tenant, task_id = rng.choice(tasks)
        req = dpb.RankCandidatesRequest(task_id=task_id, limit=20)
        t0 = time.perf_counter()
        try:
            dispatch.RankCandidates(req, metadata=caller.md(tenant), timeout=30)
        except grpc.RpcError as exc:
            return [], f"RankCandidates failed: {exc.code().name} {exc.details()}"
        if i >= WARMUP:
            ms.append((time.perf_counter() - t0) * 1000)
        if time.monotonic() - last > 5:
            last = time.monotonic()
            print(f"[bench] RankCandidates: {i + 1}/{WARMUP + N} calls", flush=True)
    return ms, ""


def main() -> int:
    ensure_scale_data()
    settings = get_settings()
    mongo.init("dispatch", settings.mongo_uri)
    caller = Caller()
    rng = random.Random(20201230)
    grids = scale_grids(caller)
    tenants = [t for t, g in grids.items() if g]
    communities = {t: grid_communities(caller, t) for t in tenants}
    print(f"[bench] {sum(len(g) for g in grids.values())} scale grids in {len(tenants)} tenants", flush=True)

    seen: dict[str, set[str]] = {t: set() for t in tenants}
    for _ in range(WARMUP):
        tenant = rng.choice(tenants)
        need = random_task(rng, grids[tenant], communities[tenant])
        with context.bound(tenant=tenant):
            found, _n = matching._org.find(need, matching.MAX_LIMIT)
        seen[tenant].update(matching.record_key(c.kind, c.id) for c in found)
    written = {t: give_records(t, keys, rng) for t, keys in seen.items()}
    print(
        f"[bench] dispatch records for {sum(len(v) for v in written.values())} of the "
        f"{sum(len(v) for v in seen.values())} helpers seen in the warm-up",
        flush=True,
    )
    try:
        for _ in range(WARMUP):
            tenant = rng.choice(tenants)
            with context.bound(tenant=tenant):
                matching.rank_candidates(random_task(rng, grids[tenant], communities[tenant]))

        steady_ms, considered = phase("records steady", rng, tenants, grids, communities)
        stop = threading.Event()
        writer = threading.Thread(target=change_records, args=(written, stop), daemon=True)
        writer.start()
        try:
            changing_ms, _ = phase("records changing", rng, tenants, grids, communities)
        finally:
            stop.set()
            writer.join(timeout=10)
        loads = snapshot_loads(tenants)
        org_ms = org_alone(rng, tenants, grids, communities)
        tasks = open_tasks(caller, rng, tenants, grids, communities)
        grpc_ms, note = rank_over_grpc(caller, rng, tasks) if tasks else ([], "no task was opened by IssueClassified")
    finally:
        for tenant, ids in written.items():
            remove_records(tenant, ids)

    print(line("rank_candidates (records steady)", steady_ms))
    print(line(f"rank_candidates ({CHANGES:g} changes/s)", changing_ms))
    print(f"{'':34s} {changed[0]} records changed meanwhile, by another writer")
    print(line("  snapshot load (first per tenant)", loads))
    print(line(f"  of which org FindCandidates({matching.pool_size(20)})", org_ms))
    if grpc_ms:
        print(line("DispatchService.RankCandidates", grpc_ms))
    else:
        print(f"{'DispatchService.RankCandidates':34s} not measured: {note}")
    print(
        f"{'':34s} helpers considered per ranking: median {statistics.median(considered):.0f}, "
        f"p90 {percentile([float(c) for c in considered], 90):.0f}, max {max(considered)} "
        f"(of {os.environ.get('HONGLING_BENCH_PEOPLE', '12000')} people + teams + units)"
    )
    worst = max(percentile(steady_ms, 99), percentile(changing_ms, 99), percentile(grpc_ms or [0.0], 99))
    record("matching: ranking p99 (worst of the phases)", worst, "ms", goal=GOAL_P99_MS)
    verdict = "met" if worst < GOAL_P99_MS else "NOT met"
    print(
        f"goal ranking p99 < {GOAL_P99_MS:.0f} ms: {verdict} (steady {percentile(steady_ms, 99):.2f} ms, "
        f"changing {percentile(changing_ms, 99):.2f} ms, "
        + (f"RankCandidates over gRPC {percentile(grpc_ms, 99):.2f} ms" if grpc_ms else "RankCandidates not measured")
        + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
