"""EventConsumer(gather_ms=…) against the real Kafka: while records keep coming it polls at most once per
gather period, and still every record is handled once, in order per key.

How many polls that saves (how many records a poll brings) depends on the machine's speed and load:
bench/consumer_gathering.py prints it. Here the rule itself is checked, on the consumer's own clock."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from services.common import consumer as consumer_module
from services.common.consumer import EventConsumer
from services.common.settings import Settings
from tests.conftest import unique, wait_for


class PollClock:
    """Stands in for the consumer module's `time`, and remembers per thread the last monotonic() it gave:
    at a poll that is the consumer's own `polled`, read just before it polls."""

    def __init__(self) -> None:
        self._last = threading.local()
        self.polls: list[tuple[float, int]] = []  # (when it began, on the consumer's clock; records it brought)

    def monotonic(self) -> float:
        self._last.value = time.monotonic()
        return float(self._last.value)

    def last(self) -> float:
        return float(self._last.value)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def recording(clock: PollClock) -> type[KafkaConsumer]:
    class Recording(KafkaConsumer):  # type: ignore[misc]
        def poll(self, *args: Any, **kwargs: Any) -> Any:
            began = clock.last()
            batches = super().poll(*args, **kwargs)
            clock.polls.append((began, sum(len(r) for r in batches.values())))
            return batches

    return Recording


class Counting(EventConsumer):
    """Records what it is given and how many polls brought records (each such poll commits once)."""

    def __init__(self, topic: str, bootstrap: str, gather_ms: int) -> None:
        super().__init__(unique("gather"), [topic], {}, bootstrap, gather_ms=gather_ms)
        self.seen: list[tuple[bytes, bytes]] = []
        self.polls = 0
        self.done_at = 0.0

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
        consumer.done_at = time.monotonic()  # before the stop (which ends a gathering wait early)
    finally:
        producer.close(timeout=5)
        stop.set()
        thread.join(20)
    return consumer


@pytest.mark.parametrize("gather_ms", [0, 100])
def test_each_record_is_handled_once_in_order_and_a_gathering_consumer_polls_at_most_once_per_period(
    infra: Settings, gather_ms: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = PollClock()
    monkeypatch.setattr(consumer_module, "time", clock)
    monkeypatch.setattr(consumer_module, "KafkaConsumer", recording(clock))
    consumer = run_at_steady_rate(infra, gather_ms=gather_ms)
    assert [int(v) for _, v in consumer.seen] == list(range(60))  # one partition: all of them, once, in order
    # A poll after one that brought records begins a gather period after it, or later (the clock is the
    # consumer's own: the wait's end can only be later on a busy machine, never earlier). Polls from the
    # stop on are left out: stopping ends the wait at once.
    polls = [(began, n) for began, n in clock.polls if began < consumer.done_at]
    after_records = [b - a for (a, n), (b, _) in itertools.pairwise(polls) if n]
    assert after_records, clock.polls
    if gather_ms:
        assert min(after_records) >= gather_ms / 1000 - 0.001, after_records
