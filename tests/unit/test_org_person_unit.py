"""A person's member unit (the unit it attends for, which alone may name it in alliance claims and check-ins):
optional, an id, kept as given."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.org import domain

PERSON = {"community_id": "c1", "name_zh": "保安", "roles": ["volunteer"]}


def test_the_member_unit_is_optional_and_kept() -> None:
    assert domain.validate_person(PERSON)["member_unit_id"] == ""
    assert domain.validate_person({**PERSON, "member_unit_id": " mu-1 "})["member_unit_id"] == "mu-1"


@pytest.mark.parametrize("bad", ["bad id", "-x", "x" * 65])
def test_a_malformed_member_unit_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.validate_person({**PERSON, "member_unit_id": bad})
    assert err.value.field == "member_unit_id"
