"""Raw baselines: what the stack's database and broker do with nothing of ours in front of them.

The full paths' figures (intake's throughput, the whistle's latency, dispatch's pipeline) are read against these,
measured on the same machine in the same `make bench` run (the table at the end puts them side by side):

- FerretDB insert_one: one document of an issue's size at a time, one client thread, documents per second and
  the p50 of one round trip; insert_many: batches of 100 (what group commit can reach at best);
- Kafka produce: kafka-python's producer configured as the outbox relay's (services/common/outbox.make_producer:
  idempotent, acks=all, linger 2 ms), records of an event's size, sent as fast as they go then flushed
  (records per second), and one at a time, each waited for (the p50 of one acknowledged send).

Scratch database hl_bench_raw and topic hongling.bench.raw, dropped at the end. HONGLING_BENCH_RAW_SECONDS
(default 5) per phase.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from benchlib import percentile, record
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from pymongo import MongoClient

from services.common.outbox import make_producer
from services.common.settings import get_settings

SECONDS = float(os.environ.get("HONGLING_BENCH_RAW_SECONDS", "5"))
TOPIC = "hongling.bench.raw"
PAYLOAD = os.urandom(600)  # about an issue's CloudEvent with its protobuf data


def issue_like(i: int) -> dict[str, Any]:
    return {
        "_id": uuid.uuid4().hex,
        "tenant": "bench",
        "title": f"基准事项 {i}",
        "description": "bench: raw insert (原始写入)",
        "location": {"type": "Point", "coordinates": [117.4, 36.4]},
        "status": "received",
        "created_at": datetime.now(UTC),
        "outbox": [{"id": uuid.uuid4().hex, "type": "hongling.intake.v1.IssueReceived", "data": PAYLOAD}],
    }


def timed(op: Any) -> tuple[int, list[float], float]:
    """Run op(i) for SECONDS: (operations, each one's ms, seconds taken)."""
    ms: list[float] = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < SECONDS:
        t0 = time.perf_counter()
        op(i)
        ms.append((time.perf_counter() - t0) * 1000)
        i += 1
    return i, ms, time.perf_counter() - started


def database(uri: str) -> None:
    client: MongoClient[Any] = MongoClient(uri)
    try:
        coll = client["hl_bench_raw"]["issues"]
        coll.drop()
        coll.insert_one(issue_like(-1))  # the collection exists, the connection is warm
        n, ms, took = timed(lambda i: coll.insert_one(issue_like(i)))
        print(f"FerretDB insert_one: {n / took:,.0f} docs/s, p50 {percentile(ms, 50):.2f} ms (one thread)")
        record("raw: FerretDB insert_one, 1 thread", n / took, "docs/s", better="higher")
        record("raw: FerretDB insert_one p50", percentile(ms, 50), "ms")
        n, ms, took = timed(lambda i: coll.insert_many([issue_like(i * 100 + k) for k in range(100)]))
        print(f"FerretDB insert_many (100 a batch): {100 * n / took:,.0f} docs/s")
        record("raw: FerretDB insert_many x100", 100 * n / took, "docs/s", better="higher")
    finally:
        client.drop_database("hl_bench_raw")
        client.close()


def broker(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hongling-bench-raw")
    try:
        if TOPIC not in admin.list_topics():
            admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])
        producer = make_producer(bootstrap, "hongling-bench-raw")
        try:
            producer.send(TOPIC, key=b"warm", value=PAYLOAD).get(timeout=30)
            sent = 0
            started = time.perf_counter()
            while time.perf_counter() - started < SECONDS:
                for k in range(500):
                    producer.send(TOPIC, key=f"k{k % 64}".encode(), value=PAYLOAD)
                sent += 500
                producer.flush(timeout=30)
            took = time.perf_counter() - started
            print(f"Kafka produce (acks=all, idempotent, as the relay): {sent / took:,.0f} records/s")
            record("raw: Kafka produce, batched", sent / took, "records/s", better="higher")
            n, ms, took = timed(lambda i: producer.send(TOPIC, key=b"one", value=PAYLOAD).get(timeout=30))
            print(f"Kafka produce one at a time: {n / took:,.0f} records/s, p50 {percentile(ms, 50):.2f} ms")
            record("raw: Kafka produce one at a time p50", percentile(ms, 50), "ms")
        finally:
            producer.close(timeout=10)
    finally:
        try:
            admin.delete_topics([TOPIC])
        finally:
            admin.close()


def main() -> int:
    settings = get_settings()
    database(settings.mongo_uri)
    broker(settings.kafka_bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
