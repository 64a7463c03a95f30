"""Durable timers for every service: deadlines, reminders, escalations, shifts that survive restarts.

API (used by the services' handlers; the timers live in the calling service's databases)::

    from services.common import clocks

    clocks.schedule("wd:W1", "dispatch.report_in_deadline", due_at, {"whistle_id": "W1"})  # the call's tenant
    clocks.cancel("wd:W1")

    @clocks.handler("dispatch.report_in_deadline")
    def on_report_in_deadline(timer: clocks.Timer) -> None: ...  # runs in timer.tenant's context

Storage — the database is the only truth
- A timer is one document in its tenant's database of the service that scheduled it (hl_<service>_<tenant>),
  ``_id`` = its key, in the collection of its worker group: ``timers`` for the default group (deadlines,
  reminders, escalations), ``timers_<group>`` for others (``timers_webhooks``: webhook deliveries), so
  short-lived bulk timers never slow down the scans of long-lived ones.
- ``schedule`` is an upsert by ``_id``: scheduling a key again moves that timer (new due time, kind
  and payload, a new generation; attempts start again). ``cancel`` deletes it. Fired timers are deleted.

Finding due timers cheaply
- On the local FerretDB any filter but ``_id`` scans its collection, and decoding costs ~0.2 ms a
  document: a per-second scan costs 30 ms at 100 pending timers and 200 ms at 1,000, per tenant. So a
  :class:`TimerWorker` scans each tenant's collection only at start and every ``timer_rescan_seconds``
  (default 60: with 1,000 open timers in each of 7 tenants a 15 s rescan kept the database 7 % busy idle),
  one tenant at a time (a tenant every rescan_seconds / tenants), so that no rescan is a burst,
  and keeps what it found in an in-memory heap of (due time, tenant, key) — a cache of *when to look*,
  never of what a timer is. ``schedule`` in this process hands the new due time to the running workers
  at once, so a timer scheduled here fires on time (well under a second late); one written by another
  process (or left by one that died) is found by the next rescan. A restart scans first: everything
  that came due while the service was down fires at once.
- At its time, a heap entry is checked against the database by ``_id`` (an index look-up): gone → dropped,
  moved later → put back at its new time, due → fired.

Exactly one firing
- Before firing, a worker inserts the firing's lease ``{_id: "<key>|<generation>|<attempts>"}`` into
  ``timer_firings``. An insert by ``_id`` is atomic on MongoDB and FerretDB alike — a conditional update
  is not (FerretDB v1 runs it as an unisolated read-modify-write, see
  services/common/unitofwork.py) — so of two racing workers, in one process or in two, exactly one wins; the
  winner reads the timer again and fires only if it is still that generation and attempt. A lease older
  than ``timer_lease_seconds`` was left by a worker that died while firing and is taken over under the
  next name ("…~1"): a crash never strands a timer. The lease is deleted when the firing is over.
- The handler runs in the tenant's context. On success the timer is deleted — unless the handler (or
  anyone meanwhile) scheduled the same key again (a new generation), which keeps it. On failure the
  timer stays, ``attempts`` grows, and it comes due again after an exponential backoff
  (:func:`backoff_seconds`, capped): it is never dropped. A timer whose kind has no handler in this
  process is not touched (it waits, due, for a process that has one).
- At least once: a handler can run again for the same timer if its process died after the handler's
  writes and before the timer was deleted, or if it ran longer than the lease; handlers must be idempotent.

Metrics: ``hongling_timers_fired_total{tenant,kind}``, ``hongling_timers_failed_total{tenant,kind}``,
``hongling_timer_lateness_seconds{kind}`` (fired_at − due_at on each timer's first attempt),
``hongling_timers_pending{group,tenant}`` (timers found by the last rescan).
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import re
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pymongo.errors
from prometheus_client import Counter, Gauge, Histogram
from pymongo.collection import Collection

from services.common import context, groupcommit, mongo
from services.common.context import require_tenant
from services.common.mongo import tenant_database
from services.common.principal import Principal
from services.common.settings import Settings
from services.common.tenants import tenant_slugs

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"
FIRINGS = "timer_firings"
MAX_KEY_LENGTH = 400
MAX_TAKEOVERS = 20
_GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

TIMERS_FIRED = Counter("hongling_timers_fired_total", "Timers whose handler succeeded.", ["tenant", "kind"])
TIMERS_FAILED = Counter(
    "hongling_timers_failed_total",
    "Timer handler attempts that raised; the timer is retried after a backoff.",
    ["tenant", "kind"],
)
TIMER_LATENESS = Histogram(
    "hongling_timer_lateness_seconds",
    "Seconds from a timer's due time to its first firing.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 3600),
)
TIMERS_PENDING = Gauge(
    "hongling_timers_pending", "Timers in a tenant's collection at the last rescan.", ["group", "tenant"]
)


@dataclass(frozen=True)
class Timer:
    """A due timer as its handler sees it."""

    key: str
    kind: str
    due_at: datetime
    payload: Mapping[str, str]
    tenant: str
    # 1 on the first firing, 2 on the first retry, ...
    attempt: int = 1
    generation: str = field(default="", repr=False)


F = TypeVar("F", bound=Callable[[Timer], Any])
# kind -> (handler, worker group): each TimerWorker fires the kinds of its group.
_handlers: dict[str, tuple[Callable[[Timer], Any], str]] = {}
# The running workers of this process: schedule() tells them of new due times.
_workers: weakref.WeakSet[TimerWorker] = weakref.WeakSet()
_workers_lock = threading.Lock()


def collection_name(group: str) -> str:
    """``timers`` for the default group, ``timers_<group>`` for the others."""
    if not _GROUP_NAME.match(group):
        raise ValueError(f"timer group {group!r}: lower-case letters, digits and _ (starting with a letter)")
    return "timers" if group == DEFAULT_GROUP else f"timers_{group}"


def _collection(group: str, tenant: str | None = None) -> Collection[Any]:
    coll: Collection[Any] = tenant_database(tenant or require_tenant())[collection_name(group)]
    return coll


def _firings(tenant: str) -> Collection[Any]:
    coll: Collection[Any] = tenant_database(tenant)[FIRINGS]
    return coll


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("due_at must be timezone-aware (UTC is stored)")
    return dt.astimezone(UTC)


def _check_payload(payload: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in payload.items():
        if not isinstance(k, str) or not k or k.startswith("$") or "." in k:
            raise ValueError(f"timer payload key {k!r}: a non-empty string without '.' or a leading '$'")
        if not isinstance(v, str):
            raise ValueError(f"timer payload value for {k!r} must be a string")
        out[k] = v
    return out


def group_of(kind: str) -> str:
    """The worker group of a kind: the one its handler was registered with, else the default."""
    entry = _handlers.get(kind)
    return entry[1] if entry is not None else DEFAULT_GROUP


def _prepare(
    key: str, kind: str, due_at: datetime, payload: Mapping[str, str], group: str | None
) -> tuple[str, datetime, dict[str, Any]]:
    """Check a timer's parts; returns its group, due time and stored fields."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"timer key must be 1..{MAX_KEY_LENGTH} characters")
    if not kind:
        raise ValueError("timer kind must not be empty")
    due = _aware(due_at)
    body = _check_payload(payload)
    registered = _handlers.get(kind)
    group = group or group_of(kind)
    if registered is not None and registered[1] != group:
        raise ValueError(f"timer kind {kind!r} belongs to group {registered[1]!r}, not {group!r}")
    collection_name(group)
    fields = {
        "kind": kind,
        "due_at": due,
        "next_at": due,
        "payload": body,
        "generation": uuid.uuid4().hex,
        "attempts": 0,
        "last_error": "",
        "scheduled_at": datetime.now(UTC),
    }
    return group, due, fields


def _offer(group: str, tenant: str, key: str, kind: str, due: datetime) -> None:
    with _workers_lock:
        workers = list(_workers)
    for w in workers:
        w.offer(group, tenant, key, kind, due)


def schedule(key: str, kind: str, due_at: datetime, payload: Mapping[str, str], *, group: str | None = None) -> None:
    """Schedule (or move) the timer ``key`` in the current tenant; it fires once at ``due_at``.

    Idempotent per key: scheduling a key again replaces its kind, due time and payload (its attempts
    start again). A due time in the past fires at once. ``group`` defaults to the group the kind's
    handler was registered with (the default group if none is registered in this process).
    """
    group, due, fields = _prepare(key, kind, due_at, payload, group)
    tenant = require_tenant()
    _collection(group, tenant).update_one({"_id": key}, {"$set": fields}, upsert=True)
    _offer(group, tenant, key, kind, due)


def schedule_new_many(
    timers: Iterable[tuple[str, str, datetime, Mapping[str, str]]], *, group: str | None = None
) -> None:
    """schedule() for keys that are most likely new (the clocks of what was just created): inserts, which go
    to the database in one command with each other and with concurrent ones (services/common/groupcommit.py),
    where each upsert is a command of its own that reads first. A key that exists already is moved as
    schedule() moves it."""
    tenant = require_tenant()
    prepared = [(key, kind, *_prepare(key, kind, due_at, payload, group)) for key, kind, due_at, payload in timers]
    by_group: dict[str, list[tuple[str, str, datetime, dict[str, Any]]]] = {}
    for key, kind, grp, due, fields in prepared:
        by_group.setdefault(grp, []).append((key, kind, due, fields))
    for grp, items in by_group.items():
        coll = _collection(grp, tenant)
        errors = groupcommit.insert_all(coll, [{"_id": key, **fields} for key, _, _, fields in items])
        for (key, kind, due, fields), error in zip(items, errors, strict=True):
            if isinstance(error, pymongo.errors.DuplicateKeyError):
                coll.update_one({"_id": key}, {"$set": fields}, upsert=True)
            elif error is not None:
                raise error
            _offer(grp, tenant, key, kind, due)


def _groups(group: str | None) -> list[str]:
    """The given group, or (None) the default group and every group with a handler in this process."""
    if group is not None:
        collection_name(group)
        return [group]
    return [DEFAULT_GROUP, *sorted({g for _, g in _handlers.values()} - {DEFAULT_GROUP})]


def cancel(key: str, *, group: str | None = None) -> None:
    """Cancel the timer ``key`` in the current tenant (nothing happens if there is none). Without
    ``group``, in every group known here (keys are meant to be unique across groups)."""
    for g in _groups(group):
        if _collection(g).delete_one({"_id": key}).deleted_count:
            return


def get(key: str, *, group: str | None = None) -> Timer | None:
    """The pending timer ``key`` in the current tenant, or None (fired, cancelled or never scheduled)."""
    for g in _groups(group):
        doc = _collection(g).find_one({"_id": key})
        if doc is not None:
            return _timer_of(doc, require_tenant())
    return None


def handler(kind: str, *, group: str = DEFAULT_GROUP) -> Callable[[F], F]:
    """Register ``fn(timer)`` as the handler of timers of ``kind`` (one handler per kind).

    ``group`` names the worker (and collection) for them: the default worker fires deadlines and
    reminders; slow kinds (webhook deliveries: HTTP calls) get a worker of their own so they never
    delay those.
    """
    collection_name(group)

    def register(fn: F) -> F:
        existing = _handlers.get(kind)
        if existing is not None and existing[0] is not fn:
            raise ValueError(f"a handler for timer kind {kind!r} is already registered: {existing[0]!r}")
        _handlers[kind] = (fn, group)
        return fn

    return register


def registered_kinds(group: str | None = None) -> tuple[str, ...]:
    """The kinds with a handler in this process (of one worker group, or of all)."""
    return tuple(sorted(k for k, (_, g) in _handlers.items() if group is None or g == group))


def backoff_seconds(attempts: int, *, base: float = 1.0, cap: float = 300.0, jitter: float = 0.0) -> float:
    """Delay before the next try after ``attempts`` failed ones: base * 2^(attempts-1), capped.

    ``jitter`` (0..1) shortens it by up to that fraction, so many timers failing together do not all
    come back in the same second.
    """
    if attempts < 1:
        return 0.0
    delay = min(cap, base * (2.0 ** min(attempts - 1, 60)))
    if jitter > 0:
        delay -= delay * jitter * random.random()
    return delay


def firing_id(key: str, generation: str, attempts: object) -> str:
    """The lease name of one firing: one per (key, generation, attempt), so a retry or a moved timer
    is a new firing and a finished one can never be fired again."""
    return f"{key}|{generation}|{int(attempts or 0)}"  # type: ignore[call-overload]


def claim_name(base: str, takeover: int) -> str:
    """The n-th name of a firing lease: the first claim, then "~1", "~2", ... for takeovers of stale ones."""
    return base if takeover == 0 else f"{base}~{takeover}"


def _as_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _timer_of(doc: Mapping[str, Any], tenant: str) -> Timer:
    return Timer(
        key=str(doc["_id"]),
        kind=str(doc["kind"]),
        due_at=_as_utc(doc["due_at"]),
        payload=dict(doc.get("payload") or {}),
        tenant=tenant,
        attempt=int(doc.get("attempts") or 0) + 1,
        generation=str(doc.get("generation") or ""),
    )


class DueHeap:
    """When to look at which timer: (due time, tenant, key), the latest time per timer winning.

    Pure bookkeeping (no storage, thread-safe): the worker checks each popped entry against the database.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[datetime, str, str]] = []
        self._at: dict[tuple[str, str], datetime] = {}

    def put(self, tenant: str, key: str, at: datetime) -> None:
        at = _as_utc(at)
        with self._lock:
            self._at[(tenant, key)] = at
            heapq.heappush(self._heap, (at, tenant, key))

    def replace_tenant(
        self, tenant: str, entries: Mapping[str, datetime], since: float, added: Mapping[str, float]
    ) -> None:
        """After a rescan of ``tenant``: its entries become ``entries``, keeping those put after the scan
        began (``added``: key -> monotonic time of the put), which the scan may have missed."""
        with self._lock:
            for t, k in [tk for tk in self._at if tk[0] == tenant]:
                if k not in entries and added.get(k, 0.0) < since:
                    del self._at[(t, k)]
            for k, at in entries.items():
                if added.get(k, 0.0) < since or (tenant, k) not in self._at:
                    self._at[(tenant, k)] = _as_utc(at)
            self._heap = [(at, t, k) for (t, k), at in self._at.items()]
            heapq.heapify(self._heap)

    def pop_due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(tenant, key) of the entries due at ``now``, earliest first; stale duplicates are skipped."""
        out: list[tuple[str, str]] = []
        with self._lock:
            while self._heap and len(out) < limit and self._heap[0][0] <= now:
                at, tenant, key = heapq.heappop(self._heap)
                if self._at.get((tenant, key)) == at:
                    del self._at[(tenant, key)]
                    out.append((tenant, key))
        return out

    def next_at(self) -> datetime | None:
        with self._lock:
            while self._heap and self._at.get((self._heap[0][1], self._heap[0][2])) != self._heap[0][0]:
                heapq.heappop(self._heap)
            return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._at)


class TimerWorker:
    """Fires the due timers of one group, in every tenant (a worker for services.common.runner).

    ``kinds`` narrows it to some kinds of the group (tests); ``concurrency`` > 1 fires that many at once.
    """

    def __init__(
        self,
        *,
        group: str = DEFAULT_GROUP,
        rescan_seconds: float = 15.0,
        lease_seconds: float = 60.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        batch: int = 200,
        concurrency: int = 1,
        kinds: Iterable[str] | None = None,
        tenants: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        collection_name(group)
        self.group = group
        service = mongo.service_name() or "service"
        self.name = name or f"{service}-timers-{group}"
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.rescan_seconds = rescan_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.batch = batch
        self.concurrency = max(1, concurrency)
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.tenants = tuple(tenants) if tenants is not None else None
        self.principal = Principal(sub=f"service:{service}-timers", role="service", tenants=("*",))
        self.heap = DueHeap()
        self._wake = threading.Condition()
        self._woken = False
        self._added_lock = threading.Lock()
        self._added: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------ feeding the heap

    def wants(self, group: str, tenant: str, kind: str) -> bool:
        if group != self.group:
            return False
        if self.tenants is not None and tenant not in self.tenants:
            return False
        return self.kinds is None or kind in self.kinds

    def offer(self, group: str, tenant: str, key: str, kind: str, due: datetime) -> None:
        """A timer was scheduled in this process: look at it at its time."""
        if not self.wants(group, tenant, kind):
            return
        with self._added_lock:
            self._added.setdefault(tenant, {})[key] = time.monotonic()
        self.heap.put(tenant, key, due)
        self._notify()

    def _notify(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    def rescan(self) -> int:
        """Read every tenant's timers of this group into the heap; returns how many were found."""
        found = 0
        for tenant in self._tenant_list():
            try:
                found += self.rescan_tenant(tenant)
            except Exception:
                log.exception("timer rescan of tenant %s (%s) failed", tenant, self.group)
        return found

    def rescan_tenant(self, tenant: str) -> int:
        since = time.monotonic()
        docs = _collection(self.group, tenant).find({}, {"_id": 1, "next_at": 1, "kind": 1})
        entries = {
            str(d["_id"]): _as_utc(d["next_at"])
            for d in docs
            if d.get("next_at") is not None and (self.kinds is None or d.get("kind") in self.kinds)
        }
        with self._added_lock:
            added = self._added.pop(tenant, {})
            # Keep the puts made during the scan for the next rescan's comparison too.
            recent = {k: t for k, t in added.items() if t >= since}
            if recent:
                self._added[tenant] = recent
        self.heap.replace_tenant(tenant, entries, since, added)
        TIMERS_PENDING.labels(self.group, tenant).set(len(entries))
        return len(entries)

    def _tenant_list(self) -> tuple[str, ...]:
        return self.tenants if self.tenants is not None else tenant_slugs()

    def _rescan_step(self) -> float:
        """Seconds between the rescans of two tenants (each tenant once per rescan_seconds)."""
        return self.rescan_seconds / max(1, len(self._tenant_list()))

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        with _workers_lock:
            _workers.add(self)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.name) if self.concurrency > 1 else None
        log.info("timer worker %s (%s) started; rescans every %.0f s", self.name, self.owner, self.rescan_seconds)
        try:
            # At start every tenant at once (what came due while no worker ran fires now); then one tenant
            # at a time, round the tenants once per rescan_seconds: a rescan reads every timer of a tenant,
            # and all tenants in one go made a burst of database work that held up everything else.
            self.rescan()
            turn = 0
            next_rescan = time.monotonic() + self._rescan_step()
            while not stop.is_set():
                if time.monotonic() >= next_rescan:
                    tenants = self._tenant_list()
                    if tenants:
                        tenant = tenants[turn % len(tenants)]
                        turn += 1
                        try:
                            self.rescan_tenant(tenant)
                        except Exception:
                            log.exception("timer rescan of tenant %s (%s) failed", tenant, self.group)
                    next_rescan = time.monotonic() + self._rescan_step()
                self.fire_due(pool)
                self._sleep(stop, next_rescan)
        finally:
            with _workers_lock:
                _workers.discard(self)
            if pool is not None:
                pool.shutdown(wait=True)

    def wake(self) -> None:
        """Cut the worker's wait short (a shutdown: `stop` is already set; see GrpcHost.stop)."""
        self._notify()

    def _sleep(self, stop: threading.Event, next_rescan: float) -> None:
        """Until the next entry is due, the next rescan, a new schedule() or stop (which wakes it: wake()). It
        sleeps the whole wait: looking at `stop` four times a second cost each timer worker about 0.05 % of a
        core at rest (issue 20)."""
        while not stop.is_set():
            nxt = self.heap.next_at()
            wait = next_rescan - time.monotonic()
            if nxt is not None:
                wait = min(wait, (nxt - datetime.now(UTC)).total_seconds())
            if wait <= 0:
                return
            with self._wake:
                if self._woken:
                    self._woken = False
                    return
                self._wake.wait(wait)
                if self._woken:
                    self._woken = False
                    return

    def fire_due(self, pool: ThreadPoolExecutor | None = None) -> int:
        """Fire what is due now; returns how many handlers succeeded."""
        fired = 0
        while True:
            due = self.heap.pop_due(datetime.now(UTC), self.batch)
            if not due:
                return fired
            if pool is None:
                fired += sum(self._check_and_fire(tenant, key) for tenant, key in due)
            else:
                fired += sum(f.result() for f in [pool.submit(self._check_and_fire, t, k) for t, k in due])

    def poll_once(self) -> int:
        """One rescan and one round of firing (tests, tools)."""
        self.rescan()
        return self.fire_due()

    # ------------------------------------------------------------ one timer

    def _check_and_fire(self, tenant: str, key: str) -> bool:
        try:
            with context.bound(tenant=tenant, principal=self.principal, trace=f"{self.name}"):
                coll = _collection(self.group, tenant)
                seen = coll.find_one({"_id": key}, {"next_at": 1, "generation": 1, "attempts": 1, "kind": 1})
                if seen is None:
                    return False  # fired, cancelled
                next_at = _as_utc(seen["next_at"])
                if next_at > datetime.now(UTC):
                    self.heap.put(tenant, key, next_at)  # moved later (here or by another process)
                    return False
                if self.kinds is not None and seen.get("kind") not in self.kinds:
                    return False
                if _handlers.get(str(seen.get("kind"))) is None:
                    log.warning(
                        "timer %s (tenant %s): no handler for kind %r here; left due", key, tenant, seen.get("kind")
                    )
                    return False
                claim = self._claim(tenant, firing_id(key, str(seen.get("generation") or ""), seen.get("attempts")))
                if claim is None:
                    self._watch(tenant, key)  # another worker fires it; look again after its lease
                    return False
                try:
                    # Read again under the claim: it may have fired, moved or been cancelled meanwhile.
                    doc = coll.find_one({"_id": key})
                    if (
                        doc is None
                        or doc.get("generation") != seen.get("generation")
                        or int(doc.get("attempts") or 0) != int(seen.get("attempts") or 0)
                    ):
                        if doc is not None:
                            self.heap.put(tenant, key, _as_utc(doc["next_at"]))
                        return False
                    return self._fire(coll, tenant, doc)
                finally:
                    _firings(tenant).delete_one({"_id": claim})
        except Exception:
            log.exception("timer %s of tenant %s: firing failed; looking again later", key, tenant)
            self._watch(tenant, key)
            return False

    def _watch(self, tenant: str, key: str) -> None:
        """Look at this timer again once a lease would have run out (the other firing's or a failed one)."""
        self.heap.put(tenant, key, datetime.now(UTC) + self.lease + timedelta(seconds=1))

    def _claim(self, tenant: str, base: str) -> str | None:
        """Insert the firing's lease (atomic by _id); a lease older than ``lease_seconds`` was left by a
        dead worker and is taken over under the next name. Returns the lease id won, or None."""
        firings = _firings(tenant)
        now = datetime.now(UTC)
        for n in range(MAX_TAKEOVERS):
            cid = claim_name(base, n)
            try:
                firings.insert_one({"_id": cid, "at": now, "owner": self.owner})
                return cid
            except pymongo.errors.DuplicateKeyError:
                held = firings.find_one({"_id": cid})
                if held is None:
                    return None  # finished just now
                if now - _as_utc(held["at"]) < self.lease:
                    return None
                log.warning(
                    "timer firing %s: taking over the lease of %s (since %s)", base, held.get("owner"), held["at"]
                )
        return None

    def _fire(self, coll: Collection[Any], tenant: str, doc: dict[str, Any]) -> bool:
        timer = _timer_of(doc, tenant)
        fn = _handlers.get(timer.kind, (None, ""))[0]
        started = datetime.now(UTC)
        if timer.attempt == 1:
            TIMER_LATENESS.labels(timer.kind).observe(max(0.0, (started - timer.due_at).total_seconds()))
        try:
            if fn is None:
                raise LookupError(f"no handler registered for timer kind {timer.kind!r} in this process")
            with context.bound(request_id=f"timer:{timer.key}:{timer.generation[:8]}:{timer.attempt}"):
                fn(timer)
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()[:2000]
            delay = backoff_seconds(timer.attempt, base=self.backoff_base, cap=self.backoff_cap, jitter=0.1)
            next_at = datetime.now(UTC) + timedelta(seconds=delay)
            TIMERS_FAILED.labels(tenant, timer.kind).inc()
            log.warning(
                "timer %s (%s, tenant %s) failed on attempt %d, retrying in %.1f s: %s",
                timer.key,
                timer.kind,
                tenant,
                timer.attempt,
                delay,
                error,
            )
            # Conditional on the generation: a timer scheduled again meanwhile keeps its new due time.
            result = coll.update_one(
                {"_id": timer.key, "generation": timer.generation},
                {"$set": {"next_at": next_at, "last_error": error}, "$inc": {"attempts": 1}},
            )
            if result.matched_count:
                self.heap.put(tenant, timer.key, next_at)
            return False
        elapsed = datetime.now(UTC) - started
        if elapsed > self.lease:
            log.warning("timer %s: handler took %s, longer than the lease %s", timer.key, elapsed, self.lease)
        # Scheduled again while it ran (a new generation): it stays, for its new due time.
        coll.delete_one({"_id": timer.key, "generation": timer.generation})
        TIMERS_FIRED.labels(tenant, timer.kind).inc()
        return True


def build_timer_worker(settings: Settings) -> TimerWorker:
    """The default group's worker (deadlines, reminders, escalations) for run_service(workers=[...])."""
    return TimerWorker(
        group=DEFAULT_GROUP,
        rescan_seconds=settings.timer_rescan_seconds,
        lease_seconds=settings.timer_lease_seconds,
        backoff_base=settings.timer_backoff_base_seconds,
        backoff_cap=settings.timer_backoff_max_seconds,
    )


__all__ = [
    "DEFAULT_GROUP",
    "DueHeap",
    "Timer",
    "TimerWorker",
    "backoff_seconds",
    "build_timer_worker",
    "cancel",
    "claim_name",
    "collection_name",
    "firing_id",
    "get",
    "group_of",
    "handler",
    "registered_kinds",
    "schedule",
]
