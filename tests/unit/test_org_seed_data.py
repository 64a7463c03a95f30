"""The default lists shipped with the org service, and the seed's fake personal data (no infrastructure)."""

from __future__ import annotations

import json
import random
import tomllib
from collections import Counter
from datetime import date

import pytest
from shapely.geometry import Point, shape

from services.common.tenants import tenant_slugs
from services.org import domain, seed
from services.org.handlers import SPECS


def test_the_toml_files_parse_as_utf8() -> None:
    for path in (seed.RESPONSIBILITIES_FILE, seed.PUBLIC_AFFAIRS_FILE):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert data["item"], path


def test_responsibility_list_has_34_items_across_the_6_domains() -> None:
    items = seed.responsibility_items()
    assert len(items) == 34
    assert set(Counter(i["domain"] for i in items)) == set(domain.RESPONSIBILITY_DOMAINS)
    assert len({i["id"] for i in items}) == 34
    assert len({i["title_zh"] for i in items}) == 34


def test_every_responsibility_item_passes_the_validator() -> None:
    for item in seed.responsibility_items():
        domain.entity_id(item["id"])
        assert all(kind in domain.UNIT_KINDS for kind in item["unit_kinds"]), item["id"]
        cleaned = domain.validate_responsibility_item(item)
        assert cleaned["title_zh"] and cleaned["title_en"], item["id"]
        assert sorted(cleaned["unit_kinds"]) == sorted(set(item["unit_kinds"])), item["id"]
    # The 5 domains other than the community itself name who carries each item.
    assert all(i["unit_kinds"] for i in seed.responsibility_items() if i["domain"] != "community")


def test_public_affairs_items_undertake_and_assist_pass_the_validator() -> None:
    items = seed.public_affairs_templates()
    modes = Counter(i["mode"] for i in items)
    assert set(modes) == set(domain.PUBLIC_AFFAIRS_MODES)
    assert modes["undertake"] >= 8 and modes["assist"] >= 8
    assert len({i["code"] for i in items}) == len(items)
    for item in items:
        cleaned = domain.validate_public_affairs_item({**item, "community_id": "jiade"})
        assert cleaned["basis"] and cleaned["title_en"], item["code"]
        domain.entity_id(f"a-long-community-id-{item['code']}")


@pytest.mark.parametrize("seed_value", range(5))
def test_fake_id_numbers_are_valid_and_obviously_made_up(seed_value: int) -> None:
    rng = random.Random(seed_value)
    for _ in range(2000):
        value = seed.fake_id_number(rng)
        assert domain.id_number(value) == value  # 18 characters, GB 11643 check digit, a real date
        assert value.startswith(seed.ID_AREA)
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        assert date(1950, 1, 1) <= born <= date(2000, 12, 31)
        assert 0 <= int(value[14:17]) <= 499


def test_check_digit_matches_a_known_number() -> None:
    # The example number of GB 11643-1999 itself.
    assert seed.id_check_digit("11010519491231002") == "X"
    assert domain.id_number("11010519491231002X") == "11010519491231002X"


def test_demo_and_scale_id_numbers_never_collide() -> None:
    demo = seed.People(random.Random(1), seed.DEMO_SERIALS)
    scale = seed.People(random.Random(1), seed.SCALE_SERIALS)
    a = {demo.id_number() for _ in range(3000)}
    b = {scale.id_number() for _ in range(3000)}
    assert len(a) == len(b) == 3000 and not a & b


def test_fake_phones_are_chinese_mobile_numbers() -> None:
    rng = random.Random(7)
    for _ in range(1000):
        assert domain.phone(seed.fake_phone(rng), "phone")
        assert domain.phone(seed.fake_landline(rng), "phone")


@pytest.mark.parametrize("slug", tenant_slugs())
def test_demo_records_pass_every_validator(slug: str) -> None:
    ds = seed.demo_dataset(slug)
    for kind, records in ds.records.items():
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)), kind
        for record in records:
            domain.entity_id(record["id"])
            SPECS[kind].validate(record)
    assert len(ds.records["responsibility_item"]) == 34
    assert 3 <= len(ds.records["community"]) <= 4
    per_community = Counter(g["community_id"] for g in ds.records["grid"])
    assert all(2 <= n <= 4 for n in per_community.values())
    assert len(ds.records["grid_station"]) == len(ds.records["grid"])


@pytest.mark.parametrize("slug", tenant_slugs())
def test_demo_member_units_have_people_who_attend_for_them(slug: str) -> None:
    """A unit claims posts, signs up and checks in naming one of its own people (Person.member_unit_id)."""
    ds = seed.demo_dataset(slug)
    units = {u["id"]: u for u in ds.records["member_unit"]}
    linked = [p for p in ds.records["person"] if p.get("member_unit_id")]
    assert linked, slug
    for p in linked:
        unit = units[p["member_unit_id"]]
        assert unit["community_id"] == p["community_id"] and "community_worker" not in p["roles"]
    per_unit = Counter(p["member_unit_id"] for p in linked)
    assert max(per_unit.values()) <= 2
    first_units = [u["id"] for u in ds.records["member_unit"]][:3]
    assert all(per_unit[u] >= 1 for u in first_units), per_unit


def test_demo_is_deterministic() -> None:
    assert seed.demo_dataset("taiqian").records == seed.demo_dataset("taiqian").records


def test_jiade_alliance_has_7_property_companies_and_5_owners_committees() -> None:
    ds = seed.demo_dataset("taiqian")
    kinds = Counter(u["kind"] for u in ds.records["member_unit"] if u["community_id"] == "jiade")
    assert kinds["property_company"] == 7
    assert kinds["owners_committee"] == 5


def test_demo_grids_do_not_overlap_and_compounds_lie_inside_their_grid() -> None:
    grids = {}
    for slug in tenant_slugs():
        ds = seed.demo_dataset(slug)
        for g in ds.records["grid"]:
            grids[g["id"]] = shape(json.loads(g["boundary_geojson"]))
        for c in (*ds.records["compound"], *ds.records["grid_station"]):
            p = Point(c["point"]["lon"], c["point"]["lat"])
            assert grids[c["grid_id"]].contains(p), c["id"]
    shapes = list(grids.items())
    for i, (a, ga) in enumerate(shapes):
        minx, miny, maxx, maxy = ga.bounds
        assert 117.08 <= minx < maxx <= 117.20, a
        assert 36.15 <= miny < maxy <= 36.25, a
        for b, gb in shapes[i + 1 :]:
            assert ga.intersection(gb).area == 0, (a, b)


def test_scale_shares_add_up_to_the_seed_figures() -> None:
    shares = seed.scale_shares(12_000)
    assert sum(s["grids"] for s in shares.values()) == 1089
    assert sum(s["stations"] for s in shares.values()) == 155
    assert sum(s["people"] for s in shares.values()) == 12_000
    assert sum(s["units"] for s in shares.values()) == 1500


def test_scale_tenant_has_party_members_volunteers_and_prefixed_ids() -> None:
    share = seed.scale_shares(12_000)["taiqian"]
    ds = seed.scale_dataset("taiqian", share, seed._scale_community_names(), seed.People(random.Random(3), (500, 999)))
    people = ds.records["person"]
    assert len(people) == share["people"]
    assert sum("party_member" in p["roles"] for p in people) >= 0.85 * len(people)
    assert sum("volunteer" in p["roles"] for p in people) >= 0.3 * len(people)
    assert len(ds.records["grid"]) == share["grids"]
    for kind, records in ds.records.items():
        for record in records:
            assert record["id"].startswith("scale-taiqian-"), (kind, record["id"])
            SPECS[kind].validate(record)
    skills = {t["skill"] for t in ds.records["talent_entry"]}
    assert skills <= set(seed.SKILLS) and len(skills) >= 35


def test_zh_number() -> None:
    assert [seed.zh_number(n) for n in (1, 9, 10, 11, 20, 35, 99)] == [
        "一",
        "九",
        "十",
        "十一",
        "二十",
        "三十五",
        "九十九",
    ]


@pytest.mark.parametrize("slug", tenant_slugs())
def test_every_demo_community_has_someone_for_the_common_needs(slug: str) -> None:
    ds = seed.demo_dataset(slug)
    community_of = {p["id"]: p["community_id"] for p in ds.records["person"]}
    held: dict[str, set[str]] = {}
    for t in ds.records["talent_entry"]:
        held.setdefault(community_of[t["person_id"]], set()).add(t["skill"])
    for c in ds.records["community"]:
        assert set(seed.CORE_SKILLS) <= held[c["id"]], c["id"]
    pairs = [(t["person_id"], t["skill"]) for t in ds.records["talent_entry"]]
    assert len(pairs) == len(set(pairs))  # the (person, skill) unique index holds
