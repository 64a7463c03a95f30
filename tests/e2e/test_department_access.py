"""A district department's calls under its grant, through the running gateway (审核把关 made real).

With an approved data-access grant a department reads exactly its scope: the grant's community, `id`
and the granted fields, filters on granted fields only, within its quota. With an assistance grant it
hands over exactly the approved task(s), which intake takes in on a channel of their own, tagged with
the grant. Everything else is refused with 403 naming what is missing, and every call — allowed or
refused — is in the hash-chained audit log, where the grant's community and subdistrict see it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pymongo import MongoClient

from gateway.governance.store import DATABASE
from services.common.audit import AuditLog, Entry, open_log
from tests.conftest import System, audit_caught_up, unique
from tests.e2e.test_governance import Place, approver, body, call, department, file
from tests.e2e.test_org_api import created, new_community, org, phone, square

T, OTHER = "shanggao", "daimiao"
GRANT = "X-Hongling-Grant"


@dataclass(frozen=True)
class Community:
    id: str
    item_id: str  # a public-affairs item (承办) of it
    unit_ids: tuple[str, ...]
    person_id: str
    mobile: str
    point: dict[str, float]  # inside the community's one grid


def community(system: System) -> Community:
    c = new_community(system, T)
    item = created(
        org(
            system,
            "POST",
            "public-affairs-items",
            tenant=T,
            json={"community_id": c["id"], "mode": "undertake", "title_zh": f"养老服务{unique()}"},
        )
    )
    units = []
    for kind in ("property_company", "owners_committee"):
        unit = {
            "community_id": c["id"],
            "name_zh": f"成员单位{unique()}",
            "kind": kind,
            "contact_name": "李经理",
            "contact_phone": phone(),
            "joined_on": "2025-03-01",
        }
        units.append(created(org(system, "POST", "member-units", tenant=T, json=unit))["id"])
    lat, lon = 36.30 + random.random() * 0.09, 117.30 + random.random() * 0.09  # its own 100 m square
    grid = {
        "community_id": c["id"],
        "name_zh": f"网格{unique()}",
        "boundary_geojson": json.dumps(square(lat, lon, 0.001)),
    }
    created(org(system, "POST", "grids", tenant=T, json=grid))
    mobile = phone()
    person = created(
        org(
            system,
            "POST",
            "people",
            tenant=T,
            json={"community_id": c["id"], "name_zh": "张志愿", "roles": ["volunteer"], "phone": mobile},
        )
    )
    point = {"lat": lat + 0.0005, "lon": lon + 0.0005}
    return Community(c["id"], item["id"], tuple(units), person["id"], mobile, point)


@pytest.fixture(scope="module")
def places(system: System) -> tuple[Community, Community]:
    return community(system), community(system)


@pytest.fixture(scope="module")
def audit(system: System) -> Iterator[AuditLog]:
    log = open_log(system.settings)
    yield log
    log.entries.database.client.close()


def grant_for(
    system: System, place: Community, headers: dict[str, str], approve: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    """File a request for `place` as the department, approve it (optionally narrowed); the grant."""
    filed = file(system, headers, body(Place(place.id, place.item_id, "", ""), **kw))
    resp = call(
        system, "POST", f"/api/v1/department-requests/{filed['id']}/approve", approver(system), json=approve or {}
    )
    assert resp.status_code == 200, resp.text
    grant: dict[str, Any] = resp.json()
    return grant


def get(system: System, path: str, headers: dict[str, str], grant_id: str | None = None) -> requests.Response:
    h = {**headers, **({GRANT: grant_id} if grant_id else {})}
    return requests.get(f"{system.gateway}/api/v1/tenants/{T}/{path}", headers=h, timeout=15)


def refused(resp: requests.Response, missing: str) -> str:
    assert resp.status_code == 403, resp.text
    err = resp.json()["error"]
    assert err["code"] == "outside_grant" and err["field"] == missing, err
    assert "超出授权范围" in err["message"]
    return str(err["message"])


def calls_of(audit: AuditLog, actor: str) -> list[Entry]:
    return [e for e in audit.iter_entries(tenant=T) if e.actor == actor and e.action == "department.call"]


def test_a_data_grant_reads_exactly_its_community_and_fields(
    system: System, places: tuple[Community, Community], audit: AuditLog
) -> None:
    mine, theirs = places
    sub, h = department(system)
    grant = grant_for(
        system,
        mine,
        h,
        operations=["org.read:member-units", "org.read:communities", "org.read:people"],
        fields=["name_zh", "kind", "contact_name", "phone"],
    )
    gid = grant["id"]

    units = get(system, "org/member-units", h, gid)
    assert units.status_code == 200, units.text
    items = units.json()["items"]
    assert sorted(i["id"] for i in items) == sorted(mine.unit_ids)  # not the other community's units
    assert all(set(i) == {"id", "name_zh", "kind", "contact_name"} for i in items), items  # no phone, no grids
    narrow = get(system, "org/member-units?fields=name_zh&kind=property_company", h, gid).json()["items"]
    assert [set(i) for i in narrow] == [{"id", "name_zh"}]

    communities = get(system, "org/communities", h, gid).json()["items"]
    assert [c["id"] for c in communities] == [mine.id] and set(communities[0]) == {"id", "name_zh"}
    one = get(system, f"org/member-units/{mine.unit_ids[0]}", h, gid)
    assert one.status_code == 200 and set(one.json()) == {"id", "name_zh", "kind", "contact_name"}

    # Personal data stays masked, whatever the grant names; reveal is never a department's.
    person = get(system, f"org/people/{mine.person_id}", h, gid).json()
    assert person["phone"] == mine.mobile[:3] + "****" + mine.mobile[-4:]
    assert get(system, f"org/people/{mine.person_id}?reveal=true", h, gid).status_code == 403

    # Outside the grant: each refusal names what is missing.
    refused(get(system, f"org/member-units/{theirs.unit_ids[0]}", h, gid), "community")
    refused(get(system, f"org/member-units?community_id={theirs.id}", h, gid), "community")
    refused(get(system, "org/member-units?fields=contact_phone", h, gid), "fields:contact_phone")
    refused(get(system, f"org/member-units?serves_grid_id={unique()}", h, gid), "fields:serves_grid_id")
    refused(get(system, "org/grids", h, gid), "operation:org.read:grids")
    refused(get(system, "org/member-units", h), "grant")
    refused(get(system, "org/member-units", h, "gr-" + "0" * 28), "grant")
    other_tenant = requests.get(
        f"{system.gateway}/api/v1/tenants/{OTHER}/org/member-units", headers={**h, GRANT: gid}, timeout=15
    )
    refused(other_tenant, "tenant")

    # Reading is not writing: the policy has no grant path for writes, whatever grant is named.
    write = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/org/member-units",
        headers={**h, GRANT: gid},
        json={"community_id": mine.id, "name_zh": "越权单位", "kind": "property_company"},
        timeout=15,
    )
    assert write.status_code == 403 and write.json()["error"]["code"] == "forbidden", write.text
    # Nor is it handing over a task.
    task = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/assistance-tasks",
        headers={**h, GRANT: gid},
        json={"title": "协助清点", "description": "x", "location": {"address": "泰山区"}},
        timeout=15,
    )
    refused(task, "operation:intake.create:assistance_task")

    # Every call is in the audit log: allowed with the fields it returned, refused with what was missing.
    entries = calls_of(audit, sub)
    allowed = [e for e in entries if e.outcome == "allowed" and e.grant_id == gid]
    assert len(allowed) >= 5 and all(e.detail["community_id"] == mine.id for e in allowed)
    missing = {e.detail.get("missing") for e in entries if e.outcome == "refused"}
    assert {
        "community",
        "fields:contact_phone",
        "fields:serves_grid_id",
        "operation:org.read:grids",
        "grant",
        "operation:intake.create:assistance_task",
    } <= missing
    assert any(e.outcome == "refused" and e.detail.get("reason") == "forbidden" for e in entries)  # the write
    assert any(e.outcome == "refused" and e.detail.get("error") == "reveal_not_allowed" for e in entries)
    assert not any(mine.mobile in str(e.body()) for e in entries)  # no personal data in the log

    # The community sees the grant's trail: every use and every refusal under it.
    audit_caught_up()
    trail = call(system, "GET", f"/api/v1/grants/{gid}?audit_limit=500", system.worker_auth(T, mine.id)).json()
    assert trail["used"] == len(allowed)
    assert {e["outcome"] for e in trail["audit"]} >= {"allowed", "refused"}


def test_an_expired_a_foreign_and_another_communitys_grant_are_refused(
    system: System, places: tuple[Community, Community], mongo_client: MongoClient[Any], audit: AuditLog
) -> None:
    mine, theirs = places
    sub, h = department(system)
    fields: dict[str, Any] = {"operations": ["org.read:member-units"], "fields": ["name_zh"]}
    expired = grant_for(system, mine, h, **fields)
    past = datetime.now(UTC) - timedelta(days=1)
    mongo_client[DATABASE]["grants"].update_one({"_id": expired["id"]}, {"$set": {"expires_at": past}})
    assert "expired" in refused(get(system, "org/member-units", h, expired["id"]), "period")

    elsewhere = grant_for(system, theirs, h, **fields)  # a grant for the other community
    refused(get(system, f"org/member-units?community_id={mine.id}", h, elsewhere["id"]), "community")
    refused(get(system, f"org/member-units/{mine.unit_ids[0]}", h, elsewhere["id"]), "community")

    _other_sub, other_h = department(system)
    assert "another department" in refused(get(system, "org/member-units", other_h, elsewhere["id"]), "grant")

    revoked = grant_for(system, mine, h, **fields)
    resp = call(system, "POST", f"/api/v1/grants/{revoked['id']}/revoke", approver(system), json={"reason": "停用"})
    assert resp.status_code == 200, resp.text
    refused(get(system, "org/member-units", h, revoked["id"]), "grant")

    refusals = [e for e in calls_of(audit, sub) if e.outcome == "refused"]
    assert {e.grant_id for e in refusals} >= {expired["id"], elsewhere["id"], revoked["id"]}
    assert any(e.actor == _other_sub for e in calls_of(audit, _other_sub))


def test_a_quota_is_never_exceeded(system: System, places: tuple[Community, Community]) -> None:
    mine, _ = places
    _sub, h = department(system)
    grant = grant_for(system, mine, h, operations=["org.read:member-units"], fields=["name_zh"], quota=2)
    assert [get(system, "org/member-units", h, grant["id"]).status_code for _ in range(2)] == [200, 200]
    refused(get(system, "org/member-units", h, grant["id"]), "quota")


def test_assistance_tasks_are_handed_over_exactly_as_approved(
    system: System, places: tuple[Community, Community], audit: AuditLog
) -> None:
    mine, theirs = places
    _sub, h = department(system)
    tasks = ["协助开展防汛物资清点", "协助张贴防汛宣传材料"]
    grant = grant_for(
        system,
        mine,
        h,
        approve={"tasks": tasks[:1]},  # the approver narrows to one task
        kind="assistance_task",
        operations=[],
        fields=[],
        tasks=tasks,
        purpose="汛前物资清点",
    )
    assert grant["tasks"] == tasks[:1] and grant["quota"] == 2
    url = f"{system.gateway}/api/v1/tenants/{T}/assistance-tasks"
    task = {"title": tasks[0], "description": "清点社区防汛沙袋和抽水泵", "location": mine.point}

    refused(requests.post(url, headers={**h, GRANT: grant["id"]}, json={**task, "title": tasks[1]}, timeout=15), "task")
    # Only in the granted community: a task located in another one is refused before it is counted.
    elsewhere = {**task, "location": theirs.point}
    refused(requests.post(url, headers={**h, GRANT: grant["id"]}, json=elsewhere, timeout=15), "community")
    unplaced = requests.post(
        url, headers={**h, GRANT: grant["id"]}, json={**task, "location": {"address": "x"}}, timeout=15
    )
    assert unplaced.status_code == 400 and unplaced.json()["error"]["field"] == "location", unplaced.text
    first = requests.post(url, headers={**h, GRANT: grant["id"]}, json=task, timeout=15)
    assert first.status_code == 201, first.text
    issue = first.json()["issue"]
    assert issue["channel"] == "department_assistance" and issue["grant_id"] == grant["id"]
    assert issue["channel_zh"] == "部门协助任务"

    # The community sees the handed-over task, tagged with the grant.
    seen = requests.get(
        f"{system.gateway}/api/v1/tenants/{T}/issues/{issue['id']}",
        headers=system.worker_auth(T, mine.id),
        timeout=15,
    ).json()["issue"]
    assert seen["grant_id"] == grant["id"] and seen["channel"] == "department_assistance"
    second = requests.post(url, headers={**h, GRANT: grant["id"]}, json=task, timeout=15)
    assert second.status_code == 201
    refused(requests.post(url, headers={**h, GRANT: grant["id"]}, json=task, timeout=15), "quota")

    audit_caught_up()
    trail = call(system, "GET", f"/api/v1/grants/{grant['id']}?audit_limit=100", system.auth("subdistrict_admin", T))
    actions = [(e["action"], e["outcome"]) for e in trail.json()["audit"]]
    assert actions.count(("assistance_task.hand_over", "done")) == 2
    assert any(e["target"] == f"issues/{issue['id']}" for e in trail.json()["audit"])
    assert trail.json()["used"] == 2 and trail.json()["remaining"] == 0


def test_nobody_else_hands_over_assistance_tasks(system: System, places: tuple[Community, Community]) -> None:
    # The route admits only district departments under a grant; intake refuses the channel to anyone else.
    task = {"title": "协助", "description": "x", "location": places[0].point}
    for role in ("community_worker", "subdistrict_admin", "resident", "district_approver"):
        resp = requests.post(
            f"{system.gateway}/api/v1/tenants/{T}/assistance-tasks", headers=system.auth(role, T), json=task, timeout=15
        )
        assert resp.status_code == 403, (role, resp.text)
    issue = {**task, "channel": "department_assistance"}
    resp = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/issues", headers=system.auth("resident", T), json=issue, timeout=15
    )
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "grant_required", resp.text
