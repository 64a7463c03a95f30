"""Event to whistle: IssueClassified on Kafka → dispatch's WhistleBlown (集结号), at a steady rate.

Runs against a running stack (deploy/local/test.sh bench starts a private one) whose dispatch service blows
a call for every classified issue. Uses the org scale data (1,089 grids, 12,000 people; written first when
missing, as bench/org_candidates.py does), so every call is targeted through the real matching over the
full lists.

This process publishes IssueClassified events (protos/hongling/events/v1/intake_events.proto) on
hongling.intake.v1 exactly as intake's outbox relay does — CloudEvents 1.0 in Kafka binary mode, key
"<tenant>:<issue id>", the idempotent producer — at a steady HONGLING_BENCH_RATE per second (default 50)
for HONGLING_BENCH_SECONDS (default 30), after a warm-up of three calls per tenant (not measured):
random tenants, scale grids, categories, classes (70 % routine, 20 % major, 10 % urgent) and now and then
a hazard. Meanwhile it reads hongling.dispatch.v1 (from its end
at the start, no consumer group) and matches each WhistleBlown to its issues by issue id. The latency of an
issue is from just before its event was handed to the producer to the moment its WhistleBlown was read
here: Kafka both ways, dispatch's consumer, the task and call written with their events (targets from
org's member units and the ranked candidates), the outbox relay.

    bash deploy/local/test.sh bench bench/dispatch_pipeline.py
    HONGLING_BENCH_RATE=50 HONGLING_BENCH_SECONDS=30 bash deploy/local/test.sh bench bench/dispatch_pipeline.py
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchlib import cpu_seconds, mongo_commands, record, show_commands, show_cpu, stop_unwanted
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import intake_events_pb2 as iev
from hongling.org.v1 import org_pb2 as pb
from kafka import KafkaConsumer, TopicPartition
from org_candidates import Caller, ensure_scale_data, percentile, scale_grids

from services.common.events import CloudEvent, record_key, topic_for
from services.common.outbox import make_producer
from services.common.settings import get_settings

RATE = float(os.environ.get("HONGLING_BENCH_RATE", "50"))
SECONDS = float(os.environ.get("HONGLING_BENCH_SECONDS", "30"))
DRAIN_SECONDS = 60.0  # after the last event: how long to wait for the remaining whistles
GOAL_P99_MS = 500.0
REPO = Path(__file__).resolve().parents[1]
CATALOGUE = tomllib.loads((REPO / "services" / "intake" / "data" / "categories.toml").read_text(encoding="utf-8"))
CATEGORIES = [c["code"] for c in CATALOGUE["category"]]
HAZARDS = [h["code"] for h in CATALOGUE["hazard"]]
WHISTLE = dev.WhistleBlown.DESCRIPTOR.full_name


def grid_communities(caller: Caller, tenant: str) -> dict[str, str]:
    out: dict[str, str] = {}
    token = ""
    while True:
        resp = caller.stub.ListGrids(pb.ListRequest(page_size=500, page_token=token), metadata=caller.md(tenant))
        out.update({g.id: g.community_id for g in resp.items})
        token = resp.next_page_token
        if not token:
            return out


class Whistles:
    """Reads hongling.dispatch.v1 from its current end; notes when each issue's WhistleBlown arrives."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
        topic = topic_for("dispatch")
        parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or ())]
        self.consumer.assign(parts)
        self.consumer.seek_to_end(*parts)
        for p in parts:  # resolve the end now, before anything is published
            self.consumer.position(p)
        self.seen: dict[str, float] = {}
        self.targets: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="whistles", daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for r in records:
                    headers = {k: v for k, v in (r.headers or [])}
                    if headers.get("ce_type", b"").decode() != WHISTLE:
                        continue
                    msg = dev.WhistleBlown()
                    msg.ParseFromString(r.value)
                    targets = len(getattr(msg, "target_ids", ()))
                    with self.lock:
                        for issue_id in msg.issue_ids:
                            self.seen.setdefault(issue_id, now)
                            self.targets.setdefault(issue_id, targets)
        self.consumer.close()


def classified(rng: random.Random, tenant: str, issue_id: str, grid_id: str, community_id: str) -> CloudEvent:
    urgency = rng.choices(("routine", "major", "urgent"), weights=(70, 20, 10))[0]
    at = datetime.now(UTC)
    stamp = Timestamp()
    stamp.FromDatetime(at)
    msg = iev.IssueClassified(
        issue_id=issue_id,
        tenant=tenant,
        urgency=urgency,
        reasons=["基准测试 / benchmark"],
        category=rng.choice(CATEGORIES),
        community_id=community_id,
        grid_id=grid_id,
        classified_at=stamp,
        title="基准测试事项 / benchmark issue",
        hazards=rng.sample(HAZARDS, 1) if rng.random() < 0.1 else [],
        affected_households=rng.choice((0, 1, 2, 5, 12)),
    )
    return CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/intake/{tenant}",
        type=msg.DESCRIPTOR.full_name,
        time=at,
        subject=f"issues/{issue_id}",
        tenant=tenant,
        data=msg.SerializeToString(),
    )


def main() -> int:
    stop_unwanted()
    ensure_scale_data()
    settings = get_settings()
    caller = Caller()
    grids = scale_grids(caller)
    tenants = [t for t, g in grids.items() if g]
    communities = {t: grid_communities(caller, t) for t in tenants}
    rng = random.Random(20201231)
    run = uuid.uuid4().hex[:8]
    print(f"[bench] {sum(len(g) for g in grids.values())} scale grids in {len(tenants)} tenants; run {run}", flush=True)

    whistles = Whistles(settings.kafka_bootstrap)
    whistles.thread.start()
    producer = make_producer(settings.kafka_bootstrap, f"bench-pipeline-{run}")
    # Warm-up, not measured: a few calls per tenant first, so org's candidate index and dispatch's unit lists
    # are loaded (a running system has them; a fresh one builds them on the first call of each tenant).
    warm = [f"bench-{run}-warm-{t}-{n}" for t in tenants for n in range(3)]
    for issue_id in warm:
        tenant = issue_id.split("-warm-")[1].rsplit("-", 1)[0]
        grid_id = rng.choice(grids[tenant])[0]
        ce = classified(rng, tenant, issue_id, grid_id, communities[tenant].get(grid_id, ""))
        producer.send(topic_for("intake"), key=record_key(tenant, issue_id), value=ce.data, headers=ce.headers())
    producer.flush(timeout=30)
    warm_started = time.perf_counter()
    while time.perf_counter() - warm_started < 120:
        with whistles.lock:
            ready = sum(1 for k in warm if k in whistles.seen)
        if ready == len(warm):
            break
        print(f"[bench] warm-up: {ready}/{len(warm)} calls blown", flush=True)
        time.sleep(2)
    print(f"[bench] warm-up done in {time.perf_counter() - warm_started:.1f} s", flush=True)
    sent: dict[str, float] = {}
    total = int(RATE * SECONDS)
    cpu_before = cpu_seconds()
    commands_before = mongo_commands()
    topic = topic_for("intake")
    started = time.perf_counter()
    last_report = started
    behind = 0.0
    for i in range(total):
        due = started + i / RATE
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        tenant = rng.choice(tenants)
        grid_id = rng.choice(grids[tenant])[0]
        issue_id = f"bench-{run}-{i:05d}"
        ce = classified(rng, tenant, issue_id, grid_id, communities[tenant].get(grid_id, ""))
        sent[issue_id] = time.perf_counter()
        producer.send(topic, key=record_key(tenant, issue_id), value=ce.data, headers=ce.headers())
        if time.perf_counter() - last_report > 5:
            last_report = time.perf_counter()
            with whistles.lock:
                got = [whistles.seen[k] - sent[k] for k in list(whistles.seen) if k in sent]
            p50 = f"{percentile(got, 50) * 1000:.0f} ms" if got else "-"
            print(f"[bench] sent {i + 1}/{total}, whistles {len(got)}, event→whistle p50 so far {p50}", flush=True)
    producer.flush(timeout=30)
    sending = time.perf_counter() - started
    print(
        f"[bench] {total} events sent in {sending:.1f} s ({total / sending:.1f}/s; at most {behind * 1000:.0f} ms late)"
    )

    deadline = time.perf_counter() + DRAIN_SECONDS
    while time.perf_counter() < deadline:
        with whistles.lock:
            missing = sum(1 for k in sent if k not in whistles.seen)
        if not missing:
            break
        time.sleep(0.5)
    show_cpu(cpu_before, cpu_seconds(), total, "per issue, sending and draining")
    show_commands(commands_before, mongo_commands(), total)
    whistles.stop.set()
    whistles.thread.join(timeout=5)
    producer.close(timeout=10)

    with whistles.lock:
        latencies = [(whistles.seen[k] - t) * 1000 for k, t in sent.items() if k in whistles.seen]
        targets = [whistles.targets[k] for k in sent if k in whistles.seen]
    missing = total - len(latencies)
    if not latencies:
        print(
            "event→WhistleBlown: no whistle seen for any of the events — does the dispatch service blow calls "
            "on IssueClassified?"
        )
        return 1
    print(
        f"{'event→WhistleBlown':24s} n={len(latencies)} p50={percentile(latencies, 50):.0f} ms "
        f"p90={percentile(latencies, 90):.0f} ms p99={percentile(latencies, 99):.0f} ms "
        f"max={max(latencies):.0f} ms mean={statistics.fmean(latencies):.0f} ms; "
        f"{missing} without a whistle after {DRAIN_SECONDS:.0f} s"
    )
    print(f"{'':24s} targets per call: median {statistics.median(targets):.0f}, max {max(targets)}")
    p99 = percentile(latencies, 99)
    record("dispatch: event→whistle p50", percentile(latencies, 50), "ms")
    record(f"dispatch: event→whistle p99 at {RATE:g}/s", p99, "ms", goal=GOAL_P99_MS)
    record("dispatch: events without a whistle", missing, "events", goal=0)
    verdict = "met" if p99 < GOAL_P99_MS and not missing else "NOT met"
    print(
        f"goal event→whistle p99 < {GOAL_P99_MS:.0f} ms at {RATE:g} issues/s: {verdict} ({p99:.0f} ms; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
