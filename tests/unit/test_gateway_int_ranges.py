"""A request body's integer that does not fit its protobuf field (int32, int64) is the caller's 400 naming the
field, before any message is built: found by the generated calls (tests/e2e/test_generated_api_calls.py), a
min_workload of -67762540406 made PUT evaluation/weights answer 500 ("Value out of range")."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import ApiError
from gateway.routes_alliance_ledger import AllocationIn
from gateway.routes_dispatch import parse
from gateway.routes_issues import CreateIssueIn
from gateway.routes_measures import WeightsIn

ISSUE = {"title": "t", "description": "d", "channel": "online", "location": {"lat": 36.1, "lon": 117.1}}
FUND = {"community_id": "c", "fund": "running", "source": "s"}


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (WeightsIn, {"min_workload": -67762540406}, "min_workload"),
        (WeightsIn, {"grace_hours": 2**31}, "grace_hours"),
        (WeightsIn, {"prior": 10**400}, "prior"),
        (CreateIssueIn, ISSUE | {"affected_households": 2**40}, "affected_households"),
        (AllocationIn, FUND | {"amount_fen": 2**63}, "amount_fen"),
    ],
)
def test_an_integer_outside_its_fields_range_is_400_naming_the_field(
    model: type[Any], body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError) as exc:
        parse(model, body)
    assert exc.value.status == 400 and exc.value.field is not None and exc.value.field.startswith(field)
    if exc.value.field == field:  # (a number's union names its branch: prior.float, prior.int)
        assert "超出范围" in exc.value.message


def test_integers_in_range_still_parse() -> None:
    assert parse(WeightsIn, {"min_workload": 2**31 - 1, "grace_hours": 0}).min_workload == 2**31 - 1
    assert parse(AllocationIn, FUND | {"amount_fen": 2**63 - 1}).amount_fen == 2**63 - 1
