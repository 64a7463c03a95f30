"""EventConsumer: an offset commit that failed is made again after the next poll that brings nothing, at the
partition's position, and only for partitions still assigned (no infrastructure: the broker's answers are
played by a recorder of commit_async calls)."""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from services.common.consumer import EventConsumer

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class Broker:
    """commit_async as kafka-python calls it: the callback gets the offsets and the answer (an exception)."""

    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        self.positions = positions
        self.owned = set(positions)
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = False

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Any) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})
        callback(offsets, RuntimeError("NodeNotReadyError: Node paused") if self.fail else None)

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


def consumer() -> EventConsumer:
    return EventConsumer("test-group", ["t"], {}, "127.0.0.1:1")


def test_a_failed_commit_is_made_again_at_the_position_after_an_empty_poll() -> None:
    c, broker = consumer(), Broker({A: 143, B: 80})
    broker.fail = True
    c._commit(broker, {A: OffsetAndMetadata(143, "", -1)})  # type: ignore[arg-type]
    broker.fail = False
    c._retry_commits(broker)  # type: ignore[arg-type]
    assert broker.commits == [{A: 143}, {A: 143}]
    c._retry_commits(broker)  # type: ignore[arg-type]
    assert len(broker.commits) == 2  # made once: nothing failed since


def test_a_commit_that_fails_again_is_tried_again_and_a_success_ends_it() -> None:
    c, broker = consumer(), Broker({A: 10, B: 20})
    broker.fail = True
    c._commit(broker, {A: OffsetAndMetadata(10, "", -1), B: OffsetAndMetadata(20, "", -1)})  # type: ignore[arg-type]
    c._retry_commits(broker)  # type: ignore[arg-type]
    broker.positions[A] = 12  # a record of A was handled meanwhile
    broker.fail = False
    c._retry_commits(broker)  # type: ignore[arg-type]
    assert broker.commits[-1] == {A: 12, B: 20}
    c._retry_commits(broker)  # type: ignore[arg-type]
    assert len(broker.commits) == 3


def test_a_partition_moved_to_another_member_is_not_committed_again() -> None:
    c, broker = consumer(), Broker({A: 5, B: 6})
    broker.fail = True
    c._commit(broker, {A: OffsetAndMetadata(5, "", -1), B: OffsetAndMetadata(6, "", -1)})  # type: ignore[arg-type]
    broker.fail = False
    broker.owned = {B}
    c._retry_commits(broker)  # type: ignore[arg-type]
    assert broker.commits[-1] == {B: 6}
