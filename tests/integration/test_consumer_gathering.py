"""EventConsumer(gather_ms=…) against the real Kafka: while records keep coming it polls at most once per
gather period, so a poll brings several, and still every record is handled once, in order per key."""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from services.common.consumer import EventConsumer
from services.common.settings import Settings
from tests.conftest import unique, wait_for


class Counting(EventConsumer):
    """Records what it is given and how many polls brought records (each such poll commits once)."""

    def __init__(self, topic: str, bootstrap: str, gather_ms: int) -> None:
        super().__init__(unique("gather"), [topic], {}, bootstrap, gather_ms=gather_ms)
        self.seen: list[tuple[bytes, bytes]] = []
        self.polls = 0

    def handle_record(self, record: Any, dlq: Any) -> str:
        self.seen.append((record.key, record.value))
        return "handled"

    def _commit(self, consumer: Any, offsets: Any) -> None:
        self.polls += 1
        super()._commit(consumer, offsets)


def run_at_steady_rate(infra: Settings, gather_ms: int, records: int = 60, rate: float = 100.0) -> Counting:
    topic = unique("hongling.gather-test")
    admin = KafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    consumer = Counting(topic, infra.kafka_bootstrap, gather_ms)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    producer = KafkaProducer(bootstrap_servers=infra.kafka_bootstrap, linger_ms=0)
    try:
        producer.send(topic, key=b"k", value=b"ready").get(timeout=10)
        wait_for(lambda: consumer.seen)  # in its group and reading: from here on the records come one by one
        consumer.seen.clear()
        consumer.polls = 0
        started = time.perf_counter()
        for i in range(records):
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            producer.send(topic, key=f"k{i % 3}".encode(), value=str(i).encode())
        producer.flush(timeout=10)
        wait_for(lambda: len(consumer.seen) >= records)
    finally:
        producer.close(timeout=5)
        stop.set()
        thread.join(20)
    return consumer


def test_without_gathering_a_consumer_polls_for_almost_every_record(infra: Settings) -> None:
    """The comparison: the same records, polled at once, come nearly one per poll."""
    consumer = run_at_steady_rate(infra, gather_ms=0)
    assert [int(v) for _, v in consumer.seen] == list(range(60))
    assert consumer.polls > 20, consumer.polls


def test_a_gathering_consumer_takes_several_records_per_poll_and_handles_each_once_in_order(infra: Settings) -> None:
    consumer = run_at_steady_rate(infra, gather_ms=100)
    assert [int(v) for _, v in consumer.seen] == list(range(60))  # one partition: all of them, once, in order
    # 60 records over 0.6 s, a poll at most every 100 ms: about 7 polls (one by one it would be up to 60).
    assert consumer.polls <= 12, consumer.polls
