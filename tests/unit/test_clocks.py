"""The pure parts of dispatch's durable timers: backoff, the due-time heap, lease names, handler groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common import clocks
from services.common.settings import Settings

NOW = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    delays = [clocks.backoff_seconds(n, base=1.0, cap=60.0) for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert clocks.backoff_seconds(0) == 0.0
    # Very many attempts neither overflow nor exceed the cap.
    assert clocks.backoff_seconds(10_000, base=2.0, cap=300.0) == 300.0


def test_backoff_jitter_only_shortens_within_its_fraction() -> None:
    for _ in range(200):
        d = clocks.backoff_seconds(4, base=1.0, cap=300.0, jitter=0.1)
        assert 7.2 <= d <= 8.0


def test_the_due_heap_hands_out_what_is_due_earliest_first_once() -> None:
    heap = clocks.DueHeap()
    heap.put("t1", "later", NOW + timedelta(seconds=1))
    heap.put("t1", "b", NOW - timedelta(seconds=5))
    heap.put("t2", "a", NOW - timedelta(seconds=5))
    heap.put("t1", "oldest", NOW - timedelta(minutes=3))
    heap.put("t1", "exactly-now", NOW)
    assert heap.next_at() == NOW - timedelta(minutes=3)
    assert heap.pop_due(NOW, limit=2) == [("t1", "oldest"), ("t1", "b")]
    assert heap.pop_due(NOW, limit=10) == [("t2", "a"), ("t1", "exactly-now")]
    assert heap.pop_due(NOW, limit=10) == []
    assert heap.next_at() == NOW + timedelta(seconds=1)
    assert len(heap) == 1


def test_the_due_heap_keeps_only_the_latest_time_of_a_timer() -> None:
    heap = clocks.DueHeap()
    heap.put("t1", "k", NOW - timedelta(seconds=1))
    heap.put("t1", "k", NOW + timedelta(hours=1))  # moved later: not due now
    assert heap.pop_due(NOW, limit=10) == []
    assert heap.next_at() == NOW + timedelta(hours=1)
    heap.put("t1", "k", NOW - timedelta(seconds=2))  # brought forward
    assert heap.pop_due(NOW, limit=10) == [("t1", "k")]
    assert len(heap) == 0


def test_a_rescan_replaces_a_tenants_entries_but_keeps_what_was_scheduled_meanwhile() -> None:
    heap = clocks.DueHeap()
    heap.put("t1", "gone", NOW)  # deleted by another process: not in the scan
    heap.put("t1", "moved", NOW)  # moved by another process: the scan has its new time
    heap.put("t1", "fresh", NOW + timedelta(seconds=30))  # scheduled here while the scan ran
    heap.put("t2", "other-tenant", NOW)
    scanned = {"moved": NOW + timedelta(minutes=5), "found": NOW - timedelta(seconds=1)}
    heap.replace_tenant("t1", scanned, since=100.0, added={"fresh": 100.5, "gone": 50.0})
    assert len(heap) == 4
    assert heap.pop_due(NOW, limit=10) == [("t1", "found"), ("t2", "other-tenant")]
    assert heap.pop_due(NOW + timedelta(seconds=30), limit=10) == [("t1", "fresh")]
    assert heap.pop_due(NOW + timedelta(minutes=5), limit=10) == [("t1", "moved")]


def test_each_retry_or_new_schedule_is_a_new_firing_and_takeovers_get_new_names() -> None:
    first = clocks.firing_id("deadline:T1", "g1", 0)
    assert first == "deadline:T1|g1|0"
    assert clocks.firing_id("deadline:T1", "g1", 1) != first  # the retry after a failure
    assert clocks.firing_id("deadline:T1", "g2", 0) != first  # scheduled again
    assert clocks.firing_id("deadline:T1", "g1", None) == first
    assert [clocks.claim_name(first, n) for n in range(3)] == [first, f"{first}~1", f"{first}~2"]


def test_handlers_register_once_per_kind_and_workers_fire_their_group() -> None:
    def on_a(timer: clocks.Timer) -> None: ...

    def on_b(timer: clocks.Timer) -> None: ...

    clocks.handler("unit-kind-a")(on_a)
    clocks.handler("unit-kind-a")(on_a)  # the same function again (a module imported twice) is fine
    clocks.handler("unit-kind-b", group="unit_slow")(on_b)
    with pytest.raises(ValueError, match="already registered"):
        clocks.handler("unit-kind-a")(on_b)
    assert "unit-kind-a" in clocks.registered_kinds()
    assert "unit-kind-b" not in clocks.registered_kinds(clocks.DEFAULT_GROUP)
    assert clocks.registered_kinds("unit_slow") == ("unit-kind-b",)
    assert clocks.group_of("unit-kind-b") == "unit_slow" and clocks.group_of("unknown") == clocks.DEFAULT_GROUP
    default, slow = clocks.TimerWorker(), clocks.TimerWorker(group="unit_slow", tenants=["t1"])
    assert default.wants(clocks.DEFAULT_GROUP, "t1", "unit-kind-a")
    assert not default.wants("unit_slow", "t1", "unit-kind-b")
    assert slow.wants("unit_slow", "t1", "unit-kind-b") and not slow.wants("unit_slow", "t2", "unit-kind-b")
    assert not clocks.TimerWorker(kinds=["x"]).wants(clocks.DEFAULT_GROUP, "t1", "unit-kind-a")
    # Each group keeps its timers in a collection of its own.
    assert clocks.collection_name(clocks.DEFAULT_GROUP) == "timers"
    assert clocks.collection_name("unit_slow") == "timers_unit_slow"
    with pytest.raises(ValueError, match="group"):
        clocks.collection_name("Bad-Name")


def test_schedule_refuses_bad_keys_payloads_and_naive_times_before_touching_storage() -> None:
    # No tenant is bound here: each of these must fail on its argument, not on the missing tenant.
    with pytest.raises(ValueError, match="key"):
        clocks.schedule("", "k", NOW, {})
    with pytest.raises(ValueError, match="kind"):
        clocks.schedule("key", "", NOW, {})
    with pytest.raises(ValueError, match="timezone"):
        clocks.schedule("key", "k", NOW.replace(tzinfo=None), {})
    with pytest.raises(ValueError, match="payload key"):
        clocks.schedule("key", "k", NOW, {"a.b": "x"})
    with pytest.raises(ValueError, match="payload key"):
        clocks.schedule("key", "k", NOW, {"$set": "x"})
    with pytest.raises(ValueError, match="must be a string"):
        clocks.schedule("key", "k", NOW, {"n": 3})  # type: ignore[dict-item]
    clocks.handler("unit-kind-c", group="unit_other")(lambda t: None)
    with pytest.raises(ValueError, match="belongs to group"):
        clocks.schedule("key", "unit-kind-c", NOW, {}, group=clocks.DEFAULT_GROUP)


def test_the_worker_factory_takes_the_settings() -> None:
    s = Settings(timer_rescan_seconds=5, timer_lease_seconds=30, timer_backoff_base_seconds=2)
    w = clocks.build_timer_worker(s)
    assert (w.rescan_seconds, w.lease, w.backoff_base, w.group) == (5.0, timedelta(seconds=30), 2.0, "default")
