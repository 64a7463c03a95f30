"""One write path for an aggregate's next version: the unit of work (cosmicpython, chapter 6).

Every change to a stored aggregate after its creation — an issue, a task, a call, an org record, a
tenant's rules — goes the same way:

1. load it by _id (`UnitOfWork.load`, or `load_fields` for a small projection);
2. mutate it in memory (the domain decides; events are recorded on the document, `OutboxDocument.record`);
3. claim its next version: insert {_id: "<record>:<version>"} into the per-tenant `version_claims`;
4. only the claim's winner writes that version: the new state with its pending events in one document
   write (a whole replace, or a targeted update for `change_fields`), after the outbox marker that
   leads the relay to them (services/common/outbox.py);
5. a loser re-reads and decides again on the new state (event-driven callers, for a few seconds), or
   gets its service's ABORTED (a caller that sent the version it read: `expected_version`).

Why the claim. FerretDB v1 runs an update, `$inc`, `findAndModify` (mongoengine's `modify()`) as an
unisolated read-modify-write: two writers of one version can both "succeed" and one change is lost. An
insert with a unique _id is atomic on FerretDB and MongoDB alike, so the claim decides the winner and
nothing relies on a conditional update's isolation (the write's own version condition is only a second
guard). A claim whose writer died before writing (older than CLAIM_STALE) is taken over under the next
name ("…~1", "…~2"), so one crash cannot freeze a record; a claim whose write a unique index refused is
given back at once, nothing having been written.

`UnitOfWork` is the interface handlers take; `MongoUnitOfWork` (the default, `MONGO`) is the real one;
tests/unit/fake_unitofwork.py keeps aggregates in memory for handler unit tests.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

import mongoengine as me
import pymongo.errors

from services.common.context import require_tenant
from services.common.mongo import TenantDocument

CLAIM_STALE = timedelta(seconds=30)
CLAIM_TAKEOVERS = 20
CHANGE_DEADLINE_SECONDS = 5.0
FIRST_DELAY = 0.02
MAX_DELAY = 0.3
DOC_POLL_SECONDS = 0.1

D = TypeVar("D", bound=Any)


class VersionClaimDoc(TenantDocument):
    """_id "<record>:<version>" (e.g. "issue:<id>:3", "person:<id>:2"): inserted before that version is written."""

    meta: ClassVar[dict[str, Any]] = {"collection": "version_claims"}

    id = me.StringField(primary_key=True)
    at = me.DateTimeField(required=True)


def claim_version(claim_id: str) -> str | None:
    """Win the right to write this version: the claim's _id (the name, or a takeover "…~n"), or None if
    another (live) writer has it."""
    now = datetime.now(UTC)
    for n in range(CLAIM_TAKEOVERS):
        cid = claim_id if n == 0 else f"{claim_id}~{n}"
        try:
            VersionClaimDoc(id=cid, at=now).save(force_insert=True)
            return cid
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            held = VersionClaimDoc.objects(id=cid).first()
            if held is None:
                return None
            held_at = held.at if held.at.tzinfo else held.at.replace(tzinfo=UTC)
            if now - held_at < CLAIM_STALE:
                return None
            # Its writer claimed long ago and never wrote (it crashed): take over under the next name.
    return None


def version_field(cls: type[Any]) -> str:
    """The field that holds a document's version: "version", or the class's VERSION_FIELD."""
    return str(getattr(cls, "VERSION_FIELD", "version"))


def version_of(doc: Any) -> int:
    """A stored aggregate's version; one written before versions existed counts as 1."""
    return int(getattr(doc, version_field(type(doc)), 1) or 1)


def _version_filter(cls: type[Any], old_version: int) -> dict[str, Any]:
    name = version_field(cls)
    return {"$or": [{name: 1}, {name: {"$exists": False}}]} if old_version == 1 else {name: old_version}


class UnitOfWork(abc.ABC):
    """Load an aggregate by _id and write its next version (see the module docstring)."""

    @abc.abstractmethod
    def load(self, cls: type[D], doc_id: str) -> D | None:
        """The aggregate as stored, or None."""

    @abc.abstractmethod
    def load_fields(self, cls: type[Any], doc_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        """These fields of the stored aggregate (and its _id), or None."""

    @abc.abstractmethod
    def claim(self, claim_id: str) -> str | None:
        """Insert the version claim: its _id when won, None when another writer holds it."""

    @abc.abstractmethod
    def release(self, claim_id: str) -> None:
        """Give back a won claim whose write did not happen."""

    @abc.abstractmethod
    def write(self, doc: Any, old_version: int) -> bool:
        """Write the document (carrying its new version) over `old_version` (0: create it), its new events
        after their outbox marker; False if the stored one is not at `old_version`."""

    @abc.abstractmethod
    def write_fields(self, cls: type[Any], doc_id: str, old_version: int, update: dict[str, Any]) -> bool:
        """A targeted update (no events) of the document at `old_version`; False if it is not there."""

    def clock(self) -> float:
        return time.monotonic()

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    # ------------------------------------------------------------ the one write path

    def commit(self, doc: Any, claim: str, old_version: int, now: datetime) -> bool:
        """Claim "<claim>:<old_version + 1>" and, if won, write the document as that version. False: another
        writer has that version (nothing written)."""
        won = self.claim(f"{claim}:{old_version + 1}")
        if won is None:
            return False
        setattr(doc, version_field(type(doc)), old_version + 1)
        if hasattr(doc, "updated_at"):
            doc.updated_at = now
        try:
            return self.write(doc, old_version)
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            self.release(won)  # refused by a unique index: nothing written, the version is free again
            raise

    def commit_fields(
        self, cls: type[Any], claim: str, doc_id: str, old_version: int, update: dict[str, Any], now: datetime
    ) -> bool:
        """As commit, for a targeted update (`$push`, `$set`…; the version and updated_at are added)."""
        won = self.claim(f"{claim}:{old_version + 1}")
        if won is None:
            return False
        sets = {**update.get("$set", {}), version_field(cls): old_version + 1, "updated_at": now}
        update = {**update, "$set": sets}
        return self.write_fields(cls, doc_id, old_version, update)


class MongoUnitOfWork(UnitOfWork):
    """The real one: the current tenant's database (mongoengine documents, pymongo writes)."""

    def load(self, cls: type[D], doc_id: str) -> D | None:
        found: D | None = cls.objects(id=doc_id).first() if doc_id else None
        return found

    def load_fields(self, cls: type[Any], doc_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = cls._get_collection().find_one({"_id": doc_id}, dict.fromkeys(fields, 1))
        return found

    def claim(self, claim_id: str) -> str | None:
        return claim_version(claim_id)

    def release(self, claim_id: str) -> None:
        VersionClaimDoc._get_collection().delete_one({"_id": claim_id})

    def write(self, doc: Any, old_version: int) -> bool:
        from services.common import outbox  # outbox imports nothing of this module; no cycle at import time

        cls = type(doc)
        pending = doc.new_events() if getattr(doc, "_new_events", False) else []
        marker_id = ""
        if pending or outbox.publishes_state(cls):
            # Handed to this process's relay once written: published from memory, in order after the events
            # the document held before, with its state where its class publishes states
            # (services/common/outbox.py, "Hand-off" and "State").
            held = getattr(doc, "outbox", None) or []
            prior = [ev.id for ev in held[: len(held) - len(pending)]]
            marker_id = outbox.mark_pending(cls, str(doc.pk), creation=old_version == 0, prior=prior)
        son = doc.to_mongo().to_dict()
        coll = cls._get_collection()
        written = False
        try:
            if old_version == 0:
                try:
                    coll.insert_one(son)
                    written = True
                except pymongo.errors.DuplicateKeyError as exc:
                    if (exc.details or {}).get("keyPattern", {"_id": 1}) != {"_id": 1}:
                        raise  # another unique index refused it
                    # created by another writer meanwhile
            else:
                found = coll.replace_one({"_id": doc.pk, **_version_filter(cls, old_version)}, son)
                written = bool(found.matched_count)
        except BaseException:
            if marker_id:
                outbox.hand_over(marker_id, None)
                if old_version:
                    # The write may have happened all the same: the relay reads the document at once.
                    outbox.look_at(require_tenant(), cls._get_collection_name(), marker_id)
            raise
        if marker_id:
            outbox.hand_over(marker_id, pending if written else None, outbox.state_of(cls, son))
            doc._new_events = False
            doc._new_count = 0
        return written

    def write_fields(self, cls: type[Any], doc_id: str, old_version: int, update: dict[str, Any]) -> bool:
        from services.common import outbox

        # A published state is not in memory here: the relay reads it through the marker, once the update is over.
        marker_id = outbox.mark_pending(cls, doc_id, look_now=False) if outbox.publishes_state(cls) else ""
        try:
            result = cls._get_collection().update_one({"_id": doc_id, **_version_filter(cls, old_version)}, update)
        finally:
            if marker_id:
                outbox.look_at(require_tenant(), cls._get_collection_name(), marker_id)
        return bool(result.matched_count)


MONGO: UnitOfWork = MongoUnitOfWork()


# ---------------------------------------------------------------- load → mutate → claim → write, retried


@dataclass(frozen=True)
class Conflicts:
    """How a service words the ways a change can fail (its ABORTED messages, as its callers know them)."""

    stale: Callable[[str, int, int], Exception]  # (id, stored version, expected version): a stale read
    raced: Callable[[str], Exception]  # (id): another writer took the expected version's successor
    busy: Callable[[str], Exception]  # (id): an event-driven change kept losing for the deadline


@dataclass(frozen=True)
class Changed(Generic[D]):
    doc: D | None  # the aggregate as written (or as read when there was nothing to change); None: missing
    written: bool


def change(
    uow: UnitOfWork,
    cls: type[D],
    claim: str,
    doc_id: str,
    mutate: Callable[[D, datetime], bool],
    *,
    conflicts: Conflicts,
    now: Callable[[], datetime],
    expected_version: int | None = None,
    fresh: Callable[[], D] | None = None,
    exists: Callable[[D], bool] | None = None,
    wait_for_doc: float = 0.0,
    deadline: float = CHANGE_DEADLINE_SECONDS,
) -> Changed[D]:
    """Apply `mutate` (False: nothing to change) to the aggregate and write it as its next version, claimed
    as "<claim>:<version>". A missing aggregate is waited for up to `wait_for_doc` seconds, then started
    from `fresh()` (as version 0, written by insert) or reported (doc None); so is a stored one for which
    `exists` says False (a tombstone). With `expected_version` a
    stale version or a lost race raises conflicts.stale / .raced; without it a lost race is decided again
    on a fresh read until `deadline` (then conflicts.busy)."""
    started = uow.clock()
    delay = FIRST_DELAY
    while True:
        doc = uow.load(cls, doc_id) if doc_id else None
        if doc is not None and exists is not None and not exists(doc):
            doc = None
        if doc is None and uow.clock() - started < wait_for_doc:
            uow.pause(DOC_POLL_SECONDS)
            continue
        if doc is not None:
            version = version_of(doc)
        elif fresh is not None:
            doc, version = fresh(), 0
        else:
            return Changed(None, False)
        if expected_version is not None and version != expected_version:
            raise conflicts.stale(doc_id, version, expected_version)
        at = now()
        if not mutate(doc, at):
            return Changed(doc, False)
        if uow.commit(doc, claim, version, at):
            return Changed(doc, True)
        if expected_version is not None:
            raise conflicts.raced(doc_id)
        if uow.clock() - started > deadline:
            raise conflicts.busy(doc_id)
        uow.pause(delay)
        delay = min(delay * 2, MAX_DELAY)


def change_fields(
    uow: UnitOfWork,
    cls: type[Any],
    claim: str,
    doc_id: str,
    fields: Sequence[str],
    decide: Callable[[dict[str, Any], datetime], dict[str, Any] | None],
    *,
    conflicts: Conflicts,
    now: Callable[[], datetime],
    wait_for_doc: float = 0.0,
    deadline: float = CHANGE_DEADLINE_SECONDS,
) -> dict[str, Any] | None:
    """As change, for an aggregate too big to read and rewrite whole: a projection read of `fields` (plus
    the version), and `decide` returns a targeted update (None: nothing to change). Only the claim's winner
    writes that version, so the update's version condition never has to be isolated. Returns the fields
    read last (None: no such aggregate)."""
    started = uow.clock()
    delay = FIRST_DELAY
    wanted = [*fields, version_field(cls)]
    while True:
        raw = uow.load_fields(cls, doc_id, wanted) if doc_id else None
        if raw is None:
            if uow.clock() - started < wait_for_doc:
                uow.pause(DOC_POLL_SECONDS)
                continue
            return None
        at = now()
        update = decide(raw, at)
        if update is None:
            return raw
        if uow.commit_fields(cls, claim, doc_id, int(raw.get(version_field(cls)) or 1), update, at):
            return raw
        if uow.clock() - started > deadline:
            raise conflicts.busy(doc_id)
        uow.pause(delay)
        delay = min(delay * 2, MAX_DELAY)
