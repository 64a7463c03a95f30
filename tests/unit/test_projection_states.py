"""State records as the projector reads them (services/common/projection.py): no infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime

import bson
import pytest

from services.common.projection import PoisonState, decode_state, written_at


def test_a_state_record_gives_its_tenant_collection_and_document() -> None:
    at = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    value = bson.encode({"_id": "i1", "version": 4, "title": "路灯不亮", "updated_at": at})
    tenant, collection, state = decode_state([("tenant", b"xujialou"), ("collection", b"issues")], value)
    assert (tenant, collection, state.version, state.raw["title"]) == ("xujialou", "issues", 4, "路灯不亮")
    assert state.body == value  # the row's body is the record as sent: not encoded again
    assert written_at(state.raw) == at


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        ([("collection", b"issues")], bson.encode({"_id": "i1"})),  # no tenant
        ([("tenant", b"xujialou")], bson.encode({"_id": "i1"})),  # no collection
        ([("tenant", b"xujialou"), ("collection", b"issues")], b"not bson"),
        ([("tenant", b"xujialou"), ("collection", b"issues")], bson.encode({"title": "无编号"})),  # no _id
        ([("tenant", b"\xff"), ("collection", b"issues")], bson.encode({"_id": "i1"})),
    ],
)
def test_a_record_that_is_no_state_is_poison(headers: list[tuple[str, bytes]], value: bytes) -> None:
    with pytest.raises(PoisonState):
        decode_state(headers, value)


def test_a_state_without_a_version_counts_as_the_first() -> None:
    _, _, state = decode_state([("tenant", b"t"), ("collection", b"tasks")], bson.encode({"_id": "x"}))
    assert state.version == 1 and written_at(state.raw) is None
