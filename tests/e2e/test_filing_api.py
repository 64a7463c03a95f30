"""Verification before filing (核实立案) through the gateway and the real services: a tenant's filing rule holds
reports of some categories for a community worker; accepting one sends it to dispatch (its whistle), declining
one closes it with a reason the reporter reads on the issue and in Open311; bad input is 400 naming the field,
a decided issue 409, another community's 404; a deadline nobody met is escalated, across a restart of intake.

The rules are this module's tenant's for its duration (verify for two categories, duplicates only within 10 m)
and restored afterwards: every other test of the suite keeps the shipped default (every class straight to
dispatch)."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique, wait_for

T = "daimiao"
VERIFY = "neighbour_dispute"  # 4 h (the routine default)
QUICK = "noise"  # 1 minute: the escalation test
RULES = f"/api/v1/tenants/{T}/classification-rules"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def api(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}{path}"


def put_rules(system: System, rules: dict[str, Any]) -> dict[str, Any]:
    admin = system.auth("subdistrict_admin", T)
    etag = requests.get(system.gateway + RULES, timeout=15).headers["ETag"]
    resp = requests.put(system.gateway + RULES, json=rules, headers={**admin, "If-Match": etag}, timeout=15)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture(scope="module")
def filing_rules(system: System) -> Iterator[dict[str, Any]]:
    before = requests.get(system.gateway + RULES, timeout=15).json()
    wanted = {
        **before,
        "duplicate_distance_m": 10,
        "filing": [
            {"mode": "verify", "category": VERIFY},
            {"mode": "verify", "category": QUICK, "deadline_minutes": 1},
        ],
    }
    yield put_rules(system, wanted)
    put_rules(system, before)


def report(system: System, category: str = VERIFY, who: str = "resident", **extra: Any) -> dict[str, Any]:
    lat, lon = TEST_POINT
    body = {
        "title": f"邻里纠纷{unique()}",
        "description": "楼上住户长期在楼道堆放杂物，协商未果。",
        **extra,
        "channel": "resident_report",
        "category": category,
        "location": {"lat": lat + random.uniform(-0.004, 0.004), "lon": lon + random.uniform(-0.004, 0.004)},
        "contact": {"name": "李桂兰", "phone": "13812345678"},
    }
    resp = requests.post(api(system, "/issues"), json=body, headers=system.auth(who, T), timeout=15)
    assert resp.status_code == 201, resp.text
    issue: dict[str, Any] = resp.json()["issue"]
    return issue


def read(system: System, issue_id: str) -> dict[str, Any]:
    resp = requests.get(api(system, f"/issues/{issue_id}"), timeout=15)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def decide(system: System, issue_id: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    who = headers if headers is not None else system.auth("community_worker", T)
    return requests.post(api(system, f"/issues/{issue_id}/filing"), json=body, headers=who, timeout=15)


def open311(system: System, issue_id: str) -> dict[str, Any]:
    resp = requests.get(
        f"{system.gateway}/open311/v2/requests/{issue_id}.json", params={"jurisdiction_id": T}, timeout=15
    )
    assert resp.status_code == 200, resp.text
    [request] = resp.json()
    assert isinstance(request, dict)
    return request


def test_the_rules_carry_the_filing_rules_and_refuse_bad_ones(system: System, filing_rules: dict[str, Any]) -> None:
    assert filing_rules["filing"] == [
        {"mode": "verify", "category": VERIFY, "urgency": "", "deadline_minutes": 0},
        {"mode": "verify", "category": QUICK, "urgency": "", "deadline_minutes": 1},
    ]
    admin = system.auth("subdistrict_admin", T)
    etag = requests.get(system.gateway + RULES, timeout=15).headers["ETag"]
    bad = {**filing_rules, "filing": [{"mode": "verify", "category": "no_such", "deadline_minutes": 5}]}
    resp = requests.put(system.gateway + RULES, json=bad, headers={**admin, "If-Match": etag}, timeout=15)
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "filing[0].category"


def test_a_report_held_for_verification_waits_then_an_accept_blows_the_whistle(
    system: System, filing_rules: dict[str, Any]
) -> None:
    issue = report(system)
    assert issue["status"] == "pending_verification" and issue["status_zh"] == "待核实"
    filing = issue["filing"]
    assert filing["mode"] == "verify" and not filing["overdue"] and filing["decision"] == ""
    due = datetime.fromisoformat(filing["due_at"])
    created = datetime.fromisoformat(issue["created_at"])
    assert timedelta(hours=4) - timedelta(seconds=2) <= due - created <= timedelta(hours=4) + timedelta(seconds=2)
    assert "待社区核实立案" in filing["status_note_zh"] and "awaiting verification" in filing["status_note_en"]
    # The resident and Open311 see it waiting; no task, no whistle.
    assert read(system, issue["id"])["task"] is None
    req = open311(system, issue["id"])
    assert req["status"] == "open" and "待社区核实立案" in req["status_notes"]
    assert "李" not in req["status_notes"] and "13812345678" not in str(req)
    # Staff find it by its status, and count it.
    staff = system.auth("subdistrict_admin", T)
    listed = lambda: requests.get(  # noqa: E731
        api(system, "/issues"), params={"status": "pending_verification", "ids": issue["id"]}, headers=staff, timeout=15
    ).json()["issues"]
    assert [i["id"] for i in listed()] == [issue["id"]]

    accepted = decide(system, issue["id"], {"decision": "accept", "note": "已电话核实情况属实"})
    assert accepted.status_code == 200, accepted.text
    after = accepted.json()["issue"]
    assert after["status"] == "classified" and after["filing"]["decision"] == "accepted"
    assert after["filing"]["decided_by"].startswith("test-community_worker")
    assert [h["kind"] for h in after["history"]][-1] == "filed"
    # Dispatch takes it from there, as any report filed directly.
    whistled = wait_for(
        lambda: (got := read(system, issue["id"]))["task"] and got["issue"]["status"] != "classified" and got
    )
    assert whistled["issue"]["status"] in ("whistle_blown", "assigned", "in_progress")
    assert open311(system, issue["id"])["status"] == "open"
    # A decided issue is not decided again.
    again = decide(system, issue["id"], {"decision": "decline", "reason": "abusive"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"


def test_a_decline_closes_the_issue_with_the_reason_the_reporter_reads(
    system: System, filing_rules: dict[str, Any]
) -> None:
    issue = report(system)
    resp = decide(
        system,
        issue["id"],
        {"decision": "decline", "reason": "out_of_scope", "referred_to": "12345", "note": "物业合同纠纷"},
        system.auth("subdistrict_admin", T),
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["ETag"] == f'"{resp.json()["issue"]["version"]}"'
    got = read(system, issue["id"])
    assert got["task"] is None
    declined = got["issue"]
    assert declined["status"] == "declined" and declined["status_zh"] == "不予立案"
    assert declined["open311_status"] == "closed"
    filing = declined["filing"]
    assert (filing["decision"], filing["decline_reason"], filing["referred_to"]) == (
        "declined",
        "out_of_scope",
        "12345",
    )
    assert filing["status_note_zh"] == "不予立案：不属于社区职责，已转12345热线"
    assert filing["status_note_en"] == "declined: out of scope, referred to 12345"
    assert declined["history"][-1]["note_zh"] == "不予立案：不属于社区职责，已转12345热线"
    # Without a login (the reporter, anyone with the id): why and where to turn, never the note nor who decided.
    assert (filing["note"], filing["decided_by"], declined["created_by"]) == ("", "", "")
    assert all(not h["by"] for h in declined["history"]) and "subdistrict_admin" not in str(declined)
    assert "物业合同纠纷" not in str(got)
    # Staff read all of it.
    for who in ("subdistrict_admin", "community_worker"):
        staff_read = requests.get(api(system, f"/issues/{issue['id']}"), headers=system.auth(who, T), timeout=15)
        assert staff_read.status_code == 200, staff_read.text
        full = staff_read.json()["issue"]["filing"]
        assert full["note"] == "物业合同纠纷" and full["decided_by"].startswith("test-subdistrict_admin")
    req = open311(system, issue["id"])
    assert req["status"] == "closed"
    assert req["status_notes"] == "不予立案：不属于社区职责，已转12345热线 (declined: out of scope, referred to 12345)"
    assert "物业合同纠纷" not in str(req)  # the worker's note is not published
    # The closed list shows it under declined; it is never dispatched.
    staff = system.auth("subdistrict_admin", T)
    wait_for(
        lambda: requests.get(
            api(system, "/issues"), params={"status": "declined", "text": issue["title"]}, headers=staff, timeout=15
        ).json()["issues"]
    )
    closed = requests.get(
        f"{system.gateway}/open311/v2/requests.json", params={"jurisdiction_id": T, "status": "closed"}, timeout=15
    ).json()
    assert issue["id"] in [r["service_request_id"] for r in closed]
    assert decide(system, issue["id"], {"decision": "accept"}).status_code == 409


def test_every_decline_reason_needs_its_details_and_bad_input_names_the_field(
    system: System, filing_rules: dict[str, Any]
) -> None:
    issue = report(system)
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "decision"),
        ({"decision": "maybe"}, "decision"),
        ({"decision": "decline"}, "reason"),
        ({"decision": "decline", "reason": "out_of_scope"}, "referred_to"),
        ({"decision": "decline", "reason": "out_of_scope", "referred_to": "department"}, "referred_name"),
        ({"decision": "decline", "reason": "duplicate"}, "duplicate_of"),
        ({"decision": "decline", "reason": "duplicate", "duplicate_of": "no-such-issue"}, "duplicate_of"),
        ({"decision": "decline", "reason": "insufficient_info"}, "ask"),
        ({"decision": "decline", "reason": "insufficient_info", "ask": "请打13812345678"}, "ask"),
        ({"decision": "accept", "reason": "abusive"}, "reason"),
        ({"decision": "accept", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        resp = decide(system, issue["id"], body)
        assert resp.status_code == 400, (body, resp.text)
        err = resp.json()["error"]
        assert err["field"] == field, (body, err)
        assert "13812345678" not in err["message"]
    assert read(system, issue["id"])["issue"]["status"] == "pending_verification"  # nothing was decided

    # Each reason, with what it needs, as the reporter reads it.
    other = report(system)
    dup = decide(system, other["id"], {"decision": "decline", "reason": "duplicate", "duplicate_of": issue["id"]})
    assert dup.status_code == 200, dup.text
    assert dup.json()["issue"]["filing"]["status_note_zh"] == f"不予立案：重复反映，已并入事项 {issue['id']}"
    ask = decide(system, issue["id"], {"decision": "decline", "reason": "insufficient_info", "ask": "具体楼号和单元"})
    assert ask.status_code == 200, ask.text
    assert open311(system, issue["id"])["status_notes"] == (
        "不予立案：信息不足，请补充：具体楼号和单元 (declined: not enough information; please add: 具体楼号和单元)"
    )
    dept = report(system)
    body = {"decision": "decline", "reason": "out_of_scope", "referred_to": "department", "referred_name": "区住建局"}
    assert decide(system, dept["id"], body).json()["issue"]["filing"]["status_note_en"] == (
        "declined: out of scope, referred to 区住建局"
    )


def test_a_report_filed_directly_and_other_roles_and_communities(system: System, filing_rules: dict[str, Any]) -> None:
    direct = report(system, category="property_repair")  # no rule: the shipped default, straight to dispatch
    assert direct["status"] == "classified" and direct["filing"]["mode"] == "direct"
    resp = decide(system, direct["id"], {"decision": "accept"})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "already_decided"

    pending = report(system)
    for role in ("resident", "public", "member"):
        assert decide(system, pending["id"], {"decision": "accept"}, system.auth(role, T)).status_code == 403
    assert decide(system, pending["id"], {"decision": "accept"}, {}).status_code == 401
    # A worker of another community of the tenant: the issue is answered as a missing one.
    admin = system.auth("subdistrict_admin", T)
    made = requests.post(
        api(system, "/org/communities"), json={"name_zh": f"核实社区{unique()}"}, headers=admin, timeout=15
    )
    assert made.status_code == 201, made.text
    other = made.json()["id"]
    outsider = decide(system, pending["id"], {"decision": "accept"}, system.worker_auth(T, other))
    assert outsider.status_code == 404 and outsider.json()["error"]["code"] == "not_found"
    assert read(system, pending["id"])["issue"]["status"] == "pending_verification"
    # The tenant's own worker of the issue's community may.
    assert (
        decide(system, pending["id"], {"decision": "accept"}, system.worker_auth(T, TEST_COMMUNITY)).status_code == 200
    )


def test_a_deadline_nobody_met_escalates_even_across_a_restart_of_intake(
    system: System, filing_rules: dict[str, Any]
) -> None:
    issue = report(system, category=QUICK)
    due = datetime.fromisoformat(issue["filing"]["due_at"])
    assert issue["status"] == "pending_verification" and not issue["filing"]["overdue"]
    # Intake dies before the deadline and is down when it passes: its timer is in the database, not in memory.
    system.kill("intake")
    wait_for(lambda: datetime.now(UTC) > due + timedelta(seconds=1), timeout=180, interval=1)
    system.start("intake")

    escalated = wait_for(lambda: (got := read(system, issue["id"])["issue"])["filing"]["overdue"] and got, timeout=120)
    assert escalated["status"] == "pending_verification"  # still waiting for a decision
    assert datetime.fromisoformat(escalated["filing"]["overdue_at"]) >= due
    step = escalated["history"][-1]
    assert step["kind"] == "verification_overdue" and "街道" in step["note_zh"]
    # The subdistrict admin's list of overdue reports holds it (the read model follows within moments).
    admin = system.auth("subdistrict_admin", T)

    def overdue_ids() -> list[str]:
        resp = requests.get(api(system, "/issues"), params={"verification_overdue": "true"}, headers=admin, timeout=15)
        assert resp.status_code == 200, resp.text
        return [i["id"] for i in resp.json()["issues"]]

    wait_for(lambda: issue["id"] in overdue_ids())
    # Filed late, it goes to dispatch all the same, and leaves the overdue list.
    assert decide(system, issue["id"], {"decision": "accept"}).status_code == 200
    wait_for(lambda: read(system, issue["id"])["task"])
    wait_for(lambda: issue["id"] not in overdue_ids())
    bad = requests.get(api(system, "/issues"), params={"verification_overdue": "soon"}, headers=admin, timeout=15)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "verification_overdue"


def test_a_report_declined_as_abusive_is_closed_in_open311_without_its_text_or_files(
    system: System, filing_rules: dict[str, Any]
) -> None:
    photo = {"filename": "骂.png", "content_type": "image/png", "content_base64": base64.b64encode(PNG).decode()}
    issue = report(system, description="辱骂社区工作人员的内容", attachments=[photo])
    assert open311(system, issue["id"])["media_url"]  # while it waits, it is a request like any other
    resp = decide(system, issue["id"], {"decision": "decline", "reason": "abusive", "note": "已核实为恶意"})
    assert resp.status_code == 200, resp.text
    req = open311(system, issue["id"])
    assert req["status"] == "closed"
    assert req["status_notes"] == "不予立案：内容不当（恶意或骚扰） (declined: abusive)"
    assert req["description"] == "内容不予公开（不予立案：内容不当） (withheld: declined as abusive)"
    assert req["media_url"] is None and "辱骂" not in str(req) and issue["title"] not in str(req)
    listed = requests.get(
        f"{system.gateway}/open311/v2/requests.json",
        params={"jurisdiction_id": T, "service_request_id": issue["id"]},
        timeout=15,
    ).json()
    assert [r["description"] for r in listed] == [req["description"]]
    # The issue itself, without a login: closed with its reason; no text, no files (the file's URL is 404).
    public = read(system, issue["id"])["issue"]
    assert public["status"] == "declined" and public["filing"]["decline_reason"] == "abusive"
    assert (
        public["description"] == "内容不予公开（不予立案：内容不当） (withheld: declined as abusive)"
        and public["attachments"] == []
    )
    assert "辱骂" not in str(public) and "已核实为恶意" not in str(public)
    file_url = api(system, f"/issues/{issue['id']}/attachments/{issue['attachments'][0]['id']}")
    assert requests.get(file_url, timeout=15).status_code == 404
    # Staff still read what was reported.
    staff = system.auth("subdistrict_admin", T)
    full = requests.get(api(system, f"/issues/{issue['id']}"), headers=staff, timeout=15).json()["issue"]
    assert full["description"] == "辱骂社区工作人员的内容" and len(full["attachments"]) == 1
    assert requests.get(file_url, headers=staff, timeout=15).status_code == 200
