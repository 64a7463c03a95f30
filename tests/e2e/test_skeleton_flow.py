"""The walking skeleton through every layer: gateway -> intake -> outbox -> Kafka -> dispatch -> gateway."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from pymongo import MongoClient

from services.common.events import topic_for
from tests.conftest import System, read_topic, unique, wait_for

ISSUE = {
    "title": "楼道灯不亮",
    "description": "3号楼2单元楼道灯坏了一周，老人晚上上下楼不方便。",
    "channel": "resident_report",
    "location": {"lat": 36.1876, "lon": 117.1296, "address": "泰前街道嘉德社区3号楼"},
}


def post_issue(system: System, tenant: str, body: Any, **kw: Any) -> requests.Response:
    return requests.post(f"{system.gateway}/api/v1/tenants/{tenant}/issues", json=body, timeout=10, **kw)


def get_issue(system: System, tenant: str, issue_id: str) -> requests.Response:
    return requests.get(f"{system.gateway}/api/v1/tenants/{tenant}/issues/{issue_id}", timeout=10)


def test_issue_flows_to_a_task(system: System, mongo_client: MongoClient[Any]) -> None:
    resp = post_issue(system, "taiqian", ISSUE)
    assert resp.status_code == 201, resp.text
    issue = resp.json()["issue"]
    assert issue["title"] == "楼道灯不亮" and issue["tenant"] == "taiqian"
    assert issue["channel_zh"] == "居民反映"
    assert issue["created_at"].endswith("+08:00")  # shown in Asia/Shanghai
    assert resp.headers["Location"] == f"/api/v1/tenants/taiqian/issues/{issue['id']}"
    assert "楼道灯不亮" in resp.content.decode("utf-8")  # UTF-8, not \u escapes

    def task() -> Any:
        return get_issue(system, "taiqian", issue["id"]).json()["task"]

    t = wait_for(task)
    # Dispatch opened the task and blew its call (a report at a spot where an open issue of the same kind
    # already is follows that one: it shows the original's task).
    assert t["issue_id"] == (issue["duplicate_of"] or issue["id"]) and t["status"] == "open"

    # The relay published each of the issue's events once and recorded it as published: received, then
    # classified or marked duplicate, then the lifecycle steps dispatch's events bring (whistle_blown, ...).
    def published_all() -> Any:
        stored = mongo_client["hl_intake_taiqian"]["issues"].find_one({"_id": issue["id"]})
        assert stored is not None
        ids = [
            dict(r.headers)["ce_id"].decode()
            for r in read_topic(system.settings.kafka_bootstrap, topic_for("intake"))
            if r.key == f"taiqian:{issue['id']}".encode()
        ]
        return sorted(ids) == sorted(e["id"] for e in stored["outbox"]) and (stored, ids)

    stored, ids = wait_for(published_all)
    events = stored["outbox"]
    assert len(ids) == len(set(ids)) == len(events) >= 2
    assert events[0]["type"] == "hongling.events.v1.IssueReceived"
    assert events[1]["type"] in ("hongling.events.v1.IssueClassified", "hongling.events.v1.IssueMarkedDuplicate")
    # Recorded as published too (events handed to the relay from memory are recorded within about a second).
    published = mongo_client["hl_intake_taiqian"]["outbox_published"]
    wait_for(lambda: published.count_documents({"_id": {"$in": [e["id"] for e in events]}}) == len(events))


def test_same_idempotency_key_stores_one_issue(system: System) -> None:
    body = {**ISSUE, "idempotency_key": unique("key")}
    first = post_issue(system, "taiqian", body).json()["issue"]["id"]
    second = post_issue(system, "taiqian", body).json()["issue"]["id"]
    assert first == second


@pytest.mark.parametrize(
    ("tenant", "body", "status", "code", "field"),
    [
        ("taiqian", "{not json", 400, "invalid_json", None),
        ("taiqian", [1, 2], 400, "invalid_json", None),
        ("taiqian", {k: v for k, v in ISSUE.items() if k != "title"}, 400, "invalid_argument", "title"),
        ("taiqian", {**ISSUE, "description": "长" * 4001}, 400, "invalid_argument", "description"),
        ("taiqian", {**ISSUE, "title": "t" * 121}, 400, "invalid_argument", "title"),
        ("taiqian", {**ISSUE, "channel": "carrier_pigeon"}, 400, "invalid_argument", "channel"),
        ("taiqian", {**ISSUE, "location": {"lat": 36.1}}, 400, "invalid_argument", "location"),
        ("taiqian", {**ISSUE, "location": {}}, 400, "invalid_argument", "location"),
        ("taiqian", {**ISSUE, "title": 42}, 400, "invalid_argument", "title"),
        ("taiqian", {**ISSUE, "surprise": 1}, 400, "invalid_argument", "surprise"),
        ("atlantis", ISSUE, 404, "unknown_tenant", "tenant"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem_and_stores_nothing(
    system: System, mongo_client: MongoClient[Any], tenant: str, body: Any, status: int, code: str, field: str | None
) -> None:
    issues = mongo_client["hl_intake_taiqian"]["issues"]
    before = issues.count_documents({})
    if isinstance(body, str):
        resp = requests.post(
            f"{system.gateway}/api/v1/tenants/{tenant}/issues",
            data=body.encode(),
            headers={"content-type": "application/json"},
            timeout=10,
        )
    else:
        resp = post_issue(system, tenant, body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"]
    assert err["request_id"] == resp.headers["X-Request-Id"]
    if field:
        assert err["field"] == field
    assert "Traceback" not in resp.text
    assert issues.count_documents({}) == before


def test_unknown_route_and_method_get_the_json_error_shape(system: System) -> None:
    resp = requests.get(f"{system.gateway}/api/v1/nothing-here", timeout=5)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = requests.delete(f"{system.gateway}/api/v1/tenants/taiqian/issues", timeout=5)
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_issue_of_one_tenant_is_invisible_from_another_at_the_gateway(system: System) -> None:
    issue_id = post_issue(system, "taiqian", ISSUE).json()["issue"]["id"]
    assert get_issue(system, "taiqian", issue_id).status_code == 200
    resp = get_issue(system, "daimiao", issue_id)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"

    def listed(tenant: str) -> set[str]:
        page = requests.get(
            f"{system.gateway}/api/v1/tenants/{tenant}/issues?page_size=100",
            headers=system.auth("subdistrict_admin", tenant),
            timeout=5,
        ).json()
        return {i["id"] for i in page["issues"]}

    # Once its own tenant's list (a read model) shows it, the other tenant's still does not.
    wait_for(lambda: issue_id in listed("taiqian"))
    assert issue_id not in listed("daimiao")


def test_readiness_reports_every_service(system: System) -> None:
    body = requests.get(f"{system.gateway}/readyz", timeout=5).json()
    assert body["services"] == {
        s: "SERVING" for s in ("org", "intake", "dispatch", "evaluation", "publication", "alliance")
    }
