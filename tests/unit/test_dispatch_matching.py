"""Precise assignment (点将): what a task needs, and how load and performance move org's candidates."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument
from services.dispatch import matching
from services.dispatch.matching import (
    NO_RECORD,
    HelperRecord,
    Need,
    Ranked,
    Weights,
    adjust,
    combine,
    need_for,
    rank_candidates,
    record_key,
)
from services.org import seed

CATEGORIES = Path(__file__).resolve().parents[2] / "services" / "intake" / "data" / "categories.toml"
NEED = Need(skills=("水电维修",), services=(), resources=(), community_id="jiade", grid_id="jiade-g1")


def cand(kind: str, cid: str, score: float, *reasons: str, community: str = "jiade") -> Ranked:
    default = ("技能 水电维修 3级 / skill 水电维修 at level 3",)
    return Ranked(kind, cid, f"名字{cid}", community, score, reasons or default)


def ids(ranked: list[Ranked]) -> list[str]:
    return [r.id for r in ranked]


# ---------------------------------------------------------------- needs


def test_every_intake_category_and_hazard_has_needs_in_the_org_vocabulary() -> None:
    intake = tomllib.loads(CATEGORIES.read_text(encoding="utf-8"))
    categories, hazards = matching.needs_table()
    assert {c["code"] for c in intake["category"]} <= set(categories)
    assert {h["code"] for h in intake["hazard"]} <= set(hazards)
    resources = {r[0] for r in seed.RESOURCES} | {r[1] for r in seed.RESOURCES}
    for code, terms in (*categories.items(), *hazards.items()):
        assert terms.skills or terms.services or terms.resources, code
        assert set(terms.skills) <= set(seed.SKILLS), code
        assert set(terms.services) <= set(seed.VOLUNTEER_SERVICES), code
        assert set(terms.resources) <= resources, code


def test_a_category_gives_its_needs_at_the_place() -> None:
    need = need_for("water_supply", [], "jiade", "jiade-g1")
    assert need == Need(("水电维修", "管道疏通"), ("水电维修",), ("抽水泵",), "jiade", "jiade-g1")


def test_hazards_add_their_needs_once_each() -> None:
    need = need_for("property_repair", ["electrical", "gas", "electrical", "unknown-flag"], "c", "g")
    assert need.skills == ("房屋维修", "水电维修", "防水补漏", "心肺复苏", "燃气安全", "应急救援")
    assert need.resources == ("应急车辆",)


def test_an_unknown_category_needs_what_other_needs() -> None:
    assert need_for("tenant-own-category", [], "c", "g") == need_for("other", [], "c", "g")


# ---------------------------------------------------------------- the combination


def test_equal_scores_are_ordered_by_kind_then_id_whatever_the_input_order() -> None:
    pool = [cand("unit", "u1", 20), cand("person", "p2", 20), cand("team", "t1", 20), cand("person", "p1", 20)]
    expected = ["p1", "p2", "t1", "u1"]
    assert ids(combine(pool, {}, NEED, 10)) == expected
    assert ids(combine(list(reversed(pool)), {}, NEED, 10)) == expected


def test_fewer_open_tasks_rank_higher() -> None:
    pool = [cand("person", "busy", 20), cand("person", "free", 20)]
    ranked = combine(pool, {record_key("person", "busy"): HelperRecord(load=2)}, NEED, 10)
    assert ids(ranked) == ["free", "busy"]
    assert ranked[0].score == 20 and ranked[1].score == 16


def test_a_helper_at_the_cap_ranks_far_below_a_weaker_fit() -> None:
    weights = Weights()
    full = HelperRecord(load=weights.cap("person"))
    pool = [cand("person", "strong", 30), cand("person", "weak", 12)]
    ranked = combine(pool, {record_key("person", "strong"): full}, NEED, 10)
    assert ids(ranked) == ["weak", "strong"]
    assert ranked[1].score < 0
    assert any("已达上限" in r and "at the cap of 3" in r for r in ranked[1].reasons)


def test_teams_and_units_carry_more_than_a_person() -> None:
    two = HelperRecord(load=3)
    person = adjust(cand("person", "p", 20), two, NEED)
    unit = adjust(cand("unit", "u", 20), two, NEED)
    assert person.score < 0 < unit.score


def test_good_ratings_and_punctuality_raise_poor_ones_lower() -> None:
    good = HelperRecord(done=10, on_time=10, rating_sum=48, rating_n=10)
    poor = HelperRecord(done=10, on_time=2, rating_sum=15, rating_n=10)
    pool = [cand("person", "poor", 20), cand("person", "new", 20), cand("person", "good", 20)]
    records = {record_key("person", "good"): good, record_key("person", "poor"): poor}
    ranked = combine(pool, records, NEED, 10)
    assert ids(ranked) == ["good", "new", "poor"]
    assert ranked[0].score > 20 and ranked[1].score == 20 and ranked[2].score < 20


def test_one_five_star_rating_counts_less_than_a_long_good_record() -> None:
    once = adjust(cand("person", "a", 20), HelperRecord(rating_sum=5, rating_n=1), NEED)
    often = adjust(cand("person", "b", 20), HelperRecord(rating_sum=46, rating_n=10), NEED)
    assert 20 < once.score < often.score


def test_every_component_has_a_reason_in_chinese_and_english() -> None:
    org_reasons = ("技能 水电维修 3级 / skill 水电维修 at level 3", "服务本网格 / serves grid jiade-g1")
    record = HelperRecord(load=1, done=4, on_time=3, rating_sum=9, rating_n=2)
    ranked = adjust(cand("person", "p", 21, *org_reasons), record, NEED)
    reasons = ranked.reasons
    assert reasons[0].startswith("匹配得分 21") and "fit, distance and availability: 21" in reasons[0]
    assert reasons[1:3] == org_reasons
    assert any(r.startswith("在办 1 件 -2.0") and "1 open task: -2.0" in r for r in reasons)
    assert any(r.startswith("居民评分 平均 4.5 星（2 次）+1.5") and "4.5 stars" in r for r in reasons)
    assert any(r.startswith("按时完成 3/4 件 +0.7") and "3 of 4 tasks on time" in r for r in reasons)
    assert all(" / " in r for r in reasons)
    assert ranked.score == round(21 - 2 + 1.5 + (4 / 6 - 0.5) * 4, 2)


def test_a_helper_without_a_record_is_told_so_and_keeps_org_score() -> None:
    ranked = adjust(cand("unit", "u", 17.5), NO_RECORD, NEED)
    assert ranked.score == 17.5
    assert "当前无在办任务 +0 / no open tasks: +0" in ranked.reasons
    assert "暂无居民评分 +0 / no ratings yet: +0" in ranked.reasons
    assert "尚无完成记录 +0 / no finished tasks yet: +0" in ranked.reasons


def test_same_community_counts_when_the_need_names_no_grid() -> None:
    no_grid = Need(("水电维修",), (), (), "jiade", "")
    near, far = cand("person", "near", 12), cand("person", "far", 12, community="other")
    ranked = combine([far, near], {}, no_grid, 10)
    assert ids(ranked) == ["near", "far"] and ranked[0].score == 14
    assert any(r.startswith("同社区 +2.0") for r in ranked[0].reasons)
    # With a grid, org has scored the place already: nothing is added twice.
    assert combine([near], {}, NEED, 10)[0].score == 12


def test_limit_cuts_after_the_re_ranking() -> None:
    pool = [cand("person", f"p{i}", 30 - i) for i in range(10)]
    records = {record_key("person", "p0"): HelperRecord(load=5)}
    assert ids(combine(pool, records, NEED, 3)) == ["p1", "p2", "p3"]


def test_member_unit_records_are_found_under_org_kind_unit() -> None:
    assert record_key("member_unit", "u1") == record_key("unit", "u1") == "unit:u1"
    ranked = combine([cand("unit", "u1", 20)], {"unit:u1": HelperRecord(load=1)}, NEED, 1)
    assert ranked[0].score == 18


def test_org_is_asked_for_a_pool_larger_than_the_limit() -> None:
    assert matching.pool_size(1) == 40 and matching.pool_size(20) == 50 and matching.pool_size(100) == 100


def test_rank_candidates_refuses_a_bad_limit_and_needs_something_to_match() -> None:
    with pytest.raises(InvalidArgument) as err:
        rank_candidates(NEED, limit=0)
    assert err.value.field == "limit"
    with pytest.raises(InvalidArgument):
        rank_candidates(NEED, limit=101)
    assert rank_candidates(Need((), (), (), "jiade", "jiade-g1")) == ([], 0)
