"""The gRPC front door for district-department systems, against the running stack: health and reflection,
a department's calls under its grants (exactly the granted scope goes through; everything else is
PERMISSION_DENIED naming what is missing), tokens, the role x tenant matrix of its methods, the audit log
(every department call, allowed or refused, door "grpc"), and the example client."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hongling.common.v1 import location_pb2
from hongling.frontdoor.v1 import frontdoor_pb2 as pb
from hongling.frontdoor.v1 import frontdoor_pb2_grpc as pb_grpc
from pymongo import MongoClient

from gateway.governance.store import DATABASE as GOVERNANCE
from gateway.tokens import TOKEN_ROLES, new_token
from services.common.audit import DATABASE as AUDIT
from tests.conftest import REPO, System, audit_caught_up, unique
from tests.e2e.test_department_access import Community, community
from tests.e2e.test_governance import Place, approver, body, department, file
from tests.e2e.test_org_api import new_grid, square

T, OTHER = "shanggao", "daimiao"
SERVICE = "hongling.frontdoor.v1.DepartmentGateway"
DATA_OPS = ["org.read:member-units", "org.read:people", "org.read:communities"]
DATA_FIELDS = ["contact_name", "kind", "name_zh"]


@pytest.fixture(scope="module")
def places(system: System) -> tuple[Community, Community]:
    return community(system), community(system)


@pytest.fixture(scope="module")
def channel(system: System) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(system.frontdoor)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.DepartmentGatewayStub:
    return pb_grpc.DepartmentGatewayStub(channel)


def bearer(headers: dict[str, str]) -> list[tuple[str, str]]:
    """The HTTP Authorization header as front-door metadata."""
    return [("authorization", headers["Authorization"])]


def grant_for(
    system: System, place: Community, headers: dict[str, str], approve: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    """File a request for `place` as the department (HTTP), approve it as a district approver; the grant."""
    filed = file(system, headers, body(Place(place.id, place.item_id, "", ""), **kw))
    resp = requests.post(
        f"{system.gateway}/api/v1/department-requests/{filed['id']}/approve",
        headers=approver(system),
        json=approve or {},
        timeout=15,
    )
    assert resp.status_code == 200, resp.text
    grant: dict[str, Any] = resp.json()
    return grant


def records(resp: pb.ListOrgRecordsResponse) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(r) for r in resp.records]


@dataclass(frozen=True)
class Refused:
    message: str
    reason: str
    field: str | None


def refused(call: Callable[[], Any], code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED) -> Refused:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    assert err.code() == code, (err.code(), err.details())
    trailing = dict(err.trailing_metadata() or ())
    assert err.details() and trailing.get("x-request-id"), trailing
    return Refused(err.details(), trailing.get("x-hongling-error-reason", ""), trailing.get("x-hongling-error-field"))


def outside(call: Callable[[], Any], missing: str) -> str:
    """A call outside the grant: PERMISSION_DENIED, reason outside_grant, naming what is missing."""
    r = refused(call)
    assert (r.reason, r.field) == ("outside_grant", missing), r
    assert "超出授权范围" in r.message
    return r.message


def grpc_calls(mongo: MongoClient[Any], actor: str) -> list[dict[str, Any]]:
    """The audit log's department calls through the front door by this actor, oldest first."""
    found = mongo[AUDIT]["entries"].find({"action": "department.call", "actor": actor, "detail.door": "grpc"})
    return sorted(found, key=lambda e: int(e["_id"]))


# ---------------------------------------------------------------- probes


def test_health_is_serving_and_reflection_lists_the_service(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, name
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, described = list(reflect.ServerReflectionInfo(iter(asks), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto  # grpcurl can describe it


# ---------------------------------------------------------------- data-access grants


def test_a_data_grant_reads_exactly_its_scope_and_nothing_else(
    system: System,
    places: tuple[Community, Community],
    stub: pb_grpc.DepartmentGatewayStub,
    mongo_client: MongoClient[Any],
) -> None:
    mine, theirs = places
    sub, h = department(system)
    md = bearer(h)
    gid = grant_for(system, mine, h, operations=DATA_OPS, fields=DATA_FIELDS)["id"]

    def list_(collection: str = "member-units", **kw: Any) -> pb.ListOrgRecordsResponse:
        args: dict[str, Any] = {"tenant": T, "collection": collection, "grant_id": gid, **kw}
        resp: pb.ListOrgRecordsResponse = stub.ListOrgRecords(pb.ListOrgRecordsRequest(**args), metadata=md)
        return resp

    units = records(list_())
    assert sorted(u["id"] for u in units) == sorted(mine.unit_ids)  # not the other community's units
    assert all(set(u) == {"id", *DATA_FIELDS} for u in units), units  # no phone, no grids, no version
    assert {u["contact_name"] for u in units} == {"李经理"}
    narrow = records(list_(fields=["name_zh"], filter={"kind": "property_company"}))
    assert [(set(u), u["id"]) for u in narrow] == [({"id", "name_zh"}, mine.unit_ids[0])]
    people = records(list_("people"))
    assert [(p["id"], set(p)) for p in people] == [(mine.person_id, {"id", "name_zh"})]  # people have no kind
    communities = records(list_("communities"))
    assert [c["id"] for c in communities] == [mine.id] and set(communities[0]) == {"id", "name_zh"}
    one = stub.GetOrgRecord(
        pb.GetOrgRecordRequest(tenant=T, collection="member-units", id=mine.unit_ids[1], grant_id=gid), metadata=md
    )
    assert json_format.MessageToDict(one.record) == {
        "id": mine.unit_ids[1],
        "name_zh": units[[u["id"] for u in units].index(mine.unit_ids[1])]["name_zh"],
        "kind": "owners_committee",
        "contact_name": "李经理",
    }

    # Outside the grant: each refusal names what is missing.
    outside(lambda: list_(grant_id=""), "grant")
    outside(lambda: list_(grant_id="gr-" + "0" * 28), "grant")
    _other_sub, other_h = department(system)
    foreign = grant_for(system, mine, other_h, operations=DATA_OPS, fields=DATA_FIELDS)["id"]
    assert "another department" in outside(lambda: list_(grant_id=foreign), "grant")
    outside(lambda: list_(fields=["name_zh", "contact_phone"]), "fields:contact_phone")
    outside(lambda: list_(filter={"serves_grid_ids": "g-1"}), "fields:serves_grid_ids")
    outside(lambda: list_("grids"), "operation:org.read:grids")
    outside(lambda: list_(tenant=OTHER), "tenant")
    outside(lambda: list_(filter={"community_id": theirs.id}), "community")
    outside(
        lambda: stub.GetOrgRecord(
            pb.GetOrgRecordRequest(tenant=T, collection="member-units", id=theirs.unit_ids[0], grant_id=gid),
            metadata=md,
        ),
        "community",
    )
    # A read grant hands over no task.
    task = pb.HandOverTaskRequest(
        tenant=T, grant_id=gid, title="协助清点", description="x", location=location_pb2.Location(address="泰山区")
    )
    outside(lambda: stub.HandOverTask(task, metadata=md), "operation:intake.create:assistance_task")
    # A record that does not exist: NOT_FOUND from the org service, passed on (and recorded as refused).
    missing = pb.GetOrgRecordRequest(tenant=T, collection="member-units", id=unique("nope"), grant_id=gid)
    refused(lambda: stub.GetOrgRecord(missing, metadata=md), grpc.StatusCode.NOT_FOUND)

    # An expired grant (the domain refuses past periods at filing: its end is moved into the past here).
    expired = grant_for(system, mine, h, operations=DATA_OPS, fields=DATA_FIELDS)["id"]
    past = datetime.now(UTC) - timedelta(days=1)
    mongo_client[GOVERNANCE]["grants"].update_one({"_id": expired}, {"$set": {"expires_at": past}})
    assert "expired" in outside(lambda: list_(grant_id=expired), "period")

    # Every call is in the audit log, door grpc: the allowed ones under the grant with the fields returned.
    entries = grpc_calls(mongo_client, sub)
    allowed = [e for e in entries if e["outcome"] == "allowed"]
    assert len(allowed) == 5 and {e["grant_id"] for e in allowed} == {gid}
    assert all(e["detail"]["community_id"] == mine.id and e["tenant"] == T for e in allowed)
    assert all(e["detail"]["method"].startswith(f"/{SERVICE}/") for e in entries)
    assert {e["detail"]["method"].rsplit("/", 1)[1] for e in allowed} == {"ListOrgRecords", "GetOrgRecord"}
    refusals = [e for e in entries if e["outcome"] == "refused"]
    assert sorted(str(e["detail"].get("missing") or e["detail"].get("error")) for e in refusals) == sorted(
        [
            "grant",
            "grant",
            "grant",
            "fields:contact_phone",
            "fields:serves_grid_ids",
            "operation:org.read:grids",
            "tenant",
            "community",
            "community",
            "operation:intake.create:assistance_task",
            "not_found",
            "period",
        ]
    )
    assert {e["grant_id"] for e in refusals} >= {gid, foreign, expired}
    assert not any("李经理" in str(e) for e in entries)  # no personal data in the log

    # The community sees the front-door calls in the grant's trail, as it sees the HTTP ones.
    audit_caught_up()
    trail = requests.get(
        f"{system.gateway}/api/v1/grants/{gid}?audit_limit=500", headers=system.worker_auth(T, mine.id), timeout=15
    ).json()
    assert trail["used"] == 5
    doors = {e["detail"].get("door") for e in trail["audit"] if e["action"] == "department.call"}
    assert doors == {"grpc"}


# ---------------------------------------------------------------- assistance tasks and the department's grants


def test_an_assistance_task_is_handed_over_once_within_its_quota(
    system: System,
    places: tuple[Community, Community],
    stub: pb_grpc.DepartmentGatewayStub,
    mongo_client: MongoClient[Any],
) -> None:
    mine, _ = places
    sub, h = department(system)
    md = bearer(h)
    tasks = ["协助开展防汛物资清点", "协助张贴防汛宣传材料"]
    grant = grant_for(
        system,
        mine,
        h,
        approve={"tasks": tasks[:1], "quota": 1},  # the approver narrows to one task, handed over once
        kind="assistance_task",
        operations=[],
        fields=[],
        tasks=tasks,
        purpose="汛前物资清点",
    )
    gid = grant["id"]
    assert grant["tasks"] == tasks[:1] and grant["quota"] == 1
    # Intake places a task in its grid: a grid of the community, somewhere no other test draws one.
    lat, lon = 36.6 + random.random() / 10, 117.6 + random.random() / 10
    new_grid(system, mine.id, tenant=T, boundary=square(lat, lon, 0.001))

    def hand_over(title: str) -> pb.HandOverTaskResponse:
        req = pb.HandOverTaskRequest(
            tenant=T,
            grant_id=gid,
            title=title,
            description="清点社区防汛沙袋和抽水泵",
            location=location_pb2.Location(lat=lat + 0.0005, lon=lon + 0.0005, address="泰山区上高街道"),
            idempotency_key=unique("k"),
        )
        resp: pb.HandOverTaskResponse = stub.HandOverTask(req, metadata=md)
        return resp

    outside(lambda: hand_over(tasks[1]), "task")  # not the approved task
    done = hand_over(tasks[0])
    assert done.issue_id and done.grant_id == gid and (done.grant_use, done.grant_quota) == (1, 1)
    assert "quota" in outside(lambda: hand_over(tasks[0]), "quota")

    # The community sees the task, tagged with the grant, on a channel of its own.
    issue = requests.get(
        f"{system.gateway}/api/v1/tenants/{T}/issues/{done.issue_id}",
        headers=system.worker_auth(T, mine.id),
        timeout=15,
    )
    assert issue.status_code == 200, issue.text
    shown = issue.json()["issue"]
    assert shown["channel"] == "department_assistance" and shown["grant_id"] == gid and shown["title"] == tasks[0]

    # Its own grant, as the HTTP API shows it; another department's is not found.
    mine_grant = json_format.MessageToDict(stub.GetGrant(pb.GetGrantRequest(grant_id=gid), metadata=md).grant)
    assert mine_grant["id"] == gid and mine_grant["department"] == sub and mine_grant["tasks"] == tasks[:1]
    assert (mine_grant["used"], mine_grant["quota"], mine_grant["status"]) == (1, 1, "used_up")
    assert "audit" not in mine_grant and mine_grant["expires_at"].endswith("+08:00")
    _other_sub, other_h = department(system)
    assert (
        refused(
            lambda: stub.GetGrant(pb.GetGrantRequest(grant_id=gid), metadata=bearer(other_h)), grpc.StatusCode.NOT_FOUND
        ).field
        == "grant_id"
    )

    entries = grpc_calls(mongo_client, sub)
    assert [(e["outcome"], e["detail"]["method"].rsplit("/", 1)[1], e["detail"].get("missing")) for e in entries] == [
        ("refused", "HandOverTask", "task"),
        ("allowed", "HandOverTask", None),
        ("refused", "HandOverTask", "quota"),
        ("allowed", "GetGrant", None),
    ]
    assert [e["outcome"] for e in grpc_calls(mongo_client, _other_sub)] == ["allowed"]  # then NOT_FOUND
    audit_caught_up()
    trail = requests.get(
        f"{system.gateway}/api/v1/grants/{gid}?audit_limit=100", headers=system.auth("subdistrict_admin", T), timeout=15
    ).json()
    handed = [e for e in trail["audit"] if e["action"] == "assistance_task.hand_over"]
    assert [(e["outcome"], e["target"]) for e in handed] == [("done", f"issues/{done.issue_id}")]


# ---------------------------------------------------------------- credentials and roles


def test_bad_credentials_are_unauthenticated_and_other_roles_refused(
    system: System, stub: pb_grpc.DepartmentGatewayStub
) -> None:
    req = pb.ListOrgRecordsRequest(tenant=T, collection="member-units", grant_id="gr-" + "0" * 28)
    for md in (
        [],
        [("authorization", f"Bearer {new_token()}")],  # forged: well-formed, unknown
        [("authorization", f"Bearer {system.expired_token}")],
        [("authorization", "Basic dXNlcjpwdw==")],
    ):
        r = refused(partial(stub.ListOrgRecords, req, metadata=md), grpc.StatusCode.UNAUTHENTICATED)
        assert r.reason in ("unauthenticated", "token_expired"), r
    expired = refused(
        lambda: stub.ListOrgRecords(req, metadata=[("authorization", f"Bearer {system.expired_token}")]),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert expired.reason == "token_expired"
    worker = refused(lambda: stub.ListOrgRecords(req, metadata=bearer(system.auth("community_worker", T))))
    assert worker.reason == "forbidden" and "community_worker" in worker.message


# The front door's methods x every token role (and the anonymous caller) x a token scoped to the call's
# tenant or to another: only a district department gets past the policy, and then only under a grant.
MATRIX_ROLES = ["anonymous", *TOKEN_ROLES]


@pytest.mark.parametrize("role", MATRIX_ROLES)
def test_role_x_tenant_matrix(
    system: System, stub: pb_grpc.DepartmentGatewayStub, mongo_client: MongoClient[Any], role: str
) -> None:
    calls: dict[str, Callable[[list[tuple[str, str]]], Any]] = {
        "ListOrgRecords": lambda md: stub.ListOrgRecords(
            pb.ListOrgRecordsRequest(tenant=T, collection="member-units"), metadata=md
        ),
        "HandOverTask": lambda md: stub.HandOverTask(
            pb.HandOverTaskRequest(tenant=T, title="协助", description="x"), metadata=md
        ),
        "GetGrant": lambda md: stub.GetGrant(pb.GetGrantRequest(grant_id="gr-" + "0" * 28), metadata=md),
    }
    for scope in (T, OTHER):
        md = [] if role == "anonymous" else bearer(system.auth(role, scope))
        logged = len(grpc_calls(mongo_client, f"test-{role}-{scope}"))
        for name, call in calls.items():
            label = f"{role}@{scope} {name}"
            if role == "anonymous":
                r = refused(partial(call, md), grpc.StatusCode.UNAUTHENTICATED)
                assert r.reason == "unauthenticated", label
            elif role != "district_department":
                r = refused(partial(call, md))
                assert r.reason == "forbidden" and role in r.message, label
            elif name == "GetGrant":  # through the policy; no such grant of its own
                assert refused(partial(call, md), grpc.StatusCode.NOT_FOUND).field == "grant_id", label
            elif scope == T:
                r = refused(partial(call, md))
                assert (r.reason, r.field) == ("outside_grant", "grant") and "grant" in r.message, label
            else:
                r = refused(partial(call, md))
                assert (r.reason, r.field) == ("tenant_out_of_scope", "tenant"), label
        # A district department's every call is in the audit log (refused: why; GetGrant: allowed, then
        # NOT_FOUND); nobody else's is a department call.
        entries = grpc_calls(mongo_client, f"test-{role}-{scope}")[logged:]
        why = [(e["outcome"], e["detail"].get("missing") or e["detail"].get("reason")) for e in entries]
        if role != "district_department":
            assert why == []
        elif scope == T:
            assert why == [("refused", "grant"), ("refused", "grant"), ("allowed", None)]
        else:
            assert why == [("refused", "tenant_out_of_scope"), ("refused", "tenant_out_of_scope"), ("allowed", None)]


# ---------------------------------------------------------------- the example client


def test_the_example_client_lists_records(
    system: System, places: tuple[Community, Community], mongo_client: MongoClient[Any]
) -> None:
    mine, _ = places
    sub, h = department(system)
    gid = grant_for(system, mine, h, operations=DATA_OPS, fields=DATA_FIELDS)["id"]
    token = h["Authorization"].removeprefix("Bearer ")
    base = [sys.executable, "examples/department_client.py", "--target", system.frontdoor, "--tenant", T]
    env = {**os.environ, "HONGLING_TOKEN": token}

    out = subprocess.run(
        [*base, "--grant", gid, "list", "member-units", "--fields", "name_zh,kind"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert sorted(r["id"] for r in listed["records"]) == sorted(mine.unit_ids)
    assert all(set(r) == {"id", "name_zh", "kind"} for r in listed["records"])
    assert "成员单位" in out.stdout  # UTF-8, not \u escapes

    grant = subprocess.run(
        [*base, "--grant", gid, "grant"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert grant.returncode == 0, grant.stderr
    assert json.loads(grant.stdout)["used"] == 1  # a whole number, as the HTTP API shows it

    bad = subprocess.run(
        [*base, "--grant", gid, "list", "grids"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    error = json.loads(bad.stderr)["error"]
    assert error["code"] == "PERMISSION_DENIED" and error["field"] == "operation:org.read:grids", error
    assert [e["outcome"] for e in grpc_calls(mongo_client, sub)] == ["allowed", "allowed", "refused"]
