"""The whole loop with the verification area, through the gateway and nothing synthetic: a resident reports
(the follow-up code in the answer), the task is claimed, worked and done, an on-site check passes (evaluation's
TaskVerified), the reporter rejects the verified result (TaskVerificationFailed, method resident) and dispatch
reopens the task; done and checked again, the reporter rates the second verification and intake's issue is
rated."""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests

from tests.conftest import System, unique, wait_for
from tests.e2e.test_dispatch_api import Area, build_area

T = "caiyuan"
CENTER = (round(random.uniform(36.62, 36.68), 4), round(random.uniform(117.62, 117.68), 4))


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def ok(resp: requests.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    return resp.json() if resp.content else None


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return build_area(system, T, CENTER)


def task_status(system: System, worker: dict[str, str], task_id: str, status: str) -> dict[str, Any]:
    def reached() -> Any:
        found = requests.get(url(system, f"tasks/{task_id}"), headers=worker, timeout=10).json()
        return found if found.get("status") == status else None

    return dict(wait_for(reached, timeout=120))


def work(system: System, worker: dict[str, str], task: dict[str, Any], actions: tuple[str, ...]) -> dict[str, Any]:
    for action in actions:
        task = ok(
            requests.post(
                url(system, f"tasks/{task['id']}/transitions"),
                json={"action": action},
                headers={**worker, "If-Match": f'"{task["version"]}"'},
                timeout=10,
            )
        )
    return task


def check_on_site(system: System, worker: dict[str, str], task_id: str, point: tuple[float, float]) -> None:
    check = {"task_id": task_id, "lat": point[0], "lon": point[1], "pass": True, "notes": "阀门已更换"}
    ok(
        requests.post(url(system, "evaluation/onsite-checks"), json=check, headers=worker, timeout=20),
        201,
    )


def follow(system: System, issue_id: str, code: str) -> dict[str, Any]:
    return dict(ok(requests.get(url(system, f"issues/{issue_id}/follow"), headers={"X-Follow-Code": code}, timeout=15)))


def test_reported_verified_rejected_reopened_verified_again_and_rated(system: System, area: Area) -> None:
    worker = system.worker_auth(T, area.community_id)
    point = CENTER
    report = {
        "title": f"煤气味{unique()[-4:]}",
        "description": "楼道里有煤气味",
        "channel": "resident_report",
        "category": "property_repair",
        "hazards": ["gas"],  # urgent: the emergency call, verified by an on-site check
        "location": {"lat": point[0], "lon": point[1], "address": "评单闭环"},
    }
    answer = ok(requests.post(url(system, "issues"), json=report, timeout=15), 201)
    issue, code = answer["issue"], answer["follow_code"]
    task_id = wait_for(
        lambda: (
            (t := requests.get(url(system, f"issues/{issue['id']}"), headers=worker, timeout=10).json()["task"])
            and t["id"]
        )
    )
    claim = {"role": "lead", "claimant": {"kind": "person", "id": area.people[1]}}
    task = ok(requests.post(url(system, f"tasks/{task_id}/claims"), json=claim, headers=worker, timeout=10), 201)
    task = work(system, worker, task, ("start", "done"))
    check_on_site(system, worker, task_id, point)
    task_status(system, worker, task_id, "verified")
    first = wait_for(lambda: (f := follow(system, issue["id"], code))["verified"] and f, timeout=120)
    assert first["attempt"] == 1 and first["can_rate"] and first["can_reject"]

    # The reporter is not satisfied: dispatch reopens the verified task.
    ok(
        requests.post(
            url(system, f"issues/{issue['id']}/result-rejection"),
            json={"reason": "还是有煤气味"},
            headers={"X-Follow-Code": code},
            timeout=15,
        ),
        201,
    )
    reopened = task_status(system, worker, task_id, "reopened")
    assert reopened["history"][-1]["action"] == "resident_rejected"

    # Worked and checked again: the second verification is the reporter's to rate.
    work(system, worker, reopened, ("start", "done"))
    check_on_site(system, worker, task_id, point)
    second = wait_for(
        lambda: (f := follow(system, issue["id"], code))["verified"] and f["attempt"] == 2 and f, timeout=120
    )
    assert second["can_rate"] and second.get("rejection") is None
    rated = ok(
        requests.post(
            url(system, f"issues/{issue['id']}/rating"),
            json={"score": 4, "comment": "第二次修好了"},
            headers={"X-Follow-Code": code},
            timeout=15,
        ),
        201,
    )
    assert rated["verification_id"] == f"{task_id}:2"  # the verification area's id of the second attempt
    wait_for(
        lambda: requests.get(url(system, f"issues/{issue['id']}"), timeout=15).json()["issue"]["status"] == "rated",
        timeout=120,
    )
