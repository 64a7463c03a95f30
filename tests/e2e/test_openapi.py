"""The OpenAPI document and the docs page from the running gateway, and the document held against what the
running system really answers (the issue example it carries, an org record, an error)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import System, unique

T = "shanggao"
SPEC_URI = "urn:hongling:openapi"


@pytest.fixture(scope="module")
def spec(system: System) -> dict[str, Any]:
    resp = requests.get(f"{system.gateway}/api/v1/openapi.json", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    return body


def check(spec: dict[str, Any], *parts: str) -> Draft202012Validator:
    """A validator for the schema at this place in the document."""
    where = "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/{where}"}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def test_the_document_is_served_valid_and_anonymous(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.1.") and spec["info"]["title"] == "红领益家 Hongling API"
    assert "/api/v1/tenants/{tenant}/org/people/{item_id}" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_docs_page_and_its_assets_load_from_the_gateway(system: System) -> None:
    resp = requests.get(f"{system.gateway}/api/docs", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert "/api/v1/openapi.json" in resp.text and "Content-Security-Policy" in resp.headers
    assets = re.findall(r'(?:src|href)="(/api/docs/[^"]+)"', resp.text)
    kinds = {".css": "text/css", ".js": "javascript", ".png": "image/png"}
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        got = requests.get(f"{system.gateway}{asset}", timeout=10)
        assert got.status_code == 200 and len(got.content) > 100, asset
        want = next(v for k, v in kinds.items() if asset.endswith(k))
        assert want in got.headers["Content-Type"], (asset, got.headers["Content-Type"])
    assert requests.get(f"{system.gateway}/api/docs/index.html", timeout=10).status_code == 404


def test_the_issue_example_is_accepted_and_the_answer_fits_the_document(system: System, spec: dict[str, Any]) -> None:
    path = "/api/v1/tenants/{tenant}/issues"
    op = spec["paths"][path]["post"]
    example = op["requestBody"]["content"]["application/json"]["example"]
    resp = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/issues", json=example | {"idempotency_key": unique()}, timeout=10
    )
    assert resp.status_code == 201, resp.text
    check(spec, "paths", path, "post", "responses", "201", "content", "application/json", "schema").validate(
        resp.json()
    )
    assert resp.headers["Location"].endswith(resp.json()["issue"]["id"])
    read = requests.get(f"{system.gateway}{resp.headers['Location']}", timeout=10)
    assert read.status_code == 200
    one = "/api/v1/tenants/{tenant}/issues/{issue_id}"
    check(spec, "paths", one, "get", "responses", "200", "content", "application/json", "schema").validate(read.json())


def test_an_org_record_and_an_error_fit_the_document(system: System, spec: dict[str, Any]) -> None:
    base = f"{system.gateway}/api/v1/tenants/{T}/org/communities"
    admin = system.auth("subdistrict_admin", T)
    created = requests.post(base, json={"id": unique("c"), "name_zh": f"社区{unique()}"}, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    community = check(spec, "components", "schemas", "org.v1.Community")
    community.validate(created.json())
    assert created.headers["Location"] == f"/api/v1/tenants/{T}/org/communities/{created.json()['id']}"
    got = requests.get(f"{base}/{created.json()['id']}", headers=admin, timeout=10)
    assert got.status_code == 200 and got.headers["ETag"] == f'"{got.json()["version"]}"'
    community.validate(got.json())
    page = requests.get(base, params={"page_size": 2}, headers=admin, timeout=10)
    list_schema = ("paths", "/api/v1/tenants/{tenant}/org/communities", "get", "responses", "200")
    check(spec, *list_schema, "content", "application/json", "schema").validate(page.json())
    refused = requests.get(base, timeout=10)
    assert refused.status_code == 401
    check(spec, "components", "schemas", "Error").validate(refused.json())
    op = spec["paths"]["/api/v1/tenants/{tenant}/org/communities"]["get"]
    assert "401" in op["responses"]
    assert op["x-hongling-roles"] == ["community_worker", "subdistrict_admin", "district_department"]
