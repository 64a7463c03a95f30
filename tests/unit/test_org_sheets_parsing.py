"""Spreadsheet parsing for the org import/export: headers, cells, files. No infrastructure."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from typing import Any

import openpyxl
import pytest

from services.common.errors import InvalidArgument
from services.org import domain, sheets
from services.org.sheets import SHEETS, parse_availability, parse_cell, parse_header, parse_row, read_table

UNITS = SHEETS["member_units"]
PEOPLE = SHEETS["people"]


def xlsx(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    ws = book.active
    for r in rows:
        ws.append(r)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def keys(sheet: sheets.Sheet, titles: list[Any]) -> list[str]:
    headers, errors = parse_header(sheet, titles)
    assert errors == []
    return [h.column.key for h in headers]


def reason(call: Any) -> str:
    with pytest.raises(InvalidArgument) as exc:
        call()
    return exc.value.message


# ---------------------------------------------------------------- headers


def test_chinese_english_and_bilingual_headers_map_to_fields() -> None:
    assert keys(UNITS, ["编号", "社区编号", "单位名称", "类型", "联系电话", "服务网格", "加入日期", "承诺职责"]) == [
        "id",
        "community_id",
        "name_zh",
        "kind",
        "contact_phone",
        "serves_grid_ids",
        "joined_on",
        "duties_accepted",
    ]
    assert keys(UNITS, ["ID", " Community_ID ", "NAME_ZH", "kind", "joined_on"]) == [
        "id",
        "community_id",
        "name_zh",
        "kind",
        "joined_on",
    ]
    assert keys(UNITS, [c.title for c in UNITS.columns]) == [c.key for c in UNITS.columns]
    # full-width brackets, a required-field star, the "a/b" spelling and the short aliases
    assert keys(UNITS, ["编号/ID", "*社区编号", "名称（name_zh）", "类型：", "加入日期"])[:4] == [
        "id",
        "community_id",
        "name_zh",
        "kind",
    ]


def test_person_headers_flatten_the_nested_fields() -> None:
    titles = ["姓名", "社区编号", "身份", "身份证号", "报到社区", "志愿服务", "志愿队伍", "服务时间", "岗位", "等级"]
    assert keys(PEOPLE, titles) == [
        "name_zh",
        "community_id",
        "roles",
        "id_number",
        "party.home_community_id",
        "volunteer.services",
        "volunteer.team_id",
        "volunteer.availability",
        "worker.post",
        "worker.grade",
    ]
    assert keys(SHEETS["talent_entries"], ["人员编号", "技能", "等级", "备注"]) == [
        "person_id",
        "skill",
        "level",
        "note",
    ]
    assert keys(SHEETS["team_service_entries"], ["队伍编号", "服务项目", "可派人数", "每周时长"])[3] == "hours_per_week"
    assert (
        keys(SHEETS["unit_resource_entries"], ["单位编号", "资源名称", "资源类别", "数量", "计量单位", "使用条件"])[-1]
        == "conditions"
    )


@pytest.mark.parametrize("sheet", list(SHEETS.values()), ids=list(SHEETS))
def test_no_header_spelling_means_two_columns(sheet: sheets.Sheet) -> None:
    seen: dict[str, str] = {}
    for col in sheet.columns:
        for name in (col.key, col.zh, col.title, *col.aliases):
            norm = sheets.normalize_header(name)
            assert seen.setdefault(norm, col.key) == col.key, f"{name!r} names {seen[norm]} and {col.key}"


def test_unknown_repeated_and_missing_columns_are_row_1_errors() -> None:
    headers, errors = parse_header(UNITS, ["单位名称", "社区编号", "颜色", "名称", None, "类型"])
    assert [h.column.key for h in headers] == ["name_zh", "community_id", "kind"]
    assert [(e.row, e.column) for e in errors] == [(1, "颜色"), (1, "名称"), (1, "")]
    assert "unknown column '颜色'" in errors[0].reason and "单位名称 name_zh" in errors[0].reason
    assert "repeats '单位名称'" in errors[1].reason
    assert errors[2].reason == "missing required column(s): 加入日期 joined_on"


# ---------------------------------------------------------------- cells


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("property_company", "property_company"),
        ("物业服务企业", "property_company"),
        ("物业公司", "property_company"),
        ('"双报到"单位', "dual_report_unit"),
        ("“双报到”单位", "dual_report_unit"),
        ("双报到单位", "dual_report_unit"),
        ("Dual-Report Unit", "dual_report_unit"),
        ("个体业户", "individual_business"),
    ],
)
def test_enumerations_accept_code_chinese_and_english_names(text: str, code: str) -> None:
    assert parse_cell(UNITS.column("kind"), text) == code


def test_unknown_enumeration_names_the_choices_in_both_languages() -> None:
    message = reason(lambda: parse_cell(UNITS.column("kind"), "物业" + "集团"))
    assert message.startswith(
        "kind '物业集团' is not one of: property_company (物业服务企业), owners_committee (业委会)"
    )
    assert parse_cell(SHEETS["unit_resource_entries"].column("category"), "车辆") == "vehicle"
    assert parse_cell(PEOPLE.column("worker.post"), "社区副职") == "community_deputy"


@pytest.mark.parametrize(
    "cell", ["党员;志愿者", "党员；志愿者", "党员、志愿者", "党员,志愿者", "党员，志愿者", "党员\n志愿者 "]
)
def test_list_cells_split_on_every_separator(cell: str) -> None:
    assert parse_cell(PEOPLE.column("roles"), cell) == ["party_member", "volunteer"]


def test_list_cells_of_ids_terms_and_duties() -> None:
    assert parse_cell(UNITS.column("serves_grid_ids"), "g01; g02、g03") == ["g01", "g02", "g03"]
    assert parse_cell(UNITS.column("duties_accepted"), "按时参会、响应吹号;provide_resources") == [
        "attend_meetings",
        "answer_whistle",
        "provide_resources",
    ]
    assert parse_cell(PEOPLE.column("volunteer.services"), "水电维修；理发") == ["水电维修", "理发"]
    assert parse_cell(UNITS.column("serves_grid_ids"), None) == []


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("周六 08:00-12:00; 周日 14:00-17:00", [(6, "08:00", "12:00"), (7, "14:00", "17:00")]),
        ("6 08:00-12:00", [(6, "08:00", "12:00")]),
        ("星期三 8:30～11:00", [(3, "08:30", "11:00")]),
        ("周一至周三 18:00-20:00", [(1, "18:00", "20:00"), (2, "18:00", "20:00"), (3, "18:00", "20:00")]),
        ("Sat 09:00-10:00，sunday 09：00 至 10：00", [(6, "09:00", "10:00"), (7, "09:00", "10:00")]),
        ("", []),
    ],
)
def test_availability_text(text: str, slots: list[tuple[int, str, str]]) -> None:
    parsed = parse_availability(text)
    assert [(s["weekday"], s["start"], s["end"]) for s in parsed] == slots
    assert domain.availability({"availability": parsed}) == parsed
    if parsed:
        assert parse_availability(sheets.format_availability(parsed)) == parsed


@pytest.mark.parametrize("text", ["周六", "08:00-12:00", "周八 08:00-12:00", "9 08:00-12:00", "周五至周一 08:00-09:00"])
def test_bad_availability_names_the_slot(text: str) -> None:
    message = reason(lambda: parse_availability(text))
    assert message.startswith("volunteer.availability: ")
    assert repr(text) in message


def test_dates_numbers_and_personal_cells() -> None:
    col = UNITS.column("joined_on")
    for cell in ("2024-03-05", "2024/3/5", "2024.3.5", "2024年3月5日", "20240305", date(2024, 3, 5)):
        assert parse_cell(col, cell) == "2024-03-05"
    assert parse_cell(col, datetime(2024, 3, 5)) == "2024-03-05"
    assert parse_cell(col, "下周") == "下周"  # left for the validator to name
    assert parse_cell(UNITS.column("contact_phone"), 13812345678) == "13812345678"
    assert parse_cell(UNITS.column("contact_phone"), "138****5678") == "138****5678"
    assert "format the column as text" in reason(lambda: parse_cell(PEOPLE.column("id_number"), 3.70102199e17))
    level = SHEETS["talent_entries"].column("level")
    assert [parse_cell(level, v) for v in (3, 3.0, "3", " 3 ", "三", None)] == [3, 3, 3, 3, "三", 0]
    assert parse_cell(SHEETS["team_service_entries"].column("hours_per_week"), "2.5") == 2.5
    assert parse_cell(UNITS.column("id"), 1001.0) == "1001"


def test_a_row_becomes_nested_fields_and_collects_every_bad_cell() -> None:
    headers, _ = parse_header(PEOPLE, ["编号", "社区编号", "姓名", "身份", "报到社区", "服务时间", "岗位", "等级"])
    data, problems = parse_row(headers, ["p1", "jiade", "张三", "党员;志愿者", "caiyuan-x", "周六 08:00-12:00", "", ""])
    assert data == {
        "id": "p1",
        "community_id": "jiade",
        "name_zh": "张三",
        "roles": ["party_member", "volunteer"],
        "party": {"home_community_id": "caiyuan-x"},
        "volunteer": {"availability": [{"weekday": 6, "start": "08:00", "end": "12:00"}]},
        "worker": {"post": "", "grade": 0},
    }
    assert problems == []
    _, problems = parse_row(headers, ["p2", "jiade", "李四", "党员;居民", "", "周六", "校长", "", "多余"])
    assert [column for column, _ in problems] == ["身份", "服务时间", "岗位", "(I)"]
    assert "roles '居民' is not one of" in problems[0][1]


def test_exported_values_read_back_to_the_same_fields() -> None:
    stored = {
        "id": "p9",
        "community_id": "jiade",
        "grid_id": "jiade-g01",
        "name_zh": "王五",
        "public_name": "王老师",
        "roles": ["party_member", "volunteer", "community_worker"],
        "phone": "138****5678",
        "id_number": "3701**********1234",
        "party": {"home_community_id": "jiade", "work_unit": "泰安一中", "dual_report_registered_on": "2024-05-01"},
        "volunteer": {
            "team_id": "team1",
            "services": ["水电维修", "理发"],
            "availability": [{"weekday": 6, "start": "08:00", "end": "12:00"}],
        },
        "worker": {"post": "community_staff", "grade": 7},
        "member_unit_id": "mu-7",
    }
    row = [sheets.export_value(c, sheets._get(stored, c.key)) for c in PEOPLE.columns]
    assert "党员; 志愿者; 专职社区工作者" in row and "周六 08:00-12:00" in row and 7 in row
    headers, errors = parse_header(PEOPLE, [c.title for c in PEOPLE.columns])
    assert errors == []
    data, problems = parse_row(headers, row)
    assert problems == []
    assert data == stored


# ---------------------------------------------------------------- files


def test_csv_with_bom_and_without() -> None:
    body = "单位名称,社区编号,类型,加入日期\r\n嘉德物业,jiade,物业服务企业,2024-01-01\r\n,,,\r\n"
    for content in (body.encode("utf-8-sig"), body.encode()):
        table = read_table("csv", content)
        assert table.header == ["单位名称", "社区编号", "类型", "加入日期"]
        assert table.rows == [(2, ["嘉德物业", "jiade", "物业服务企业", "2024-01-01"])]


def test_csv_row_numbers_count_records_not_lines_and_skip_blank_rows() -> None:
    content = '姓名,备注\r\n"张三","两行\r\n备注"\r\n\r\n李四,x\r\n'.encode()
    assert [n for n, _ in read_table("csv", content).rows] == [2, 4]


def test_exported_files_read_back_with_bom_and_formula_guard() -> None:
    rows = [["t1", "p1", "水电维修", 5, '=HYPERLINK("x")'], ["t2", "p1", "理发", 3, "-"]]
    talent = SHEETS["talent_entries"]
    csv_bytes = sheets.write_table(talent, "csv", rows)
    assert csv_bytes.startswith("\ufeff".encode())
    assert b"'=HYPERLINK" in csv_bytes  # Excel shows text, never runs it
    xlsx_bytes = sheets.write_table(talent, "xlsx", rows)
    book = openpyxl.load_workbook(io.BytesIO(xlsx_bytes))
    ws = book.active
    assert ws["A1"].font.b and ws["A1"].value == "编号 id"
    assert ws["E2"].data_type == "s" and ws["E2"].value == '=HYPERLINK("x")'
    assert ws.column_dimensions["C"].width >= 8
    for fmt, content in (("csv", csv_bytes), ("xlsx", xlsx_bytes)):
        table = read_table(fmt, content)
        headers, errors = parse_header(talent, table.header)
        assert errors == []
        parsed = [parse_row(headers, cells)[0] for _, cells in table.rows]
        assert [(p["id"], p["level"], p["note"]) for p in parsed] == [("t1", 5, '=HYPERLINK("x")'), ("t2", 3, "-")]


def test_xlsx_cells_keep_their_types_and_rows_their_numbers() -> None:
    content = xlsx([["单位名称", "加入日期", "联系电话"], [None], ["嘉德物业", datetime(2024, 3, 5), 13812345678]])
    table = read_table("xlsx", content)
    assert table.rows == [(3, ["嘉德物业", datetime(2024, 3, 5), 13812345678])]


@pytest.mark.parametrize(
    ("fmt", "content", "expected"),
    [
        ("csv", b"", "the file is empty"),
        ("csv", "姓名,备注\r\n张三,好\r\n".encode("gbk"), "not UTF-8 text"),
        ("csv", "姓名\r\n".encode("gbk"), "GBK"),
        ("csv", xlsx([["a"]]), "send it with format xlsx"),
        ("csv", b'a,b\r\nx,"' + b"y" * 200_000 + b'"\r\n', "cannot be read at row 2"),
        ("xlsx", "姓名,备注\r\n".encode(), "not an xlsx workbook (it looks like text"),
        ("xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "old Excel .xls"),
        ("xlsx", b"PK\x03\x04 not really a zip", "damaged"),
        ("xlsx", b"\n\n", "not an xlsx workbook"),
        ("csv", b"\r\n ,\r\n", "no header row"),
    ],
)
def test_unreadable_files_say_what_is_wrong(fmt: str, content: bytes, expected: str) -> None:
    assert expected in reason(lambda: read_table(fmt, content))


def test_a_zip_that_is_not_a_workbook_is_refused_cleanly() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "hi")
    assert "cannot be read" in reason(lambda: read_table("xlsx", out.getvalue()))


def test_size_and_row_limits() -> None:
    big = b"a\r\n" + b"x" * (sheets.MAX_BYTES + 1)
    assert "at most 5 MB" in reason(lambda: read_table("csv", big))
    many = ("技能\r\n" + "木工\r\n" * (sheets.MAX_ROWS + 1)).encode()
    assert "more than 20,000 data rows" in reason(lambda: read_table("csv", many))
    exactly = ("技能\r\n" + "木工\r\n" * sheets.MAX_ROWS).encode()
    assert len(read_table("csv", exactly).rows) == sheets.MAX_ROWS


def test_unknown_entity_and_format_name_the_valid_ones() -> None:
    message = reason(lambda: sheets.sheet_for("grids"))
    assert "member_units, people, talent_entries, team_service_entries, unit_resource_entries" in message
    assert "xlsx, csv" in reason(lambda: sheets.format_of("xls"))
    assert sheets.format_of(" XLSX ") == "xlsx"
    assert sheets.sheet_for("People").spec == "person"
