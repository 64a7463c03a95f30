"""The org REST API's pure parts: collections <-> OrgService, JSON <-> protobuf, headers, formats."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.org.v1 import org_pb2 as pb

from gateway.app import MAX_BODY_BYTES, create_app
from gateway.clients import Clients
from gateway.errors import ApiError
from gateway.protojson import from_json, to_json
from gateway.routes_org import (
    COLLECTIONS,
    IMPORT_MAX_BYTES,
    SERVICE,
    content_disposition,
    if_match_version,
    parse_time,
    sheet_format,
)
from gateway.tokens import TokenFile
from services.common.settings import Settings


def test_every_entity_of_the_org_service_has_a_collection() -> None:
    created = {m[len("Create") :] for m in SERVICE.methods_by_name if m.startswith("Create")}
    assert created == {c.name for c in COLLECTIONS.values()}


def test_each_collection_filters_by_what_the_org_service_filters_by() -> None:
    from services.org.handlers import SPECS
    from services.org.servicer import ENTITIES

    by_message = {message: tuple(SPECS[entity].filters) for entity, (message, _, _) in ENTITIES.items()}
    assert {c.slug: c.filters for c in COLLECTIONS.values()} == {
        c.slug: by_message[c.message] for c in COLLECTIONS.values()
    }


def test_deletable_collections_are_the_list_entries() -> None:
    assert {c.slug for c in COLLECTIONS.values() if c.deletable} == {
        "talent-entries",
        "team-service-entries",
        "unit-resource-entries",
        "responsibility-items",
        "public-affairs-items",
    }


def test_spreadsheet_collections_and_their_entity_names() -> None:
    assert {c.entity for c in COLLECTIONS.values() if c.sheets} == {
        "member_units",
        "people",
        "talent_entries",
        "team_service_entries",
        "unit_resource_entries",
    }


def test_to_json_prints_every_field_with_numbers_and_shanghai_times() -> None:
    person = pb.Person(id="p1", name_zh="张三", roles=["volunteer"], version=3)
    person.meta.version = 3
    person.meta.created_at.FromSeconds(1_746_057_600)  # 2025-05-01T00:00:00Z
    out = to_json(person)
    assert out["version"] == 3 and isinstance(out["version"], int)
    assert out["meta"]["created_at"] == "2025-05-01T08:00:00+08:00"
    assert out["phone"] == "" and out["roles"] == ["volunteer"]
    assert out["party"] is None and out["worker"] is None  # unset messages are null
    assert out["name_zh"] == "张三"


def test_from_json_reads_proto_field_names_and_nested_messages() -> None:
    person = from_json(
        {
            "name_zh": "李四",
            "roles": ["volunteer"],
            "volunteer": {"services": ["陪护"], "availability": [{"weekday": 1, "start": "09:00", "end": "11:00"}]},
            "party": None,
            "meta": {"version": 9},
        },
        pb.Person,
        drop=("meta",),
    )
    assert person.name_zh == "李四" and person.volunteer.availability[0].end == "11:00"
    assert not person.HasField("party") and not person.HasField("meta")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nmae_zh": "x"}, "nmae_zh"),
        ({"name_zh": 5}, "name_zh"),
        ({"roles": "volunteer"}, "roles"),
        ({"roles": ["a", 1]}, "roles[1]"),
        ({"volunteer": {"availability": [{"weekday": "Mon"}]}}, "volunteer.availability[0].weekday"),
        ({"volunteer": {"team": "t"}}, "volunteer.team"),
        ({"worker": {"grade": 2.5}}, "worker.grade"),
        ({"worker": {"grade": 2**40}}, "worker.grade"),
        ({"worker": {"grade": True}}, "worker.grade"),
        ({"party": "yes"}, "party"),
    ],
)
def test_a_body_that_does_not_fit_is_a_400_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ApiError) as exc:
        from_json(body, pb.Person)
    assert exc.value.status == 400 and exc.value.field == field
    assert field.split("[")[0].split(".")[0] in exc.value.message


def test_numbers_may_be_whole_floats_and_doubles_ints() -> None:
    entry = from_json({"capacity": 3.0, "hours_per_week": 4}, pb.TeamServiceEntry)
    assert entry.capacity == 3 and entry.hours_per_week == 4.0


@pytest.mark.parametrize(("header", "version"), [('"1"', 1), (' "42" ', 42)])
def test_if_match_names_the_version(header: str, version: int) -> None:
    assert if_match_version(header) == version


def test_missing_if_match_is_428() -> None:
    with pytest.raises(ApiError) as exc:
        if_match_version(None)
    assert exc.value.status == 428 and exc.value.code == "precondition_required" and "If-Match" in exc.value.message


@pytest.mark.parametrize("header", ["*", "3", 'W/"3"', '"0"', '"1", "2"', '"abc"', ""])
def test_an_if_match_that_is_not_one_strong_etag_is_400(header: str) -> None:
    with pytest.raises(ApiError) as exc:
        if_match_version(header)
    assert exc.value.status == 400 and exc.value.field == "If-Match"


def test_content_disposition_carries_a_chinese_name_rfc5987() -> None:
    value = content_disposition("人员名单-泰前街道.xlsx", "people-taiqian.xlsx")
    assert value.isascii()
    assert value.startswith('attachment; filename="people-taiqian.xlsx"; ')
    encoded = value.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == "人员名单-泰前街道.xlsx"
    assert " " not in encoded and '"' not in encoded


def test_content_disposition_keeps_ascii_names_and_strips_dangerous_characters() -> None:
    assert content_disposition("people-taiqian.csv", "x.csv").startswith('attachment; filename="people-taiqian.csv"')
    value = content_disposition('a"b\r\nSet-Cookie: x/../c.csv', "x.csv")
    assert "\r" not in value and "\n" not in value and "/" not in unquote(value.split("''", 1)[1])
    assert content_disposition("", "fallback.csv").startswith('attachment; filename="fallback.csv"')


@pytest.mark.parametrize(
    ("value", "filename", "mimetype", "fmt"),
    [
        ("xlsx", "", "", "xlsx"),
        ("CSV", "", "", "csv"),
        (None, "名单.xlsx", "application/octet-stream", "xlsx"),
        (None, "list.csv", "", "csv"),
        (None, "", "text/csv", "csv"),
    ],
)
def test_sheet_format(value: str | None, filename: str, mimetype: str, fmt: str) -> None:
    assert sheet_format(value, filename, mimetype) == fmt


@pytest.mark.parametrize(("value", "filename"), [("pdf", ""), (None, "list.txt"), (None, "")])
def test_a_bad_or_missing_sheet_format_is_400(value: str | None, filename: str) -> None:
    with pytest.raises(ApiError) as exc:
        sheet_format(value, filename, "application/octet-stream")
    assert exc.value.status == 400 and exc.value.field == "format"


def test_times_without_an_offset_are_shanghai_time() -> None:
    naive = parse_time("2025-05-01T09:30:00")
    assert naive.utcoffset() == timedelta(hours=8)
    aware = parse_time("2025-05-01T01:30:00Z")
    assert aware == naive
    ts = Timestamp()
    ts.FromDatetime(naive)
    assert ts.ToDatetime() == datetime(2025, 5, 1, 1, 30)


@pytest.mark.parametrize("value", ["tomorrow", "2025-13-01T00:00:00", 1746057600])
def test_a_bad_time_is_400_naming_the_field(value: object) -> None:
    with pytest.raises(ApiError) as exc:
        parse_time(value)
    assert exc.value.status == 400 and exc.value.field == "time"


# ---------------------------------------------------------------- the import route's own body limit


class FakeOrg:
    """Answers ImportSheet from memory, keeping what it was sent (no network)."""

    def __init__(self) -> None:
        self.sent: list[pb.ImportSheetRequest] = []

    def ImportSheet(self, req: pb.ImportSheetRequest) -> pb.ImportSheetResponse:
        self.sent.append(req)
        return pb.ImportSheetResponse(rows=1, created=1, dry_run=req.dry_run)


class FakeClients:
    def __init__(self) -> None:
        self.org = FakeOrg()

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        return {}


def test_a_spreadsheet_may_be_larger_than_other_bodies_up_to_its_own_limit(tmp_path: Path) -> None:
    tokens = tmp_path / "api-tokens.toml"
    token, _ = TokenFile(tokens).create("unit-admin", "subdistrict_admin", ["*"])
    fake = FakeClients()
    client = create_app(Settings(api_tokens_file=str(tokens)), clients=cast(Clients, fake)).test_client()
    auth: dict[str, Any] = {"Authorization": f"Bearer {token}"}
    url = "/api/v1/tenants/taiqian/org/people/import?format=csv&dry_run=true"
    big = b"x" * (MAX_BODY_BYTES + 100_000)
    resp = client.post(url, data=big, headers=auth)
    assert resp.status_code == 200, resp.json
    assert resp.json == {"rows": 1, "created": 1, "updated": 0, "unchanged": 0, "errors": [], "dry_run": True}
    sent = fake.org.sent[-1]
    assert (sent.entity, sent.format, sent.dry_run, len(sent.content)) == ("people", "csv", True, len(big))

    too_big = client.post(url, data=b"x" * (IMPORT_MAX_BYTES + 1), headers=auth)
    assert too_big.status_code == 413 and too_big.json is not None
    assert too_big.json["error"]["code"] == "body_too_large"
    assert len(fake.org.sent) == 1  # refused before the service was called

    # Other routes keep the general limit.
    create = client.post("/api/v1/tenants/taiqian/org/communities", data=big, headers=auth)
    assert create.status_code == 413
