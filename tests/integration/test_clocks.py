"""Dispatch's durable timers against the real FerretDB: they fire once, never before their time, across
worker restarts and racing workers; failures are retried; cancel and re-schedule do what they say.

How late a timer fires is a speed, measured by bench/timer_lateness.py, not asserted here: a test waits
to a generous deadline (wait_for). "It fired only once" is shown after the workers were stopped (joined):
no firing can come after that; "it did not fire" by a later timer of the same worker that did."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from services.common import clocks, context, mongo
from services.common.settings import Settings
from tests.conftest import wait_for

T = "xujialou"
DB = f"hl_itest_{T}"


@pytest.fixture(scope="module")
def clocks_env(infra: Settings) -> Settings:
    mongo.init("itest", infra.mongo_uri)
    return infra


class Fired:
    """Records each firing of a test's own kind (handler registered under a unique kind)."""

    def __init__(self, fail_first: int = 0, sleep: float = 0.0) -> None:
        self.kind = f"itest-{uuid.uuid4().hex[:8]}"
        self.group = f"itest_{uuid.uuid4().hex[:8]}"  # a collection of its own: no other test's timers
        self.fail_first = fail_first
        self.sleep = sleep
        self.lock = threading.Lock()
        self.calls: list[tuple[clocks.Timer, datetime]] = []
        clocks.handler(self.kind, group=self.group)(self)

    def __call__(self, timer: clocks.Timer) -> None:
        assert context.require_tenant() == timer.tenant == T
        with self.lock:
            self.calls.append((timer, datetime.now(UTC)))
            n = len(self.calls)
        if self.sleep:
            time.sleep(self.sleep)
        if n <= self.fail_first:
            raise RuntimeError(f"receiver down (attempt {n})")

    def keys(self) -> Counter[str]:
        with self.lock:
            return Counter(t.key for t, _ in self.calls)


class Running:
    """Timer workers on threads, each stoppable on its own."""

    def __init__(self) -> None:
        self.items: list[tuple[threading.Event, threading.Thread]] = []

    def start(self, group: str, **kw: Any) -> threading.Event:
        worker = clocks.TimerWorker(group=group, tenants=[T], name=f"w-{len(self.items)}", **kw)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        self.items.append((stop, thread))
        return stop

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        for s, t in self.items:
            if s is stop:
                t.join(timeout=60)
                assert not t.is_alive()

    def stop_all(self) -> None:
        """Stop every worker and wait for each to finish its firings: nothing fires after this returns."""
        for stop, _ in self.items:
            self.stop(stop)


@pytest.fixture
def workers(clocks_env: Settings) -> Iterator[Running]:
    r = Running()
    yield r
    for stop, _ in r.items:
        stop.set()
    for _, t in r.items:
        t.join(timeout=10)


def schedule(key: str, kind: str, due_at: datetime, payload: dict[str, str] | None = None) -> None:
    with context.bound(tenant=T):
        clocks.schedule(key, kind, due_at, payload or {})


def stored(mongo_client: MongoClient[Any], key: str, group: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = mongo_client[DB][clocks.collection_name(group)].find_one({"_id": key})
    return doc


def test_a_timer_fires_once_not_before_its_due_time_and_is_then_gone(
    workers: Running, mongo_client: MongoClient[Any]
) -> None:
    fired = Fired()
    workers.start(fired.group)  # the production settings
    key = f"deadline:{uuid.uuid4().hex}"
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    schedule(key, fired.kind, due, {"task_id": "T-1", "说明": "报到截止"})
    assert stored(mongo_client, key, fired.group) is not None
    wait_for(lambda: fired.calls)
    timer, at = fired.calls[0]
    assert (timer.key, timer.kind, timer.attempt) == (key, fired.kind, 1)
    assert dict(timer.payload) == {"task_id": "T-1", "说明": "报到截止"}
    assert abs((timer.due_at - due).total_seconds()) < 0.01  # the stored time, to the millisecond
    assert at >= due
    wait_for(lambda: stored(mongo_client, key, fired.group) is None)
    workers.stop_all()
    assert fired.keys() == {key: 1}


def test_racing_workers_fire_each_timer_exactly_once(workers: Running, mongo_client: MongoClient[Any]) -> None:
    fired = Fired(sleep=0.01)
    keys = [f"race:{uuid.uuid4().hex}" for _ in range(40)]
    due = datetime.now(UTC) + timedelta(seconds=1)
    for i, key in enumerate(keys):
        schedule(key, fired.kind, due + timedelta(milliseconds=10 * (i % 5)))
    # Three workers, two of them firing four timers at once: all see every timer due at the same polls.
    workers.start(fired.group)
    workers.start(fired.group, concurrency=4)
    workers.start(fired.group, concurrency=4)
    wait_for(lambda: all(stored(mongo_client, k, fired.group) is None for k in keys))
    workers.stop_all()  # every firing under way is over
    counts = fired.keys()
    assert set(counts) == set(keys)
    assert [k for k, n in counts.items() if n != 1] == []
    assert all(stored(mongo_client, k, fired.group) is None for k in keys)
    # Every firing lease was released.
    assert mongo_client[DB]["timer_firings"].count_documents({"_id": {"$regex": "^race:"}}) == 0


def test_a_timer_due_while_no_worker_runs_fires_when_one_starts(
    workers: Running, mongo_client: MongoClient[Any]
) -> None:
    fired = Fired()
    first = workers.start(fired.group)
    key = f"restart:{uuid.uuid4().hex}"
    due = datetime.now(UTC) + timedelta(seconds=3)
    schedule(key, fired.kind, due)
    workers.stop(first)  # the service goes down before the timer is due
    assert fired.calls == []
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.5)  # it comes due while no worker runs
    assert fired.calls == []
    assert stored(mongo_client, key, fired.group) is not None  # it lives in the database, not in the stopped worker
    restarted = datetime.now(UTC)
    workers.start(fired.group)  # a new process (a new worker, a new owner) comes up
    wait_for(lambda: stored(mongo_client, key, fired.group) is None)
    workers.stop_all()
    assert fired.keys() == {key: 1}
    assert fired.calls[0][1] >= restarted > due  # late, but not lost


def test_a_failing_handler_is_retried_with_backoff_until_it_succeeds(
    workers: Running, mongo_client: MongoClient[Any]
) -> None:
    fired = Fired(fail_first=2)
    key = f"retry:{uuid.uuid4().hex}"
    before = clocks.TIMERS_FAILED.labels(T, fired.kind)._value.get()
    schedule(key, fired.kind, datetime.now(UTC))
    workers.start(fired.group, backoff_base=0.5)
    wait_for(lambda: len(fired.calls) >= 2)
    doc = wait_for(lambda: (d := stored(mongo_client, key, fired.group)) and d.get("attempts") == 2 and d)
    assert "receiver down" in doc["last_error"]
    wait_for(lambda: stored(mongo_client, key, fired.group) is None)  # the third attempt succeeded
    workers.stop_all()
    attempts = [t.attempt for t, _ in fired.calls]
    assert attempts == [1, 2, 3]
    times = [at for _, at in fired.calls]
    # 0.5 s then 1 s (less up to 10 % jitter), each plus up to one poll.
    assert times[1] - times[0] >= timedelta(seconds=0.44)
    assert times[2] - times[1] >= timedelta(seconds=0.89)
    assert clocks.TIMERS_FAILED.labels(T, fired.kind)._value.get() - before == 2


def test_a_cancelled_timer_never_fires(workers: Running, mongo_client: MongoClient[Any]) -> None:
    fired = Fired()
    workers.start(fired.group)
    key = f"cancel:{uuid.uuid4().hex}"
    kept = f"kept:{uuid.uuid4().hex}"
    due = datetime.now(UTC) + timedelta(seconds=1)
    schedule(key, fired.kind, due)
    schedule(kept, fired.kind, due + timedelta(milliseconds=100))  # looked at after the cancelled one
    with context.bound(tenant=T):
        clocks.cancel(key)
        clocks.cancel(f"never-scheduled-{uuid.uuid4().hex}")  # no error
        assert clocks.get(key) is None
    # One worker looks at its timers in the order they come due: once the later one fired, the cancelled one
    # had its turn.
    wait_for(lambda: stored(mongo_client, kept, fired.group) is None)
    workers.stop_all()
    assert fired.keys() == {kept: 1}


def test_scheduling_a_key_again_moves_it(workers: Running, mongo_client: MongoClient[Any]) -> None:
    fired = Fired()
    workers.start(fired.group)
    key = f"move:{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    schedule(key, fired.kind, now + timedelta(seconds=1), {"v": "1"})
    schedule(key, fired.kind, now + timedelta(seconds=3), {"v": "2"})  # pushed back, new payload
    with context.bound(tenant=T):
        pending = clocks.get(key)
    assert pending is not None and abs(pending.due_at - (now + timedelta(seconds=3))) < timedelta(milliseconds=1)
    assert dict(pending.payload) == {"v": "2"}
    wait_for(lambda: fired.calls)
    timer, at = fired.calls[0]
    assert dict(timer.payload) == {"v": "2"}
    assert at >= now + timedelta(seconds=3)  # its first and only firing: not at the old time
    # Brought forward again: the earlier time wins.
    key2 = f"move:{uuid.uuid4().hex}"
    schedule(key2, fired.kind, datetime.now(UTC) + timedelta(hours=1))
    schedule(key2, fired.kind, datetime.now(UTC))
    wait_for(lambda: stored(mongo_client, key2, fired.group) is None)
    workers.stop_all()
    assert fired.keys() == {key: 1, key2: 1}


def test_a_handler_that_schedules_its_own_key_again_keeps_the_timer(
    workers: Running, mongo_client: MongoClient[Any]
) -> None:
    """A repeating reminder: the handler moves its own timer on; the firing must not delete the new one."""
    kind = f"itest-{uuid.uuid4().hex[:8]}"
    group = f"itest_{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    @clocks.handler(kind, group=group)
    def remind(timer: clocks.Timer) -> None:
        seen.append(timer.payload["n"])
        n = int(timer.payload["n"])
        if n < 3:
            clocks.schedule(timer.key, timer.kind, datetime.now(UTC) + timedelta(milliseconds=300), {"n": str(n + 1)})

    key = f"remind:{uuid.uuid4().hex}"
    schedule(key, kind, datetime.now(UTC), {"n": "1"})
    workers.start(group)
    wait_for(lambda: stored(mongo_client, key, group) is None)  # the third firing scheduled no fourth
    workers.stop_all()
    assert seen == ["1", "2", "3"]


LEASE = 5  # seconds: the live lease of the next test must outlast the worker's start on a busy machine


def test_a_lease_left_by_a_dead_worker_is_taken_over_after_it_runs_out(
    workers: Running, mongo_client: MongoClient[Any]
) -> None:
    fired = Fired()
    live_key = f"leased:{uuid.uuid4().hex}"
    dead_key = f"stale:{uuid.uuid4().hex}"
    schedule(live_key, fired.kind, datetime.now(UTC))
    schedule(dead_key, fired.kind, datetime.now(UTC))
    firings = mongo_client[DB]["timer_firings"]
    now = datetime.now(UTC)
    for key, at in ((live_key, now), (dead_key, now - timedelta(seconds=2 * LEASE))):
        doc = stored(mongo_client, key, fired.group)
        assert doc is not None
        firings.insert_one({"_id": clocks.firing_id(key, doc["generation"], 0), "at": at, "owner": "crashed"})
    workers.start(fired.group, lease_seconds=LEASE)
    # The stale lease (older than the lease) is taken over when the worker first looks; the live one only
    # after it runs out, so the stale one fires first although the live one came due first.
    wait_for(lambda: all(stored(mongo_client, k, fired.group) is None for k in (live_key, dead_key)))
    workers.stop_all()
    assert fired.keys() == {dead_key: 1, live_key: 1}
    at = {t.key: at for t, at in fired.calls}
    assert at[live_key] >= now + timedelta(seconds=LEASE)
    assert at[dead_key] < at[live_key]


def test_a_timer_written_by_another_process_is_found_by_the_rescan(
    workers: Running, mongo_client: MongoClient[Any]
) -> None:
    """Timers scheduled here reach this process's workers at once; one written by another dispatch process
    (here: straight into the database) is found by the next rescan and fired then."""
    fired = Fired()
    workers.start(fired.group, rescan_seconds=2)
    first = f"here:{uuid.uuid4().hex}"
    schedule(first, fired.kind, datetime.now(UTC))
    wait_for(lambda: fired.calls)  # the worker fires only once its first scan is over
    key = f"elsewhere:{uuid.uuid4().hex}"
    due = datetime.now(UTC) + timedelta(milliseconds=500)
    mongo_client[DB][clocks.collection_name(fired.group)].insert_one(
        {
            "_id": key,
            "kind": fired.kind,
            "due_at": due,
            "next_at": due,
            "payload": {},
            "generation": uuid.uuid4().hex,
            "attempts": 0,
        }
    )
    # Nothing told the worker of it: a rescan found it. A deadline of ten rescans, as no wait is a speed.
    wait_for(lambda: stored(mongo_client, key, fired.group) is None, timeout=20)
    workers.stop_all()
    assert fired.keys() == {first: 1, key: 1}
    assert fired.calls[-1][1] >= due


def test_new_timers_are_inserted_together_and_an_existing_key_is_moved(
    workers: Running, mongo_client: MongoClient[Any]
) -> None:
    """schedule_new_many (the clocks of a call and its task just created): the new keys fire at their times;
    a key that already exists is moved to the new time, as schedule() would."""
    fired = Fired()
    workers.start(fired.group)
    now = datetime.now(UTC)
    old, a, b = (f"new:{uuid.uuid4().hex}" for _ in range(3))
    schedule(old, fired.kind, now + timedelta(hours=2), {"v": "old"})
    with context.bound(tenant=T):
        clocks.schedule_new_many(
            [
                (a, fired.kind, now + timedelta(seconds=1), {"v": "a"}),
                (b, fired.kind, now + timedelta(hours=1), {"v": "b"}),
                (old, fired.kind, now + timedelta(seconds=1), {"v": "moved"}),
            ]
        )
    assert stored(mongo_client, b, fired.group)["payload"] == {"v": "b"}  # type: ignore[index]
    wait_for(lambda: all(stored(mongo_client, k, fired.group) is None for k in (a, old)))
    workers.stop_all()
    assert {t.key: dict(t.payload) for t, _ in fired.calls} == {a: {"v": "a"}, old: {"v": "moved"}}
    assert fired.keys() == {a: 1, old: 1}  # b not due for an hour: still waiting
    assert stored(mongo_client, b, fired.group)["next_at"] > now + timedelta(minutes=59)  # type: ignore[index]
