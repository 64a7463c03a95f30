"""Reads by _id use the unique _id index (deploy/local/patches/ferretdb-v1.24.2-postgresql-id-index.patch).

FerretDB v1.24.2 on PostgreSQL, as released, filters `_id` with `_jsonb->$1 @> $2`: the key is a
parameter and `@>` is no btree operator, so no index serves it and every look-up by `_id` reads the
whole table (75 ms at 100,000 documents). Patched, `_id` equality, `{$eq}` and `{$in}` of strings or
ObjectIds become `_jsonb->'_id' = $n` / `IN (...)`, the expression of the `_id_` index.

FerretDB's `explain` runs PostgreSQL's EXPLAIN (FORMAT JSON) on the very query it generates; the plan
must be an index scan on the `_id_` index, never a sequential scan. The collection is large enough
(5,000 documents) that PostgreSQL's planner would scan it without a usable index. Skipped on a server
that is not FerretDB (MongoDB answers explain in its own format).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection

from tests.conftest import unique

DOCS = 5_000
INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


@pytest.fixture(scope="module")
def coll(mongo_client: MongoClient[Any]) -> Iterator[Collection[Any]]:
    if "ferretdbVersion" not in mongo_client.admin.command("buildInfo"):
        pytest.skip("not FerretDB")
    db_name = f"hl_itest_idindex_{unique('db').split('-')[1]}"
    collection = mongo_client[db_name]["docs"]
    collection.insert_many([{"_id": f"doc-{i}", "n": i, "note": "楼道灯不亮" * 4} for i in range(DOCS)])
    collection.insert_many([{"_id": ObjectId(), "n": 100_000 + i} for i in range(5)])
    try:
        yield collection
    finally:
        mongo_client.drop_database(db_name)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plan_nodes(coll: Collection[Any], flt: dict[str, Any]) -> list[dict[str, Any]]:
    res = coll.database.command("explain", {"find": coll.name, "filter": flt})
    plan = (res.get("queryPlanner") or {}).get("Plan")
    assert isinstance(plan, dict) and "Node Type" in plan, f"not PostgreSQL's plan: {res.get('queryPlanner')!r}"
    assert res.get("filterPushdown") is True, res
    return list(_nodes(plan))


def _assert_id_index_search(coll: Collection[Any], flt: dict[str, Any]) -> None:
    nodes = _plan_nodes(coll, flt)
    kinds = [n["Node Type"] for n in nodes]
    assert any(n["Node Type"] in INDEX_NODES and n.get("Index Name", "").find("_id_") >= 0 for n in nodes), (
        flt,
        kinds,
    )
    assert "Seq Scan" not in kinds, (flt, kinds)


def test_find_by_string_id_is_an_index_search(coll: Collection[Any]) -> None:
    _assert_id_index_search(coll, {"_id": "doc-7"})
    _assert_id_index_search(coll, {"_id": {"$eq": "doc-7"}})
    assert coll.find_one({"_id": "doc-7"})["n"] == 7  # type: ignore[index]


def test_find_by_object_id_is_an_index_search(coll: Collection[Any]) -> None:
    oid = coll.find_one({"n": 100_002})["_id"]  # type: ignore[index]
    _assert_id_index_search(coll, {"_id": oid})
    assert coll.find_one({"_id": oid})["n"] == 100_002  # type: ignore[index]


def test_find_by_id_in_is_an_index_search(coll: Collection[Any]) -> None:
    oid = coll.find_one({"n": 100_001})["_id"]  # type: ignore[index]
    ids: list[Any] = ["doc-3", "doc-40", "missing", oid]
    _assert_id_index_search(coll, {"_id": {"$in": ids}})
    assert sorted(d["n"] for d in coll.find({"_id": {"$in": ids}})) == [3, 40, 100_001]
    # Not pushed down (a number among the ids), still answered correctly by FerretDB's own filter.
    assert sorted(d["n"] for d in coll.find({"_id": {"$in": ["doc-3", 5]}})) == [3]


def test_an_id_among_other_keys_is_an_index_search_and_the_rest_still_filters(coll: Collection[Any]) -> None:
    # A conditional write's filter ({_id, version}) must not scan the collection.
    _assert_id_index_search(coll, {"_id": "doc-7", "n": 7})
    assert coll.find_one({"_id": "doc-7", "n": 7})["n"] == 7  # type: ignore[index]
    assert coll.find_one({"_id": "doc-7", "n": 8}) is None


def test_a_filter_without_id_still_scans(coll: Collection[Any]) -> None:
    # The control: the same plan reader sees a sequential scan where no index applies.
    kinds = [n["Node Type"] for n in _plan_nodes(coll, {"n": 7})]
    assert "Seq Scan" in kinds, kinds


def test_updates_and_deletes_by_id_find_their_document(coll: Collection[Any]) -> None:
    assert coll.update_one({"_id": "doc-11"}, {"$set": {"seen": True}}).modified_count == 1
    assert coll.find_one({"_id": "doc-11"})["seen"] is True  # type: ignore[index]
    assert coll.delete_one({"_id": "doc-12"}).deleted_count == 1
    assert coll.find_one({"_id": "doc-12"}) is None
    assert coll.count_documents({"_id": {"$in": ["doc-11", "doc-12", "doc-13"]}}) == 2
