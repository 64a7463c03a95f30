"""Group commit: concurrent inserts into one collection share one insert_many.

Each insert command costs the local FerretDB (on PostgreSQL) a transaction of its own, and that per-command
cost, not the bytes, is most of an insert's price: one insert_many of 8 documents costs about what two
insert_one calls cost (`bench/intake_throughput.py` prints both rates). Request threads that insert
into the same collection at the same moment therefore go in one command:

- the first thread to arrive while no write is under way leads: it takes everything queued (up to
  BATCH_MAX) and writes it with insert_many(ordered=False);
- threads arriving meanwhile queue; when the leader's write is over, the oldest queued thread leads
  the next batch. Nobody waits for a timer: at low load every batch is one document (written with
  insert_one) and latency is unchanged; under load batches grow by themselves.

Every caller gets its own document's outcome, as if it had called insert_one: the inserted _id, or
the error of its document (DuplicateKeyError for a taken _id — an insert with a unique _id stays the
atomic claim it is everywhere), or the command's error if the whole write failed. With ordered=False
one document's error does not stop the others.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pymongo.errors
from prometheus_client import Histogram
from pymongo.collection import Collection

BATCH_MAX = 200

BATCH_SIZE = Histogram(
    "hongling_group_commit_batch_documents",
    "Documents written by one group-commit insert (concurrent inserts into one collection share it)",
    ["collection"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


@dataclass
class _Item:
    doc: dict[str, Any]
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    error: BaseException | None = None


@dataclass
class _Group:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: list[_Item] = field(default_factory=list)
    busy: bool = False


_GROUPS: dict[tuple[str, str], _Group] = {}
_GROUPS_LOCK = threading.Lock()


def _group(collection: Collection[Any]) -> _Group:
    key = (collection.database.name, collection.name)
    group = _GROUPS.get(key)
    if group is None:
        with _GROUPS_LOCK:
            group = _GROUPS.setdefault(key, _Group())
    return group


def insert(collection: Collection[Any], doc: dict[str, Any]) -> Any:
    """Insert one document (it must carry its _id), sharing the command with concurrent inserts into the
    same collection; returns the _id or raises what insert_one would have raised for this document."""
    error = insert_all(collection, [doc])[0]
    if error is not None:
        raise error
    return doc["_id"]


def insert_all(collection: Collection[Any], docs: list[dict[str, Any]]) -> list[BaseException | None]:
    """Insert several documents (each with its _id) in one go with whatever else is queued for the
    collection; returns each document's error (None: inserted), in order. They are queued together, so
    they share a command unless the queue holds more than BATCH_MAX."""
    if not docs:
        return []
    group = _group(collection)
    items = [_Item(doc) for doc in docs]
    with group.lock:
        group.queue.extend(items)
        if not group.busy:
            group.busy = items[0].lead = True
    for item in items:
        _settle(collection, group, item)
    return [item.error for item in items]


def _settle(collection: Collection[Any], group: _Group, item: _Item) -> None:
    """Wait until the item is written; lead the next batch when it is its turn (the oldest queued)."""
    if not item.lead:
        item.wake.wait()
    if item.done:
        return
    with group.lock:  # this thread leads the next batch (its document is the oldest in it)
        batch = group.queue[:BATCH_MAX]
        del group.queue[:BATCH_MAX]
    try:
        _write(collection, batch)
    finally:
        with group.lock:
            if group.queue:
                nxt = group.queue[0]
                nxt.lead = True
                nxt.wake.set()
            else:
                group.busy = False


def _write(collection: Collection[Any], batch: list[_Item]) -> None:
    BATCH_SIZE.labels(collection.name).observe(len(batch))
    try:
        if len(batch) == 1:
            collection.insert_one(batch[0].doc)
        else:
            collection.insert_many([i.doc for i in batch], ordered=False)
    except pymongo.errors.BulkWriteError as exc:
        for err in exc.details.get("writeErrors", []):
            item = batch[err["index"]]
            if err.get("code") == 11000:
                item.error = pymongo.errors.DuplicateKeyError(err.get("errmsg", "duplicate key"), 11000, err)
            else:
                item.error = pymongo.errors.WriteError(err.get("errmsg", "write failed"), err.get("code"), err)
    except BaseException as exc:  # the whole command failed: every document in it failed
        for item in batch:
            item.error = exc
    finally:
        for item in batch:
            item.done = True
            if not item.lead:
                item.wake.set()
