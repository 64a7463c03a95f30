"""Dispatch through the gateway, as the portals use it: an urgent issue's call on the whistle board, members
(a unit's contact, volunteers) reporting in and claiming as the helper their token is bound to, two members
racing for the last place, 点将 from the ranked list, the task's life with If-Match, illegal moves, who is
refused, and webhook registration (the secret shown once)."""

from __future__ import annotations

import itertools
import math
import random
import threading
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from services.org.seed import Rect
from tests.builders import verify_over_http
from tests.conftest import System, unique, wait_for

T = "shanggao"
OTHER = "daimiao"
# This module's own community and grid, away from every other test's (a new place on each run, so issues of
# an earlier run on the same stack are never their duplicates).
CENTER = (round(random.uniform(36.02, 36.12), 4), round(random.uniform(116.90, 117.00), 4))
HALF = 0.006
COMMUNITY = unique("pd")  # the area's community (its community worker's: worker())
_workers: dict[str, dict[str, str]] = {}
_spots = itertools.count()


@dataclass(frozen=True)
class Area:
    community_id: str
    grid_id: str
    unit: str  # a member unit serving the grid (targeted by every call there)
    people: tuple[str, ...]  # volunteers of the community
    fitter: str  # a volunteer with the skill property repairs need


def url(system: System, path: str, tenant: str = T) -> str:
    return f"{system.gateway}/api/v1/tenants/{tenant}/{path}"


def admin(system: System) -> dict[str, str]:
    return system.auth("subdistrict_admin", T)


def worker(system: System) -> dict[str, str]:
    """A community worker of the area's community (made once)."""
    if COMMUNITY not in _workers:
        _workers[COMMUNITY] = system.worker_auth(T, COMMUNITY)
    return _workers[COMMUNITY]


def ok(resp: requests.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    return resp.json() if resp.content else None


def build_area(system: System, tenant: str = T, center: tuple[float, float] = CENTER, community_id: str = "") -> Area:
    """A community (with this id, else a new one) with one grid around `center`, a member unit serving it, four
    volunteers and a fitter."""
    lat, lon = center

    def org(collection: str, body: dict[str, Any]) -> str:
        resp = requests.post(
            url(system, f"org/{collection}", tenant),
            json=body,
            headers=system.auth("subdistrict_admin", tenant),
            timeout=10,
        )
        return str(ok(resp, 201)["id"])

    community = org(
        "communities", {**({"id": community_id} if community_id else {}), "name_zh": f"派单测试社区{unique()[-4:]}"}
    )
    boundary = Rect(lon - HALF, lat - HALF, lon + HALF, lat + HALF).geojson()
    grid = org("grids", {"community_id": community, "name_zh": "派单测试网格", "boundary_geojson": boundary})
    unit = org(
        "member-units",
        {
            "community_id": community,
            "name_zh": f"物业公司{unique()[-4:]}",
            "kind": "property_company",
            "serves_grid_ids": [grid],
            "joined_on": "2024-05-01",
        },
    )
    people = tuple(
        org("people", {"community_id": community, "grid_id": grid, "name_zh": f"志愿者{n}", "roles": ["volunteer"]})
        for n in range(4)
    )
    fitter = org("people", {"community_id": community, "grid_id": grid, "name_zh": "维修能手", "roles": ["volunteer"]})
    org("talent-entries", {"person_id": fitter, "skill": "房屋维修", "level": 5})
    return Area(community, grid, unit, people, fitter)


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return build_area(system, community_id=COMMUNITY)  # the community worker's (its token's) community


def report(system: System, **kw: Any) -> dict[str, Any]:
    """A new issue in the area, at its own spot (150 m from every other: never a duplicate)."""
    n = next(_spots)
    lat, lon = CENTER
    north, east = (n % 6) * 150 - 375, (n // 6 % 6) * 150 - 375
    body = {
        "title": f"楼道墙皮脱落{unique()[-4:]}",
        "description": "3号楼2单元楼道墙皮大面积脱落",
        "channel": "grid_patrol",
        "category": "property_repair",
        "location": {
            "lat": round(lat + north / 111_320, 6),
            "lon": round(lon + east / (111_320 * math.cos(math.radians(lat))), 6),
            "address": "派单测试社区",
        },
        **kw,
    }
    issue = ok(requests.post(url(system, "issues"), json=body, headers=worker(system), timeout=15), 201)["issue"]
    assert not issue["duplicate_of"], issue
    return dict(issue)


def task_of(system: System, issue_id: str) -> dict[str, Any]:
    """The issue's task, once dispatch opened it and put it on its call."""

    def found() -> Any:
        t = requests.get(url(system, f"issues/{issue_id}"), headers=worker(system), timeout=10).json()["task"]
        if t is None:
            return None
        full = requests.get(url(system, f"tasks/{t['id']}"), headers=worker(system), timeout=10).json()
        return full if full.get("whistle_id") else None

    return dict(wait_for(found))


def get_task(system: System, task_id: str) -> requests.Response:
    return requests.get(url(system, f"tasks/{task_id}"), headers=worker(system), timeout=10)


def move(
    system: System, task_id: str, action: str, headers: dict[str, str], version: Any, reason: str = ""
) -> requests.Response:
    body = {"action": action, **({"reason": reason} if reason else {})}
    return requests.post(
        url(system, f"tasks/{task_id}/transitions"),
        json=body,
        headers={**headers, "If-Match": f'"{version}"'},
        timeout=10,
    )


# ---------------------------------------------------------------- the whistle board


def test_an_urgent_issue_blows_an_emergency_call_on_the_board(system: System, area: Area) -> None:
    issue = report(
        system, title="楼道有燃气味", description="2单元楼道闻到燃气味", category="gas_safety", hazards=["gas"]
    )
    assert issue["urgency"] == "urgent"
    board = url(system, f"whistles?community_id={area.community_id}&status=open")

    def on_board() -> Any:
        calls = requests.get(board, headers=worker(system), timeout=10).json()["whistles"]
        return next((w for w in calls if issue["id"] in w["issue_ids"]), None)

    w = wait_for(on_board)
    assert (w["call_type"], w["call_type_zh"], w["status"]) == ("emergency", "紧急集结号", "open")
    assert w["community_id"] == area.community_id and w["report_in_by"].endswith("+08:00")
    [t] = w["tasks"]
    assert t["issue_id"] == issue["id"] and t["places_left"] >= 1 and w["places_left"] == t["places_left"]
    serving = [x for x in w["targets"] if (x["kind"], x["id"]) == ("member_unit", area.unit)]
    assert serving and serving[0]["source"] == "serves_area" and serving[0]["answer"] == ""
    # A member unit's contact sees the same board, and the call itself with its version as ETag.
    unit = system.member_auth(T, "member_unit", area.unit)
    seen = ok(requests.get(board, headers=unit, timeout=10))["whistles"]
    assert w["id"] in [x["id"] for x in seen]
    one = requests.get(url(system, f"whistles/{w['id']}"), headers=unit, timeout=10)
    assert ok(one)["id"] == w["id"] and one.headers["ETag"] == f'"{one.json()["version"]}"'

    # The unit reports in, as itself (the body names nobody): the board shows its answer.
    answered = requests.post(
        url(system, f"whistles/{w['id']}/report-ins"), json={"answer": "accept"}, headers=unit, timeout=10
    )
    body = ok(answered, 201)
    [mine] = [r for r in body["reports"] if r["responder_id"] == area.unit]
    assert (mine["responder_kind"], mine["answer"], mine["answer_zh"], mine["late"]) == (
        "member_unit",
        "accept",
        "报到",
        False,
    )
    assert mine["by"].startswith("test-member-") and mine["targeted"] is True
    assert body["answered"] >= 1
    # It may not answer for anyone else.
    other = {"answer": "decline", "reason": "忙", "responder": {"kind": "person", "id": area.people[0]}}
    refused = requests.post(url(system, f"whistles/{w['id']}/report-ins"), json=other, headers=unit, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_your_responder"

    # It claims the lead place: the task is assigned to it, accepted at once, and is among its tasks.
    claimed = requests.post(
        url(system, f"tasks/{t['task_id']}/claims"), json={"role": "lead"}, headers=unit, timeout=10
    )
    task = ok(claimed, 201)
    assert task["status"] == "accepted" and task["status_zh"] == "已接单"
    assert (task["assignment"]["kind"], task["assignment"]["id"]) == ("member_unit", area.unit)
    assert claimed.headers["ETag"] == f'"{task["version"]}"'
    # "My tasks" is a list from the SQL read model: the claim shows there as soon as the projector has it.
    wait_for(
        lambda: (
            t["task_id"]
            in [x["id"] for x in ok(requests.get(url(system, "tasks/mine"), headers=unit, timeout=10))["tasks"]]
        )
    )


# ---------------------------------------------------------------- claims


def test_two_members_racing_for_the_last_place_one_wins_one_is_told_it_is_full(system: System, area: Area) -> None:
    issue = report(system)  # routine: a service call, one lead and one assistant place
    t = task_of(system, issue["id"])
    assert t["call_type"] == "service" and t["lead_places"] == 1
    lead = system.member_auth(T, "person", area.people[0])
    claims = url(system, f"tasks/{t['id']}/claims")
    ok(requests.post(claims, json={"role": "lead"}, headers=lead, timeout=10), 201)
    # Fill the assistant places but one (staff record claims for volunteers of the community).
    fillers = area.people[3:]
    assert t["assistant_places"] - 1 <= len(fillers)
    for helper in fillers[: t["assistant_places"] - 1]:
        body = {"role": "assistant", "claimant": {"kind": "person", "id": helper}}
        ok(requests.post(claims, json=body, headers=worker(system), timeout=10), 201)
    assert ok(get_task(system, t["id"]))["places_left"] == 1

    racers = [system.member_auth(T, "person", area.people[n]) for n in (1, 2)]
    start = threading.Barrier(len(racers))
    answers: list[requests.Response] = []

    def claim(headers: dict[str, str]) -> None:
        start.wait()
        answers.append(requests.post(claims, json={"role": "assistant"}, headers=headers, timeout=15))

    threads = [threading.Thread(target=claim, args=(h,)) for h in racers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201, 409], [r.text for r in answers]
    lost = next(r for r in answers if r.status_code == 409).json()["error"]
    assert "名额已满" in lost["message"] and "no places left" in lost["message"]
    final = ok(get_task(system, t["id"]))
    assert final["places_left"] == 0 and len(final["crew"]) == 1 + t["assistant_places"]
    # Both asked at once; the one that won keeps its place when it asks again, and the task is unchanged.
    again = [requests.post(claims, json={"role": "assistant"}, headers=h, timeout=10) for h in racers]
    assert sorted(r.status_code for r in again) == [201, 409]
    assert ok(get_task(system, t["id"]))["version"] == final["version"]


# ---------------------------------------------------------------- 点将 and the task's life


def test_assign_from_the_ranked_list_then_the_task_runs_to_verified(system: System, area: Area) -> None:
    issue = report(system)
    t = task_of(system, issue["id"])
    ranked = ok(requests.get(url(system, f"tasks/{t['id']}/candidates?limit=10"), headers=worker(system), timeout=10))
    assert ranked["task_id"] == t["id"] and ranked["candidates"], ranked
    assert all(c["reasons"] and c["score"] >= 0 for c in ranked["candidates"])
    scores = [c["score"] for c in ranked["candidates"]]
    assert scores == sorted(scores, reverse=True)
    fitter = next(c for c in ranked["candidates"] if c["id"] == area.fitter)
    assert fitter["kind"] == "person" and any("房屋维修" in r for r in fitter["reasons"])

    read = get_task(system, t["id"])
    etag = read.headers["ETag"]
    assign = url(system, f"tasks/{t['id']}/assignment")
    body = {"assignee": {"kind": "person", "id": area.fitter}}
    assert requests.post(assign, json=body, headers=worker(system), timeout=10).status_code == 428
    assigned = requests.post(assign, json=body, headers={**worker(system), "If-Match": etag}, timeout=10)
    task = ok(assigned)
    assert task["status"] == "assigned" and task["assignment"]["id"] == area.fitter
    assert task["assignment"]["override"] is False and task["assignment"]["score"] == fitter["score"]
    # Assigning the same helper again changes nothing; replacing it with the version read before is stale.
    assert (
        ok(requests.post(assign, json=body, headers={**worker(system), "If-Match": etag}, timeout=10))["version"]
        == task["version"]
    )
    other = {"assignee": {"kind": "person", "id": area.people[3]}, "reason": "换人"}
    stale = requests.post(assign, json=other, headers={**worker(system), "If-Match": etag}, timeout=10)
    assert stale.status_code == 412 and stale.json()["error"]["field"] == "If-Match"

    # The fitter (a member bound to this person) accepts, starts and finishes; the community verifies.
    me = system.member_auth(T, "person", area.fitter)
    answer = requests.post(
        url(system, f"tasks/{t['id']}/assignment/response"),
        json={"answer": "accept"},
        headers={**me, "If-Match": assigned.headers["ETag"]},
        timeout=10,
    )
    task = ok(answer)
    assert task["status"] == "accepted" and task["assignment"]["response"] == "accepted"
    assert "start" in task["allowed_actions"]
    # Another member may not move the fitter's task.
    stranger = system.member_auth(T, "person", area.people[2])
    refused = move(system, t["id"], "start", stranger, task["version"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_your_task"
    task = ok(move(system, t["id"], "start", me, task["version"]))
    assert task["status"] == "in_progress" and task["status_zh"] == "办理中"
    task = ok(move(system, t["id"], "done", me, task["version"]))
    assert task["status"] == "done"
    assert move(system, t["id"], "verify", me, task["version"]).status_code == 403  # never a member's
    # Nor a staff member's by a bare transition: verification is 验单's (a review round or an on-site check).
    refused = move(system, t["id"], "verify", worker(system), task["version"])
    assert refused.status_code == 409 and refused.json()["error"]["field"] == "action"
    assert "验单" in refused.json()["error"]["message"]
    task = verify_over_http(system, T, t["id"], worker(system))
    assert task["status"] == "verified" and [h["action"] for h in task["history"]][-3:] == ["start", "done", "verify"]
    wait_for(
        lambda: (
            [
                x["id"]
                for x in ok(requests.get(url(system, "tasks/mine?status=verified"), headers=me, timeout=10))["tasks"]
            ]
            == [t["id"]]
        )
    )


def test_an_illegal_transition_is_409_naming_the_status(system: System, area: Area) -> None:
    t = task_of(system, report(system)["id"])
    resp = move(system, t["id"], "done", worker(system), t["version"])
    assert resp.status_code == 409, resp.text
    err = resp.json()["error"]
    assert "open" in err["message"] and err["request_id"] == resp.headers["X-Request-Id"]
    # Cancelling needs a reason (400 naming it); with one, the task is cancelled and leaves the board's open calls.
    resp = move(system, t["id"], "cancel", worker(system), t["version"])
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "reason"
    done = ok(move(system, t["id"], "cancel", worker(system), t["version"], reason="居民已自行修复"))
    assert done["status"] == "cancelled" and done["cancel_reason"] == "居民已自行修复"
    assert move(system, t["id"], "start", worker(system), done["version"]).status_code == 409


def test_a_call_blown_by_hand_for_several_issues(system: System, area: Area) -> None:
    issues = [report(system)["id"] for _ in range(2)]
    for i in issues:
        task_of(system, i)
    body = {"issue_ids": issues, "call_type": "tackling", "note": "两处墙皮一并处理", "idempotency_key": unique()}
    resp = requests.post(url(system, "whistles"), json=body, headers=worker(system), timeout=15)
    w = ok(resp, 201)
    assert resp.headers["Location"] == f"/api/v1/tenants/{T}/whistles/{w['id']}"
    assert w["manual"] is True and w["call_type"] == "tackling" and sorted(w["issue_ids"]) == sorted(issues)
    again = ok(requests.post(url(system, "whistles"), json=body, headers=worker(system), timeout=15), 201)
    assert again["id"] == w["id"]  # the same key: the first call
    bad = requests.post(url(system, "whistles"), json={"issue_ids": []}, headers=worker(system), timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "issue_ids"


def test_overdue_list_and_rules(system: System, area: Area) -> None:
    overdue = ok(requests.get(url(system, "tasks/overdue"), headers=worker(system), timeout=10))
    assert isinstance(overdue["tasks"], list)
    rules = requests.get(url(system, "dispatch-rules"), headers=worker(system), timeout=10)
    body = ok(rules)
    assert {c["call_type"] for c in body["call_types"]} == {"service", "tackling", "emergency"}
    assert rules.headers["ETag"] == f'"{body["version"]}"'
    # Only a subdistrict admin sets them.
    put = requests.put(
        url(system, "dispatch-rules"),
        json=body,
        headers={**worker(system), "If-Match": rules.headers["ETag"]},
        timeout=10,
    )
    assert put.status_code == 403


# ---------------------------------------------------------------- who is refused


def test_residents_the_public_and_other_tenants_are_refused(system: System, area: Area) -> None:
    t = task_of(system, report(system)["id"])
    resident = system.auth("resident", T)
    for method, path, body in (
        ("GET", f"whistles?community_id={area.community_id}", None),
        ("GET", f"tasks/{t['id']}", None),
        ("POST", f"tasks/{t['id']}/claims", {"claimant": {"kind": "person", "id": area.people[0]}}),
    ):
        resp = requests.request(method, url(system, path), json=body, headers=resident, timeout=10)
        assert resp.status_code == 403 and "'resident'" in resp.json()["error"]["message"], path
        assert requests.request(method, url(system, path), json=body, timeout=10).status_code == 401
        other_admin = system.auth("subdistrict_admin", OTHER)
        resp = requests.request(method, url(system, path), json=body, headers=other_admin, timeout=10)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "tenant_out_of_scope", path
    # A member of another tenant cannot reach this one; the task is not found from the other tenant's side.
    outsider = system.member_auth(OTHER, "person", area.people[0])
    resp = requests.get(url(system, "whistles"), headers=outsider, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "tenant_out_of_scope"
    assert (
        requests.get(
            url(system, f"tasks/{t['id']}", OTHER), headers=system.auth("subdistrict_admin", OTHER), timeout=10
        ).status_code
        == 404
    )


# ---------------------------------------------------------------- webhooks


def test_webhook_registration_shows_the_secret_once(system: System) -> None:
    h = admin(system)
    body = {
        "url": "http://127.0.0.1:9/sms-gateway",
        "event_types": ["WhistleBlown", "TaskAssigned"],
        "description": "短信网关",
    }
    resp = requests.post(url(system, "webhooks"), json=body, headers=h, timeout=10)
    made = ok(resp, 201)
    secret, hook = made["secret"], made["webhook"]
    assert len(secret) >= 20 and hook["active"] is True and hook["event_types"] == ["WhistleBlown", "TaskAssigned"]
    assert secret.startswith(hook["secret_hint"]) and hook["secret_hint"] != secret
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Location"] == f"/api/v1/tenants/{T}/webhooks/{hook['id']}"
    one = requests.get(url(system, f"webhooks/{hook['id']}"), headers=h, timeout=10)
    listed = requests.get(url(system, "webhooks"), headers=h, timeout=10)
    ops = requests.get(f"{system.gateway}/api/v1/webhooks?tenant={T}", headers=system.auth("ops", T), timeout=10)
    for later in (one, listed, ops):
        assert later.status_code == 200 and secret not in later.text and 'secret"' not in later.text
    assert hook["id"] in [w["id"] for w in listed.json()["webhooks"]]
    paused = ok(
        requests.put(url(system, f"webhooks/{hook['id']}/active"), json={"active": False}, headers=h, timeout=10)
    )
    assert paused["active"] is False
    deliveries = ok(requests.get(url(system, f"webhooks/{hook['id']}/deliveries"), headers=h, timeout=10))
    assert deliveries["deliveries"] == [] or all(d["webhook_id"] == hook["id"] for d in deliveries["deliveries"])
    bad = requests.post(url(system, "webhooks"), json={**body, "url": "ftp://x"}, headers=h, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "url"
    assert requests.post(url(system, "webhooks"), json=body, headers=worker(system), timeout=10).status_code == 403
    assert requests.delete(url(system, f"webhooks/{hook['id']}"), headers=h, timeout=10).status_code == 204
    assert requests.get(url(system, f"webhooks/{hook['id']}"), headers=h, timeout=10).status_code == 404


# ---------------------------------------------------------------- a member's own account


def test_a_member_account_logs_in_and_acts_as_its_helper(system: System, area: Area) -> None:
    username = unique("volunteer")
    account = {
        "username": username,
        "display_name": "志愿者小李",
        "role": "member",
        "tenants": [T],
        "responder": f"person:{area.people[3]}",
        "password": "Lz8#qv-Member-Tai",
    }
    made = requests.post(f"{system.gateway}/api/v1/users", json=account, headers=admin(system), timeout=10)
    assert ok(made, 201)["responder"] == f"person:{area.people[3]}"
    bad = {**account, "username": unique("volunteer"), "responder": None}
    refused = requests.post(f"{system.gateway}/api/v1/users", json=bad, headers=admin(system), timeout=10)
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "responder"
    login = {"username": username, "password": account["password"]}
    token = ok(requests.post(f"{system.gateway}/api/v1/auth/login", json=login, timeout=10))["access_token"]
    session = {"Authorization": f"Bearer {token}"}
    me = ok(requests.get(f"{system.gateway}/api/v1/auth/me", headers=session, timeout=10))
    assert me["role"] == "member" and me["responder"] == {"kind": "person", "id": area.people[3]}
    t = task_of(system, report(system)["id"])
    claimed = requests.post(url(system, f"tasks/{t['id']}/claims"), json={}, headers=session, timeout=10)
    assert ok(claimed, 201)["assignment"]["id"] == area.people[3]  # the lead place, as its own helper
    wait_for(
        lambda: (
            t["id"]
            in [x["id"] for x in ok(requests.get(url(system, "tasks/mine"), headers=session, timeout=10))["tasks"]]
        )
    )
    assert requests.get(url(system, "tasks"), headers=session, timeout=10).status_code == 403
