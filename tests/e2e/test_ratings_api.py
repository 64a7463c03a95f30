"""评单 through the gateway: the follow-up code shown once in the report's answer (REST and Open311), the
reporter following, rating once and rejecting a verified result with the code in a header (never the URL), the
staff's lists from the read side with their community scope, unit ratings, and the tenant's windows."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import System, unique, wait_for
from tests.rating_builders import Place, follow, place, report, verified_issue

T = "daimiao"


@pytest.fixture(scope="module")
def where(system: System) -> Place:
    return place(system, T)


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def post(system: System, path: str, body: dict[str, Any], headers: dict[str, str]) -> requests.Response:
    return requests.post(url(system, path), json=body, headers=headers, timeout=15)


def test_the_report_answers_its_follow_code_once_and_the_issue_never_shows_it(system: System, where: Place) -> None:
    key = unique("idem")
    body = {
        "title": "楼道灯不亮",
        "description": "评单测试",
        "channel": "resident_report",
        "category": "property_repair",
        "location": where.point(0),
        "idempotency_key": key,
    }
    first = requests.post(url(system, "issues"), json=body, timeout=15)
    assert first.status_code == 201 and first.headers["Cache-Control"] == "no-store"
    code = first.json()["follow_code"]
    assert len(code) == 23 and code.count("-") == 3
    again = requests.post(url(system, "issues"), json=body, timeout=15)
    assert again.json()["issue"]["id"] == first.json()["issue"]["id"] and again.json()["follow_code"] is None
    read = requests.get(url(system, f"issues/{first.json()['issue']['id']}"), timeout=15).json()
    assert "follow_code" not in read["issue"] and code not in str(read)


def test_open311_answers_the_code_once_and_follows_with_it_in_the_form(system: System, where: Place) -> None:
    form = {
        "jurisdiction_id": T,
        "service_code": "property_repair",
        "lat": str(where.point(1)["lat"]),
        "long": str(where.point(1)["lon"]),
        "description": "评单测试：路灯不亮",
        "api_key": system.token("public", T),
    }
    resp = requests.post(f"{system.gateway}/open311/v2/requests.json", data=form, timeout=15)
    assert resp.status_code == 201, resp.text
    [answer] = resp.json()
    assert answer["follow_code"] and "查询码" in answer["service_notice"]
    base = f"{system.gateway}/open311/v2/requests/{answer['service_request_id']}/follow.json"
    ok = requests.post(base, data={"jurisdiction_id": T, "follow_code": answer["follow_code"]}, timeout=15)
    assert ok.status_code == 200, ok.text
    [state] = ok.json()
    assert state["status"] == "open" and state["verified"] is False and state["can_rate"] is False
    wrong = requests.post(base, data={"jurisdiction_id": T, "follow_code": "ABCDE-FGHJK-MNPQR-STVWX"}, timeout=15)
    assert wrong.status_code == 403 and wrong.json()[0]["code"] == 403
    in_url = requests.post(f"{base}?follow_code={answer['follow_code']}", data={"jurisdiction_id": T}, timeout=15)
    assert in_url.status_code == 400


def test_only_the_code_or_the_reporting_resident_follows(system: System, where: Place) -> None:
    resident = system.auth("resident", T)
    answer = report(system, where, 2, headers=resident)
    issue, code = answer["issue"], answer["follow_code"]
    assert follow(system, T, issue["id"], "").status_code == 403  # anonymous without a code
    denied = follow(system, T, issue["id"], "ABCDE-FGHJK-MNPQR-STVWX")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "not_reporter"
    missing = follow(system, T, "no-such-issue", code)
    assert missing.status_code == 403 and missing.json()["error"]["message"] == denied.json()["error"]["message"]
    mine = follow(system, T, issue["id"], "", headers=resident)  # the resident who reported: no code needed
    assert mine.status_code == 200 and mine.headers["Cache-Control"] == "no-store"
    by_code = follow(system, T, issue["id"], code).json()
    assert by_code["issue_id"] == issue["id"] and by_code["why_not_zh"].startswith("该事项尚未验收")
    assert "contact" not in by_code and all("by" not in h for h in by_code["history"])
    staff = follow(system, T, issue["id"], code, headers=system.auth("community_worker", T))
    assert staff.status_code == 403  # the reporter's route: not staff's (they read the issue itself)
    not_yet = post(system, f"issues/{issue['id']}/rating", {"score": 5}, {"X-Follow-Code": code})
    assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "not_verified"


def test_the_reporter_rates_once_and_staff_read_it(system: System, where: Place) -> None:
    issue, code, task_id, vid = verified_issue(system, where, 3)
    h = {"X-Follow-Code": code}
    bad = post(system, f"issues/{issue['id']}/rating", {"score": 6}, h)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "score"
    done = post(system, f"issues/{issue['id']}/rating", {"score": 5, "comment": "很及时"}, h)
    assert done.status_code == 201, done.text
    assert done.json()["task_id"] == task_id and done.json()["verification_id"] == vid
    second = post(system, f"issues/{issue['id']}/rating", {"score": 1}, h)
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_rated"
    admin = system.auth("subdistrict_admin", T)

    def listed() -> list[dict[str, Any]]:
        rows = requests.get(
            url(system, "evaluation/issue-ratings"),
            params={"community_id": where.community_id, "kind": "rating"},
            headers=admin,
            timeout=15,
        ).json()["rows"]
        return [r for r in rows if r["issue_id"] == issue["id"]]

    [row] = wait_for(listed, timeout=90)
    assert row["score"] == 5 and row["comment"] == "很及时"
    other = requests.get(
        url(system, "evaluation/issue-ratings"),
        params={"community_id": where.community_id},
        headers=system.auth("community_worker", T),
        timeout=15,
    )
    assert other.status_code == 403 and other.json()["error"]["code"] == "community_out_of_scope"
    # The issue's lifecycle hears of it (IssueRated reaches intake).
    wait_for(
        lambda: requests.get(url(system, f"issues/{issue['id']}"), timeout=15).json()["issue"]["status"] == "rated",
        timeout=90,
    )


def test_the_reporter_rejects_a_verified_result_once(system: System, where: Place) -> None:
    issue, code, _, vid = verified_issue(system, where, 4)
    h = {"X-Follow-Code": code}
    empty = post(system, f"issues/{issue['id']}/result-rejection", {"reason": ""}, h)
    assert empty.status_code == 400 and empty.json()["error"]["field"] == "reason"
    done = post(system, f"issues/{issue['id']}/result-rejection", {"reason": "灯还是不亮"}, h)
    assert done.status_code == 201, done.text
    assert done.json()["rejection_id"] == f"resident:{vid}"
    again = post(system, f"issues/{issue['id']}/result-rejection", {"reason": "再退"}, h)
    assert again.status_code == 409
    rate = post(system, f"issues/{issue['id']}/rating", {"score": 3}, h)
    assert rate.status_code == 409
    seen = wait_for(lambda: (f := follow(system, T, issue["id"], code).json())["verified"] is False and f)
    assert seen["rejection"]["reason"] == "灯还是不亮" and not seen["can_reject"]


def test_a_representatives_unit_rating_is_recorded_once_per_quarter(system: System, where: Place) -> None:
    admin = system.auth("subdistrict_admin", T)
    unit = post(
        system,
        "org/member-units",
        {
            "community_id": where.community_id,
            "name_zh": f"红色物业{unique()}",
            "kind": "property_company",
            "joined_on": "2024-05-01",
        },
        admin,
    )
    assert unit.status_code == 201, unit.text
    rep = post(
        system,
        "org/people",
        {"community_id": where.community_id, "name_zh": "居民代表丙", "roles": ["resident_representative"]},
        admin,
    )
    assert rep.status_code == 201, rep.text
    worker = system.worker_auth(T, where.community_id)
    body = {"unit_id": unit.json()["id"], "score": 4, "rater_person_id": rep.json()["id"], "comment": "响应快"}
    done = post(system, "evaluation/unit-ratings", body, worker)
    assert done.status_code == 201, done.text
    assert done.json()["rater_kind"] == "resident_representative"
    assert post(system, "evaluation/unit-ratings", body, worker).status_code == 409
    stranger = post(system, "evaluation/unit-ratings", body, system.auth("community_worker", T))
    assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "community_out_of_scope"
    bad_quarter = post(system, "evaluation/unit-ratings", {**body, "quarter": "2020Q1"}, worker)
    assert bad_quarter.status_code == 400 and bad_quarter.json()["error"]["field"] == "quarter"
    listed = wait_for(
        lambda: requests.get(
            url(system, "evaluation/unit-ratings"), params={"unit_id": unit.json()["id"]}, headers=admin, timeout=15
        ).json()["ratings"],
        timeout=90,
    )
    assert listed[0]["score"] == 4 and listed[0]["unit_name_zh"].startswith("红色物业")


def test_the_tenants_windows_are_read_and_set_with_if_match(system: System) -> None:
    admin = system.auth("subdistrict_admin", T)
    got = requests.get(url(system, "evaluation/rating-settings"), headers=admin, timeout=15)
    assert got.status_code == 200
    current = got.json()
    if current["version"] == 0:
        assert (current["rating_window_days"], current["rejection_window_days"]) == (30, 7)
    etag = got.headers.get("ETag")  # none for the defaults, never stored
    bad = requests.put(
        url(system, "evaluation/rating-settings"),
        json={"rating_window_days": 0, "rejection_window_days": 7},
        headers=admin,
        timeout=15,
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "rating_window_days"
    same = {
        "rating_window_days": current["rating_window_days"],
        "rejection_window_days": current["rejection_window_days"],
    }
    put = requests.put(
        url(system, "evaluation/rating-settings"),
        json=same,
        headers={**admin, **({"If-Match": etag} if etag else {})},
        timeout=15,
    )
    assert put.status_code == 200, put.text
    version = put.json()["version"]
    assert version == current["version"] + 1 and put.headers["ETag"] == f'"{version}"'
    stale = requests.put(
        url(system, "evaluation/rating-settings"),
        json=same,
        headers={**admin, "If-Match": f'"{version + 5}"'},
        timeout=15,
    )
    assert stale.status_code == 412
    worker = requests.put(
        url(system, "evaluation/rating-settings"), json=same, headers=system.auth("community_worker", T), timeout=15
    )
    assert worker.status_code == 403
