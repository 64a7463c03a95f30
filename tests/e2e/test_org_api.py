"""The org REST API through the running gateway and org service: CRUD with ETag/If-Match, filters,
masked personal data and who may reveal it, location and matching queries, spreadsheets."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from tests.conftest import System, unique, wait_for

T = "xujialou"  # the tenant these tests write to
OTHER = "shengzhuang"
# A square grid around (36.205, 117.105), lon/lat as GeoJSON wants them.
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[117.10, 36.20], [117.11, 36.20], [117.11, 36.21], [117.10, 36.21], [117.10, 36.20]]],
}
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number() -> str:
    """A random, valid mainland ID number (GB 11643) from 泰安市泰山区."""
    born = date(1950, 1, 1) + timedelta(days=random.randrange(20000))
    body = f"370902{born:%Y%m%d}{random.randrange(1000):03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


def phone() -> str:
    return f"138{random.randrange(10**8):08d}"


def org(
    system: System,
    method: str,
    path: str,
    *,
    tenant: str = T,
    role: str | None = "subdistrict_admin",
    scope: str = "*",
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> requests.Response:
    """A call to /api/v1/tenants/{tenant}/org/{path} with a token of role@scope (role None: anonymous)."""
    h = {**(system.auth(role, scope) if role else {}), **(headers or {})}
    return requests.request(method, f"{system.gateway}/api/v1/tenants/{tenant}/org/{path}", headers=h, timeout=10, **kw)


def created(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def new_community(system: System, tenant: str = T) -> dict[str, Any]:
    cid = unique("c")
    return created(org(system, "POST", "communities", tenant=tenant, json={"id": cid, "name_zh": f"测试社区{cid}"}))


def square(lat: float, lon: float, size: float = 0.01) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def new_grid(system: System, community_id: str, tenant: str = T, boundary: dict[str, Any] = SQUARE) -> dict[str, Any]:
    body = {"community_id": community_id, "name_zh": f"网格{unique('g')}", "boundary_geojson": json.dumps(boundary)}
    return created(org(system, "POST", "grids", tenant=tenant, json=body))


def new_person(system: System, community_id: str, **extra: Any) -> dict[str, Any]:
    body = {"community_id": community_id, "name_zh": "王志愿", "roles": ["volunteer"], **extra}
    return created(org(system, "POST", "people", json=body))


def error(resp: requests.Response, status: int, code: str | None = None, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["message"] and err["request_id"] == resp.headers["X-Request-Id"]
    if code:
        assert err["code"] == code, err
    if field:
        assert err.get("field") == field, err
    return err


# ---------------------------------------------------------------- CRUD with ETag / If-Match


def test_community_round_trip_with_etag_and_if_match(system: System) -> None:
    cid = unique("c")
    resp = org(system, "POST", "communities", json={"id": cid, "name_zh": "嘉德社区", "address": "泰山区岱宗大街1号"})
    body = created(resp)
    assert resp.headers["Location"] == f"/api/v1/tenants/{T}/org/communities/{cid}"
    assert resp.headers["ETag"] == '"1"' and body["version"] == 1 and body["meta"]["version"] == 1
    assert body["meta"]["created_at"].endswith("+08:00")
    assert "嘉德社区" in resp.content.decode("utf-8")  # UTF-8, not \u escapes
    assert resp.headers["Cache-Control"] == "no-store"

    got = org(system, "GET", f"communities/{cid}")
    assert got.status_code == 200 and got.headers["ETag"] == '"1"'
    record = got.json()
    assert record["name_zh"] == "嘉德社区" and record["id"] == cid

    record["name_en"] = "Jiade Community"
    error(org(system, "PUT", f"communities/{cid}", json=record), 428, "precondition_required", "If-Match")
    updated = org(system, "PUT", f"communities/{cid}", json=record, headers={"If-Match": '"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.headers["ETag"] == '"2"' and updated.json()["name_en"] == "Jiade Community"
    assert updated.json()["meta"]["updated_at"].endswith("+08:00")

    stale = org(system, "PUT", f"communities/{cid}", json={**record, "version": None}, headers={"If-Match": '"1"'})
    err = error(stale, 412, "precondition_failed", "If-Match")
    assert "version 2" in err["message"]
    error(org(system, "PUT", f"communities/{cid}", json=record, headers={"If-Match": "1"}), 400, field="If-Match")
    assert org(system, "GET", f"communities/{cid}").json()["name_en"] == "Jiade Community"

    error(org(system, "DELETE", f"communities/{cid}", headers={"If-Match": '"2"'}), 405, "method_not_allowed")
    error(org(system, "GET", f"communities/{cid}", tenant=OTHER), 404, "not_found")  # tenants are separate


def test_grid_with_filters_and_paging(system: System) -> None:
    c1, c2 = new_community(system), new_community(system)
    grids = [new_grid(system, c1["id"])["id"] for _ in range(3)]
    new_grid(system, c2["id"])
    listed = org(system, "GET", f"grids?community_id={c1['id']}")
    assert listed.status_code == 200
    assert sorted(g["id"] for g in listed.json()["items"]) == sorted(grids)
    assert all(g["community_id"] == c1["id"] for g in listed.json()["items"])

    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = org(system, "GET", f"grids?community_id={c1['id']}&page_size=2&page_token={token}").json()
        seen += [g["id"] for g in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert sorted(seen) == sorted(grids)

    err = error(org(system, "GET", "grids?colour=red"), 400, "invalid_argument", "filter.colour")
    assert "colour" in err["message"] and "community_id" in err["message"]
    error(org(system, "GET", "grids?community_id=a&community_id=b"), 400, field="filter.community_id")
    error(org(system, "GET", "grids?page_size=many"), 400, field="page_size")
    error(org(system, "GET", "grids?page_size=100000"), 400, field="page_size")


def test_validation_errors_of_the_service_name_the_field(system: System) -> None:
    c = new_community(system)
    error(
        org(system, "POST", "grids", json={"community_id": c["id"], "name_zh": "无边界"}), 400, field="boundary_geojson"
    )
    error(org(system, "POST", "grids", json={"community_id": "nowhere", "name_zh": "x"}), 400)
    dup = org(system, "POST", "communities", json={"id": c["id"], "name_zh": "再来一个"})
    error(dup, 409, "already_exists", "id")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name_zh": "x", "colour": "red"}, "colour"),
        ({"name_zh": 7}, "name_zh"),
        ({"name_zh": "x", "address": ["a"]}, "address"),
    ],
)
def test_a_body_that_does_not_fit_the_message_is_a_400_naming_the_field(
    system: System, body: dict[str, Any], field: str
) -> None:
    error(org(system, "POST", "communities", json=body), 400, "invalid_argument", field)


def test_bodies_that_are_not_json_objects_are_refused(system: System) -> None:
    headers = {"content-type": "application/json"}
    error(org(system, "POST", "communities", data=b"{nope", headers=headers), 400, "invalid_json")
    error(org(system, "POST", "communities", json=[1]), 400, "invalid_json")
    c = new_community(system)
    other_id = {"id": "someone-else", "name_zh": "x"}
    error(org(system, "PUT", f"communities/{c['id']}", json=other_id, headers={"If-Match": '"1"'}), 400, field="id")
    wrong_version = {"name_zh": "x", "version": 5}
    error(
        org(system, "PUT", f"communities/{c['id']}", json=wrong_version, headers={"If-Match": '"1"'}),
        400,
        field="version",
    )


def test_unknown_collection_and_tenant(system: System) -> None:
    err = error(org(system, "GET", "spaceships"), 404, "unknown_collection", "collection")
    assert "communities" in err["message"]
    error(org(system, "GET", "communities", tenant="gotham"), 404, "unknown_tenant", "tenant")


# ---------------------------------------------------------------- personal data


def test_personal_data_is_masked_and_revealed_only_to_community_staff(system: System) -> None:
    c = new_community(system)
    number, mobile = id_number(), phone()
    person = new_person(system, c["id"], phone=mobile, id_number=number)
    pid = person["id"]
    assert person["phone"] == mobile[:3] + "****" + mobile[-4:]
    assert person["id_number"] == number[:4] + "*" * 10 + number[-4:]

    masked = org(system, "GET", f"people/{pid}").json()
    assert masked["phone"] != mobile and masked["id_number"] != number
    listed = org(system, "GET", f"people?community_id={c['id']}").json()["items"]
    assert [p["phone"] for p in listed] == [masked["phone"]]

    worker = system.worker_auth(T, c["id"], sub=f"test-worker-{c['id']}")  # of the person's community
    for role, scope, headers in (
        (None, "", worker),
        ("subdistrict_admin", T, None),
        ("subdistrict_admin", "*", None),
    ):
        revealed = org(system, "GET", f"people/{pid}?reveal=true", role=role, scope=scope, headers=headers)
        assert revealed.status_code == 200, revealed.text
        assert (revealed.json()["phone"], revealed.json()["id_number"]) == (mobile, number)
        assert revealed.headers["Cache-Control"] == "no-store"
    for role in ("resident", "public", "ops", "district_department", "district_approver"):
        error(org(system, "GET", f"people/{pid}?reveal=true", role=role, scope=T), 403)
    error(org(system, "GET", f"people/{pid}?reveal=true", role=None), 401, "unauthenticated")
    # A community worker of another community: as if there were no such person (社区范围).
    neighbour = org(system, "GET", f"people/{pid}?reveal=true", role="community_worker", scope=T)
    assert error(neighbour, 404, "not_found")["message"] == f"person {pid!r} not found in this tenant (未找到)"
    error(org(system, "GET", f"people/{pid}?reveal=perhaps"), 400, field="reveal")

    # Who revealed it is the authenticated caller, as forwarded to the org service (its log says so).
    log_file = Path(system.settings_state_dir) / "logs" / "org.log"
    wait_for(lambda: f"person {pid} to test-worker-{c['id']} (community_worker)" in log_file.read_text("utf-8"))

    # A record read masked can be written back as read: the masked values mean "unchanged".
    masked["name_zh"] = "王志愿（改）"
    put = org(system, "PUT", f"people/{pid}", json=masked, headers={"If-Match": '"1"'})
    assert put.status_code == 200, put.text
    again = org(system, "GET", f"people/{pid}?reveal=true").json()
    assert (again["name_zh"], again["phone"], again["id_number"]) == ("王志愿（改）", mobile, number)


# ---------------------------------------------------------------- list entries: delete with If-Match


def test_a_list_entry_is_deleted_only_with_the_current_version(system: System) -> None:
    c = new_community(system)
    person = new_person(system, c["id"])
    entry = created(
        org(system, "POST", "talent-entries", json={"person_id": person["id"], "skill": "水电维修", "level": 4})
    )
    assert entry["community_id"] == c["id"]  # derived by the service
    path = f"talent-entries/{entry['id']}"
    error(org(system, "DELETE", path), 428, "precondition_required", "If-Match")
    error(org(system, "DELETE", path, headers={"If-Match": '"2"'}), 412, "precondition_failed")
    gone = org(system, "DELETE", path, headers={"If-Match": '"1"'})
    assert gone.status_code == 204 and gone.content == b""
    error(org(system, "GET", path), 404, "not_found")


# ---------------------------------------------------------------- location and matching


def test_resolve_location_by_point_and_by_compound(system: System) -> None:
    c = new_community(system)
    # A small square of its own somewhere in Shandong: other tests' grids overlap SQUARE.
    lat, lon = round(35 + random.random() * 2, 4), round(116 + random.random() * 2, 4)
    g = new_grid(system, c["id"], boundary=square(lat, lon, 0.0005))
    compound = created(
        org(
            system,
            "POST",
            "compounds",
            json={
                "grid_id": g["id"],
                "name_zh": "泰山花园",
                "address": "1号",
                "point": {"lat": lat + 0.0002, "lon": lon + 0.0002},
            },
        )
    )
    by_point = org(system, "POST", "resolve-location", json={"lat": lat + 0.0002, "lon": lon + 0.0002})
    assert by_point.status_code == 200, by_point.text
    found = by_point.json()
    assert (found["grid_id"], found["community_id"]) == (g["id"], c["id"])
    assert found["community_name_zh"] == c["name_zh"]
    by_compound = org(system, "POST", "resolve-location", json={"compound_id": compound["id"]}).json()
    assert by_compound["compound_name_zh"] == "泰山花园" and by_compound["grid_id"] == g["id"]

    error(org(system, "POST", "resolve-location", json={"lat": 10.0, "lon": 10.0}), 404, "outside_grids")
    error(org(system, "POST", "resolve-location", json={"lat": 36.2, "lon": 117.1, "compound_id": "x"}), 400)
    error(org(system, "POST", "resolve-location", json={"lat": 36.2}), 400, field="lon")
    error(org(system, "POST", "resolve-location", json={"near": "here"}), 400, field="near")


def test_candidates_rank_helpers_with_reasons(system: System) -> None:
    c = new_community(system)
    g = new_grid(system, c["id"])
    skill = f"管道疏通{unique('s')[-6:]}"
    availability = [{"weekday": 1, "start": "08:00", "end": "12:00"}]
    person = new_person(system, c["id"], grid_id=g["id"], volunteer={"availability": availability})
    created(org(system, "POST", "talent-entries", json={"person_id": person["id"], "skill": skill, "level": 5}))
    # 2025-05-05 is a Monday; 10:00 without an offset is Shanghai time, inside the availability.
    body = {"skills": [skill], "grid_id": g["id"], "time": "2025-05-05T10:00:00", "limit": 5}
    resp = org(system, "POST", "candidates", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["considered"] == 1 and [x["id"] for x in out["candidates"]] == [person["id"]]
    reasons = " ".join(out["candidates"][0]["reasons"])
    assert skill in reasons and "available at that time" in reasons
    late = org(system, "POST", "candidates", json={**body, "time": "2025-05-05T04:00:00Z"}).json()  # 12:00 in Shanghai
    assert "not available at that time" in " ".join(late["candidates"][0]["reasons"])

    error(org(system, "POST", "candidates", json={**body, "time": "next monday"}), 400, field="time")
    error(org(system, "POST", "candidates", json={**body, "limit": 1000}), 400, field="limit")
    error(org(system, "POST", "candidates", json={**body, "skills": skill}), 400, field="skills")
    error(org(system, "POST", "candidates", json={"skills": []}), 400, field="skills")


# ---------------------------------------------------------------- spreadsheets


def test_import_route_takes_raw_or_multipart_and_passes_the_service_answer_through(system: System) -> None:
    error(org(system, "POST", "people/import?format=pdf", data=b"x"), 400, "invalid_argument", "format")
    error(org(system, "POST", "people/import", data=b"x"), 400, "invalid_argument", "format")
    error(org(system, "POST", "communities/import?format=csv", data=b"x"), 404, "no_spreadsheets")
    error(org(system, "POST", "people/import?format=csv", data=b""), 400, field="file")
    error(org(system, "POST", "people/import?format=csv&dry_run=perhaps", data=b"a"), 400, field="dry_run")
    error(org(system, "POST", "people/import?format=csv", files={"other": ("a.csv", b"x")}), 400, field="file")

    # Not an xlsx workbook: the org service refuses it, saying so.
    bad = org(system, "POST", "people/import?format=xlsx&dry_run=true", data=b"not a workbook")
    error(bad, 400, "invalid_argument")

    sheet = "姓名,电话\n张三,13800000000\n".encode()
    upload = org(system, "POST", "people/import?dry_run=true", files={"file": ("名单.csv", sheet, "text/csv")})
    assert upload.status_code == 200, upload.text
    assert upload.json()["dry_run"] is True and upload.json()["rows"] == 1
    assert upload.json()["errors"], "a people sheet without community and roles reports its bad row"


def test_people_round_trip_through_csv_import_and_export(system: System) -> None:
    c = new_community(system)["id"]
    mobile = phone()
    sheet = f"社区编号,姓名,身份,手机号\n{c},赵一,志愿者,{mobile}\n{c},钱二,党员,\n".encode()
    dry = org(system, "POST", "people/import?dry_run=true", files={"file": ("人员.csv", sheet, "text/csv")})
    assert dry.status_code == 200, dry.text
    assert (dry.json()["dry_run"], dry.json()["rows"], dry.json()["errors"]) == (True, 2, [])
    assert org(system, "GET", f"people?community_id={c}").json()["items"] == []  # a dry run writes nothing

    done = org(system, "POST", "people/import?format=csv", data=sheet, headers={"content-type": "text/csv"})
    assert done.status_code == 200 and done.json()["created"] == 2, done.text
    people = org(system, "GET", f"people?community_id={c}").json()["items"]
    assert sorted(p["name_zh"] for p in people) == ["赵一", "钱二"]

    exported = org(system, "GET", f"people/export?format=csv&community_id={c}")
    assert exported.status_code == 200 and exported.headers["X-Row-Count"] == "2"
    assert mobile not in exported.content.decode("utf-8-sig")  # masked in exports
    again = org(system, "POST", "people/import?format=csv", data=exported.content)
    assert again.status_code == 200 and again.json()["unchanged"] == 2, again.text


def test_export_route_sends_a_named_attachment(system: System) -> None:
    error(org(system, "GET", "people/export?format=pdf"), 400, "invalid_argument", "format")
    error(org(system, "GET", "grids/export"), 404, "no_spreadsheets")
    resp = org(system, "GET", f"people/export?format=csv&community_id={new_community(system)['id']}")
    assert resp.status_code == 200, resp.text
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="') and "filename*=UTF-8''" in disposition
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]).endswith(".csv")
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert resp.headers["X-Row-Count"] == "0" and resp.headers["Cache-Control"] == "no-store"


def test_the_name_shown_in_publications_is_the_one_agreed(system: System) -> None:
    """public_name (公示名称): what 一月一公示 and the 先锋榜 show of a person or a unit; "" = not agreed."""
    c = new_community(system)
    person = new_person(system, c["id"], public_name="王师傅")
    assert org(system, "GET", f"people/{person['id']}").json()["public_name"] == "王师傅"
    unnamed = new_person(system, c["id"])
    assert org(system, "GET", f"people/{unnamed['id']}").json().get("public_name", "") == ""
    error(
        org(
            system,
            "POST",
            "people",
            json={"community_id": c["id"], "name_zh": "李", "roles": ["volunteer"], "public_name": "长" * 51},
        ),
        400,
        field="public_name",
    )


def test_a_person_attends_for_a_member_unit_of_their_own_community_only(system: System) -> None:
    here = created(org(system, "POST", "communities", json={"name_zh": f"单位人员社区{unique()[-5:]}"}))["id"]
    there = created(org(system, "POST", "communities", json={"name_zh": f"外社区{unique()[-5:]}"}))["id"]
    unit = {"name_zh": "物业", "kind": "property_company", "joined_on": "2024-05-01"}
    own = created(org(system, "POST", "member-units", json={**unit, "community_id": here}))["id"]
    far = created(org(system, "POST", "member-units", json={**unit, "community_id": there}))["id"]
    person = {"community_id": here, "name_zh": "保安", "roles": ["volunteer"]}
    for bad in (far, "no-such-unit", "bad id"):
        resp = org(system, "POST", "people", json={**person, "member_unit_id": bad})
        assert resp.status_code == 400 and resp.json()["error"]["field"] == "member_unit_id", resp.text
    made = created(org(system, "POST", "people", json={**person, "member_unit_id": own}))
    assert made["member_unit_id"] == own
    assert org(system, "GET", f"people/{made['id']}").json()["member_unit_id"] == own
