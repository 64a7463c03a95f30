"""An in-memory unit of work (services/common/unitofwork.py) for handler unit tests, as cosmicpython's
FakeUnitOfWork: aggregates live in a dict of stored documents (as mongoengine would write them), version
claims in a set, outbox markers in a list. `interfere` plays another writer landing first."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from services.common.unitofwork import UnitOfWork, version_field


def _get(son: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(son, dict) or part not in son:
            return None
        son = son[part]
    return son


class FakeUnitOfWork(UnitOfWork):
    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.claims: set[str] = set()
        self.markers: list[tuple[str, str]] = []
        self.writes = 0
        self.now = 0.0  # the fake clock (seconds); pause() moves it, nothing sleeps
        self._interference: list[Callable[[FakeUnitOfWork], None]] = []

    # ------------------------------------------------------------ test helpers

    def add(self, doc: Any) -> Any:
        """Store a document as it is (a creation made before the test)."""
        self.stored[(type(doc)._get_collection_name(), str(doc.pk))] = copy.deepcopy(doc.to_mongo().to_dict())
        return doc

    def son(self, cls: type[Any], doc_id: str) -> dict[str, Any] | None:
        return self.stored.get((cls._get_collection_name(), doc_id))

    def interfere(self, fn: Callable[[FakeUnitOfWork], None]) -> None:
        """Run fn just before the next claim: another writer's change landing between read and claim."""
        self._interference.append(fn)

    def bump(self, cls: type[Any], doc_id: str, claim: str, **fields: Any) -> None:
        """Another writer's change: claims and writes the next version with these fields."""
        son = self.stored[(cls._get_collection_name(), doc_id)]
        version = int(son.get("version") or 1) + 1
        self.claims.add(f"{claim}:{version}")
        son.update(fields, version=version)

    # ------------------------------------------------------------ the unit of work

    def load(self, cls: type[Any], doc_id: str) -> Any:
        son = self.son(cls, doc_id)
        return None if son is None else cls._from_son(copy.deepcopy(son))

    def load_fields(self, cls: type[Any], doc_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        son = self.son(cls, doc_id)
        if son is None:
            return None
        return {"_id": son["_id"], **{f: copy.deepcopy(son[f]) for f in fields if f in son}}

    def claim(self, claim_id: str) -> str | None:
        queued, self._interference = self._interference, []
        for fn in queued:
            fn(self)
        if claim_id in self.claims:
            return None
        self.claims.add(claim_id)
        return claim_id

    def release(self, claim_id: str) -> None:
        self.claims.discard(claim_id)

    def write(self, doc: Any, old_version: int) -> bool:
        key = (type(doc)._get_collection_name(), str(doc.pk))
        stored = self.stored.get(key)
        if (stored is None) != (old_version == 0):
            return False
        if stored is not None and int(stored.get(version_field(type(doc))) or 1) != old_version:
            return False
        if getattr(doc, "_new_events", False):
            self.markers.append(key)  # before the write, as the real one
            doc._new_events = False
        self.stored[key] = copy.deepcopy(doc.to_mongo().to_dict())
        self.writes += 1
        return True

    def write_fields(self, cls: type[Any], doc_id: str, old_version: int, update: dict[str, Any]) -> bool:
        son = self.son(cls, doc_id)
        if son is None or int(son.get(version_field(cls)) or 1) != old_version:
            return False
        for name, value in update.get("$set", {}).items():
            son[name] = value
        for name, value in update.get("$push", {}).items():
            son.setdefault(name, []).append(copy.deepcopy(value))
        self.writes += 1
        return True

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


__all__ = ["FakeUnitOfWork", "_get"]
