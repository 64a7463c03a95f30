"""Consumer gathering: how many polls an EventConsumer makes for records that come at a steady rate, and how
long a record waits for its handler, with gather_ms 0 (poll at once), 50 (the services' default) and 100.

Runs against the Kafka of a running stack (make bench starts a private one). Each setting gets a topic of
its own (one partition) and a consumer group of its own. Figures depend on the machine and its load: this
prints them, it asserts nothing (tests/integration/test_consumer_gathering.py tests the behaviour).

    HONGLING_BENCH_RECORDS=300 HONGLING_BENCH_RATE=100 make bench
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from typing import Any

from benchlib import percentile
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from services.common.consumer import EventConsumer
from services.common.settings import get_settings

RECORDS = int(os.environ.get("HONGLING_BENCH_RECORDS", "300"))
RATE = float(os.environ.get("HONGLING_BENCH_RATE", "100"))  # records a second
GATHER_MS = (0, 50, 100)


class CountCommitFailures(logging.Handler):
    """Counts the consumer's "offset commit ... failed" warnings (printed as a figure, not one line each)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("offset commit"):
            self.count += 1


class Counting(EventConsumer):
    """Records when each record was handled and how many polls brought records (each commits once)."""

    def __init__(self, topic: str, bootstrap: str, gather_ms: int) -> None:
        super().__init__(f"bench-gather-{uuid.uuid4().hex[:8]}", [topic], {}, bootstrap, gather_ms=gather_ms)
        self.handled: list[tuple[bytes, float]] = []
        self.polls = 0

    def handle_record(self, record: Any, dlq: Any) -> str:
        self.handled.append((record.value, time.time()))
        return "handled"

    def _commit(self, consumer: Any, offsets: Any) -> None:
        self.polls += 1
        super()._commit(consumer, offsets)


def run(bootstrap: str, gather_ms: int) -> tuple[int, list[float]]:
    """(polls that brought records, ms from each record's send to its handling) for RECORDS at RATE."""
    topic = f"hongling.bench-gather-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    consumer = Counting(topic, bootstrap, gather_ms)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    sent: dict[bytes, float] = {}
    try:
        producer.send(topic, key=b"k", value=b"ready").get(timeout=30)
        deadline = time.monotonic() + 60
        while not consumer.handled:  # in its group and reading
            if time.monotonic() > deadline:
                raise SystemExit("the consumer read nothing within 60 s")
            time.sleep(0.05)
        consumer.handled.clear()
        consumer.polls = 0
        started = time.perf_counter()
        for i in range(RECORDS):
            time.sleep(max(0.0, started + i / RATE - time.perf_counter()))
            value = str(i).encode()
            sent[value] = time.time()
            producer.send(topic, key=f"k{i % 3}".encode(), value=value)
        producer.flush(timeout=30)
        deadline = time.monotonic() + 120
        while len(consumer.handled) < RECORDS:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(consumer.handled)} of {RECORDS} records handled within 120 s")
            time.sleep(0.05)
    finally:
        producer.close(timeout=10)
        stop.set()
        thread.join(30)
    waits = [(at - sent[value]) * 1000 for value, at in consumer.handled]
    return consumer.polls, waits


def main() -> int:
    settings = get_settings()
    failures = CountCommitFailures()
    log = logging.getLogger("services.common.consumer")
    log.addHandler(failures)
    log.propagate = False
    print(f"{RECORDS} records at {RATE:g}/s, one partition, three keys")
    for gather_ms in GATHER_MS:
        failures.count = 0
        polls, waits = run(settings.kafka_bootstrap, gather_ms)
        print(
            f"gather_ms={gather_ms:<4d} polls={polls:<4d} records/poll={RECORDS / max(1, polls):5.1f} "
            f"commits refused={failures.count:<3d} "
            f"send->handled p50={percentile(waits, 50):.1f} ms p90={percentile(waits, 90):.1f} ms "
            f"p99={percentile(waits, 99):.1f} ms max={max(waits):.1f} ms",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
