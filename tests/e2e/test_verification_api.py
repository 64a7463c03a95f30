"""验单 through the gateway: the queue, a review round (convene, vote, close), an on-site check with photos
(multipart) and its place flag, the rules (GET, PUT with If-Match), and the refusal of a bare verify."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import pytest
import requests

from tests.conftest import System, unique, wait_for
from tests.e2e.test_dispatch_api import Area, build_area

T = "taiqian"
CENTER = (round(random.uniform(36.32, 36.38), 4), round(random.uniform(117.32, 117.38), 4))
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 300
_spots = itertools.count()


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def ok(resp: requests.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    return resp.json() if resp.content else None


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return build_area(system, T, CENTER)


@pytest.fixture(scope="module")
def worker(system: System, area: Area) -> dict[str, str]:
    return system.worker_auth(T, area.community_id)


def spot() -> tuple[float, float]:
    n = next(_spots)
    north, east = (n % 6) * 150 - 375, (n // 6 % 6) * 150 - 375
    lat, lon = CENTER
    return round(lat + north / 111_320, 6), round(lon + east / (111_320 * math.cos(math.radians(lat))), 6)


def done_task(system: System, area: Area, worker: dict[str, str], **kw: Any) -> dict[str, Any]:
    """A new issue's task, claimed for a volunteer, started and done (by the community's worker)."""
    lat, lon = spot()
    body = {
        "title": f"楼道灯不亮{unique()[-4:]}",
        "description": "3号楼2单元楼道灯坏了",
        "channel": "grid_patrol",
        "category": "property_repair",
        "location": {"lat": lat, "lon": lon, "address": "验单测试社区"},
        **kw,
    }
    issue = ok(requests.post(url(system, "issues"), json=body, headers=worker, timeout=15), 201)["issue"]

    def task() -> Any:
        found = requests.get(url(system, f"issues/{issue['id']}"), headers=worker, timeout=10).json()["task"]
        return found and found["id"]

    task_id = wait_for(task)
    claim = {"role": "lead", "claimant": {"kind": "person", "id": area.people[1]}}
    t = ok(requests.post(url(system, f"tasks/{task_id}/claims"), json=claim, headers=worker, timeout=10), 201)
    for action in ("start", "done"):
        t = ok(
            requests.post(
                url(system, f"tasks/{task_id}/transitions"),
                json={"action": action},
                headers={**worker, "If-Match": f'"{t["version"]}"'},
                timeout=10,
            )
        )
    assert t["status"] == "done"
    return {**t, "point": (lat, lon)}


def status_becomes(system: System, worker: dict[str, str], task_id: str, status: str) -> dict[str, Any]:
    def reached() -> Any:
        found = requests.get(url(system, f"tasks/{task_id}"), headers=worker, timeout=10).json()
        return found if found.get("status") == status else None

    return dict(wait_for(reached, timeout=120))


def test_a_bare_verify_is_409_pointing_to_verification(system: System, area: Area, worker: dict[str, str]) -> None:
    t = done_task(system, area, worker)
    for action in ("verify", "reject"):
        resp = requests.post(
            url(system, f"tasks/{t['id']}/transitions"),
            json={"action": action, "reason": "看过了"},
            headers={**worker, "If-Match": f'"{t["version"]}"'},
            timeout=10,
        )
        assert resp.status_code == 409, resp.text
        err = resp.json()["error"]
        assert err["field"] == "action" and "验单" in err["message"] and "verification" in err["message"]


def test_a_review_round_through_the_gateway_verifies_the_task(
    system: System, area: Area, worker: dict[str, str]
) -> None:
    t = done_task(system, area, worker)
    queue = wait_for(
        lambda: [
            i
            for i in ok(
                requests.get(url(system, "evaluation/verification-queue?page_size=100"), headers=worker, timeout=10)
            )["items"]
            if i["task_id"] == t["id"]
        ]
    )
    assert queue[0]["method"] == "review" and queue[0]["attempt"] == 1 and queue[0]["call_type_zh"] == "服务集结号"
    reviewers = [
        {"id": "party-1", "kind": "party_committee", "name_zh": "党委书记"},
        {"id": "rep-1", "kind": "resident_representative", "name_zh": "居民代表"},
        {"id": "ally-1", "kind": "alliance_member", "name_zh": "物业经理"},
    ]
    body = {"community_id": area.community_id, "title": "十二月集中评议", "task_ids": [t["id"]], "reviewers": reviewers}
    created = requests.post(url(system, "evaluation/review-rounds"), json=body, headers=worker, timeout=15)
    r = ok(created, 201)
    assert created.headers["Location"].endswith(f"/evaluation/review-rounds/{r['id']}") and r["quorum"] == 3
    one = created.headers["Location"]
    bad = requests.post(
        f"{system.gateway}{one}/votes", json={"task_id": t["id"], "reviewer_id": "rep-1", "pass": False}, headers=worker
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "reason"
    for rid, passed in (("party-1", True), ("rep-1", False), ("ally-1", True)):
        vote = {"task_id": t["id"], "reviewer_id": rid, "pass": passed, "reason": "" if passed else "灯罩没装"}
        ok(requests.post(f"{system.gateway}{one}/votes", json=vote, headers=worker, timeout=10), 201)
    closed = ok(requests.post(f"{system.gateway}{one}/close", headers=worker, timeout=15))
    task = closed["tasks"][0]
    assert (task["verdict"], task["votes_pass"], task["votes_fail"], task["verdict_zh"]) == ("passed", 2, 1, "验收通过")
    assert status_becomes(system, worker, t["id"], "verified")["history"][-1]["action"] == "verify"
    rows = wait_for(
        lambda: [
            x
            for x in ok(
                requests.get(url(system, "evaluation/review-rounds?status=closed"), headers=worker, timeout=10)
            )["rounds"]
            if x["id"] == r["id"]
        ]
    )
    assert rows[0]["passed"] == 1 and rows[0]["failed"] == 0


def test_an_onsite_check_with_a_photo_far_from_the_issue_is_flagged(
    system: System, area: Area, worker: dict[str, str]
) -> None:
    t = done_task(system, area, worker, hazards=["gas"], title=f"煤气味{unique()[-4:]}")
    assert t["call_type"] == "emergency"
    lat, lon = t["point"]
    check = {"task_id": t["id"], "lat": lat + 0.004, "lon": lon, "pass": False, "reason": "阀门未更换", "notes": "复查"}
    resp = requests.post(
        url(system, "evaluation/onsite-checks"),
        data={"check": json.dumps(check)},
        files=[("photos", ("现场.jpg", JPEG, "image/jpeg"))],
        headers=worker,
        timeout=20,
    )
    found = ok(resp, 201)
    assert found["place_flagged"] and found["distance_m"] > 400 and "超过200米" in found["place_note_zh"]
    assert found["verdict"] == "failed" and found["pass"] is False and len(found["photos"]) == 1
    photo = requests.get(
        f"{system.gateway}{resp.headers['Location']}/photos/{found['photos'][0]['id']}", headers=worker, timeout=10
    )
    assert photo.status_code == 200 and photo.content == JPEG and photo.headers["Content-Type"] == "image/jpeg"
    assert status_becomes(system, worker, t["id"], "reopened")["history"][-2]["action"] == "reject"
    listed = wait_for(
        lambda: ok(
            requests.get(url(system, f"evaluation/onsite-checks?task_id={t['id']}"), headers=worker, timeout=10)
        )["checks"]
    )
    assert listed[0]["place_flagged"] and listed[0]["photos"] == 1
    # A bad photo is a 400 naming it; nothing is recorded.
    again = requests.post(
        url(system, "evaluation/onsite-checks"),
        data={"check": json.dumps({**check, "pass": True})},
        files=[("photos", ("x.png", b"not a photo", "image/png"))],
        headers=worker,
        timeout=20,
    )
    assert again.status_code == 400 and again.json()["error"]["field"] == "photos[0]"


def test_the_rules_are_read_and_replaced_with_if_match(system: System) -> None:
    admin = system.auth("subdistrict_admin", T)
    got = requests.get(url(system, "evaluation/verification-rules"), headers=admin, timeout=10)
    rules = ok(got)
    methods = {r["call_type"]: (r["method"], r["method_zh"]) for r in rules["rules"]}
    assert methods["emergency"] == ("onsite", "现场核验") or rules["version"] != "0"
    body = {
        "rules": [
            {k: r[k] for k in ("call_type", "method", "quorum", "decision", "distance_m")} for r in rules["rules"]
        ]
    }
    missing = requests.put(url(system, "evaluation/verification-rules"), json=body, headers=admin, timeout=10)
    assert missing.status_code == 428
    saved = requests.put(
        url(system, "evaluation/verification-rules"), json=body, headers={**admin, "If-Match": got.headers["ETag"]}
    )
    assert saved.status_code == 200, saved.text
    stale = requests.put(
        url(system, "evaluation/verification-rules"), json=body, headers={**admin, "If-Match": got.headers["ETag"]}
    )
    assert stale.status_code == 412
    body["rules"][0]["method"] = "vote"
    wrong = requests.put(
        url(system, "evaluation/verification-rules"), json=body, headers={**admin, "If-Match": saved.headers["ETag"]}
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "rules[0].method"
