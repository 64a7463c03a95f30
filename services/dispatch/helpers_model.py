"""Dispatch's read model of helpers for ranking: current load and past performance, per tenant.

Fed by the consumer group "dispatch-matching" (services.dispatch.matching_consumer) from dispatch's own
events (hongling.dispatch.v1) and evaluation's (hongling.evaluation.v1):

- TaskAssigned / TaskClaimed: the task counts as open for the assignee (claimant) — load +1; an assignment
  to someone else first releases the previous assignee;
- TaskStatusChanged: done / verified close the task for everyone on it (load -1, one finished task, on
  time or not), cancelled closes it without counting it; back to open or declined from assigned releases
  the assignee (load -1); rejected / reopened opens it again for everyone on it (load +1, not counted twice
  as finished);
- a task finished by its completion deadline (the task's own complete_by, read when it is finished) and
  never reported missed (DeadlineMissed, completion) counts as on time;
- IssueRated: the rating goes to everyone who worked the task.

Storage (per tenant, hl_dispatch_<tenant>), every read and write by _id:

- matching_helpers, _id "<kind>:<id>" (kinds as org names them: person, team, unit): the counters and the
  markers that make each change happen once — open.<task> (present while the task is open for the helper)
  and rated.<task>_<n> (the task's n-th rating, applied). Every change is the document's next version `v`
  written through the unit of work (services/common/unitofwork.py: read, check the marker, claim
  "helper:<key>:<v>" by insert, replace), so a replayed event, a redelivery or a retry after a crash changes
  nothing a second time, and two consumers changing one helper at once (two tasks of one helper, two
  processes) never lose a count: a conditional update or `$inc` is not isolated on FerretDB v1.
- matching_tasks, _id task id: who works the task (workers, assignee), its status, deadline and ratings —
  what the events that do not name the helper (status changes, ratings) need. Handlers first bring the
  helpers' documents up to date, then write the task's: a crash in between is repaired by the retry.

- matching_changes, _id the generation zero-padded, and matching_state, _id "generation": after every change of
  a helper's record its new counters are logged under the next free generation (an insert by _id: of two
  writers exactly one gets a number) and matching_state is moved up to it, so that the other processes catch
  up by reading just those entries (by _id). matching_state may lag a moment behind the log (moving it is not
  isolated either), so readers also look CHANGES_PROBE entries past it.

Ranking reads the records from memory (RecordCache: every record of the tenant, loaded once, caught up in the
background from the change log; this process's own changes written through at once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import mongoengine as me
import pymongo.errors
from pymongo.collection import Collection

from services.common import context, unitofwork
from services.common.context import require_tenant
from services.common.mongo import TenantDocument
from services.common.unitofwork import Conflicts
from services.dispatch.documents import TaskDoc
from services.dispatch.matching import NO_RECORD, HelperRecord, canonical_kind, record_key

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0  # how often a process asks whether another one changed helper records
MAX_AGE_SECONDS = 60.0  # a safety net: reload at least this often even if no change was seen
DELTA_MAX = 500  # changes behind: catch up from the log up to this many, reload whole beyond
GAP_SECONDS = 5.0  # a change missing from the log this long: reload whole
CHANGES_KEPT = 5000  # entries kept in the change log
CHANGES_PROBE = 8  # change-log entries looked for past matching_state's generation (it may lag behind the log)
CLOSED = frozenset({"done", "verified", "cancelled"})
COMPLETED = frozenset({"done", "verified"})
RELEASED = frozenset({"open", "declined", "unassigned"})  # from assigned: the assignee is off the task
REOPENED = frozenset({"rejected", "reopened"})
COUNTERS = ("load", "done", "on_time", "rating_sum", "rating_n")
REOPEN_MARK = "reopened"


class HelperRecordDoc(TenantDocument):
    """Schema of matching_helpers (each change a new version `v`, see the module doc)."""

    meta: ClassVar[dict[str, Any]] = {"collection": "matching_helpers"}
    VERSION_FIELD: ClassVar[str] = "v"

    id = me.StringField(primary_key=True)  # "<kind>:<id>"
    v = me.IntField(default=0)  # incremented by every change
    load = me.IntField(default=0)
    done = me.IntField(default=0)
    on_time = me.IntField(default=0)
    rating_sum = me.FloatField(default=0.0)
    rating_n = me.IntField(default=0)
    open = me.DictField()  # t<task id> -> when it was opened for the helper (or REOPEN_MARK)
    rated = me.DictField()  # t<task id>_<n> -> stars
    updated_at = me.DateTimeField()


class TaskStateDoc(TenantDocument):
    """Schema of matching_tasks: what the read model knows of a task."""

    meta: ClassVar[dict[str, Any]] = {"collection": "matching_tasks"}

    id = me.StringField(primary_key=True)  # the task id
    issue_id = me.StringField()
    status = me.StringField()
    status_at = me.DateTimeField()
    assignee = me.StringField()  # record key of the current assignee ("" when none)
    workers = me.DictField()  # record key -> when they came on the task
    released = me.DictField()  # record key -> when they came off it (assignment declined or moved on)
    complete_by = me.DateTimeField()  # when set (deadline_set), it wins over the task's own
    missed = me.BooleanField()
    ratings = me.DictField()  # r<n> -> stars


class MatchingStateDoc(TenantDocument):
    """matching_state: the tenant's generation of helper records (_id "generation", bumped on every change)."""

    meta: ClassVar[dict[str, Any]] = {"collection": "matching_state"}

    id = me.StringField(primary_key=True)
    n = me.IntField(default=0)


class MatchingChangeDoc(TenantDocument):
    """matching_changes: the change log, _id the generation a change moved to (zero-padded); the last
    CHANGES_KEPT are kept. Each entry holds the helper's counters and version after the change."""

    meta: ClassVar[dict[str, Any]] = {"collection": "matching_changes"}

    id = me.StringField(primary_key=True)
    key = me.StringField(required=True)
    v = me.IntField()
    load = me.IntField()
    done = me.IntField()
    on_time = me.IntField()
    rating_sum = me.FloatField()
    rating_n = me.IntField()


def _helpers() -> Collection[Any]:
    return HelperRecordDoc._get_collection()


def _tasks() -> Collection[Any]:
    return TaskStateDoc._get_collection()


def _state() -> Collection[Any]:
    return MatchingStateDoc._get_collection()


def _changes() -> Collection[Any]:
    return MatchingChangeDoc._get_collection()


def _field(value: str) -> str:
    """A task id or record key as a document field name (no dots, no leading $)."""
    return value.replace(".", "\uff0e").replace("$", "\uff04")


def _record(doc: Mapping[str, Any] | None) -> HelperRecord:
    if not doc:
        return NO_RECORD
    return HelperRecord(
        load=max(0, int(doc.get("load") or 0)),
        done=int(doc.get("done") or 0),
        on_time=int(doc.get("on_time") or 0),
        rating_sum=float(doc.get("rating_sum") or 0.0),
        rating_n=int(doc.get("rating_n") or 0),
    )


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# ---------------------------------------------------------------- the cache


@dataclass
class _Snapshot:
    records: dict[str, HelperRecord]
    versions: dict[str, int]  # key -> the document's v when read
    generation: int
    loaded_at: float  # monotonic, when its load began
    checked_at: float  # monotonic, when it was last brought up to the generation
    gap_since: float | None = None  # monotonic, since when a change of the log is missing
    touched: dict[str, float] = field(default_factory=dict)  # key -> monotonic, when last written through


class RecordCache:
    """Every helper record of a tenant in memory, so ranking never waits on the database.

    The first ranking of a tenant in the process loads them all (one read of matching_helpers; a helper without a
    document has NO_RECORD). This process's own changes are written through at once. A ranking that finds the
    snapshot brought up to date more than `check_seconds` ago has it caught up in the background: the tenant's
    generation is read (one document) and, when it moved, the changes since are read from the change log by their
    _ids (one $in query of the few changes in between) and applied, each only if newer than what is held
    (the records carry a version). A snapshot too far behind (more than DELTA_MAX changes), older than `max_age`,
    or missing a change for more than GAP_SECONDS (a writer that stopped between the generation and its log
    entry) is reloaded whole. Another process's change shows within about check_seconds.
    """

    def __init__(self, check_seconds: float = CHECK_SECONDS, max_age: float = MAX_AGE_SECONDS) -> None:
        self.check_seconds = check_seconds
        self.max_age = max_age
        self._lock = threading.Lock()
        self._snapshots: dict[str, _Snapshot] = {}
        self._refreshing: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matching-records")

    def get_many(self, keys: Iterable[str]) -> dict[str, HelperRecord]:
        tenant = require_tenant()
        snap = self._snapshots.get(tenant)
        if snap is None:
            snap = self._load(tenant)
        elif time.monotonic() - snap.checked_at >= self.check_seconds:
            self._refresh_soon(tenant)
        records = snap.records
        return {k: records.get(k, NO_RECORD) for k in keys}

    def put(self, key: str, record: HelperRecord, version: int) -> None:
        """A record as read or written now (kept only if newer than the one held)."""
        snap = self._snapshots.get(require_tenant())
        if snap is not None:
            with self._lock:
                self._apply(snap, key, record, version)

    @staticmethod
    def _apply(snap: _Snapshot, key: str, record: HelperRecord, version: int) -> None:
        if version > snap.versions.get(key, -1):
            snap.records[key] = record
            snap.versions[key] = version
            snap.touched[key] = time.monotonic()

    def _load(self, tenant: str) -> _Snapshot:
        started = time.monotonic()
        with context.bound(tenant=tenant):
            generation = _generation()
            docs = list(_helpers().find({}, {**dict.fromkeys(COUNTERS, 1), "v": 1}))
        fresh = _Snapshot(
            {d["_id"]: _record(d) for d in docs},
            {d["_id"]: int(d.get("v") or 0) for d in docs},
            generation,
            started,
            time.monotonic(),
        )
        with self._lock:
            old = self._snapshots.get(tenant)
            if old is not None:  # changed while this load was reading: keep what is newer
                for key, at in old.touched.items():
                    if at >= started:
                        self._apply(fresh, key, old.records[key], old.versions[key])
            self._snapshots[tenant] = fresh
        return fresh

    def _refresh_soon(self, tenant: str) -> None:
        with self._lock:
            if tenant in self._refreshing:
                return
            self._refreshing.add(tenant)
        self._pool.submit(self._refresh, tenant)

    def _refresh(self, tenant: str) -> None:
        try:
            with context.bound(tenant=tenant):
                self._catch_up(tenant)
        except Exception:
            log.warning(
                "helper records of %s could not be refreshed; ranking uses the last ones", tenant, exc_info=True
            )
        finally:
            with self._lock:
                self._refreshing.discard(tenant)

    def _catch_up(self, tenant: str) -> None:
        snap = self._snapshots[tenant]
        generation = _generation()
        now = time.monotonic()
        behind = generation - snap.generation
        if behind < 0 or behind > DELTA_MAX or now - snap.loaded_at >= self.max_age:
            self._load(tenant)
            return
        # Also the few entries past the generation: writers log first and move matching_state after.
        wanted = [_change_id(n) for n in range(snap.generation + 1, generation + CHANGES_PROBE + 1)]
        found = {c["_id"]: c for c in _changes().find({"_id": {"$in": wanted}})}
        with self._lock:
            for c in found.values():
                self._apply(snap, c["key"], _record(c), int(c.get("v") or 0))
        reached = snap.generation
        while _change_id(reached + 1) in found:
            reached += 1
        if reached < generation:  # a writer between its generation and its log entry (or stopped there)
            snap.gap_since = snap.gap_since or now
            if now - snap.gap_since >= GAP_SECONDS:
                self._load(tenant)
            return
        snap.generation = reached
        snap.gap_since = None
        snap.checked_at = now

    def clear(self) -> None:
        with self._lock:
            self._snapshots.clear()


CACHE = RecordCache()


def _change_id(n: int) -> str:
    return f"{n:012d}"


def _generation() -> int:
    doc = _state().find_one({"_id": "generation"})
    return int(doc.get("n") or 0) if doc else 0


def log_change(key: str, doc: Mapping[str, Any]) -> None:
    """Publish a helper document's new counters to the other processes: a log entry under the next free
    generation (inserted by _id, so two writers never share one), then matching_state moved up to it."""
    entry = {"key": key, "v": int(doc.get("v") or 0), **{c: doc.get(c) for c in COUNTERS}}
    changes = _changes()
    n = _generation() + 1
    while True:
        try:
            changes.insert_one({"_id": _change_id(n), **entry})
            break
        except pymongo.errors.DuplicateKeyError:
            n += 1  # taken by a writer that has not moved matching_state yet
    # At n or past it already: the upsert found the document and tried to insert a second one.
    with contextlib.suppress(pymongo.errors.DuplicateKeyError):
        _state().update_one({"_id": "generation", "n": {"$lt": n}}, {"$set": {"n": n}}, upsert=True)
    if n > CHANGES_KEPT:
        changes.delete_one({"_id": _change_id(n - CHANGES_KEPT)})


def records_for(keys: Iterable[str]) -> dict[str, HelperRecord]:
    """The records of these helpers (record keys) in the current tenant; a helper without one has NO_RECORD."""
    return CACHE.get_many(keys)


def record_of(kind: str, helper_id: str) -> HelperRecord:
    """One helper's record, read now (not from the cache)."""
    return _record(_helpers().find_one({"_id": record_key(kind, helper_id)}, dict.fromkeys(COUNTERS, 1)))


# ---------------------------------------------------------------- single-document changes of a helper


HELPER_CONFLICTS = Conflicts(
    stale=lambda key, version, expected: RuntimeError(f"helper record {key} is at {version}, not {expected}"),
    raced=lambda key: RuntimeError(f"helper record {key} was changed at the same moment"),
    busy=lambda key: RuntimeError(f"helper record {key} kept changing under this update"),
)


def _holds(doc: HelperRecordDoc, flt: Mapping[str, Any]) -> bool:
    """Whether the document meets the condition ({"open.t<task>": {"$exists": bool}} or a value)."""
    for path, cond in flt.items():
        top, _, sub = path.partition(".")
        value = (getattr(doc, top) or {}).get(sub)
        if isinstance(cond, dict):
            if (value is not None) != bool(cond["$exists"]):
                return False
        elif value != cond:
            return False
    return True


def _apply_update(doc: HelperRecordDoc, update: Mapping[str, Any]) -> None:
    """$set / $unset of markers ("open.t<task>", "rated.t<task>_<n>"), $inc of counters, in memory."""
    for path, value in (update.get("$set") or {}).items():
        top, _, sub = path.partition(".")
        getattr(doc, top)[sub] = value
    for path in update.get("$unset") or {}:
        top, _, sub = path.partition(".")
        getattr(doc, top).pop(sub, None)
    for name, n in (update.get("$inc") or {}).items():
        setattr(doc, name, (getattr(doc, name) or 0) + n)


def _change(key: str, flt: dict[str, Any], update: dict[str, Any], *, upsert: bool) -> bool:
    """One change of a helper's document, once: the condition checked on the document as read and the change
    written as its next version through the unit of work; False when the condition did not hold (already
    done). `upsert`: a helper without a document starts from zero counters."""

    def mutate(doc: HelperRecordDoc, _now: datetime) -> bool:
        if not _holds(doc, flt):
            return False
        _apply_update(doc, update)
        return True

    done = unitofwork.change(
        unitofwork.MONGO,
        HelperRecordDoc,
        f"helper:{key}",
        key,
        mutate,
        conflicts=HELPER_CONFLICTS,
        now=lambda: datetime.now(UTC),
        fresh=(lambda: HelperRecordDoc(id=key, v=0, open={}, rated={})) if upsert else None,
    )
    if not done.written or done.doc is None:
        return False
    son = done.doc.to_mongo().to_dict()
    log_change(key, son)
    CACHE.put(key, _record(son), int(son.get("v") or 0))
    return True


def open_task(key: str, task_id: str, at: datetime, *, mark: str | None = None) -> bool:
    """The task is open for the helper: load +1, once."""
    slot = f"open.t{_field(task_id)}"
    return _change(
        key, {slot: {"$exists": False}}, {"$set": {slot: mark or at.isoformat()}, "$inc": {"load": 1}}, upsert=True
    )


def close_task(key: str, task_id: str, *, completed: bool, on_time: bool) -> bool:
    """The task is no longer open for the helper: load -1, and one more finished (on time) task when completed.

    A task opened again after it was finished (rejected, reopened) is not counted as finished twice.
    """
    slot = f"open.t{_field(task_id)}"
    if completed:
        # Reopened: off the list without a second count; otherwise counted now.
        if _change(key, {slot: REOPEN_MARK}, {"$unset": {slot: ""}, "$inc": {"load": -1}}, upsert=False):
            return True
        inc = {"load": -1, "done": 1, "on_time": 1 if on_time else 0}
        return _change(key, {slot: {"$exists": True}}, {"$unset": {slot: ""}, "$inc": inc}, upsert=False)
    return _change(key, {slot: {"$exists": True}}, {"$unset": {slot: ""}, "$inc": {"load": -1}}, upsert=False)


def add_rating(key: str, task_id: str, rating: str, stars: int) -> bool:
    """One rating of a task the helper worked: counted once."""
    slot = f"rated.t{_field(task_id)}_{_field(rating)}"
    return _change(
        key,
        {slot: {"$exists": False}},
        {"$set": {slot: stars}, "$inc": {"rating_sum": stars, "rating_n": 1}},
        upsert=True,
    )


# ---------------------------------------------------------------- event handlers' logic


def _task(task_id: str) -> dict[str, Any]:
    return _tasks().find_one({"_id": task_id}) or {"_id": task_id}


def _save_task(task_id: str, sets: dict[str, Any], unsets: Iterable[str] = ()) -> None:
    update: dict[str, Any] = {"$set": sets}
    gone = {u: "" for u in unsets if u not in sets}
    if gone:
        update["$unset"] = gone
    _tasks().update_one({"_id": task_id}, update, upsert=True)


def _deadline_of(task_id: str) -> datetime | None:
    """The task's completion deadline as the dispatch core keeps it (moved forward by an upgrade)."""
    doc = TaskDoc._get_collection().find_one({"_id": task_id}, {"complete_by": 1})
    return _aware(doc.get("complete_by")) if doc else None


def _stale(task: Mapping[str, Any], at: datetime) -> bool:
    """An event older than the task's last status change (a late redelivery) changes no one's load."""
    last = _aware(task.get("status_at"))
    return last is not None and at < last


def task_taken(task_id: str, issue_id: str, kind: str, helper_id: str, at: datetime, *, replaces: bool) -> None:
    """A helper came on a task: assigned (replaces the previous assignee) or claimed a place (does not)."""
    key = record_key(kind, helper_id)
    task = _task(task_id)
    if task.get("status") in CLOSED and _stale(task, at):
        return
    released_at = _aware((task.get("released") or {}).get(_field(key)))
    if released_at is not None and at <= released_at:
        return  # came off it after this assignment: a redelivered, older event
    previous = task.get("assignee") or ""
    unsets: list[str] = []
    if replaces and previous and previous != key:
        close_task(previous, task_id, completed=False, on_time=False)
        unsets.append(f"workers.{_field(previous)}")
    open_task(key, task_id, at)
    for rating, stars in (task.get("ratings") or {}).items():
        add_rating(key, task_id, rating, int(stars))
    sets: dict[str, Any] = {f"workers.{_field(key)}": at, "issue_id": issue_id or task.get("issue_id") or ""}
    if replaces:
        sets["assignee"] = key
        if previous and previous != key:
            sets[f"released.{_field(previous)}"] = at
    _save_task(task_id, sets, unsets)


def status_changed(task_id: str, issue_id: str, from_status: str, to_status: str, at: datetime) -> None:
    task = _task(task_id)
    if _stale(task, at):
        return
    workers = [k for k in (task.get("workers") or {}) if k]
    sets: dict[str, Any] = {"status": to_status, "status_at": at}
    if issue_id:
        sets["issue_id"] = issue_id
    unsets: list[str] = []
    if to_status in CLOSED:
        completed = to_status in COMPLETED
        due = _aware(task.get("complete_by")) or _deadline_of(task_id)
        on_time = not task.get("missed") and (due is None or at <= due)
        for key in workers:
            close_task(_unfield(key), task_id, completed=completed, on_time=on_time)
    elif to_status in RELEASED and from_status in ("assigned", "accepted", "") and task.get("assignee"):
        assignee = task["assignee"]
        close_task(assignee, task_id, completed=False, on_time=False)
        sets["assignee"] = ""
        sets[f"released.{_field(assignee)}"] = at
        unsets.append(f"workers.{_field(assignee)}")
    elif to_status in REOPENED:
        for key in workers:
            open_task(_unfield(key), task_id, at, mark=REOPEN_MARK)
    _save_task(task_id, sets, unsets)


def _unfield(value: str) -> str:
    return value.replace("\uff0e", ".").replace("\uff04", "$")


def deadline_set(task_id: str, complete_by: datetime) -> None:
    _save_task(task_id, {"complete_by": complete_by})


def deadline_missed(task_id: str) -> None:
    _save_task(task_id, {"missed": True})


def rated(task_id: str, issue_id: str, rating: str, stars: int) -> None:
    task = _task(task_id)
    for key in task.get("workers") or {}:
        add_rating(_unfield(key), task_id, rating, stars)
    sets: dict[str, Any] = {f"ratings.{_field(rating)}": stars}
    if issue_id and not task.get("issue_id"):
        sets["issue_id"] = issue_id
    _save_task(task_id, sets)


__all__ = [
    "CACHE",
    "HelperRecordDoc",
    "MatchingChangeDoc",
    "MatchingStateDoc",
    "RecordCache",
    "TaskStateDoc",
    "canonical_kind",
    "deadline_missed",
    "deadline_set",
    "log_change",
    "rated",
    "record_of",
    "records_for",
    "status_changed",
    "task_taken",
]
