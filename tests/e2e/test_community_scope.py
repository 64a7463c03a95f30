"""社区范围 through the gateway, as a portal uses it: a community worker of community A lists issues, tasks and
calls and sees its own community's only, is refused a list of community B, cannot read or change B's issue
or task (answered as records that do not exist), reports an issue that lies in B (filed there, 首问负责),
and a subdistrict admin still sees both communities."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from services.org.seed import Rect
from tests.conftest import System, unique, wait_for

T = "shengzhuang"


@dataclass(frozen=True)
class Place:
    community_id: str
    point: tuple[float, float]
    issues: tuple[str, ...]
    tasks: tuple[str, ...]


def api(system: System, method: str, path: str, headers: dict[str, str], **kw: Any) -> requests.Response:
    return requests.request(method, f"{system.gateway}/api/v1/tenants/{T}/{path}", headers=headers, timeout=15, **kw)


def admin(system: System) -> dict[str, str]:
    return system.auth("subdistrict_admin", T)


def report(system: System, point: tuple[float, float], headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {
        "title": f"路灯不亮{unique()[-4:]}",
        "description": "小区路灯坏了三天",
        "channel": "resident_report",
        "category": "road_facility",
        "location": {"lat": point[0], "lon": point[1], "address": "范围测试"},
    }
    resp = api(system, "POST", "issues", headers or {}, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["issue"])


def place(system: System) -> Place:
    """A community with a grid somewhere no other test draws one, two issues there and their tasks."""
    lat, lon = round(random.uniform(36.25, 36.35), 4), round(random.uniform(117.25, 117.35), 4)
    made = api(system, "POST", "org/communities", admin(system), json={"name_zh": f"范围社区{unique()}"})
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    grid = {
        "community_id": cid,
        "name_zh": "范围网格",
        "boundary_geojson": Rect(lon - 0.004, lat - 0.004, lon + 0.004, lat + 0.004).geojson(),
    }
    assert api(system, "POST", "org/grids", admin(system), json=grid).status_code == 201
    issues = [report(system, (lat - 0.002, lon - 0.002)), report(system, (lat + 0.002, lon + 0.002))]
    assert all(i["place"]["community_id"] == cid and not i["duplicate_of"] for i in issues)

    def task(issue_id: str) -> str:
        found = api(system, "GET", f"issues/{issue_id}", admin(system)).json()["task"]
        return str(found["id"]) if found else ""

    tasks = tuple(wait_for(lambda i=i: task(i["id"])) for i in issues)
    return Place(cid, (lat, lon), tuple(i["id"] for i in issues), tasks)


@pytest.fixture(scope="module")
def places(system: System) -> tuple[Place, Place]:
    return place(system), place(system)


def error(resp: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == code and err["request_id"] == resp.headers["X-Request-Id"], err
    return err


def test_a_community_worker_lists_only_its_own_communitys_issues_tasks_and_calls(
    system: System, places: tuple[Place, Place]
) -> None:
    a, b = places
    worker = system.worker_auth(T, a.community_id)

    def listed(path: str, key: str) -> list[dict[str, Any]]:
        resp = api(system, "GET", f"{path}?page_size=100", worker)
        assert resp.status_code == 200, resp.text
        return list(resp.json()[key])

    # The lists come from the read models: wait until A's records are there, then none of B's may be.
    issues = wait_for(lambda: (got := listed("issues", "issues")) and set(a.issues) <= {i["id"] for i in got} and got)
    assert {i["place"]["community_id"] for i in issues} == {a.community_id}
    tasks = wait_for(lambda: (got := listed("tasks", "tasks")) and set(a.tasks) <= {t["id"] for t in got} and got)
    assert {t["community_id"] for t in tasks} == {a.community_id}
    whistles = wait_for(lambda: listed("whistles", "whistles"))
    assert {w["community_id"] for w in whistles} == {a.community_id}
    counts = api(system, "GET", "issue-counts", worker).json()
    assert counts["community_id"] == a.community_id and counts["total"] == len(issues)
    # The subdistrict admin's lists hold both communities.
    named = ",".join([*a.issues, *b.issues])  # the tenant holds other tests' issues too: ask for these
    both = api(system, "GET", f"issues?page_size=100&ids={named}", admin(system)).json()["issues"]
    assert {i["place"]["community_id"] for i in both} == {a.community_id, b.community_id}
    # Asking for B's is refused, naming the community.
    for path in ("issues", "issue-counts", "tasks", "whistles", "tasks/overdue", "org/people"):
        err = error(api(system, "GET", f"{path}?community_id={b.community_id}", worker), 403, "community_out_of_scope")
        assert b.community_id in err["message"] and "无权访问该社区数据" in err["message"]


def test_another_communitys_issue_and_task_are_answered_as_missing_and_never_changed(
    system: System, places: tuple[Place, Place]
) -> None:
    a, b = places
    worker = system.worker_auth(T, a.community_id)
    issue, task = b.issues[0], b.tasks[0]
    # The same answer as for an id that does not exist: the id alone tells nothing.
    for path, kind in ((f"issues/{issue}", "issue"), (f"tasks/{task}", "task")):
        theirs = error(api(system, "GET", path, worker), 404, "not_found")
        ghost = error(
            api(system, "GET", path.replace(issue if kind == "issue" else task, "no-such-id"), worker), 404, "not_found"
        )
        assert theirs["message"] == ghost["message"].replace("no-such-id", issue if kind == "issue" else task)
    read = api(system, "GET", f"issues/{issue}", admin(system))
    etag = read.headers["ETag"]
    task_etag = api(system, "GET", f"tasks/{task}", admin(system)).headers["ETag"]
    changes = (
        ("POST", f"issues/{issue}/reclassify", {"urgency": "urgent", "reason": "越界"}, etag),
        ("GET", f"issues/{issue}/contact", None, None),
        ("POST", f"tasks/{task}/transitions", {"action": "cancel", "reason": "越界"}, task_etag),
        (
            "POST",
            f"tasks/{task}/assignment",
            {"assignee": {"kind": "person", "id": "p-x"}, "reason": "越界"},
            task_etag,
        ),
        ("POST", f"tasks/{task}/claims", {"claimant": {"kind": "person", "id": "p-x"}}, None),
        ("POST", "whistles", {"issue_ids": [issue], "note": "越界"}, None),
    )
    for method, path, body, if_match in changes:
        headers = {**worker, **({"If-Match": if_match} if if_match else {})}
        error(api(system, method, path, headers, json=body), 404, "not_found")
    # Nothing changed: the versions the admin reads are the ones read before.
    assert api(system, "GET", f"issues/{issue}", admin(system)).headers["ETag"] == etag
    assert api(system, "GET", f"tasks/{task}", admin(system)).headers["ETag"] == task_etag
    # Its own community's task it reads and changes as before.
    own = api(system, "GET", f"tasks/{a.tasks[1]}", worker)
    assert own.status_code == 200 and own.json()["community_id"] == a.community_id
    done = api(
        system,
        "POST",
        f"tasks/{a.tasks[1]}/transitions",
        {**worker, "If-Match": own.headers["ETag"]},
        json={"action": "cancel", "reason": "重复上报"},
    )
    assert done.status_code == 200 and done.json()["status"] == "cancelled", done.text


def test_a_worker_files_a_report_that_lies_in_another_community_where_it_lies(
    system: System, places: tuple[Place, Place]
) -> None:
    a, b = places
    worker = system.worker_auth(T, a.community_id)
    filed = report(system, (b.point[0] - 0.003, b.point[1] + 0.003), worker)
    assert filed["place"]["community_id"] == b.community_id  # B's to handle (属地管理)
    error(api(system, "GET", f"issues/{filed['id']}", worker), 404, "not_found")
    assert api(system, "GET", f"issues/{filed['id']}", system.worker_auth(T, b.community_id)).status_code == 200
