"""The OpenAPI document and the docs page: valid OpenAPI 3.1, every /api/v1 route in it (org routes per
collection), schemas that match what the routes really take and what protojson / issue_json really print,
roles and security from the policy table, the docs page and its assets without any CDN.

The app is built with the no-network stand-in of tests/unit/test_gateway_policy.py: nothing here calls
a service. tests/e2e/test_openapi.py fetches the same URLs from the running gateway.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient
from google.protobuf import any_pb2, struct_pb2, type_pb2, wrappers_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hongling.dispatch.v1 import dispatch_pb2
from hongling.intake.v1 import intake_pb2
from hongling.org.v1 import org_pb2 as pb
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.app import create_app
from gateway.clients import Clients
from gateway.openapi import ProtoSchemas, component_name, openapi_path, proto_comments
from gateway.policy import POLICY
from gateway.protojson import to_json
from gateway.routes_issues import issue_json, task_json
from gateway.routes_org import COLLECTIONS
from gateway.tokens import TOKEN_ROLES
from services.common.settings import Settings
from tests.unit.test_gateway_policy import NoNetwork

SPEC_URI = "urn:hongling:openapi"
SAMPLE_ARGS = {
    "tenant": "taiqian",
    "item_id": "x-1",
    "issue_id": "i-1",
    "attachment_id": "a-1",
    "task_id": "t-1",
    "whistle_id": "w-1",
    "webhook_id": "wh-1",
    "job_id": "ij-1",
    "pledge_id": "pl-1",
    "person_id": "p-1",
    "entry_id": "h-1",
    "meeting_id": "m-1",
    # alliance: posts and activities
    "post_id": "post-1",
    "shift_id": "post-1.0",
    "claim_id": "pc-1",
    "activity_id": "act-1",
    # evaluation: verification (验单)
    "round_id": "rr-1",
    "check_id": "oc-1",
    "photo_id": "p1",
    "pub_id": "monthly:c-001:2026-11:v1",
    "channel": "json",
    "community_id": "c-001",
}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(Settings(api_tokens_file=str(tmp_path / "api-tokens.toml")), clients=cast(Clients, NoNetwork()))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert isinstance(resp.json, dict)
    return resp.json


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def pointer(*parts: str) -> str:
    return SPEC_URI + "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validator(spec: dict[str, Any], *parts: str) -> Draft202012Validator:
    """A JSON Schema validator for the schema at this place in the document ($refs resolved in it)."""
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": pointer(*parts)}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = target
    return schema


def nullable_ref(schema: dict[str, Any]) -> str:
    """The $ref of `{"anyOf": [{"$ref": X}, {"type": "null"}]}`."""
    refs = [s["$ref"] for s in schema["anyOf"] if "$ref" in s]
    assert {"type": "null"} in schema["anyOf"] and len(refs) == 1
    return str(refs[0])


# ---------------------------------------------------------------- the document


def test_the_document_is_valid_openapi_3_1_chinese_first(spec: dict[str, Any]) -> None:
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema and its rules
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["title"] == "红领益家 Hongling API"
    assert spec["info"]["version"]


def test_every_api_route_is_documented_org_routes_per_collection(app: Flask, spec: dict[str, Any]) -> None:
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        if "<collection>" in rule.rule:
            wanted = [
                c.slug
                for c in COLLECTIONS.values()
                if not (
                    rule.endpoint in ("org.import_sheet", "org.start_import_job", "org.export_sheet") and not c.sheets
                )
                and not (rule.endpoint == "org.delete_item" and not c.deletable)
            ]
            assert wanted, rule.rule
            paths = [rule.rule.replace("<collection>", slug) for slug in wanted]
        else:
            paths = [rule.rule]
        for flask_path in paths:
            path, _ = openapi_path(flask_path)
            for method in methods:
                if method.lower() not in spec["paths"].get(path, {}):
                    missing.append(f"{method} {path}")
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    assert "/api/v1/tenants/{tenant}/org/communities/{item_id}" in spec["paths"]
    assert "delete" not in spec["paths"]["/api/v1/tenants/{tenant}/org/communities/{item_id}"]
    assert "/api/v1/tenants/{tenant}/org/communities/import" not in spec["paths"]


def test_every_documented_operation_is_a_real_route(app: Flask, spec: dict[str, Any]) -> None:
    urls = app.url_map.bind("localhost")
    for path, method, op in operations(spec):
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_ARGS[m.group(1)], path)
        endpoint, _ = urls.match(concrete, method=method.upper())
        assert op["operationId"].startswith(str(endpoint).replace(".", "_")), (path, method)


def test_operations_have_summaries_unique_ids_and_path_parameters(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))
    for path, method, op in operations(spec):
        assert op["summary"].strip(), (path, method)
        declared = set()
        for param in op.get("parameters", []):
            param = resolve(spec, param)
            if param["in"] == "path":
                assert param["required"] is True
                declared.add(param["name"])
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)


def test_a_summary_comes_from_the_views_docstring(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/v1/openapi.json"]["get"]
    assert op["summary"].startswith("OpenAPI 3.1 文档")
    assert "Cached per gateway process" in op["description"]


def test_an_undescribed_new_route_still_appears_with_its_docstring_and_default_deny(app: Flask) -> None:
    def widgets(tenant: str, n: int) -> str:
        """小部件 A widget

        More about widgets."""
        return f"{tenant}{n}"

    app.add_url_rule("/api/v1/tenants/<tenant>/widgets/<int:n>", "widgets", widgets)
    spec = app.test_client().get("/api/v1/openapi.json").json
    assert spec is not None
    validate(spec)
    op = spec["paths"]["/api/v1/tenants/{tenant}/widgets/{n}"]["get"]
    assert op["summary"] == "小部件 A widget" and op["description"].startswith("More about widgets.")
    n = next(p for p in op["parameters"] if p.get("name") == "n")
    assert n["schema"] == {"type": "integer"}
    assert op["x-hongling-roles"] == [] and op["security"] == [{"bearer": []}]
    assert "refused to everyone" in op["description"]


# ---------------------------------------------------------------- schemas: issues


def test_the_issue_create_body_is_the_pydantic_model(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/v1/tenants/{tenant}/issues"]["post"]
    assert op["requestBody"]["required"] is True
    body = resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["required"]) == {"title", "description", "channel", "location"}
    assert {
        "title",
        "description",
        "channel",
        "location",
        "category",
        "idempotency_key",
        "affected_households",
        "hazards",
        "contact",
        "attachments",
    } == set(body["properties"])
    assert body["additionalProperties"] is False
    assert "online" in body["properties"]["channel"]["description"]
    location = resolve(spec, body["properties"]["location"])
    assert set(location["properties"]) == {"lat", "lon", "address", "compound_id"}
    example = op["requestBody"]["content"]["application/json"]["example"]
    assert not list(
        validator(
            spec,
            "paths",
            "/api/v1/tenants/{tenant}/issues",
            "post",
            "requestBody",
            "content",
            "application/json",
            "schema",
        ).iter_errors(example)
    )


def test_issue_responses_match_what_issue_json_prints(spec: dict[str, Any]) -> None:
    issue = intake_pb2.Issue(id="i1", tenant="taiqian", title="楼道灯不亮", description="坏了", channel="online")
    issue.location.address = "嘉德社区3号楼"
    issue.created_at.FromDatetime(datetime(2025, 5, 1, tzinfo=UTC))
    task = dispatch_pb2.Task(id="t1", issue_id="i1", status="open")
    task.created_at.FromDatetime(datetime(2025, 5, 1, 1, tzinfo=UTC))
    one = validator(
        spec,
        "paths",
        "/api/v1/tenants/{tenant}/issues/{issue_id}",
        "get",
        "responses",
        "200",
        "content",
        "application/json",
        "schema",
    )
    one.validate({"issue": issue_json(issue), "task": task_json(task)})
    one.validate({"issue": issue_json(issue), "task": None})
    issue.location.lat, issue.location.lon = 36.2, 117.1
    created = validator(
        spec,
        "paths",
        "/api/v1/tenants/{tenant}/issues",
        "post",
        "responses",
        "201",
        "content",
        "application/json",
        "schema",
    )
    created.validate({"issue": issue_json(issue), "task": None})
    page = validator(
        spec,
        "paths",
        "/api/v1/tenants/{tenant}/issues",
        "get",
        "responses",
        "200",
        "content",
        "application/json",
        "schema",
    )
    page.validate({"issues": [issue_json(issue)], "next_page_token": None})
    bad = issue_json(issue) | {"surprise": 1}
    assert list(one.iter_errors({"issue": bad, "task": None}))


# ---------------------------------------------------------------- schemas: org (protobuf descriptors)


def test_the_person_schema_has_personal_data_and_nested_volunteer_availability(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/v1/tenants/{tenant}/org/people/{item_id}"]["get"]
    person = resolve(spec, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert person["title"] == "Person"
    props = person["properties"]
    assert props["phone"]["type"] == "string" and "masked" in props["phone"]["description"]
    assert props["id_number"]["type"] == "string"
    assert props["version"]["type"] == "integer" and props["version"]["readOnly"] is True
    assert props["meta"]["readOnly"] is True
    volunteer = resolve(spec, {"$ref": nullable_ref(props["volunteer"])})
    availability = volunteer["properties"]["availability"]
    assert availability["type"] == "array"
    slot = resolve(spec, availability["items"])
    assert set(slot["properties"]) == {"weekday", "start", "end"}
    assert (
        slot["properties"]["weekday"]["type"] == "integer" and "Monday" in slot["properties"]["weekday"]["description"]
    )
    meta = resolve(spec, {"$ref": nullable_ref(props["meta"])})
    assert meta["properties"]["created_at"] == {"type": ["string", "null"], "format": "date-time"}
    assert meta["properties"]["version"] == {"type": "integer", "format": "int64"}


def test_each_collection_uses_its_own_message(spec: dict[str, Any]) -> None:
    for c in COLLECTIONS.values():
        base = f"/api/v1/tenants/{{tenant}}/org/{c.slug}"
        want = f"#/components/schemas/{component_name(c.message.DESCRIPTOR)}"
        assert spec["paths"][f"{base}/{{item_id}}"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ] == {"$ref": want}
        assert spec["paths"][base]["post"]["requestBody"]["content"]["application/json"]["schema"] == {"$ref": want}
        page = spec["paths"][base]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert page["properties"]["items"]["items"] == {"$ref": want}


F = FieldDescriptor
SAMPLES = {
    F.CPPTYPE_INT32: -7,
    F.CPPTYPE_INT64: 2**40,
    F.CPPTYPE_UINT32: 7,
    F.CPPTYPE_UINT64: 2**63,
    F.CPPTYPE_DOUBLE: 1.5,
    F.CPPTYPE_FLOAT: 0.5,
    F.CPPTYPE_BOOL: True,
}


def _is_map(fd: Any) -> bool:
    return fd.type == F.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def fill(msg: Message, depth: int = 0) -> Message:
    """Every field of msg set (repeated: two values, maps: one entry), nested messages to depth 3."""
    fd: Any
    for fd in msg.DESCRIPTOR.fields:
        oneof = fd.containing_oneof
        if oneof is not None and not oneof.name.startswith("_") and fd is not oneof.fields[0]:
            continue  # one member of a real oneof
        value_fd = fd.message_type.fields_by_name["value"] if _is_map(fd) else fd
        if fd.cpp_type == F.CPPTYPE_MESSAGE and not _is_map(fd):
            if depth >= 3:
                continue
            if fd.message_type.full_name == "google.protobuf.Timestamp":
                targets = [getattr(msg, fd.name).add() for _ in range(2)] if fd.is_repeated else [getattr(msg, fd.name)]
                for ts in targets:
                    ts.FromDatetime(datetime(2025, 5, 1, 8, 30, tzinfo=UTC))
            elif fd.is_repeated:
                for _ in range(2):
                    fill(getattr(msg, fd.name).add(), depth + 1)
            else:
                fill(getattr(msg, fd.name), depth + 1)
            continue
        if _is_map(fd):
            if value_fd.cpp_type == F.CPPTYPE_MESSAGE:
                if depth < 3:
                    fill(getattr(msg, fd.name)["k"], depth + 1)
            else:
                getattr(msg, fd.name)["k"] = sample(value_fd)
        elif fd.is_repeated:
            getattr(msg, fd.name).extend([sample(fd), sample(fd)])
        else:
            setattr(msg, fd.name, sample(fd))
    return msg


def sample(fd: Any) -> Any:
    if fd.cpp_type == F.CPPTYPE_STRING:
        return b"\x00\xff" if fd.type == F.TYPE_BYTES else "文字"
    if fd.cpp_type == F.CPPTYPE_ENUM:
        return fd.enum_type.values[-1].number
    return SAMPLES[fd.cpp_type]


def test_what_protojson_prints_for_every_org_message_fits_its_schema(spec: dict[str, Any]) -> None:
    names = {m for m in spec["components"]["schemas"] if m.startswith("org.v1.")}
    assert {"org.v1.Person", "org.v1.Community", "org.v1.FindCandidatesResponse"} <= names
    for name in sorted(names):
        cls = getattr(pb, name.removeprefix("org.v1."))
        check = validator(spec, "components", "schemas", name)
        for msg in (cls(), fill(cls())):  # every field unset (nulls) and every field set
            errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(to_json(msg))]
            assert not errors, f"{name}: {errors}"


def test_the_converter_covers_enums_maps_bytes_oneofs_unsigned_and_recursion() -> None:
    components: dict[str, Any] = {}
    schemas = ProtoSchemas(components)
    for cls in (type_pb2.Type, struct_pb2.Struct, any_pb2.Any, wrappers_pb2.UInt64Value):
        schemas.ref(cls.DESCRIPTOR)
    field = components["google.protobuf.Field"]["properties"]
    assert field["kind"]["type"] == "string" and "TYPE_STRING" in field["kind"]["enum"]
    assert field["options"]["items"] == {"$ref": "#/components/schemas/google.protobuf.Option"}
    struct = components["google.protobuf.Struct"]["properties"]["fields"]
    assert struct == {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/google.protobuf.Value"}}
    value = components["google.protobuf.Value"]
    assert "oneof kind" in value["description"]
    assert value["properties"]["number_value"] == {"type": ["number", "null"], "format": "double"}
    assert components["google.protobuf.Any"]["properties"]["value"]["contentEncoding"] == "base64"
    assert components["google.protobuf.UInt64Value"]["properties"]["value"]["minimum"] == 0
    document = {"components": {"schemas": components}}
    struct_msg = struct_pb2.Struct()
    struct_msg.update({"a": 1.5, "b": "x", "c": None, "d": {"e": [True, "f"]}})
    for cls, msg in (
        (type_pb2.Type, fill(type_pb2.Type())),
        (struct_pb2.Struct, struct_msg),
        (any_pb2.Any, any_pb2.Any(type_url="t", value=b"\x00\x01")),
        (wrappers_pb2.UInt64Value, wrappers_pb2.UInt64Value(value=2**64 - 1)),
    ):
        validator(document, "components", "schemas", component_name(cls.DESCRIPTOR)).validate(to_json(msg))


def test_proto_comments_become_descriptions() -> None:
    comments = proto_comments("hongling/org/v1/org.proto")
    assert "masked unless revealed" in comments["hongling.org.v1.Person.phone"]
    assert comments["hongling.org.v1.Availability.weekday"].startswith("1 = Monday")
    assert "ABORTED" not in comments.get("hongling.org.v1.Community.id", "")
    assert "6 domains" not in comments.get("hongling.org.v1.ResponsibilityItem.id", "")
    assert proto_comments("google/protobuf/timestamp.proto") == {}


# ---------------------------------------------------------------- parameters, headers, errors


def test_org_lists_document_their_filters_and_page_limits_and_items_carry_etags(spec: dict[str, Any]) -> None:
    base = "/api/v1/tenants/{tenant}/org/people"
    params = {p.get("name") or p["$ref"]: p for p in spec["paths"][base]["get"]["parameters"]}
    query = {"page_size", "page_token", *COLLECTIONS["people"].filters}
    assert set(params) == {"#/components/parameters/tenant", "X-Hongling-Grant", *query}
    assert all(params[k]["in"] == "query" and params[k]["schema"]["type"] == "string" for k in ("role", "grid_id"))
    assert params["page_size"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 500}
    item = spec["paths"][f"{base}/{{item_id}}"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    assert {"$ref": "#/components/parameters/If-Match"} in item["put"]["parameters"]
    assert {"412", "428", "409"} <= set(item["put"]["responses"])
    assert spec["components"]["parameters"]["If-Match"]["required"] is True
    created = spec["paths"][base]["post"]["responses"]["201"]["headers"]
    assert {"ETag", "Location"} <= set(created)
    assert "Location" in spec["paths"]["/api/v1/tenants/{tenant}/issues"]["post"]["responses"]["201"]["headers"]
    delete = spec["paths"]["/api/v1/tenants/{tenant}/org/talent-entries/{item_id}"]["delete"]
    assert "204" in delete["responses"] and {"$ref": "#/components/parameters/If-Match"} in delete["parameters"]
    reveal = next(p for p in item["get"]["parameters"] if p.get("name") == "reveal")
    assert reveal["schema"]["type"] == "boolean"


def test_spreadsheet_routes_document_files(spec: dict[str, Any]) -> None:
    imp = spec["paths"]["/api/v1/tenants/{tenant}/org/people/import"]["post"]
    assert {"multipart/form-data", "text/csv"} <= set(imp["requestBody"]["content"])
    assert "413" in imp["responses"]
    exp = spec["paths"]["/api/v1/tenants/{tenant}/org/people/export"]["get"]
    assert "text/csv" in exp["responses"]["200"]["content"]
    assert "Content-Disposition" in exp["responses"]["200"]["headers"]
    fmt = next(p for p in exp["parameters"] if p.get("name") == "format")
    assert fmt["schema"] == {"type": "string", "enum": ["xlsx", "csv"]}


def test_import_jobs_are_documented_202_with_location_then_the_job_and_its_list(spec: dict[str, Any]) -> None:
    start = spec["paths"]["/api/v1/tenants/{tenant}/org/people/import-jobs"]["post"]
    assert {"multipart/form-data", "text/csv"} <= set(start["requestBody"]["content"])
    assert "Location" in start["responses"]["202"]["headers"] and "413" in start["responses"]
    assert start["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/org.v1.ImportJob"
    }
    assert "background job" in start["summary"] and "rows_written" in start["description"]
    assert "/api/v1/tenants/{tenant}/org/communities/import-jobs" not in spec["paths"]
    job = spec["paths"]["/api/v1/tenants/{tenant}/org/import-jobs/{job_id}"]["get"]
    assert job["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/org.v1.ImportJob"
    }
    assert "404" in job["responses"] and job["x-hongling-community-scope"] == "own record"
    listed = spec["paths"]["/api/v1/tenants/{tenant}/org/import-jobs"]["get"]
    page = listed["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(page["required"]) == {"items", "next_page_token"}
    size = next(p for p in listed["parameters"] if p.get("name") == "page_size")
    assert size["schema"]["maximum"] == 100
    fields = spec["components"]["schemas"]["org.v1.ImportJob"]["properties"]
    assert {"status", "stage", "total_rows", "rows_checked", "rows_written", "errors", "error_count"} <= set(fields)
    assert "queued | running | succeeded | failed" in fields["status"]["description"]


def test_the_audit_export_documents_ndjson_and_csv(spec: dict[str, Any]) -> None:
    for path in ("/api/v1/audit/export", "/api/v1/tenants/{tenant}/audit/export"):
        ok = spec["paths"][path]["get"]["responses"]["200"]
        assert set(ok["content"]) == {"application/x-ndjson", "text/csv"}
        fmt = next(p for p in spec["paths"][path]["get"]["parameters"] if p.get("name") == "format")
        assert fmt["schema"]["enum"] == ["ndjson", "csv"]


def test_query_parameters_carry_the_limits_and_enums_the_views_check(spec: dict[str, Any]) -> None:
    def params(path: str) -> dict[str, Any]:
        return {p["name"]: p for p in spec["paths"][path]["get"]["parameters"] if "name" in p}

    tasks = params("/api/v1/tenants/{tenant}/tasks")
    assert tasks["page_size"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 200}
    assert tasks["call_type"]["schema"]["enum"] == ["service", "tackling", "emergency"]
    assert "open" in tasks["status"]["schema"]["enum"] and tasks["overdue"]["schema"]["type"] == "boolean"
    issues = params("/api/v1/tenants/{tenant}/issues")
    assert issues["created_from"]["schema"] == {"type": "string", "format": "date-time"}
    assert issues["page_size"]["schema"]["maximum"] == 100 and issues["text"]["schema"]["maxLength"] == 100
    assert params("/api/v1/dispatch/overdue")["tenant"]["required"] is True
    assert params("/api/v1/audit")["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 50,
    }


def test_errors_have_the_one_shape_and_the_statuses_that_apply(spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["properties"]) == {"code", "message", "field", "request_id"}
    check = validator(spec, "components", "schemas", "Error")
    check.validate({"error": {"code": "forbidden", "message": "no", "request_id": "abc12345"}})
    check.validate({"error": {"code": "invalid_argument", "message": "x", "field": "title", "request_id": "r"}})
    for code in (400, 401, 403, 404, 409, 412, 428, 429, 503):
        response = spec["components"]["responses"][f"E{code}"]
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    for path, method, op in operations(spec):
        assert {"401", "default"} <= set(op["responses"]), (path, method)
        if op.get("x-hongling-tenant-scoped"):
            assert {"403", "404", "429", "503"} <= set(op["responses"]), (path, method)
    tenants = spec["paths"]["/api/v1/tenants"]["get"]["responses"]
    assert "403" not in tenants and "503" not in tenants


# ---------------------------------------------------------------- security and roles


def test_bearer_security_and_the_roles_of_the_policy_table(app: Flask, spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "hl_" in scheme["bearerFormat"]
    endpoints = app.url_map.bind("localhost")
    for path, method, op in operations(spec):
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_ARGS[m.group(1)], path)
        endpoint, _ = endpoints.match(concrete, method=method.upper())
        rule = POLICY[str(endpoint)]
        roles = [r for r in TOKEN_ROLES if r in rule.roles or (r == "district_department" and rule.grant)]
        assert op["x-hongling-roles"] == roles, (path, method)
        if rule.grant:  # a department names its grant in a header, and the description says so
            assert any(p.get("name") == "X-Hongling-Grant" for p in op["parameters"]), (path, method)
            assert rule.grant.split(":")[0] in op["description"], (path, method)
        assert all(r in op["description"] for r in roles)
        public = "public" in rule.roles and "public" not in rule.local_only
        assert op["security"] == ([{}, {"bearer": []}] if public else [{"bearer": []}]), (path, method)
        assert op.get("x-hongling-community-scope", "") == rule.community, (path, method)
    staff = spec["paths"]["/api/v1/tenants/{tenant}/org/people"]["get"]
    assert staff["x-hongling-roles"] == ["community_worker", "subdistrict_admin", "district_department"]
    assert "社区范围 A community worker: own community only (another: 403)" in staff["description"]
    task = spec["paths"]["/api/v1/tenants/{tenant}/tasks/{task_id}"]["get"]
    assert task["x-hongling-community-scope"] == "own record" and "(another's: 404)" in task["description"]
    assert spec["paths"]["/api/v1/tenants/{tenant}/issues"]["post"]["security"] == [{}, {"bearer": []}]


# ---------------------------------------------------------------- serving


def test_the_document_is_open_cached_and_conditional(client: FlaskClient) -> None:
    first = client.get("/api/v1/openapi.json")
    assert first.status_code == 200 and first.headers["ETag"]
    again = client.get("/api/v1/openapi.json", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/api/v1/openapi.json", headers={"Authorization": "Bearer hl_" + "q" * 43}).status_code == 401


def test_the_docs_page_is_swagger_ui_from_the_wheel_with_no_cdn(client: FlaskClient) -> None:
    resp = client.get("/api/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html and "红领益家" in html
    assert "//" not in re.sub(r"<!DOCTYPE[^>]*>", "", html).replace("://", "")  # no protocol-relative URLs
    assert "http" not in html  # nothing loaded from elsewhere
    assets = re.findall(r'(?:src|href)="(/api/docs/[^"]+)"', html)
    assert {"/api/docs/swagger-ui.css", "/api/docs/swagger-ui-bundle.js"} <= set(assets)
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200 and len(got.data) > 100, asset
    script = re.search(r"<script>(.*)</script>", html, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in resp.headers["Content-Security-Policy"]
    for bad in ("index.html", "swagger-initializer.js", "..%2F__init__.py", "nothing.js"):
        assert client.get(f"/api/docs/{bad}").status_code == 404, bad


# ---- Evaluation: ratings (评单; gateway/routes_ratings.py)


def test_the_reporters_routes_take_the_follow_code_in_a_header_never_in_the_path(spec: dict[str, Any]) -> None:
    for action, method in (("follow", "get"), ("rating", "post"), ("result-rejection", "post")):
        op = spec["paths"][f"/api/v1/tenants/{{tenant}}/issues/{{issue_id}}/{action}"][method]
        headers = [p for p in op.get("parameters", []) if p.get("in") == "header"]
        assert [p["name"] for p in headers] == ["X-Follow-Code"], action
    assert not [p for p in spec["paths"] if "code" in p.lower()]
    created = spec["paths"]["/api/v1/tenants/{tenant}/issues"]["post"]["responses"]["201"]
    assert "follow_code" in created["content"]["application/json"]["schema"]["properties"]


def test_every_operation_lists_what_any_call_of_its_shape_may_answer(spec: dict[str, Any]) -> None:
    """Found by the generated calls (tests/e2e/test_generated_api_calls.py): 429 from the per-address limit on
    every route, 400 and 413 where there is a body, 400 where there are query parameters, 404 where a path
    names a record; 429 tells when to retry."""
    for path, method, op in operations(spec):
        codes = set(op["responses"])
        assert "429" in codes, (method, path)
        params = [p for p in op.get("parameters", []) if "name" in p]
        if "requestBody" in op:
            assert {"400", "413"} <= codes, (method, path)
        if any(p["in"] == "query" for p in params):
            assert "400" in codes, (method, path)
        if any(p["in"] == "path" for p in params):
            assert "404" in codes, (method, path)
    assert "Retry-After" in spec["components"]["responses"]["E429"]["headers"]


def test_routes_without_a_model_document_their_real_statuses_bodies_and_files(spec: dict[str, Any]) -> None:
    """The views answering their own JSON: the success status they really send (201, 204), a JSON body where
    they read one, their errors, and files as files."""
    paths = spec["paths"]
    assert set(paths["/api/v1/auth/logout"]["post"]["responses"]) >= {"204", "400"}
    assert "200" not in paths["/api/v1/auth/logout"]["post"]["responses"]
    login = paths["/api/v1/auth/login"]["post"]
    assert "application/json" in login["requestBody"]["content"] and "400" in login["responses"]
    assert "201" in paths["/api/v1/users"]["post"]["responses"]
    assert "201" in paths["/api/v1/department-requests"]["post"]["responses"]
    assert {"400", "404", "409"} <= set(paths["/api/v1/users/{item_id}/role"]["put"]["responses"])
    minutes = paths["/api/v1/tenants/{tenant}/alliance/meetings/{meeting_id}/minutes.docx"]["get"]
    assert list(minutes["responses"]["200"]["content"]) == [
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    ]
