"""What a worker's slip in public text looks like once it reaches a publication (services/publication/redaction.py),
and the names helpers appear by (services/publication/names.py)."""

from __future__ import annotations

import pytest

from services.publication.names import UNKNOWN_PERSON, mask, shown_name
from services.publication.redaction import ID_MASK, PHONE_MASK, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("联系王师傅 13912345678", f"联系王师傅 {PHONE_MASK}"),
        ("电话 +86 139-1234-5678 找物业", f"电话 {PHONE_MASK} 找物业"),
        ("电话：１３９１２３４５６７８", f"电话：{PHONE_MASK}"),
        ("座机 0538-6201234", f"座机 {PHONE_MASK}"),
        ("身份证 37090219800101123X 已核实", f"身份证 {ID_MASK} 已核实"),
        ("老证 370902800101123", f"老证 {ID_MASK}"),
        ("3号楼2单元501室漏水", "3号楼漏水"),
        ("5栋1单元302 楼道灯", "5号楼 楼道灯"),
        ("十二幢301室", "十二号楼"),
        ("3号楼2单元门口", "3号楼门口"),
    ],
)
def test_personal_details_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "11月红领益家联盟联席会议",
        "2号楼楼道照明集中维修",
        "工单 2026113012345678901 已办结",  # a longer digit run is not a phone or an ID
        "议定增设非机动车充电桩（暂缓）",
    ],
)
def test_public_wording_is_left_as_it_is(text: str) -> None:
    assert redact(text) == text


def test_a_person_appears_by_the_name_they_agreed_to_show() -> None:
    assert shown_name("person", "张师傅", "张明") == "张师傅"
    assert shown_name("person", "", "张明") == "张**"
    assert shown_name("member_unit", "", "泰山物业红色服务队") == "泰山物业红色服务队"
    assert shown_name("member_unit", "泰山红色物业", "泰山物业管理有限公司") == "泰山红色物业"
    assert mask("") == UNKNOWN_PERSON
