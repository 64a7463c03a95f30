"""Open311 GeoReport v2 (gateway/open311.py) without infrastructure: statuses, times, the query window, the
XML and JSON shapes of the spec, its error shape, a report form -> intake's CreateIssueRequest, and the
refusals at the gateway, which happen before anything could be stored (a stand-in intake records calls)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.intake.v1 import intake_pb2
from werkzeug.datastructures import MultiDict

from gateway import open311
from gateway.open311 import Open311Error
from gateway.tokens import TokenFile
from services.common import context
from services.common.principal import Principal
from services.intake import domain
from services.intake.classify import default_rules
from services.intake.servicer import rules_to_pb

RULES = rules_to_pb(default_rules())
NOW = datetime(2025, 6, 1, 4, 0, tzinfo=UTC)
CONTACT = ("张三", "13812345678", "张*", "138****5678")


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def step(at: datetime, kind: str, status: str, zh: str, en: str) -> intake_pb2.HistoryEntry:
    return intake_pb2.HistoryEntry(at=ts(at), kind=kind, status=status, note_zh=zh, note_en=en, by="acct-7")


def sample_issue(**kw: Any) -> intake_pb2.Issue:
    issue = intake_pb2.Issue(
        id="a1b2",
        tenant="taiqian",
        title="楼道灯不亮",
        description="楼道灯不亮\n3号楼2单元",
        channel="online",
        category="property_repair",
        category_zh="物业维修",
        status="classified",
        open311_status="open",
        urgency="routine",
        created_by="test-resident-taiqian",
        contact=intake_pb2.Contact(name=CONTACT[2], phone=CONTACT[3]),
        place=intake_pb2.Place(community_id="jiade", community_name_zh="嘉德社区"),
        history=[
            step(NOW, "received", "received", "已受理（线上接单）", "received (online)"),
            step(NOW, "classified", "classified", "已分类为日常事项", "classified as routine"),
        ],
        attachments=[intake_pb2.Attachment(id="att1", filename="a.jpg", content_type="image/jpeg", size=3)],
    )
    issue.location.lat, issue.location.lon = 36.1876, 117.1296
    issue.location.address = "嘉德花园3号楼"
    issue.location.compound_id = "jiade-c1"
    issue.created_at.CopyFrom(ts(NOW))
    issue.updated_at.CopyFrom(ts(NOW + timedelta(minutes=5)))
    for k, v in kw.items():
        if isinstance(v, list):
            issue.ClearField(k)
            getattr(issue, k).extend(v)
        else:
            setattr(issue, k, v)
    return issue


# ---------------------------------------------------------------- statuses and times


def test_closed_statuses_are_intakes_and_every_status_maps_to_open_or_closed() -> None:
    assert open311.CLOSED_STATUSES == domain.CLOSED
    for status in domain.STATUSES:
        want = "closed" if status in open311.CLOSED_STATUSES else "open"
        assert domain.open311_status(status) == want
        issue = sample_issue(status=status, open311_status="")
        assert open311.request_json(issue, "泰前街道", "http://h")["status"] == want


def test_times_are_w3c_in_shanghai_and_unset_is_none() -> None:
    assert open311.w3_time(ts(NOW)) == "2025-06-01T12:00:00+08:00"
    assert open311.w3_time(Timestamp()) is None


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("2025-05-01T00:00:00Z", datetime(2025, 5, 1, tzinfo=UTC)),
        ("2025-05-01T08:00:00+08:00", datetime(2025, 5, 1, tzinfo=UTC)),
        ("2025-05-01T08:00:00 08:00", datetime(2025, 5, 1, tzinfo=UTC)),  # an unencoded '+'
        ("2025-05-01T08:00+08:00", datetime(2025, 5, 1, tzinfo=UTC)),
        ("2025-05-01T00:00:00.250-05:00", datetime(2025, 5, 1, 5, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_w3_date_times_with_a_zone_are_read(raw: str, want: datetime) -> None:
    assert open311.parse_w3(raw, "start_date") == want


@pytest.mark.parametrize(
    "raw", ["2025-05-01", "2025-05-01T00:00:00", "2025-02-30T00:00:00Z", "yesterday", "2025-05-01T25:00:00Z", ""]
)
def test_other_dates_are_400_naming_the_parameter(raw: str) -> None:
    with pytest.raises(Open311Error) as err:
        open311.parse_w3(raw, "end_date")
    assert err.value.status == 400 and "end_date" in err.value.description and "时区" in err.value.description


def test_the_window_is_90_days_by_default_and_at_most() -> None:
    assert open311.request_window(None, None, NOW) == (NOW - timedelta(days=90), NOW)
    assert open311.request_window("", "  ", NOW) == (NOW - timedelta(days=90), NOW)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert open311.request_window("2025-01-01T00:00:00Z", None, NOW) == (start, start + timedelta(days=90))
    assert open311.request_window(None, "2025-01-01T00:00:00Z", NOW) == (start - timedelta(days=90), start)
    got = open311.request_window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z", NOW)  # exactly 90 days
    assert got == (start, datetime(2025, 4, 1, tzinfo=UTC))
    for start_raw, end_raw, words in (
        ("2025-01-01T00:00:00Z", "2025-04-01T00:00:01Z", "90 days"),
        ("2025-03-01T00:00:00Z", "2025-02-01T00:00:00Z", "before start_date"),
    ):
        with pytest.raises(Open311Error) as err:
            open311.request_window(start_raw, end_raw, NOW)
        assert err.value.status == 400 and words in err.value.description


def test_lists_and_statuses() -> None:
    assert open311.split_list(["a,b", " c ,a", ""]) == ["a", "b", "c"]
    assert open311.parse_statuses([]) == {"open", "closed"}
    assert open311.parse_statuses(["open"]) == {"open"}
    with pytest.raises(Open311Error) as err:
        open311.parse_statuses(["open,pending"])
    assert err.value.status == 400 and "'pending'" in err.value.description


# ---------------------------------------------------------------- the records and their shapes


def xml(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(text.encode("utf-8"))


def test_services_as_json_and_xml() -> None:
    services = [open311.service_json(c) for c in RULES.categories]
    repair = next(s for s in services if s["service_code"] == "property_repair")
    assert repair == {
        "service_code": "property_repair",
        "service_name": "物业维修",
        "description": "Property repairs (物业服务 / property)",
        "metadata": True,
        "type": "realtime",
        "keywords": "楼道灯, 单元门, 门禁, 电梯故障, 屋面渗水",
        "group": "物业服务 / property",
    }
    root = xml(open311.to_xml("services", services))
    assert root.tag == "services" and {e.tag for e in root} == {"service"} and len(root) == len(services)
    first = root[0]
    assert [e.tag for e in first] == list(services[0])
    assert first.findtext("metadata") == "true" and first.findtext("type") == "realtime"


def test_service_definition_shape() -> None:
    data = open311.definition_json("property_repair", RULES)
    assert data["service_code"] == "property_repair"
    households, hazards = data["attributes"]
    assert households["code"] == "affected_households" and households["datatype"] == "number"
    assert hazards["datatype"] == "multivaluelist" and hazards["order"] == 2
    assert {"key": "gas", "name": "燃气"} in hazards["values"]
    assert all(a["variable"] is True and a["required"] is False for a in data["attributes"])
    root = xml(open311.to_xml("service_definition", data))
    assert root.tag == "service_definition" and root.findtext("service_code") == "property_repair"
    attrs = root.findall("attributes/attribute")
    assert [a.findtext("code") for a in attrs] == ["affected_households", "hazards"]
    assert attrs[1].findtext("variable") == "true" and attrs[1].findtext("order") == "2"
    values = attrs[1].findall("values/value")
    assert len(values) == len(RULES.hazards) and values[0].findtext("key") == RULES.hazards[0].code
    assert values[0].findtext("name") == RULES.hazards[0].name_zh
    assert attrs[0].find("values") is None  # no values for a number


def test_a_request_in_the_specs_order_with_no_contact_nor_account() -> None:
    issue = sample_issue()
    data = open311.request_json(issue, "泰前街道", "http://gw:8080")
    assert list(data) == [
        "service_request_id",
        "status",
        "status_notes",
        "service_name",
        "service_code",
        "description",
        "agency_responsible",
        "service_notice",
        "requested_datetime",
        "updated_datetime",
        "expected_datetime",
        "address",
        "address_id",
        "zipcode",
        "lat",
        "long",
        "media_url",
    ]
    assert data["status"] == "open" and data["status_notes"] == "已分类为日常事项 (classified as routine)"
    assert data["service_name"] == "物业维修" and data["service_code"] == "property_repair"
    assert data["description"] == "楼道灯不亮\n3号楼2单元"  # the title is its first line already
    assert data["agency_responsible"] == "嘉德社区" and "routine" in data["service_notice"]
    assert data["requested_datetime"] == "2025-06-01T12:00:00+08:00"
    assert data["updated_datetime"] == "2025-06-01T12:05:00+08:00"
    assert data["expected_datetime"] is None and data["zipcode"] is None
    assert (data["address"], data["address_id"], data["lat"], data["long"]) == (
        "嘉德花园3号楼",
        "jiade-c1",
        36.1876,
        117.1296,
    )
    assert data["media_url"] == "http://gw:8080/api/v1/tenants/taiqian/issues/a1b2/attachments/att1"
    text = json.dumps(data, ensure_ascii=False) + open311.to_xml("service_requests", [data])
    for secret in (*CONTACT, "test-resident-taiqian", "acct-7"):
        assert secret not in text
    root = xml(open311.to_xml("service_requests", [data]))
    request = root.find("request")
    assert root.tag == "service_requests" and request is not None
    assert request.findtext("expected_datetime") == "" and request.findtext("lat") == "36.1876"


def test_other_channels_show_title_and_description_and_unplaced_points_are_null() -> None:
    issue = sample_issue(title="井盖缺失", description="小区东门", attachments=[])
    issue.location.ClearField("lat")
    issue.location.ClearField("lon")
    issue.place.community_name_zh = ""
    data = open311.request_json(issue, "泰前街道", "http://h")
    assert data["description"] == "井盖缺失\n小区东门" and data["agency_responsible"] == "泰前街道"
    assert data["lat"] is None and data["long"] is None and data["media_url"] is None


def test_closed_requests_are_updated_when_last_closed() -> None:
    t = [NOW + timedelta(days=d) for d in range(6)]
    issue = sample_issue(status="rated", open311_status="closed")
    issue.ClearField("history")
    issue.history.extend(
        [
            step(t[0], "classified", "classified", "已分类", "classified"),
            step(t[1], "verified", "verified", "已验单通过", "verified"),
            step(t[2], "reopened", "in_progress", "重新办理", "sent back"),
            step(t[3], "verified", "verified", "已验单通过", "verified"),
            step(t[4], "published", "published", "已公示", "published"),
            step(t[5], "rated", "rated", "居民已评价", "rated by residents"),
        ]
    )
    data = open311.request_json(issue, "泰前街道", "http://h")
    assert data["status"] == "closed" and data["status_notes"] == "居民已评价 (rated by residents)"
    assert data["updated_datetime"] == t[3].astimezone(open311.SHANGHAI).isoformat(timespec="seconds")


def test_duplicates_say_whom_they_follow() -> None:
    issue = sample_issue(status="duplicate", duplicate_of="orig1", urgency="urgent")
    notice = open311.service_notice(issue, "泰前街道")
    assert "紧急" in notice and "urgent" in notice and "orig1" in notice


def test_xml_escapes_and_drops_what_xml_cannot_carry() -> None:
    text = open311.to_xml("errors", [{"code": 400, "description": "a<b & c\x01\x0bd"}])
    root = xml(text)
    assert root.findtext("error/description") == "a<b & cd" and root.findtext("error/code") == "400"


def test_errors_have_the_specs_shape_in_both_formats() -> None:
    err = Open311Error(403, "api_key was not provided (缺少 api_key)")
    as_json = open311.error_response(err, "json")
    as_xml = open311.error_response(err, "xml")
    assert as_json.status_code == 403 and as_json.content_type == "application/json; charset=utf-8"
    assert json.loads(as_json.get_data()) == [{"code": 403, "description": "api_key was not provided (缺少 api_key)"}]
    assert as_xml.status_code == 403 and as_xml.content_type == "text/xml; charset=utf-8"
    root = xml(as_xml.get_data(as_text=True))
    assert (
        root.tag == "errors"
        and root.findtext("error/code") == "403"
        and "api_key" in root.findtext("error/description", "")
    )


def test_service_errors_name_the_open311_parameter() -> None:
    from gateway.errors import ApiError

    cases = {
        "location": "lat/long",
        "location.lat": "lat",
        "location.compound_id": "address_id",
        "contact.phone": "phone",
        "hazards[1]": "attribute[hazards]",
        "category": "service_code",
        None: None,
    }
    for field, param in cases.items():
        got = open311.from_api_error(ApiError(400, "invalid_argument", "bad (错误)", field=field))
        assert got.status == 400
        assert got.description == (f"{param}: bad (错误)" if param else "bad (错误)")


# ---------------------------------------------------------------- a report form


def form(**kw: str | list[str]) -> MultiDict[str, str]:
    base: dict[str, str | list[str]] = {
        "jurisdiction_id": "taiqian",
        "service_code": "property_repair",
        "lat": "36.1876",
        "long": "117.1296",
        "description": "楼道灯不亮",
    }
    base.update(kw)
    out: MultiDict[str, str] = MultiDict()
    for k, v in base.items():
        for item in v if isinstance(v, list) else [v]:
            out.add(k, item)
    return out


def test_a_full_form_becomes_an_online_issue() -> None:
    long_line = "三号楼二单元的楼道灯已经坏了一周，老人晚上上下楼很不方便，请尽快派人来修理。" * 2
    req = open311.report_request(
        form(
            description=f"{long_line}\n详情：灯泡和开关都坏了",
            address_string="嘉德花园3号楼",
            address_id="jiade-c1",
            first_name="三",
            last_name="张",
            phone="138 1234 5678",
            email="z@example.cn",
            device_id="dev-1",
            media_url="https://img.example.cn/a.jpg",
            **{"attribute[affected_households]": "12", "attribute[hazards][]": ["gas", "electrical"]},
        ),
        RULES,
    )
    assert req.channel == "online" and req.category == "property_repair"
    assert len(req.title) == 60 and req.title.endswith("…") and long_line.startswith(req.title[:-1])
    assert req.description.startswith(long_line) and req.description.endswith("media_url: https://img.example.cn/a.jpg")
    assert (req.location.lat, req.location.lon) == (36.1876, 117.1296)
    assert (req.location.address, req.location.compound_id) == ("嘉德花园3号楼", "jiade-c1")
    assert req.affected_households == 12 and list(req.hazards) == ["gas", "electrical"]
    assert (req.contact.name, req.contact.phone) == ("张三", "138 1234 5678")
    assert "z@example.cn" not in str(req) and "dev-1" not in str(req)


def test_a_minimal_form() -> None:
    req = open311.report_request(form(description="", address_id="jiade-c1", lat="", long=""), RULES)
    assert req.title == "物业维修" and req.description == "物业维修"
    assert not req.location.HasField("lat") and req.location.compound_id == "jiade-c1"
    assert not req.HasField("contact") and req.affected_households == 0 and not req.hazards
    assert open311.contact_name("John", "Smith") == "John Smith"
    comma = open311.report_request(form(**{"attribute[hazards]": "gas,fire"}), RULES)
    assert list(comma.hazards) == ["gas", "fire"]


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"service_code": ""}, 400, "service_code was not provided"),
        ({"service_code": "potholes"}, 404, "service_code 'potholes' was not found"),
        ({"lat": "abc"}, 400, "lat 'abc' is not a number"),
        ({"lat": "nan"}, 400, "lat 'nan' is not a number"),
        ({"long": "inf"}, 400, "long 'inf' is not a number"),
        ({"lat": "95"}, 400, "lat '95' is outside -90..90"),
        ({"long": "-181"}, 400, "long '-181' is outside -180..180"),
        ({"long": ""}, 400, "lat and long must be sent together"),
        ({"lat": "", "long": "", "address_string": "嘉德花园"}, 400, "address_string alone"),
        ({"lat": "", "long": ""}, 400, "no location"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour] is not an attribute"),
        ({"attribute[]": "x"}, 400, "is not an attribute parameter"),
        ({"attribute[affected_households]": "many"}, 400, "attribute[affected_households] 'many'"),
        ({"attribute[affected_households]": ["1", "2"]}, 400, "takes one number"),
        ({"attribute[hazards][]": ["gas", "aliens"]}, 400, "attribute[hazards] 'aliens'"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ],
)
def test_bad_forms_are_refused_naming_the_parameter(changes: dict[str, Any], status: int, words: str) -> None:
    with pytest.raises(Open311Error) as err:
        open311.report_request(form(**changes), RULES)
    assert err.value.status == status and words in err.value.description
    assert any("\u4e00" <= ch <= "\u9fff" for ch in err.value.description)  # and says it in Chinese too


# ---------------------------------------------------------------- through Flask, with a stand-in intake


class FakeIntake:
    """Records what reaches intake; answers like it."""

    def __init__(self) -> None:
        self.created: list[tuple[intake_pb2.CreateIssueRequest, Principal | None, str | None]] = []

    def GetClassificationRules(self, req: Any) -> intake_pb2.ClassificationRules:
        return RULES

    def CreateIssue(self, req: intake_pb2.CreateIssueRequest) -> intake_pb2.Issue:
        self.created.append((req, context.current_principal.get(), context.current_tenant.get()))
        return sample_issue(id="new1", title=req.title, description=req.description)

    def GetIssue(self, req: intake_pb2.GetIssueRequest) -> intake_pb2.Issue:
        assert context.current_principal.get() == Principal("gateway-open311", "service", ("taiqian",))
        return sample_issue(id=req.id)


class FakeClients:
    def __init__(self) -> None:
        self.intake = FakeIntake()

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        return {}


@pytest.fixture
def fake() -> FakeClients:  # the app and client fixtures (tests/unit/conftest.py) are built around it
    return FakeClients()


def key(tokens: Path, role: str, *tenants: str, community: str | None = None) -> str:
    sub = f"unit-{role}-{'-'.join(tenants).replace('*', 'all')}"
    token, _ = TokenFile(tokens).create(sub, role, list(tenants), community=community)
    return token


def errors(resp: Any) -> Iterator[tuple[int, str]]:
    if resp.mimetype == "application/json":
        for e in resp.json:
            yield e["code"], e["description"]
    else:
        for e in xml(resp.get_data(as_text=True)).findall("error"):
            yield int(e.findtext("code", "0")), e.findtext("description", "")


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_refusals_happen_before_intake_is_asked_to_store(
    client: FlaskClient, tokens: Path, fake: FakeClients, fmt: str
) -> None:
    url = f"/open311/v2/requests.{fmt}"
    resident = key(tokens, "resident", "taiqian")
    cases = [
        ({}, 403, "api_key was not provided"),
        ({"api_key": "hl_" + "q" * 43}, 403, "invalid api_key"),
        ({"api_key": resident, "jurisdiction_id": "daimiao"}, 403, "'daimiao'"),
        ({"api_key": key(tokens, "ops", "*")}, 403, "role 'ops'"),
        ({"api_key": resident, "jurisdiction_id": ""}, 400, "jurisdiction_id was not provided"),
        ({"api_key": resident, "jurisdiction_id": "gotham"}, 404, "'gotham' was not found"),
        ({"api_key": resident, "service_code": "potholes"}, 404, "'potholes' was not found"),
        ({"api_key": resident, "lat": "north"}, 400, "lat 'north'"),
    ]
    for changes, status, words in cases:
        resp = client.post(url, data=form(**changes))
        assert resp.status_code == status, (changes, resp.get_data(as_text=True))
        assert resp.mimetype == ("application/json" if fmt == "json" else "text/xml")
        assert [(c, words in d) for c, d in errors(resp)] == [(status, True)], resp.get_data(as_text=True)
    in_url = client.post(f"{url}?api_key={resident}", data=form())
    assert in_url.status_code == 403 and "not in the URL" in next(errors(in_url))[1]
    as_json = client.post(url, json={"jurisdiction_id": "taiqian", "api_key": resident})
    assert as_json.status_code == 400 and "x-www-form-urlencoded" in next(errors(as_json))[1]
    assert fake.intake.created == []


def test_a_report_acts_as_the_api_keys_holder_in_the_jurisdiction(
    client: FlaskClient, tokens: Path, fake: FakeClients
) -> None:
    resp = client.post(
        "/open311/v2/requests.json",
        data=form(api_key=key(tokens, "community_worker", "taiqian", community="c-9"), first_name="三", last_name="张"),
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    [answer] = resp.json  # type: ignore[misc]
    assert answer["service_request_id"] == "new1" and answer["account_id"] is None and "token" not in answer
    assert "嘉德社区" in answer["service_notice"]
    [(req, principal, tenant)] = fake.intake.created
    assert tenant == "taiqian" and req.channel == "online" and req.contact.name == "张三"
    # A community worker reports anywhere in its tenant (首问负责); its principal carries its community.
    assert principal == Principal("unit-community_worker-taiqian", "community_worker", ("taiqian",), community="c-9")
    resp = client.post("/open311/v2/requests.xml", data=form(api_key=key(tokens, "public", "taiqian")))
    root = xml(resp.get_data(as_text=True))
    assert resp.status_code == 201 and root.tag == "service_requests"
    assert root.findtext("request/service_request_id") == "new1" and root.findtext("request/account_id") == ""


def test_reads_are_public_and_answer_as_the_gateway(client: FlaskClient) -> None:
    resp = client.get("/open311/v2/requests/a1b2.json?jurisdiction_id=taiqian")
    assert resp.status_code == 200 and resp.json[0]["service_request_id"] == "a1b2"  # type: ignore[index]
    assert "张" not in resp.get_data(as_text=True)
    token = client.get("/open311/v2/tokens/a1b2.xml?jurisdiction_id=taiqian")
    root = xml(token.get_data(as_text=True))
    assert root.findtext("request/service_request_id") == "a1b2" and root.findtext("request/token") == "a1b2"
    services = client.get("/open311/v2/services.xml?jurisdiction_id=taiqian")
    assert services.content_type == "text/xml; charset=utf-8" and len(xml(services.get_data(as_text=True))) > 5
    missing = client.get("/open311/v2/services/potholes.json?jurisdiction_id=taiqian")
    assert missing.status_code == 404 and "potholes" in missing.json[0]["description"]  # type: ignore[index]


def test_the_gateways_own_refusals_and_unknown_resources_use_the_specs_shape(client: FlaskClient) -> None:
    bad_header = client.get(
        "/open311/v2/services.xml?jurisdiction_id=taiqian", headers={"Authorization": "Bearer hl_" + "q" * 43}
    )
    assert bad_header.status_code == 401 and next(errors(bad_header))[0] == 401
    assert bad_header.headers["WWW-Authenticate"].startswith("Bearer ")
    unknown = client.get("/open311/v2/services.csv?jurisdiction_id=taiqian")
    assert unknown.status_code == 404 and unknown.mimetype == "text/xml"
    unknown_json = client.get("/open311/v2/discovery/x.json")
    assert unknown_json.status_code == 404 and unknown_json.json[0]["code"] == 404  # type: ignore[index]
    wrong_method = client.delete("/open311/v2/requests.json")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "GET, POST"
    assert client.put("/open311/v2/services.json").headers["Allow"] == "GET"


def test_every_window_and_filter_error_is_400_before_any_search(client: FlaskClient) -> None:
    base = "/open311/v2/requests.json?jurisdiction_id=taiqian"
    for query, words in (
        ("&start_date=2025-01-01", "start_date"),
        ("&start_date=2025-01-01T00:00:00Z&end_date=2025-06-01T00:00:00Z", "90 days"),
        ("&status=pending", "'pending'"),
        ("&service_code=potholes", "'potholes'"),
    ):
        resp = client.get(base + query)
        assert resp.status_code == 400 and words in resp.json[0]["description"], query  # type: ignore[index]
    too_many = ",".join(f"id{i}" for i in range(open311.LIMIT + 1))
    assert client.get(f"{base}&service_request_id={too_many}").status_code == 400


def test_a_declined_request_is_closed_with_the_reason_and_a_pending_one_open_awaiting_verification() -> None:
    zh, en = "不予立案：不属于社区职责，已转12345热线", "declined: out of scope, referred to 12345"
    declined = sample_issue(status="declined", open311_status="closed")
    declined.history.append(step(NOW + timedelta(hours=1), "declined", "declined", zh, en))
    declined.filing.CopyFrom(
        intake_pb2.Filing(mode="verify", decision="declined", note="物业合同纠纷", status_note_zh=zh, status_note_en=en)
    )
    req = open311.request_json(declined, "泰前街道", "http://h")
    assert req["status"] == "closed"
    assert req["status_notes"] == f"{zh} ({en})"
    assert req["updated_datetime"].startswith("2025-06-01T13:00")  # when it was declined (Shanghai time)
    assert "物业合同纠纷" not in json.dumps(req, ensure_ascii=False)  # the worker's note is not published
    waiting = sample_issue(status="pending_verification", open311_status="open")
    waiting.filing.CopyFrom(
        intake_pb2.Filing(
            mode="verify",
            status_note_zh="已分类为日常事项，待社区核实立案（2025-06-01 16:00 前）",
            status_note_en="classified as routine; awaiting verification by the community (by 2025-06-01 16:00 +08:00)",
        )
    )
    req = open311.request_json(waiting, "泰前街道", "http://h")
    assert (
        req["status"] == "open"
        and "待社区核实立案" in req["status_notes"]
        and "awaiting verification" in req["status_notes"]
    )
    assert "待核实立案" in req["service_notice"]
