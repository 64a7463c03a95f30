"""Spreadsheet import and export against the real org service (gRPC, FerretDB, Kafka)."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

import grpc
import openpyxl
import pytest
from hongling.org.v1 import org_pb2 as pb
from hongling.org.v1 import org_pb2_grpc
from pymongo import MongoClient

from services.common.events import topic_for
from services.org import domain
from tests.conftest import System, call_metadata, read_topic, unique, wait_for

TENANT = "taiqian"
UNIT_HEADER = [
    "编号",
    "社区编号",
    "单位名称",
    "类型",
    "联系人",
    "联系电话",
    "服务网格",
    "加入日期",
    "退出日期",
    "承诺职责",
]


class Org:
    def __init__(self, system: System, tenant: str = TENANT) -> None:
        self.system = system
        self.stub = org_pb2_grpc.OrgServiceStub(system.channel("org"))
        self.tenant = tenant

    def __getattr__(self, method: str) -> Callable[[Any], Any]:
        rpc = getattr(self.stub, method)
        return lambda req: rpc(req, metadata=call_metadata(self.system.settings, self.tenant), timeout=60)

    def import_(self, entity: str, fmt: str, content: bytes, dry_run: bool = False) -> Any:
        return self.ImportSheet(pb.ImportSheetRequest(entity=entity, format=fmt, content=content, dry_run=dry_run))

    def export(self, entity: str, fmt: str, **filters: str) -> Any:
        return self.ExportSheet(pb.ExportSheetRequest(entity=entity, format=fmt, filter=filters))

    def fails(self, method: str, req: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as exc:
            getattr(self, method)(req)
        return exc.value


def rect(lon: float, lat: float, size: float = 0.01) -> str:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def id_number() -> str:
    """A random, valid mainland ID number (check digit per GB 11643)."""
    body = f"370902{random.randint(1950, 2000)}{random.randint(1, 12):02d}{random.randint(1, 28):02d}"
    body += f"{random.randint(0, 999):03d}"
    return body + domain.ID_CHECK[sum(int(d) * w for d, w in zip(body, domain.ID_WEIGHTS, strict=True)) % 11]


def mobile() -> str:
    return f"13{random.randint(0, 9)}{random.randint(0, 99_999_999):08d}"


def xlsx(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    ws = book.active
    for r in rows:
        ws.append(r)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_bom(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def errors_of(resp: Any) -> list[tuple[int, str, str]]:
    return [(e.row, e.column, e.reason) for e in resp.errors]


def events_for(system: System, ids: set[str]) -> int:
    keys = {f"{TENANT}:{i}".encode() for i in ids}
    return sum(1 for r in read_topic(system.settings.kafka_bootstrap, topic_for("org")) if r.key in keys)


def recorded_events(mongo_client: MongoClient[Any], ids: set[str]) -> list[str]:
    """The ids of the events in these member units' histories, unit by unit."""
    units = mongo_client[f"hl_org_{TENANT}"]["member_units"].find({"_id": {"$in": sorted(ids)}}).sort("_id", 1)
    return [e["id"] for u in units for e in u.get("outbox") or []]


@pytest.fixture(scope="module")
def org(system: System) -> Org:
    return Org(system)


@pytest.fixture(scope="module")
def place(org: Org) -> dict[str, str]:
    """Two communities: `c` with grids g1, g2 and a volunteer team; `other` with grid h1."""
    c, other = unique("sc"), unique("so")
    org.CreateCommunity(pb.Community(id=c, name_zh=f"表格社区{c}"))
    org.CreateCommunity(pb.Community(id=other, name_zh=f"表格社区{other}"))
    lon = 117.0 + random.random() * 0.5
    org.CreateGrid(pb.Grid(id=f"{c}-g1", community_id=c, name_zh="一网格", boundary_geojson=rect(lon, 36.2)))
    org.CreateGrid(pb.Grid(id=f"{c}-g2", community_id=c, name_zh="二网格", boundary_geojson=rect(lon + 0.01, 36.2)))
    org.CreateGrid(pb.Grid(id=f"{other}-h1", community_id=other, name_zh="一网格", boundary_geojson=rect(lon, 36.3)))
    org.CreateVolunteerTeam(pb.VolunteerTeam(id=f"{c}-team", community_id=c, name_zh="红领志愿队"))
    person = org.CreatePerson(pb.Person(id=f"{c}-p0", community_id=c, name_zh="赵六", roles=["volunteer"]))
    return {"c": c, "other": other, "g1": f"{c}-g1", "g2": f"{c}-g2", "h1": f"{other}-h1", "p0": person.id}


def units_in(org: Org, community: str) -> list[Any]:
    return list(org.ListMemberUnits(pb.ListRequest(filter={"community_id": community}, page_size=500)).items)


# ---------------------------------------------------------------- requests the service refuses


def test_bad_requests_are_invalid_argument_with_a_clear_message(org: Org) -> None:
    many_rows = ("技能\r\n" + "木工\r\n" * 20_001).encode()
    cases = [
        (pb.ImportSheetRequest(entity="grids", format="csv", content=b"a\r\n"), "use one of: member_units, people"),
        (pb.ImportSheetRequest(entity="people", format="ods", content=b"a\r\n"), "use one of: xlsx, csv"),
        (pb.ImportSheetRequest(entity="people", format="xlsx", content=b"name\r\n"), "not an xlsx workbook"),
        (pb.ImportSheetRequest(entity="people", format="csv", content="姓名\r\n".encode("gbk")), "not UTF-8"),
        (pb.ImportSheetRequest(entity="talent_entries", format="csv", content=many_rows), "more than 20,000 data rows"),
    ]
    for req, message in cases:
        err = org.fails("ImportSheet", req)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert message in err.details()
    err = org.fails("ExportSheet", pb.ExportSheetRequest(entity="people", format="csv", filter={"colour": "red"}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "cannot filter person by 'colour'" in err.details()


def test_unknown_and_missing_columns_are_reported_on_row_1(org: Org) -> None:
    resp = org.import_("member_units", "csv", csv_bom([["单位名称", "颜色", "类型"], ["x", "红", "业委会"]]), True)
    assert resp.rows == 1 and resp.created == 0
    assert [(r, c) for r, c, _ in errors_of(resp)] == [(1, "颜色"), (1, "")]
    assert "unknown column '颜色'" in resp.errors[0].reason
    assert resp.errors[1].reason == "missing required column(s): 社区编号 community_id, 加入日期 joined_on"


# ---------------------------------------------------------------- dry run and refusal


def test_dry_run_reports_every_bad_row_and_a_bad_file_stores_nothing(org: Org, place: dict[str, str]) -> None:
    c, u = place["c"], unique("u")
    rows = [
        UNIT_HEADER,
        [f"{u}-1", c, "好单位", "物业服务企业", "张经理", mobile(), place["g1"], "2024-01-01", "", "按时参会"],  # 2 ok
        [f"{u}-2", c, "坏类型", "物业集团", "", "", "", "2024-01-01", "", ""],  # 3
        [f"{u}-3", c, "越界单位", "驻地单位", "", "", place["h1"], "2024-01-01", "", ""],  # 4
        [f"{u}-4", "no-such-community", "无社区", "业委会", "", "", "", "2024-01-01", "", ""],  # 5
        [f"{u}-5", c, "坏电话", "业委会", "", "12345", "", "2024-01-01", "", ""],  # 6
        [f"{u}-6", c, "早退", "业委会", "", "", "", "2024-05-01", "2024-01-01", ""],  # 7
        ["", c, "好单位", "公益组织", "", "", "", "2024-01-01", "", ""],  # 8: same community + name as row 2
        [f"{u}-1", c, "另一单位", "业委会", "", "", "", "2024-01-01", "", ""],  # 9: same id as row 2
        [f"{u}-9", c, "假电话", "业委会", "", "138****5678", "", "2024-01-01", "", ""],  # 10: masked, new
        [f"{u}-10", c, "坏职责", "业委会", "", "", "", "2024-01-01", "", "按时参会;喝茶"],  # 11
        [f"{u}-11", c, "坏日期", "业委会", "", "", "", "去年", "", ""],  # 12
        [f"{u}-12", c, "好单位二", "个体业户", "", "", f"{place['g1']}、{place['g2']}", "2024/3/5", "", ""],  # 13 ok
    ]
    content = xlsx(rows)
    resp = org.import_("member_units", "xlsx", content, dry_run=True)
    assert resp.dry_run and resp.rows == 12
    got = errors_of(resp)
    assert [(r, col) for r, col, _ in got] == [
        (3, "类型"),
        (4, "服务网格"),
        (5, "社区编号"),
        (6, "联系电话"),
        (7, "退出日期"),
        (8, "单位名称"),
        (9, "编号"),
        (10, "联系电话"),
        (11, "承诺职责"),
        (12, "加入日期"),
    ], got
    reasons = dict(((r, reason) for r, _, reason in got))
    assert reasons[3].startswith("kind '物业集团' is not one of: property_company (物业服务企业)")
    assert reasons[4] == f"serves_grid_ids: grid {place['h1']!r} is in another community (只能服务本社区网格)"
    assert reasons[5].startswith("community_id: no community 'no-such-community' in this tenant")
    assert reasons[6] == "contact_phone is not a Chinese mobile (11 digits) or landline number"
    assert reasons[7] == "left_on is before joined_on"
    assert "row 2" in reasons[8] and "row 2" in reasons[9]
    assert reasons[10] == "contact_phone looks masked; send the full value or leave it as read"
    assert "'喝茶'" in reasons[11]
    assert reasons[12] == "joined_on '去年' is not a date (YYYY-MM-DD)"
    assert resp.created == 2  # what the good rows would do
    assert units_in(org, c) == []

    real = org.import_("member_units", "xlsx", content, dry_run=False)
    assert errors_of(real) == got and not real.dry_run
    assert (real.created, real.updated, real.unchanged) == (0, 0, 0)
    assert units_in(org, c) == []  # nothing half-written


# ---------------------------------------------------------------- import, re-import, update


def test_good_csv_imports_and_reimport_changes_nothing(
    org: Org, place: dict[str, str], system: System, mongo_client: MongoClient[Any]
) -> None:
    c = place["c"]
    names = [f"{unique('单位')}" for _ in range(3)]
    rows = [
        ["ID", "community_id", "名称", "kind", "contact_name", "联系电话", "服务网格", "加入日期", "退出日期", "职责"],
        [unique("unit"), c, names[0], "property_company", "孙经理", mobile(), place["g1"], "2024-01-01", "", ""],
        [
            "",
            c,
            names[1],
            '"双报到"单位',
            "周主任",
            "0538-8221234",
            f"{place['g1']}；{place['g2']}",
            "2024-2-1",
            "",
            "响应吹号、提供资源",
        ],
        ["", c, names[2], "草根社团", "", "", "", "2023年6月1日", "2024-06-01", "attend_meetings"],
    ]
    content = csv_bom(rows)
    first = org.import_("member_units", "csv", content)
    assert errors_of(first) == []
    assert (first.rows, first.created, first.updated, first.unchanged) == (3, 3, 0, 0)
    stored = {u.name_zh: u for u in units_in(org, c) if u.name_zh in names}
    assert len(stored) == 3
    assert stored[names[0]].id == rows[1][0]
    assert stored[names[1]].kind == "dual_report_unit"
    assert list(stored[names[1]].serves_grid_ids) == sorted([place["g1"], place["g2"]])
    assert list(stored[names[1]].duties_accepted) == ["answer_whistle", "provide_resources"]
    assert stored[names[1]].contact_phone == "053*****1234"  # 0538-8221234 masked
    assert stored[names[2]].joined_on == "2023-06-01" and stored[names[2]].status == "left"
    ids = {u.id for u in stored.values()}
    versions = {u.id: u.version for u in stored.values()}
    # An event is published with its document's key from the document's own history (`outbox`): what the
    # units hold is what the topic gets, and an import that records nothing there publishes nothing.
    recorded = recorded_events(mongo_client, ids)
    assert len(recorded) == 6  # created + joined/left per unit
    wait_for(lambda: events_for(system, ids) == len(recorded))

    again = org.import_("member_units", "csv", content)
    assert errors_of(again) == []
    assert (again.rows, again.created, again.updated, again.unchanged) == (3, 0, 0, 3)
    assert {u.id: u.version for u in units_in(org, c) if u.id in ids} == versions
    assert recorded_events(mongo_client, ids) == recorded

    rows[2][4] = "吴主任"
    changed = org.import_("member_units", "csv", csv_bom(rows))
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 2)
    after = {u.id: u for u in units_in(org, c) if u.id in ids}
    assert [u.contact_name for u in after.values() if u.name_zh == names[1]] == ["吴主任"]
    assert sorted(u.version - versions[u.id] for u in after.values()) == [0, 0, 1]
    now = recorded_events(mongo_client, ids)
    assert set(recorded) < set(now)  # the change's event(s) added to the history
    wait_for(lambda: events_for(system, ids) == len(now))  # published: no more, no fewer


def test_people_export_and_import_back_keep_masked_personal_data(org: Org, place: dict[str, str]) -> None:
    c = place["c"]
    people = [(unique("甲"), mobile(), id_number()), (unique("乙"), mobile(), id_number()), (unique("丙"), "", "")]
    header = ["姓名", "社区编号", "网格编号", "身份", "手机号", "身份证号", "报到社区", "工作单位"]
    header += ["志愿队伍", "志愿服务", "服务时间", "岗位", "等级"]
    jia_rest = [f"{c}-team", "水电维修；理发", "周六 08:00-12:00; 周日 14:00-17:00", "", ""]
    rows: list[list[Any]] = [
        header,
        [
            people[0][0],
            c,
            place["g1"],
            "党员、志愿者",
            people[0][1],
            people[0][2],
            place["other"],
            "泰安一中",
            *jia_rest,
        ],
        [people[1][0], c, "", "专职社区工作者", people[1][1], people[1][2], "", "", "", "", "", "社区副职", 7],
        [people[2][0], c, place["g2"], "volunteer", "", "", "", "", "", "助老", "6 09:00-11:00", "", ""],
    ]
    first = org.import_("people", "xlsx", xlsx(rows))
    assert errors_of(first) == [] and first.created == 3
    assert org.import_("people", "xlsx", xlsx(rows)).unchanged == 3  # found again by ID number / name

    exported = org.export("people", "xlsx", community_id=c)
    day = time.strftime("%Y%m%d", time.gmtime(time.time() + 8 * 3600))
    assert exported.filename == f"people-{TENANT}-{day}.xlsx"
    assert exported.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert exported.rows == 4  # the three and 赵六 made by the API
    ws = openpyxl.load_workbook(io.BytesIO(exported.content)).active
    titles = [cell.value for cell in ws[1]]
    assert titles[:4] == ["编号 id", "社区编号 community_id", "网格编号 grid_id", "姓名 name_zh"]
    assert ws["A1"].font.b
    cells = [[cell.value for cell in r] for r in ws.iter_rows(min_row=2)]
    by_name = {r[titles.index("姓名 name_zh")]: r for r in cells}
    jia = by_name[people[0][0]]
    assert jia[titles.index("手机号 phone")] == people[0][1][:3] + "****" + people[0][1][-4:]
    assert jia[titles.index("身份证号 id_number")] == people[0][2][:4] + "*" * 10 + people[0][2][-4:]
    assert jia[titles.index("身份 roles")] == "党员; 志愿者"
    assert jia[titles.index("服务时间 volunteer.availability")] == "周六 08:00-12:00; 周日 14:00-17:00"
    assert not any(people[0][2] in str(v) or people[0][1] in str(v) for r in cells for v in r)
    versions = {p.id: p.version for p in org.ListPeople(pb.ListRequest(filter={"community_id": c})).items}

    back = org.import_("people", "xlsx", exported.content)
    assert errors_of(back) == []
    assert (back.rows, back.created, back.updated, back.unchanged) == (4, 0, 0, 4)
    assert {p.id: p.version for p in org.ListPeople(pb.ListRequest(filter={"community_id": c})).items} == versions
    jia_id = jia[0]
    revealed = org.GetPerson(pb.GetRequest(id=jia_id, reveal=True))
    assert (revealed.phone, revealed.id_number) == (people[0][1], people[0][2])  # the stored values, kept

    as_csv = org.export("people", "csv", community_id=c)
    assert as_csv.content.startswith("\ufeff".encode()) and as_csv.filename.endswith(".csv")
    assert as_csv.content_type.startswith("text/csv")
    assert org.import_("people", "csv", as_csv.content).unchanged == 4

    # An edit in the exported sheet updates just that person, masked data still kept.
    ws.cell(
        row=[r[0] for r in cells].index(jia_id) + 2, column=titles.index("工作单位 party.work_unit") + 1
    ).value = "泰安二中"
    out = io.BytesIO()
    ws.parent.save(out)
    edited = org.import_("people", "xlsx", out.getvalue())
    assert (edited.updated, edited.unchanged) == (1, 3), errors_of(edited)
    person = org.GetPerson(pb.GetRequest(id=jia_id, reveal=True))
    assert person.party.work_unit == "泰安二中" and person.version == versions[jia_id] + 1
    assert (person.phone, person.id_number) == (people[0][1], people[0][2])


def test_lists_import_with_natural_keys_and_reference_checks(org: Org, place: dict[str, str]) -> None:
    p0 = place["p0"]
    skill = unique("木工")
    rows = [["人员编号", "技能", "等级", "备注"], [p0, skill, 4, "持证"], [p0, "  " + skill.upper() + " ", 3, ""]]
    dup = org.import_("talent_entries", "csv", csv_bom(rows), dry_run=True)
    assert [(r, col) for r, col, _ in errors_of(dup)] == [(3, "技能")]  # the same person + skill twice
    rows = [rows[0], rows[1], ["nobody", skill, 2, ""], [p0, unique("电工"), 9, ""]]
    bad = org.import_("talent_entries", "csv", csv_bom(rows), dry_run=True)
    assert [(r, col) for r, col, _ in errors_of(bad)] == [(3, "人员编号"), (4, "等级")]
    assert "no person 'nobody'" in bad.errors[0].reason and "outside 1..5" in bad.errors[1].reason

    good = csv_bom([rows[0], rows[1]])
    assert org.import_("talent_entries", "csv", good).created == 1
    again = org.import_("talent_entries", "csv", good)
    assert (again.created, again.unchanged) == (0, 1)
    entries = org.ListTalentEntries(pb.ListRequest(filter={"person_id": p0})).items
    assert [(e.skill, e.level, e.community_id) for e in entries if e.skill == skill.lower()] == [
        (skill.lower(), 4, place["c"])
    ]
    assert re.fullmatch(r"talent-[0-9a-f]{20}", entries[0].id)

    team = f"{place['c']}-team"
    services = [["队伍编号", "服务项目", "可派人数", "每周时长"], [team, "助老", 5, 2.5], [team, "义诊", 3, ""]]
    assert org.import_("team_service_entries", "xlsx", xlsx(services)).created == 2
    assert org.import_("team_service_entries", "xlsx", xlsx(services)).unchanged == 2
    exported = org.export("team_service_entries", "csv", team_id=team)
    assert exported.rows == 2 and org.import_("team_service_entries", "csv", exported.content).unchanged == 2
