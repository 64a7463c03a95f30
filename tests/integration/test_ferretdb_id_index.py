"""Reads by _id use FerretDB's unique _id index (deploy/local/patches/ferretdb-v1.24.2-sqlite-id-index.patch).

Unpatched FerretDB v1.24.2 on SQLite queries `_ferretdb_sjson->'$._id'` while its _id index is on
`_ferretdb_sjson->"_id"`, so SQLite scanned the whole collection for every find_one({_id}).
FerretDB's `explain` runs SQLite's EXPLAIN QUERY PLAN on the very query it generates; its plan rows
must say SEARCH … USING INDEX, not SCAN. Skipped on any other server or backend.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection

from tests.conftest import unique

# One row of SQLite's EXPLAIN QUERY PLAN as FerretDB's SQLite backend reports it.
SQLITE_PLAN_ROW = re.compile(r"^id=\d+ parent=\d+ notused=\d+ detail=(?P<detail>.*)$")


@pytest.fixture
def coll(mongo_client: MongoClient[Any]) -> Iterator[Collection[Any]]:
    if "ferretdbVersion" not in mongo_client.admin.command("buildInfo"):
        pytest.skip("not FerretDB")
    db_name = f"hl_itest_idindex_{unique('db').split('-')[1]}"
    collection = mongo_client[db_name]["docs"]
    collection.insert_many([{"_id": f"doc-{i}", "n": i} for i in range(50)])
    collection.insert_many([{"_id": ObjectId(), "n": 100 + i} for i in range(5)])
    try:
        yield collection
    finally:
        mongo_client.drop_database(db_name)


def _plan(coll: Collection[Any], flt: dict[str, Any]) -> list[str]:
    res = coll.database.command("explain", {"find": coll.name, "filter": flt})
    rows = res.get("queryPlanner", {}).get("Plan")
    if not rows or not all(isinstance(r, str) and SQLITE_PLAN_ROW.match(r) for r in rows):
        pytest.skip(f"not FerretDB's SQLite backend (queryPlanner: {res.get('queryPlanner')!r})")
    assert res.get("filterPushdown") is True, res
    return [SQLITE_PLAN_ROW.match(r).group("detail") for r in rows]  # type: ignore[union-attr]


def _assert_index_search(coll: Collection[Any], flt: dict[str, Any]) -> None:
    details = _plan(coll, flt)
    searches = [d for d in details if d.startswith("SEARCH ") and " USING INDEX " in d and "(<expr>=?)" in d]
    assert searches, (flt, details)
    assert not any(d.startswith("SCAN ") for d in details), (flt, details)


def test_find_by_string_id_uses_the_id_index(coll: Collection[Any]) -> None:
    _assert_index_search(coll, {"_id": "doc-7"})
    _assert_index_search(coll, {"_id": {"$eq": "doc-7"}})
    assert coll.find_one({"_id": "doc-7"})["n"] == 7  # type: ignore[index]


def test_find_by_object_id_uses_the_id_index(coll: Collection[Any]) -> None:
    oid = coll.find_one({"n": 102})["_id"]  # type: ignore[index]
    _assert_index_search(coll, {"_id": oid})
    assert coll.find_one({"_id": oid})["n"] == 102  # type: ignore[index]


def test_find_by_id_in_uses_the_id_index(coll: Collection[Any]) -> None:
    oid = coll.find_one({"n": 101})["_id"]  # type: ignore[index]
    ids: list[Any] = ["doc-3", "doc-40", "missing", oid]
    _assert_index_search(coll, {"_id": {"$in": ids}})
    assert sorted(d["n"] for d in coll.find({"_id": {"$in": ids}})) == [3, 40, 101]
    # Not pushed down (a non-string id), still answered correctly by FerretDB's own filter.
    assert sorted(d["n"] for d in coll.find({"_id": {"$in": ["doc-3", 5]}})) == [3]


def test_an_id_among_other_keys_uses_the_id_index_and_the_rest_still_filters(coll: Collection[Any]) -> None:
    # A conditional write's filter ({_id, version}) must not scan the collection.
    _assert_index_search(coll, {"_id": "doc-7", "n": 7})
    assert coll.find_one({"_id": "doc-7", "n": 7})["n"] == 7  # type: ignore[index]
    assert coll.find_one({"_id": "doc-7", "n": 8}) is None
    updated = coll.update_one({"_id": "doc-9", "n": 9}, {"$set": {"seen": True}})
    assert updated.modified_count == 1
    assert coll.update_one({"_id": "doc-9", "n": 10}, {"$set": {"seen": False}}).modified_count == 0
