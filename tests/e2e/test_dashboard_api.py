"""The portal's dashboard through the gateway, against the running system: issues reported, their calls blown
(one more by hand), a unit reporting in, a task claimed, started and finished, all through the API; the
dashboard of that community then shows them (polled to a generous deadline: the figures come from the read
models' rollups, which the projector keeps within moments). Bad parameters are 400 in the API's error shape."""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests

from services.org.seed import Rect
from tests.conftest import System, unique, wait_for

T = "caiyuan"
COMMUNITY = unique("dash")  # this module's community (its community worker's: worker())
_workers: dict[str, dict[str, str]] = {}
# This module's own community and grid, away from every other test's (a new place on each run).
CENTER = (round(random.uniform(35.60, 35.70), 4), round(random.uniform(116.60, 116.70), 4))
HALF = 0.006


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def ok(resp: requests.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    return resp.json()


def worker(system: System) -> dict[str, str]:
    """A community worker of this module's community (made once)."""
    if COMMUNITY not in _workers:
        _workers[COMMUNITY] = system.worker_auth(T, COMMUNITY)
    return _workers[COMMUNITY]


@pytest.fixture(scope="module")
def place(system: System) -> tuple[str, str]:
    """(community, a member unit serving its grid)."""
    admin = system.auth("subdistrict_admin", T)

    def create(collection: str, body: dict[str, Any]) -> str:
        resp = requests.post(url(system, f"org/{collection}"), json=body, headers=admin, timeout=15)
        return str(ok(resp, 201)["id"])

    lat, lon = CENTER
    community = create("communities", {"id": COMMUNITY, "name_zh": f"仪表盘测试社区{unique()[-4:]}"})
    boundary = Rect(lon - HALF, lat - HALF, lon + HALF, lat + HALF).geojson()
    grid = create("grids", {"community_id": community, "name_zh": "仪表盘网格", "boundary_geojson": boundary})
    unit = create(
        "member-units",
        {
            "community_id": community,
            "name_zh": f"物业公司{unique()[-4:]}",
            "kind": "property_company",
            "serves_grid_ids": [grid],
            "joined_on": "2024-05-01",
        },
    )
    return community, unit


def report(system: System, n: int, category: str, title: str) -> dict[str, Any]:
    lat, lon = CENTER
    body = {
        "title": f"{title}{unique()[-4:]}",
        "description": f"{title}，请尽快处理",
        "channel": "grid_patrol",
        "category": category,
        "location": {"lat": round(lat - 0.003 + n * 0.003, 6), "lon": round(lon, 6), "address": "仪表盘测试社区"},
    }
    issue = ok(requests.post(url(system, "issues"), json=body, headers=worker(system), timeout=15), 201)["issue"]
    assert not issue["duplicate_of"]
    return dict(issue)


def task_of(system: System, issue_id: str) -> dict[str, Any]:
    """The issue's task once dispatch opened it and blew its call."""

    def found() -> Any:
        t = requests.get(url(system, f"issues/{issue_id}"), headers=worker(system), timeout=10).json()["task"]
        if t is None:
            return None
        full = requests.get(url(system, f"tasks/{t['id']}"), headers=worker(system), timeout=10).json()
        return full if full.get("whistle_id") else None

    return dict(wait_for(found))


def dashboard(system: System, query: str) -> requests.Response:
    return requests.get(url(system, f"dashboard?{query}"), headers=worker(system), timeout=15)


def totals(body: dict[str, Any]) -> dict[str, int]:
    keys = ("issues_received", "whistles_blown", "whistles_answered_in_time", "tasks_done", "tasks_overdue")
    return {k: sum(d[k] for d in body["series"]) for k in keys}


def test_the_dashboard_shows_what_happened_through_the_api(system: System, place: tuple[str, str]) -> None:
    community, unit = place
    query = f"community_id={community}&days=2"  # today, and yesterday should the run cross midnight
    empty = ok(dashboard(system, query))
    assert empty["open_issues"] == {"total": 0, "by_status": [], "by_category": []} and empty["overdue_tasks"] == 0
    assert set(totals(empty).values()) == {0} and len(empty["series"]) == 2

    lamp = report(system, 0, "property_repair", "楼道灯不亮")
    rubbish = report(system, 1, "sanitation", "垃圾清运不及时")
    received_month = {lamp["created_at"][:7], rubbish["created_at"][:7]}.pop()  # Shanghai time, as the API shows
    task = task_of(system, lamp["id"])
    task_of(system, rubbish["id"])
    # One more call, blown by hand for the lamp.
    body = {"issue_ids": [lamp["id"]], "note": "再次吹号", "idempotency_key": unique("dash")}
    ok(requests.post(url(system, "whistles"), json=body, headers=worker(system), timeout=15), 201)
    # The unit reports in to the lamp's own call (recorded by a community worker), before its deadline.
    answer = {"answer": "accept", "responder": {"kind": "member_unit", "id": unit}}
    reported = requests.post(
        url(system, f"whistles/{task['whistle_id']}/report-ins"), json=answer, headers=worker(system), timeout=15
    )
    assert not [r for r in ok(reported, 201)["reports"] if r["late"]]
    # It takes the lead place; it starts and finishes the work.
    claim = {"role": "lead", "claimant": {"kind": "member_unit", "id": unit}}
    claimed = ok(
        requests.post(url(system, f"tasks/{task['id']}/claims"), json=claim, headers=worker(system), timeout=15), 201
    )
    version = claimed["version"]
    for action in ("start", "done"):
        moved = requests.post(
            url(system, f"tasks/{task['id']}/transitions"),
            json={"action": action},
            headers={**worker(system), "If-Match": f'"{version}"'},
            timeout=15,
        )
        version = ok(moved)["version"]

    def shown() -> dict[str, Any] | None:
        body = ok(dashboard(system, query))
        spans = body["durations"]
        settled = (
            totals(body)["tasks_done"] == 1
            and spans["received_to_done"]["total"] == 1
            and spans["whistle_to_report_in"]["total"] == 1
            and totals(body)["whistles_blown"] == 3
        )
        return body if settled else None

    body = wait_for(shown, timeout=120)
    assert totals(body) == {
        "issues_received": 2,
        "whistles_blown": 3,  # two calls of their own and one by hand
        "whistles_answered_in_time": 1,
        "tasks_done": 1,
        "tasks_overdue": 0,
    }
    assert body["overdue_tasks"] == 0 and body["community_id"] == community and body["tenant"] == T
    opened = body["open_issues"]
    assert opened["total"] == 2  # done awaits verification: still open
    by_category = {r["category"]: r for r in opened["by_category"]}
    assert by_category["property_repair"]["by_status"] == {"done": 1}
    assert by_category["property_repair"]["name_zh"] == "物业维修"
    assert by_category["sanitation"]["total"] == 1 and by_category["sanitation"]["name_en"]
    spans = body["durations"]
    assert spans["received_to_whistle"]["total"] == 2
    assert spans["received_to_whistle"]["buckets"][0]["count"] == 2  # blown within seconds: ≤5 min
    assert 0 < spans["received_to_whistle"]["p50_seconds"] <= 300
    assert spans["whistle_to_report_in"]["buckets"][0]["label_zh"] == "≤5分钟"
    assert spans["received_to_done"]["p90_seconds"] is not None
    # The month's hot spots: the community's one grid, with both issues (received this local month).
    if body["to_day"][:7] == body["series"][-1]["day"][:7] == received_month:
        assert [h["count"] for h in body["hot_spots"]] == [2] and body["hot_spots"][0]["grid_id"]

    # Its community worker gets the same without naming the community, and no other community's.
    own = ok(dashboard(system, "days=2"))
    assert own["community_id"] == community and own["open_issues"] == body["open_issues"]
    refused = dashboard(system, "community_id=test-place&days=2")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "community_out_of_scope"
    # The whole tenant (a subdistrict admin's view) holds at least this community's figures.
    tenant = ok(requests.get(url(system, "dashboard?days=2"), headers=system.auth("subdistrict_admin", T), timeout=15))
    assert tenant["community_id"] is None and tenant["open_issues"]["total"] >= 2
    assert all(tenant_n >= n for tenant_n, n in zip(totals(tenant).values(), totals(body).values(), strict=True))


@pytest.mark.parametrize("days", ["0", "367", "thirty"])
def test_a_bad_window_is_400_in_the_apis_error_shape(system: System, days: str) -> None:
    resp = dashboard(system, f"days={days}")
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert (err["code"], err["field"]) == ("invalid_argument", "days") and err["request_id"]
    assert "days" in err["message"] and "Traceback" not in resp.text


def test_residents_are_refused(system: System) -> None:
    resp = requests.get(url(system, "dashboard"), headers=system.auth("resident", T), timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
