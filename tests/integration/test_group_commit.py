"""Group commit (services/common/groupcommit.py) against the real database: concurrent inserts share
commands, and every caller gets its own document's outcome as insert_one would have given it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pymongo.errors
import pytest
from pymongo import MongoClient
from pymongo.collection import Collection

from services.common import groupcommit
from tests.conftest import unique


@pytest.fixture
def coll(mongo_client: MongoClient[Any]) -> Iterator[Collection[Any]]:
    db_name = f"hl_itest_group_{unique('db').split('-')[1]}"
    try:
        yield mongo_client[db_name]["docs"]
    finally:
        mongo_client.drop_database(db_name)


def _batches(name: str) -> tuple[float, float]:
    """(commands, documents) the group commit has written into collections called `name` so far."""
    samples = {
        s.name: s.value
        for metric in groupcommit.BATCH_SIZE.collect()
        for s in metric.samples
        if s.labels == {"collection": name}
    }
    return (
        samples.get("hongling_group_commit_batch_documents_count", 0.0),
        samples.get("hongling_group_commit_batch_documents_sum", 0.0),
    )


def _race(coll: Collection[Any], ids: list[str]) -> dict[str, str]:
    """Insert one document per id from as many threads at once; id -> "ok" or the error's class name."""
    outcome: dict[str, str] = {}
    start = threading.Barrier(len(ids))

    def one(i: int, doc_id: str) -> None:
        start.wait()
        try:
            groupcommit.insert(coll, {"_id": doc_id, "n": i, "text": "同时提交"})
            outcome[f"{doc_id}#{i}"] = "ok"
        except pymongo.errors.PyMongoError as exc:
            outcome[f"{doc_id}#{i}"] = type(exc).__name__

    threads = [threading.Thread(target=one, args=(i, d)) for i, d in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcome


def test_concurrent_inserts_share_commands_and_all_arrive(coll: Collection[Any]) -> None:
    commands_before, docs_before = _batches("docs")
    ids = [f"doc-{i}" for i in range(64)]
    outcome = _race(coll, ids)
    assert sorted(outcome.values()) == ["ok"] * 64
    assert sorted(d["_id"] for d in coll.find({}, {"_id": 1})) == sorted(ids)
    commands, docs = _batches("docs")
    assert docs - docs_before == 64
    assert commands - commands_before < 64  # some documents went in one command together


def test_a_taken_id_fails_only_its_own_caller(coll: Collection[Any]) -> None:
    coll.insert_one({"_id": "taken", "n": -1})
    # Two racers for "both" (exactly one wins), one for the taken id, the rest free.
    ids = ["taken", "both", "both", *[f"free-{i}" for i in range(20)]]
    outcome = _race(coll, ids)
    assert outcome["taken#0"] == "DuplicateKeyError"
    assert sorted([outcome["both#1"], outcome["both#2"]]) == ["DuplicateKeyError", "ok"]
    assert all(outcome[f"free-{i}#{i + 3}"] == "ok" for i in range(20))
    assert coll.find_one({"_id": "taken"})["n"] == -1  # type: ignore[index]
    assert coll.count_documents({}) == 22


def test_one_insert_alone_is_an_insert_one(coll: Collection[Any]) -> None:
    assert groupcommit.insert(coll, {"_id": "alone", "名": "单独"}) == "alone"
    assert coll.find_one({"_id": "alone"}) == {"_id": "alone", "名": "单独"}
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        groupcommit.insert(coll, {"_id": "alone"})


def test_insert_all_writes_a_callers_documents_in_one_command_with_each_ones_outcome(coll: Collection[Any]) -> None:
    coll.insert_one({"_id": "taken", "n": -1})
    commands_before, docs_before = _batches("docs")
    errors = groupcommit.insert_all(coll, [{"_id": "a", "n": 1}, {"_id": "taken", "n": 2}, {"_id": "b", "n": 3}])
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], pymongo.errors.DuplicateKeyError)
    commands, docs = _batches("docs")
    assert (commands - commands_before, docs - docs_before) == (1, 3)
    assert {d["_id"]: d["n"] for d in coll.find()} == {"taken": -1, "a": 1, "b": 3}  # the taken one unchanged
    assert groupcommit.insert_all(coll, []) == []


def test_insert_all_from_racing_callers_all_arrive(coll: Collection[Any]) -> None:
    start = threading.Barrier(12)
    outcome: dict[int, list[BaseException | None]] = {}

    def caller(i: int) -> None:
        start.wait()
        outcome[i] = groupcommit.insert_all(coll, [{"_id": f"c{i}-{k}", "k": k} for k in range(5)])

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(errors == [None] * 5 for errors in outcome.values()) and len(outcome) == 12
    assert coll.count_documents({}) == 60
