"""Classification (日常 / 重大 / 紧急): the default catalogue, the rules' checks and the pure classify()."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.intake.classify import Rules, classify, default_rules, rules_from_dict, suggest_category

RULES = default_rules()


def test_the_default_catalogue_is_complete() -> None:
    codes = RULES.category_codes()
    assert len(codes) >= 12
    for code in (
        "property_repair",
        "sanitation",
        "public_safety",
        "neighbour_dispute",
        "elderly_care",
        "parking",
        "greening",
        "water_supply",
        "power_supply",
        "gas_safety",
        "road_facility",
        "noise",
        "other",
    ):
        assert code in codes
    assert RULES.catch_all_category == "other" and RULES.version == 0
    assert {"gas", "fire", "structural", "flooding", "electrical", "elevator_trapped"} <= {
        h.code for h in RULES.hazards
    }
    assert (RULES.major_households, RULES.urgent_households) == (10, 50)
    assert (RULES.duplicate_distance_m, RULES.duplicate_window_hours) == (100, 72)
    assert RULES.category("property_repair").name_zh == "物业维修"  # type: ignore[union-attr]


def test_category_default_alone() -> None:
    urgency, reasons = classify(RULES, "property_repair", [], 0, "楼道灯不亮", "3号楼2单元")
    assert urgency == "routine"
    assert reasons == ["类别「物业维修」默认：日常 (category property_repair default: routine)"]


def test_a_hazard_raises_the_class_and_says_why() -> None:
    urgency, reasons = classify(RULES, "property_repair", ["gas"], 0, "闻到异味", "厨房")
    assert urgency == "urgent"
    assert "隐患：燃气 → 紧急 (hazard gas → urgent)" in reasons


@pytest.mark.parametrize(
    ("households", "urgency"), [(0, "routine"), (9, "routine"), (10, "major"), (49, "major"), (50, "urgent")]
)
def test_household_thresholds(households: int, urgency: str) -> None:
    got, reasons = classify(RULES, "sanitation", [], households, "垃圾", "")
    assert got == urgency
    if urgency != "routine":
        assert any(f"受影响 {households} 户" in r for r in reasons)


def test_keywords_in_chinese_in_title_or_description() -> None:
    assert classify(RULES, "other", [], 0, "楼上漏水", "")[0] == "major"
    urgency, reasons = classify(RULES, "other", [], 0, "求助", "电梯困人了，快来")
    assert urgency == "urgent" and any("关键词「困人」→ 紧急" in r for r in reasons)


def test_a_categorys_own_keywords_suggest_its_default() -> None:
    urgency, reasons = classify(RULES, "other", [], 0, "楼道里有煤气味", "")
    assert urgency == "urgent"
    assert any("（燃气安全）→ 紧急" in r and "suggests gas_safety" in r for r in reasons)


def test_the_highest_rule_wins_and_every_rule_is_listed() -> None:
    urgency, reasons = classify(RULES, "water_supply", ["flooding"], 12, "爆管", "起火了")
    assert urgency == "urgent"
    assert reasons[0].startswith("类别「供水」默认：重大")
    assert len(reasons) == 5  # category, hazard, households, two keywords


def custom(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "categories": [
            {"code": "roads", "name_zh": "道路", "default_urgency": "routine", "keywords": ["坑"]},
            {"code": "misc", "name_zh": "其他", "default_urgency": "routine"},
        ],
        "hazards": [{"code": "gas", "name_zh": "燃气", "urgency": "urgent"}],
        "keywords": [{"keyword": "塌陷", "urgency": "urgent"}],
        "major_households": 5,
        "urgent_households": 20,
        "duplicate_distance_m": 50,
        "duplicate_window_hours": 24,
        "catch_all_category": "misc",
    }
    data.update(over)
    return data


def test_a_tenants_own_rules() -> None:
    rules = rules_from_dict(custom(), version=3)
    assert isinstance(rules, Rules) and rules.version == 3
    assert classify(rules, "roads", [], 5, "路面", "")[0] == "major"
    assert classify(rules, "roads", [], 0, "路面塌陷", "")[0] == "urgent"
    assert rules_from_dict(rules.to_dict(), 3) == rules  # what is stored reads back the same


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"categories": []}, "categories"),
        ({"categories": [{"code": "Roads!", "name_zh": "x", "default_urgency": "routine"}]}, "categories[0].code"),
        (
            {
                "categories": [
                    {"code": "misc", "name_zh": "a", "default_urgency": "routine"},
                    {"code": "misc", "name_zh": "b", "default_urgency": "routine"},
                ]
            },
            "categories[1].code",
        ),
        (
            {"categories": [{"code": "misc", "name_zh": "a", "default_urgency": "soon"}]},
            "categories[0].default_urgency",
        ),
        ({"categories": [{"code": "misc", "name_zh": "", "default_urgency": "routine"}]}, "categories[0].name_zh"),
        ({"hazards": [{"code": "gas", "name_zh": "燃气", "urgency": "later"}]}, "hazards[0].urgency"),
        (
            {
                "hazards": [
                    {"code": "gas", "name_zh": "a", "urgency": "major"},
                    {"code": "gas", "name_zh": "b", "urgency": "major"},
                ]
            },
            "hazards[1].code",
        ),
        ({"keywords": [{"keyword": "", "urgency": "major"}]}, "keywords[0].keyword"),
        ({"major_households": 0}, "major_households"),
        ({"major_households": 30, "urgent_households": 20}, "urgent_households"),
        ({"catch_all_category": "nothing"}, "catch_all_category"),
        ({"duplicate_distance_m": 0}, "duplicate_distance_m"),
        ({"duplicate_window_hours": 10000}, "duplicate_window_hours"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        rules_from_dict(custom(**over))
    assert exc.value.field == field


def test_rules_round_trip_through_protobuf() -> None:
    from services.intake.servicer import rules_from_pb, rules_to_pb

    assert rules_from_dict(rules_from_pb(rules_to_pb(RULES))) == RULES


def test_a_report_without_a_category_gets_the_one_its_words_suggest() -> None:
    assert suggest_category(RULES, "楼道灯不亮", "3号楼2单元楼道灯坏了")[0] == "property_repair"
    category, reasons = suggest_category(RULES, "垃圾没人清运", "小区垃圾清运不及时，有异味")
    assert category == "sanitation"
    zh = "类别建议：含关键词「垃圾」、「清运」、「异味」 → 环境卫生"
    en = "suggested by keyword 「垃圾」, 「清运」, 「异味」: sanitation"
    assert reasons == [f"{zh} ({en})"]
    # Nothing the rules know: the catch-all, and it says so.
    category, reasons = suggest_category(RULES, "建议增设休息座椅", "")
    assert category == RULES.catch_all_category and "no category keyword found" in reasons[0]


def test_the_category_with_most_keywords_found_wins_and_then_the_longer_words() -> None:
    rules = rules_from_dict(
        custom(
            categories=[
                {"code": "roads", "name_zh": "道路", "default_urgency": "routine", "keywords": ["路面", "坑"]},
                {"code": "drains", "name_zh": "排水", "default_urgency": "routine", "keywords": ["下水道堵塞"]},
                {"code": "misc", "name_zh": "其他", "default_urgency": "routine", "keywords": ["路面坑洼下水道"]},
            ]
        )
    )
    assert suggest_category(rules, "路面有坑", "")[0] == "roads"  # two words found beat one
    assert suggest_category(rules, "下水道堵塞", "路面")[0] == "drains"  # one each: the longer word
    assert suggest_category(rules, "路面坑洼下水道", "")[0] == "roads"  # the catch-all's own words never suggest it
