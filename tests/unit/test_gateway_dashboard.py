"""The dashboard route without the services (gateway/routes_dashboard.py): its policy line, the window it asks
the services for (a community worker: its own community), the JSON it makes of their figures (and that it
fits the OpenAPI document), and 400s in the API's one error shape for a bad `days`.
tests/e2e/test_dashboard_api.py runs it against the services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hongling.common.v1 import stats_pb2
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.intake.v1 import intake_pb2 as ipb

from gateway.policy import OWN_LIST, POLICY
from services.common import rollups
from tests.unit.test_gateway_dispatch import FakeRpcError, Stub, bearer, error
from tests.unit.test_gateway_openapi import validator

T = "taiqian"
URL = f"/api/v1/tenants/{T}/dashboard"


class FakeClients:
    def __init__(self) -> None:
        self.intake = Stub()
        self.dispatch = Stub()

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        return {}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the dashboard calls only intake and dispatch (tried clients.{name})")


@pytest.fixture
def fake() -> FakeClients:
    return FakeClients()


def days_of(req: Any, counts: dict[str, dict[str, int]]) -> list[stats_pb2.DayCounts]:
    first, last = rollups.check_window(req.from_day, req.to_day)
    return [
        stats_pb2.DayCounts(day=d.isoformat(), counts=counts.get(d.isoformat(), {}))
        for d, _ in rollups.series({}, first, last)
    ]


def histogram(measure: str, counts: list[int]) -> stats_pb2.SpanHistogram:
    return stats_pb2.SpanHistogram(
        measure=measure,
        upper_bounds_seconds=rollups.UPPER_BOUNDS,
        counts=counts,
        total=sum(counts),
        p50_seconds=rollups.quantile(counts, 0.5),
        p90_seconds=rollups.quantile(counts, 0.9),
    )


def answer(fake: FakeClients) -> None:
    today = rollups.today().isoformat()

    def issues(req: ipb.GetIssueStatsRequest) -> ipb.IssueStats:
        return ipb.IssueStats(
            open_issues=[
                ipb.CategoryStatusCount(
                    category="sanitation", category_zh="环境卫生", category_en="Sanitation", status="done", count=1
                ),
                ipb.CategoryStatusCount(
                    category="property_repair",
                    category_zh="物业维修",
                    category_en="Property repairs",
                    status="in_progress",
                    count=2,
                ),
                ipb.CategoryStatusCount(
                    category="property_repair",
                    category_zh="物业维修",
                    category_en="Property repairs",
                    status="whistle_blown",
                    count=1,
                ),
                ipb.CategoryStatusCount(category="gone", status="duplicate", count=1),  # no longer in the rules
            ],
            days=days_of(req, {today: {"issues_received": 4}}),
            spans=[
                histogram("received_to_whistle", [3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                histogram("received_to_done", [0] * 11),
            ],
        )

    def tasks(req: dpb.GetDispatchStatsRequest) -> dpb.DispatchStats:
        counts = {"whistles_blown": 3, "whistles_answered_in_time": 2, "tasks_done": 1, "tasks_overdue": 1}
        return dpb.DispatchStats(
            overdue_tasks=2,
            days=days_of(req, {today: counts}),
            spans=[histogram("whistle_to_report_in", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2])],
        )

    fake.intake.answers["GetIssueStats"] = issues
    fake.dispatch.answers["GetDispatchStats"] = tasks


def test_the_route_is_for_the_tenants_staff() -> None:
    rule = POLICY["dashboard.get_dashboard"]
    assert (set(rule.roles), rule.tenant_scoped, rule.grant) == ({"community_worker", "subdistrict_admin"}, True, "")
    assert rule.community == OWN_LIST  # a community worker: its own community's figures


def test_the_dashboard_of_a_community_from_the_services_figures(
    client: FlaskClient, fake: FakeClients, tokens: Path, app: Flask
) -> None:
    answer(fake)
    resp = client.get(f"{URL}?community_id=c-1&days=7", headers=bearer(tokens, "community_worker"))
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    # The services were asked for the last 7 local days of that community.
    req = fake.intake.last("GetIssueStats").request
    first, last = rollups.window(7, rollups.today())
    assert (req.community_id, req.from_day, req.to_day) == ("c-1", first.isoformat(), last.isoformat())
    assert fake.dispatch.last("GetDispatchStats").request == dpb.GetDispatchStatsRequest(
        community_id="c-1", from_day=first.isoformat(), to_day=last.isoformat()
    )
    assert fake.intake.last("GetIssueStats").tenant == T
    assert (body["tenant"], body["community_id"], body["days"], body["time_zone"]) == (T, "c-1", 7, "Asia/Shanghai")
    assert (body["from_day"], body["to_day"]) == (first.isoformat(), last.isoformat())

    opened = body["open_issues"]
    assert opened["total"] == 5
    assert [(s["status"], s["name_zh"], s["count"]) for s in opened["by_status"]] == [
        ("duplicate", "重复事项（随原事项办理）", 1),
        ("whistle_blown", "已吹号", 1),
        ("in_progress", "办理中", 2),
        ("done", "已办结", 1),
    ]
    assert opened["by_category"][0] == {
        "category": "property_repair",
        "name_zh": "物业维修",
        "name_en": "Property repairs",
        "total": 3,
        "by_status": {"in_progress": 2, "whistle_blown": 1},
    }
    assert [r["category"] for r in opened["by_category"]] == ["property_repair", "gone", "sanitation"]
    assert opened["by_category"][1]["name_zh"] == "gone"  # a category no longer in the rules: its code

    assert body["overdue_tasks"] == 2
    assert len(body["series"]) == 7 and body["series"][0]["day"] == first.isoformat()
    assert body["series"][-1] == {
        "day": last.isoformat(),
        "issues_received": 4,
        "whistles_blown": 3,
        "whistles_answered_in_time": 2,
        "tasks_done": 1,
        "tasks_overdue": 1,
    }
    assert all(d["issues_received"] == 0 and d["tasks_done"] == 0 for d in body["series"][:-1])

    spans = body["durations"]
    assert set(spans) == {"received_to_whistle", "whistle_to_report_in", "received_to_done"}
    quick = spans["received_to_whistle"]
    assert quick["total"] == 4 and quick["name_zh"] == "受理到吹号"
    assert [(b["le_seconds"], b["label_en"], b["count"]) for b in quick["buckets"][:2]] == [
        (300, "≤5 min", 3),
        (900, "≤15 min", 1),
    ]
    assert quick["buckets"][-1] == {"le_seconds": None, "label_zh": ">7天", "label_en": ">7 d", "count": 0}
    assert quick["p50_seconds"] == pytest.approx(200.0) and quick["p90_seconds"] == pytest.approx(660.0)
    assert spans["whistle_to_report_in"]["p50_seconds"] == 604800.0  # all beyond 7 days: at least that
    assert spans["received_to_done"]["total"] == 0 and spans["received_to_done"]["p50_seconds"] is None

    spec = client.get("/api/v1/openapi.json").get_json()
    path = "/api/v1/tenants/{tenant}/dashboard"
    v = validator(spec, "paths", path, "get", "responses", "200", "content", "application/json", "schema")
    assert not [e.message for e in v.iter_errors(body)]
    params = {p.get("name"): p for p in spec["paths"][path]["get"]["parameters"]}
    assert params["days"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}


def test_the_whole_tenant_over_the_default_30_days(client: FlaskClient, fake: FakeClients, tokens: Path) -> None:
    answer(fake)
    resp = client.get(URL, headers=bearer(tokens, "subdistrict_admin"))
    assert resp.status_code == 200 and resp.get_json()["community_id"] is None
    req = fake.intake.last("GetIssueStats").request
    assert (
        req.community_id == ""
        and rollups.check_window(req.from_day, req.to_day)[0] == rollups.window(30, rollups.today())[0]
    )
    assert len(resp.get_json()["series"]) == 30


@pytest.mark.parametrize("days", ["0", "367", "-1", "x", "1.5"])
def test_a_bad_days_is_400_naming_it_and_nothing_is_asked(
    client: FlaskClient, fake: FakeClients, tokens: Path, days: str
) -> None:
    resp = client.get(f"{URL}?days={days}", headers=bearer(tokens, "community_worker"))
    assert resp.status_code == 400
    err = error(resp)
    assert (err["code"], err["field"]) == ("invalid_argument", "days")
    assert "(days " in err["message"] and any("\u4e00" <= ch <= "\u9fff" for ch in err["message"])  # 中文 (English)
    assert not fake.intake.calls and not fake.dispatch.calls


def test_a_community_worker_sees_its_own_community_only(client: FlaskClient, fake: FakeClients, tokens: Path) -> None:
    answer(fake)
    worker = bearer(tokens, "community_worker")  # of community c-1
    resp = client.get(URL, headers=worker)
    assert resp.status_code == 200 and resp.get_json()["community_id"] == "c-1"
    assert fake.intake.last("GetIssueStats").request.community_id == "c-1"
    assert fake.dispatch.last("GetDispatchStats").request.community_id == "c-1"
    calls = len(fake.intake.calls)
    resp = client.get(f"{URL}?community_id=c-2", headers=worker)
    assert resp.status_code == 403
    assert (error(resp)["code"], error(resp)["field"]) == ("community_out_of_scope", "community_id")
    assert len(fake.intake.calls) == calls  # refused before any service is asked


def test_who_is_refused(client: FlaskClient, fake: FakeClients, tokens: Path) -> None:
    assert client.get(URL).status_code == 401
    for role in ("resident", "member", "ops", "district_department"):
        resp = client.get(URL, headers=bearer(tokens, role, responder="person:p" if role == "member" else None))
        assert resp.status_code == 403, role
    assert client.get(URL, headers=bearer(tokens, "community_worker", "daimiao")).status_code == 403
    assert not fake.intake.calls


def test_a_service_error_is_the_apis_error_shape(client: FlaskClient, fake: FakeClients, tokens: Path) -> None:
    import grpc

    fake.intake.answers["GetIssueStats"] = FakeRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, "at most 366 days at once (最多366天)", field="from_day"
    )
    resp = client.get(URL, headers=bearer(tokens, "community_worker"))
    assert resp.status_code == 400 and error(resp)["field"] == "from_day"
    fake.intake.answers["GetIssueStats"] = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "intake is away")
    resp = client.get(URL, headers=bearer(tokens, "community_worker"))
    assert resp.status_code == 503 and "Traceback" not in resp.get_data(as_text=True)
