"""Test builders shared by the test packages (STYLE.md: one place, instead of test modules importing each other).

Verification (验单): a done task becomes verified, or is sent back, only through evaluation's verdict. These take
the shortest path the tenant's rules allow — an on-site check where the task's call type accepts one (emergency
by default), else a review round of one reviewer with a quorum of one — and wait until dispatch applied it.
"""

from __future__ import annotations

from typing import Any

import grpc
import requests
from hongling.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from hongling.evaluation.v1 import verification_pb2 as vpb
from hongling.evaluation.v1 import verification_pb2_grpc

from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from tests.conftest import TEST_POINT, System, unique, wait_for

REVIEWER = "test-reviewer"


def _md(system: System, tenant: str, role: str, sub: str, community: str | None) -> list[tuple[str, str]]:
    who = Principal(sub=sub, role=role, tenants=(tenant,), community=community)
    return [(METADATA_KEY, mint(who, system.settings.principal_secret)), (TENANT_KEY, tenant)]


def verification_stub(system: System) -> verification_pb2_grpc.VerificationServiceStub:
    return verification_pb2_grpc.VerificationServiceStub(system.channel("evaluation"))


def _task(system: System, tenant: str, task_id: str) -> dispatch_pb2.Task:
    stub = dispatch_pb2_grpc.DispatchServiceStub(system.channel("dispatch"))
    md = _md(system, tenant, "subdistrict_admin", "test-admin", None)
    return stub.GetTask(dispatch_pb2.GetTaskRequest(id=task_id), metadata=md, timeout=15)


def give_verdict(
    system: System,
    tenant: str,
    task_id: str,
    *,
    passed: bool = True,
    reason: str = "",
    role: str = "subdistrict_admin",
    sub: str = "test-inspector",
    community: str | None = None,
) -> str:
    """The task's verdict over gRPC by the shortest path its rule allows; the method used (onsite | review)."""
    stub = verification_stub(system)
    md = _md(system, tenant, role, sub, community)
    task = _task(system, tenant, task_id)
    rules = stub.GetVerificationRules(vpb.GetVerificationRulesRequest(), metadata=md, timeout=15)
    rule = next(r for r in rules.rules if r.call_type == (task.call_type or "service"))
    why = reason or ("" if passed else "未整改到位")
    if rule.method in ("onsite", "either"):
        req = vpb.RecordCheckRequest(task_id=task_id, lat=TEST_POINT[0], lon=TEST_POINT[1], reason=why)
        setattr(req, "pass", passed)
        stub.RecordCheck(req, metadata=md, timeout=15)
        return "onsite"
    created = stub.CreateRound(
        vpb.CreateRoundRequest(
            community_id=task.community_id,
            title="验单",
            task_ids=[task_id],
            reviewers=[vpb.ReviewerIn(id=REVIEWER, kind="party_committee", name_zh="评议人")],
            quorum=1,
        ),
        metadata=md,
        timeout=15,
    )
    vote = vpb.CastVoteRequest(round_id=created.id, task_id=task_id, reviewer_id=REVIEWER, reason=why)
    setattr(vote, "pass", passed)
    stub.CastVote(vote, metadata=md, timeout=15)
    stub.CloseRound(vpb.CloseRoundRequest(id=created.id), metadata=md, timeout=15)
    return "review"


def verify(system: System, tenant: str, task_id: str, **kw: Any) -> dispatch_pb2.Task:
    """Verify a done task through evaluation and wait until dispatch holds it verified."""
    give_verdict(system, tenant, task_id, passed=True, **kw)
    return wait_for(lambda: (t := _task(system, tenant, task_id)).status == "verified" and t, timeout=120)


def send_back(system: System, tenant: str, task_id: str, reason: str = "未整改到位", **kw: Any) -> dispatch_pb2.Task:
    """Fail a done task's verification through evaluation and wait until dispatch reopened it."""
    give_verdict(system, tenant, task_id, passed=False, reason=reason, **kw)
    return wait_for(lambda: (t := _task(system, tenant, task_id)).status == "reopened" and t, timeout=120)


# ---------------------------------------------------------------- through the gateway (e2e, browser)


def verify_over_http(
    system: System, tenant: str, task_id: str, headers: dict[str, str], *, passed: bool = True, reason: str = ""
) -> dict[str, Any]:
    """The shortest verdict through the gateway's REST (as the staff member whose headers these are); returns
    the task once dispatch applied it (verified, or reopened for a fail)."""
    base = f"{system.gateway}/api/v1/tenants/{tenant}"
    task = requests.get(f"{base}/tasks/{task_id}", headers=headers, timeout=15).json()
    rules = requests.get(f"{base}/evaluation/verification-rules", headers=headers, timeout=15).json()
    rule = next(r for r in rules["rules"] if r["call_type"] == (task.get("call_type") or "service"))
    why = reason or ("" if passed else "未整改到位")
    if rule["method"] in ("onsite", "either"):
        body = {"task_id": task_id, "lat": TEST_POINT[0], "lon": TEST_POINT[1], "pass": passed, "reason": why}
        resp = requests.post(f"{base}/evaluation/onsite-checks", json=body, headers=headers, timeout=15)
        assert resp.status_code == 201, resp.text
    else:
        body = {
            "community_id": task["community_id"],
            "title": f"验单 {unique()[-4:]}",
            "task_ids": [task_id],
            "reviewers": [{"id": REVIEWER, "kind": "party_committee", "name_zh": "评议人"}],
            "quorum": 1,
        }
        resp = requests.post(f"{base}/evaluation/review-rounds", json=body, headers=headers, timeout=15)
        assert resp.status_code == 201, resp.text
        url = resp.headers["Location"]
        vote = {"task_id": task_id, "reviewer_id": REVIEWER, "pass": passed, "reason": why}
        resp = requests.post(f"{system.gateway}{url}/votes", json=vote, headers=headers, timeout=15)
        assert resp.status_code == 201, resp.text
        resp = requests.post(f"{system.gateway}{url}/close", headers=headers, timeout=15)
        assert resp.status_code == 200, resp.text
    wanted = "verified" if passed else "reopened"

    def applied() -> dict[str, Any] | None:
        found: dict[str, Any] = requests.get(f"{base}/tasks/{task_id}", headers=headers, timeout=15).json()
        return found if found.get("status") == wanted else None

    return wait_for(applied, timeout=120)


def refused_by_grpc(err: grpc.RpcError) -> bool:
    """A bare verify/reject transition's refusal: FAILED_PRECONDITION pointing to 验单."""
    return err.code() == grpc.StatusCode.FAILED_PRECONDITION and "验单" in (err.details() or "")
