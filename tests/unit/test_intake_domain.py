import pytest

from services.common.errors import InvalidArgument
from services.intake.domain import DESCRIPTION_MAX, Location, new_issue_id, validate_new_issue


def issue(**kw: object) -> object:
    args: dict[str, object] = {
        "title": "楼道灯不亮",
        "description": "3号楼2单元楼道灯坏了一周",
        "channel": "online",
        "category": "",
        "location": Location(address="嘉德社区3号楼"),
    }
    args.update(kw)
    return validate_new_issue(**args)  # type: ignore[arg-type]


def test_valid_issue_is_trimmed_and_gets_default_category() -> None:
    new = issue(title="  楼道灯不亮 ")
    assert new.title == "楼道灯不亮"  # type: ignore[attr-defined]
    assert new.category == "unclassified"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"title": "   "}, "title"),
        ({"description": ""}, "description"),
        ({"description": "长" * (DESCRIPTION_MAX + 1)}, "description"),
        ({"title": "t" * 121}, "title"),
        ({"channel": "fax"}, "channel"),
        ({"location": Location()}, "location"),
        ({"location": Location(lat=36.2)}, "location"),
        ({"location": Location(lat=96.0, lon=117.1)}, "location.lat"),
        ({"location": Location(lat=36.0, lon=190.0)}, "location.lon"),
    ],
)
def test_each_bad_field_is_named(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        issue(**kw)
    assert exc.value.field == field


def test_description_at_the_limit_is_accepted() -> None:
    assert issue(description="长" * DESCRIPTION_MAX)


def test_over_long_message_says_how_long() -> None:
    with pytest.raises(InvalidArgument, match="4001 characters; at most 4000"):
        issue(description="x" * 4001)


def test_idempotency_key_gives_a_stable_id() -> None:
    assert new_issue_id("k1") == new_issue_id("k1") != new_issue_id("k2")
    assert new_issue_id() != new_issue_id()
