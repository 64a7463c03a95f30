"""EventConsumer with concurrency > 1: records of different keys at once, one key's records in order, and
the poll committed only when every record of it was handled."""

from __future__ import annotations

import random
import threading
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kafka import TopicPartition

from services.common.consumer import EventConsumer

Record = namedtuple("Record", "topic partition offset key")


class Recording(EventConsumer):
    def __init__(self, fail_at: tuple[bytes, int] | None = None) -> None:
        super().__init__("test-group", ["t"], {}, "127.0.0.1:1", concurrency=4)
        self.seen: list[tuple[bytes, int]] = []
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.fail_at = fail_at

    def handle_record(self, record: Any, dlq: Any) -> str:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(random.uniform(0.001, 0.01))
        with self.lock:
            self.active -= 1
            self.seen.append((record.key, record.offset))
        if self.fail_at == (record.key, record.offset):
            raise RuntimeError("database unavailable")
        return "handled"


def poll(parts: int = 2, per_part: int = 30, keys: int = 5) -> dict[TopicPartition, list[Record]]:
    out: dict[TopicPartition, list[Record]] = {}
    for p in range(parts):
        tp = TopicPartition("t", p)
        out[tp] = [Record("t", p, 100 + i, f"tenant:issue-{p}-{i % keys}".encode()) for i in range(per_part)]
    return out


def test_records_of_one_key_keep_their_order_while_keys_run_at_once() -> None:
    consumer = Recording()
    batches = poll()
    with ThreadPoolExecutor(4) as pool:
        offsets = consumer._handle_concurrently(batches, dlq=None, pool=pool)  # type: ignore[arg-type]
    assert sorted(consumer.seen) == sorted((r.key, r.offset) for rs in batches.values() for r in rs)
    for key in {k for k, _ in consumer.seen}:
        mine = [o for k, o in consumer.seen if k == key]
        assert mine == sorted(mine), key
    assert consumer.most_active > 1  # several keys were in hand at the same moment
    assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 130, 1: 130}


def test_a_failure_commits_nothing_of_the_poll_and_stops_nothing_else() -> None:
    consumer = Recording(fail_at=(b"tenant:issue-0-2", 102))
    batches = poll()
    with ThreadPoolExecutor(4) as pool, pytest.raises(RuntimeError, match="database unavailable"):
        consumer._handle_concurrently(batches, dlq=None, pool=pool)  # type: ignore[arg-type]
    # The failed key stopped at its failure; every other key was handled to its end.
    assert (b"tenant:issue-0-2", 107) not in consumer.seen
    assert (b"tenant:issue-1-4", 129) in consumer.seen and (b"tenant:issue-0-3", 128) in consumer.seen


def test_an_idempotent_type_must_have_a_handler() -> None:
    from hongling.events.v1 import intake_events_pb2 as iev

    with pytest.raises(ValueError, match="IssueClassified"):
        EventConsumer("g", ["t"], {}, "127.0.0.1:1", idempotent=(iev.IssueClassified,))
    consumer = EventConsumer(
        "g", ["t"], {iev.IssueClassified: lambda e, m: None}, "127.0.0.1:1", idempotent=(iev.IssueClassified,)
    )
    assert consumer.idempotent == {"hongling.events.v1.IssueClassified"}
