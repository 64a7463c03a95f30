"""Open311 GeoReport v2 against the running system, with the stock client `georeport` (unchanged) in both of
its formats, and raw HTTP where that client has no method (it cannot POST a request nor resolve a token)
and for every refusal: each answered in the caller's format and the spec's shape, nothing stored."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from georeport import GeoReport
from pymongo import MongoClient

from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique, wait_for

T, OTHER = "xujialou", "shanggao"  # the jurisdiction reported to, and another
FORMATS = ["json", "xml"]
CONTACT = {"first_name": "三", "last_name": "张", "phone": "13812345678", "email": "zhangsan@example.cn"}
# Whatever of the contact could show, raw or masked.
SECRETS = ("张三", "13812345678", "zhangsan@example.cn", "张*", "138****5678")


def root(system: System) -> str:
    return f"{system.gateway}/open311/v2"


def as_list(value: Any) -> list[Any]:
    """xmltodict gives one element as a dict, several as a list."""
    return value if isinstance(value, list) else [value]


def listed(client: GeoReport, **params: str) -> list[Any]:
    """The stock client's get_service_requests as a list. It raises TypeError on an empty XML list (xmltodict
    reads `<service_requests/>` as None), which is a valid answer while the read model has not yet the report."""
    try:
        return as_list(client.get_service_requests(**params))
    except TypeError:
        if client.output_format != "xml":
            raise
        return []


def point(n: int) -> tuple[str, str]:
    """A point in the test grid around TEST_POINT, ~100 m apart per n (so reports are not duplicates)."""
    lat, lon = TEST_POINT
    return f"{lat - 0.004 + 0.001 * (n % 9):.6f}", f"{lon - 0.004 + 0.001 * (n // 9 % 9):.6f}"


def report(system: System, fmt: str, **fields: str | list[str]) -> requests.Response:
    """POST requests.{fmt} as a form, the way Open311 clients send it."""
    return requests.post(f"{root(system)}/requests.{fmt}", data=fields, timeout=15)


def errors(resp: requests.Response, fmt: str) -> list[tuple[int, str]]:
    """The spec's error list, checked for its format and content type."""
    if fmt == "json":
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        body = resp.json()
        assert isinstance(body, list) and all(set(e) == {"code", "description"} for e in body)
        return [(e["code"], e["description"]) for e in body]
    assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert resp.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    tree = ET.fromstring(resp.content)
    assert tree.tag == "errors"
    return [(int(e.findtext("code", "0")), e.findtext("description", "")) for e in tree.findall("error")]


def issues_in(mongo_client: MongoClient[Any], tenant: str) -> int:
    return int(mongo_client[f"hl_intake_{tenant}"]["issues"].count_documents({}))


@pytest.fixture(scope="module")
def key(system: System) -> str:
    return system.token("resident", T)


@pytest.fixture(scope="module")
def reported(system: System, key: str) -> dict[str, dict[str, str]]:
    """One request reported per format, with contact data, hazards and households: fmt -> its ids."""
    out = {}
    for n, (fmt, code) in enumerate((("json", "property_repair"), ("xml", "sanitation"))):
        lat, lon = point(n + 1)
        description = f"楼道灯不亮 {unique('o311')}\n3号楼2单元楼道灯坏了一周，老人晚上上下楼不方便。"
        resp = report(
            system,
            fmt,
            api_key=key,
            jurisdiction_id=T,
            service_code=code,
            lat=lat,
            long=lon,
            address_string="嘉德花园3号楼",
            description=description,
            device_id="device-1",
            account_id="acct-1",
            **CONTACT,
            **{"attribute[affected_households]": "12", "attribute[hazards][]": ["gas", "electrical"]},
        )
        assert resp.status_code == 201, resp.text
        if fmt == "json":
            assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
            [answer] = resp.json()
            # The spec's fields, and the reporter's follow-up code (查询码, an extension), shown this once.
            assert set(answer) == {"service_request_id", "service_notice", "account_id", "follow_code"}
            assert answer["account_id"] is None and len(answer["follow_code"]) == 23
            request_id, notice = answer["service_request_id"], answer["service_notice"]
        else:
            assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
            assert resp.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
            tree = ET.fromstring(resp.content)
            assert tree.tag == "service_requests" and [e.tag for e in tree] == ["request"]
            assert [e.tag for e in tree[0]] == ["service_request_id", "service_notice", "account_id", "follow_code"]
            request_id, notice = (
                tree.findtext("request/service_request_id", ""),
                tree.findtext("request/service_notice"),
            )
        assert request_id and "测试社区" in (notice or "")
        out[fmt] = {"id": request_id, "code": code, "description": description, "lat": lat, "long": lon}
    return out


# ---------------------------------------------------------------- the stock client, both formats


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_stock_client_lists_services_and_reads_their_definitions(system: System, fmt: str) -> None:
    client = GeoReport(root(system), T, output_format=fmt)
    services = client.get_service_list()
    by_code = {s["service_code"]: s for s in services}
    repair = by_code["property_repair"]
    assert repair["service_name"] == "物业维修" and "Property repairs" in repair["description"]
    assert repair["group"] == "物业服务 / property" and "楼道灯" in repair["keywords"]
    assert repair["metadata"] in (True, "true") and repair["type"] == "realtime"
    assert "other" in by_code
    definition = client.get_service_definition("property_repair")
    assert definition["service_code"] == "property_repair"
    attributes = definition["attributes"] if fmt == "json" else as_list(definition["attributes"]["attribute"])
    by_attr = {a["code"]: a for a in attributes}
    assert by_attr["affected_households"]["datatype"] == "number"
    hazards = by_attr["hazards"]
    assert hazards["datatype"] == "multivaluelist" and str(hazards["order"]) == "2"
    values = hazards["values"] if fmt == "json" else as_list(hazards["values"]["value"])
    assert {"key": "gas", "name": "燃气"} in [dict(v) for v in values]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_is_read_back_by_the_stock_client_without_contact_data(
    system: System, mongo_client: MongoClient[Any], reported: dict[str, dict[str, str]], fmt: str
) -> None:
    mine = reported[fmt]
    client = GeoReport(root(system), T, output_format=fmt)
    one = client.get_service_request(mine["id"])
    assert one["service_request_id"] == mine["id"] and one["status"] == "open"
    assert one["service_code"] == mine["code"] and one["service_name"] in ("物业维修", "环境卫生")
    assert one["description"] == mine["description"].strip()
    # The last step as the resident reads it, Chinese then English (it moves on as dispatch takes it up).
    assert one["agency_responsible"] == "测试社区" and " (" in one["status_notes"]
    assert one["requested_datetime"].endswith("+08:00") and one["updated_datetime"].endswith("+08:00")
    requested = datetime.fromisoformat(one["requested_datetime"])
    assert abs(datetime.now(UTC) - requested) < timedelta(minutes=5)
    assert float(one["lat"]) == float(mine["lat"]) and float(one["long"]) == float(mine["long"])
    assert one["address"] == "嘉德花园3号楼" and one["media_url"] in (None, "")
    # Filters: ids override the rest; code, status and a window find it; closed and an old window do not.
    now = datetime.now(UTC)
    window = {"start_date": (now - timedelta(days=1)).isoformat(), "end_date": (now + timedelta(hours=1)).isoformat()}
    # Searches come from the SQL read model, which has a new report a moment after it is made.
    wait_for(
        lambda: (
            mine["id"]
            in {r["service_request_id"] for r in listed(client, service_code=mine["code"], status="open", **window)}
        )
    )
    assert mine["id"] in {r["service_request_id"] for r in as_list(client.get_service_requests())}
    both = f"{reported['json']['id']},{reported['xml']['id']}"
    by_ids = as_list(client.get_service_requests(service_request_id=both, status="closed", start_date="bad"))
    assert {r["service_request_id"] for r in by_ids} == {reported["json"]["id"], reported["xml"]["id"]}
    closed = requests.get(f"{root(system)}/requests.json?jurisdiction_id={T}&status=closed", timeout=10).json()
    assert mine["id"] not in {r["service_request_id"] for r in closed}
    old = requests.get(
        f"{root(system)}/requests.json",
        params={"jurisdiction_id": T, "start_date": "2020-01-01T00:00:00+08:00", "end_date": "2020-03-01T00:00:00Z"},
        timeout=10,
    )
    assert old.status_code == 200 and old.json() == []
    # Stored as the issue the form described: online, placed in the test community, contact sealed.
    stored = mongo_client[f"hl_intake_{T}"]["issues"].find_one({"_id": mine["id"]})
    assert stored is not None and stored["channel"] == "online" and stored["category"] == mine["code"]
    assert stored["title"] == mine["description"].splitlines()[0]
    assert stored["hazards"] == ["gas", "electrical"] and stored["affected_households"] == 12
    assert stored["place"]["community_id"] == TEST_COMMUNITY and stored["urgency"] == "urgent"  # gas
    assert stored["contact"]["name_masked"] == "张*" and "张三" not in json.dumps(stored, default=str)
    assert stored["created_by"] == f"test-resident-{T}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_token_resolves_to_its_request(system: System, reported: dict[str, dict[str, str]], fmt: str) -> None:
    request_id = reported[fmt]["id"]
    resp = requests.get(f"{root(system)}/tokens/{request_id}.{fmt}?jurisdiction_id={T}", timeout=10)
    assert resp.status_code == 200, resp.text
    if fmt == "json":
        assert resp.json() == [{"service_request_id": request_id, "token": request_id}]
    else:
        tree = ET.fromstring(resp.content)
        assert tree.tag == "service_requests" and tree.findtext("request/token") == request_id
    missing = requests.get(f"{root(system)}/tokens/nope.{fmt}?jurisdiction_id={T}", timeout=10)
    assert missing.status_code == 404 and errors(missing, fmt)[0][0] == 404


def test_contact_given_in_a_report_is_in_no_open311_answer(system: System, reported: dict[str, dict[str, str]]) -> None:
    ids = ",".join(r["id"] for r in reported.values())
    for fmt in FORMATS:
        for path in (
            f"requests.{fmt}?jurisdiction_id={T}",
            f"requests.{fmt}?jurisdiction_id={T}&service_request_id={ids}",
            *(f"requests/{r['id']}.{fmt}?jurisdiction_id={T}" for r in reported.values()),
            *(f"tokens/{r['id']}.{fmt}?jurisdiction_id={T}" for r in reported.values()),
        ):
            resp = requests.get(f"{root(system)}/{path}", timeout=10)
            assert resp.status_code == 200, (path, resp.text)
            text = resp.content.decode("utf-8")
            assert not [s for s in SECRETS if s in text], path
            assert "acct-1" not in text and "device-1" not in text and f"test-resident-{T}" not in text


def test_another_jurisdiction_does_not_see_the_request(system: System, reported: dict[str, dict[str, str]]) -> None:
    request_id = reported["json"]["id"]
    resp = requests.get(f"{root(system)}/requests/{request_id}.json?jurisdiction_id={OTHER}", timeout=10)
    assert resp.status_code == 404 and OTHER in errors(resp, "json")[0][1]
    listed = requests.get(
        f"{root(system)}/requests.json?jurisdiction_id={OTHER}&service_request_id={request_id}", timeout=10
    )
    assert listed.status_code == 200 and listed.json() == []


# ---------------------------------------------------------------- refusals: the caller's format, nothing stored


def good_form(system: System, n: int = 0) -> dict[str, str]:
    lat, lon = point(n)
    return {
        "api_key": system.token("resident", T),
        "jurisdiction_id": T,
        "service_code": "parking",
        "lat": lat,
        "long": lon,
        "description": "乱停车堵住单元门",
    }


def refused_cases(system: System) -> Iterator[tuple[str, dict[str, str | None], int, str]]:
    """(what, changes to a good form (None: leave the field out), status, words the description has)."""
    yield "missing api_key", {"api_key": None}, 403, "api_key was not provided"
    yield "bad api_key", {"api_key": "hl_" + "q" * 43}, 403, "invalid api_key"
    yield "not a token", {"api_key": "let-me-in"}, 403, "invalid api_key"
    yield "expired api_key", {"api_key": system.expired_token}, 403, "expired"
    yield "another tenant's api_key", {"api_key": system.token("resident", OTHER)}, 403, repr(T)
    yield "a role that may not report", {"api_key": system.token("ops", "*")}, 403, "role 'ops'"
    yield "missing jurisdiction", {"jurisdiction_id": None}, 400, "jurisdiction_id was not provided"
    yield "unknown jurisdiction", {"jurisdiction_id": "gotham"}, 404, "'gotham' was not found"
    yield "missing service_code", {"service_code": None}, 400, "service_code was not provided"
    yield "unknown service_code", {"service_code": "potholes"}, 404, "'potholes' was not found"
    yield "lat not a number", {"lat": "north"}, 400, "lat 'north' is not a number"
    yield "lat out of range", {"lat": "95.5"}, 400, "lat '95.5' is outside -90..90"
    yield "lat without long", {"long": None}, 400, "lat and long must be sent together"
    yield "outside every grid", {"lat": "31.2304", "long": "121.4737"}, 400, "不在本街道/镇任何网格内"
    yield "address only", {"lat": None, "long": None, "address_string": "嘉德花园"}, 400, "address_string alone"
    yield "unknown compound", {"lat": None, "long": None, "address_id": "no-such"}, 400, "address_id"
    yield "unknown hazard", {"attribute[hazards][]": "aliens"}, 400, "attribute[hazards] 'aliens'"
    yield "unknown attribute", {"attribute[colour]": "red"}, 400, "attribute[colour]"
    yield "households not a number", {"attribute[affected_households]": "many"}, 400, "affected_households"
    yield "bad phone", {"phone": "12345"}, 400, "phone"
    yield "description too long", {"description": "长" * 4001}, 400, "description"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_malformed_report_is_a_4xx_in_the_callers_format_and_stores_nothing(
    system: System, mongo_client: MongoClient[Any], fmt: str
) -> None:
    failures = []
    for n, (what, changes, status, words) in enumerate(refused_cases(system)):
        data = {**good_form(system, n)}
        for k, v in changes.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        before = (issues_in(mongo_client, T), issues_in(mongo_client, OTHER))
        resp = report(system, fmt, **data)
        got = errors(resp, fmt) if resp.status_code >= 400 else []
        ok = resp.status_code == status and len(got) == 1 and got[0][0] == status and words in got[0][1]
        bilingual = bool(got) and any("\u4e00" <= ch <= "\u9fff" for ch in got[0][1])
        if not (ok and bilingual):
            failures.append(f"{what}: want {status} {words!r}, got {resp.status_code} {resp.text[:300]}")
        if (issues_in(mongo_client, T), issues_in(mongo_client, OTHER)) != before:
            failures.append(f"{what}: something was stored")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("fmt", FORMATS)
def test_credentials_go_in_the_form_body_as_a_form(system: System, mongo_client: MongoClient[Any], fmt: str) -> None:
    before = issues_in(mongo_client, T)
    form = good_form(system)
    in_url = requests.post(
        f"{root(system)}/requests.{fmt}", params={"api_key": form.pop("api_key")}, data=form, timeout=10
    )
    assert in_url.status_code == 403 and "not in the URL" in errors(in_url, fmt)[0][1]
    as_json = requests.post(f"{root(system)}/requests.{fmt}", json=good_form(system), timeout=10)
    assert as_json.status_code == 400 and "x-www-form-urlencoded" in errors(as_json, fmt)[0][1]
    assert issues_in(mongo_client, T) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_queries_are_4xx_in_the_callers_format(system: System, fmt: str) -> None:
    base = f"{root(system)}/requests.{fmt}"
    now = datetime.now(UTC)
    cases: list[tuple[str, dict[str, str], int, str]] = [
        ("bad start_date", {"start_date": "2025-13-01T00:00:00Z"}, 400, "start_date"),
        ("no time zone", {"end_date": "2025-05-01T00:00:00"}, 400, "end_date"),
        ("date only", {"start_date": "2025-05-01"}, 400, "start_date"),
        (
            "end before start",
            {"start_date": now.isoformat(), "end_date": (now - timedelta(days=1)).isoformat()},
            400,
            "before",
        ),
        (
            "more than 90 days",
            {"start_date": (now - timedelta(days=91)).isoformat(), "end_date": now.isoformat()},
            400,
            "90 days",
        ),
        ("unknown status", {"status": "open,pending"}, 400, "'pending'"),
        ("unknown service_code", {"service_code": "other,potholes"}, 400, "'potholes'"),
        ("missing jurisdiction", {"jurisdiction_id": ""}, 400, "jurisdiction_id was not provided"),
        ("unknown jurisdiction", {"jurisdiction_id": "gotham"}, 404, "'gotham'"),
    ]
    for what, params, status, words in cases:
        resp = requests.get(base, params={"jurisdiction_id": T, **params}, timeout=10)
        got = errors(resp, fmt)
        assert resp.status_code == status and got[0][0] == status and words in got[0][1], (what, resp.text)
    for path, status, words in (
        (f"requests/nope.{fmt}?jurisdiction_id={T}", 404, "'nope' was not found"),
        (f"services/potholes.{fmt}?jurisdiction_id={T}", 404, "'potholes' was not found"),
        (f"services.{fmt}?jurisdiction_id=gotham", 404, "'gotham'"),
        (f"services.{fmt}", 400, "jurisdiction_id"),
        (f"discovery.{fmt}", 404, "no such resource"),
    ):
        resp = requests.get(f"{root(system)}/{path}", timeout=10)
        got = errors(resp, fmt)
        assert resp.status_code == status and got[0][0] == status and words in got[0][1], (path, resp.text)
    wrong = requests.delete(base, timeout=10)
    assert wrong.status_code == 405 and errors(wrong, fmt)[0][0] == 405


def test_the_stock_client_sees_errors_as_http_errors(system: System) -> None:
    with pytest.raises(requests.HTTPError) as err:
        GeoReport(root(system), "gotham", output_format="xml").get_service_list()
    assert err.value.response is not None and err.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as err:
        GeoReport(root(system), None).get_service_list()  # no jurisdiction: this endpoint serves seven
    assert err.value.response is not None and err.value.response.status_code == 400


def test_household_visits_are_not_public_requests(system: System) -> None:
    """A community worker's household visit is an issue like any other inside the system, but the public
    Open311 reads answer for it as for an id that does not exist (it is about one household)."""
    lat, lon = point(77)
    body = {
        "title": "入户走访：独居老人家中水管漏水",
        "description": "走访时发现厨房水管漏水，老人行动不便",
        "channel": "household_visit",
        "category": "property_repair",
        "location": {"lat": float(lat), "lon": float(lon)},
    }
    made = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/issues", json=body, headers=system.auth("community_worker", T), timeout=15
    )
    assert made.status_code == 201, made.text
    visit = made.json()["issue"]["id"]
    for fmt in FORMATS:
        one = requests.get(f"{root(system)}/requests/{visit}.{fmt}?jurisdiction_id={T}", timeout=10)
        assert one.status_code == 404 and errors(one, fmt)[0][0] == 404
        token = requests.get(f"{root(system)}/tokens/{visit}.{fmt}?jurisdiction_id={T}", timeout=10)
        assert token.status_code == 404
    by_id = requests.get(f"{root(system)}/requests.json?jurisdiction_id={T}&service_request_id={visit}", timeout=10)
    assert by_id.status_code == 200 and by_id.json() == []
    listed = requests.get(f"{root(system)}/requests.json?jurisdiction_id={T}&service_code=property_repair", timeout=10)
    assert listed.status_code == 200 and visit not in [r["service_request_id"] for r in listed.json()]
    assert "独居老人" not in listed.text
    # Inside the system the worker reads it as always.
    inside = requests.get(
        f"{system.gateway}/api/v1/tenants/{T}/issues/{visit}", headers=system.auth("community_worker", T), timeout=10
    )
    assert inside.status_code == 200 and inside.json()["issue"]["channel"] == "household_visit"
