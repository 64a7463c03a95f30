"""The gRPC front door's policy: one POLICY line per DepartmentGateway method, the same grant rules as the
HTTP routes, and the door's refusals in-process (no services, no database: a stand-in store and audit log).
tests/e2e/test_frontdoor.py drives the running front door with real grants."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hongling.frontdoor.v1 import frontdoor_pb2 as pb
from hongling.frontdoor.v1 import frontdoor_pb2_grpc as pb_grpc

from gateway import frontdoor, policy
from gateway.clients import Clients
from gateway.frontdoor import SERVICE, SERVICE_NAME, Door, FrontDoorServer, peer_address
from gateway.governance.domain import ASSISTANCE_OPERATION
from gateway.governance.store import GovernanceStore
from gateway.identity import ANONYMOUS, Identity
from gateway.policy import FRONTDOOR, POLICY, decide
from gateway.tokens import TOKEN_ROLES, TokenFile, TokenStore
from services.common.audit import AuditLog
from services.common.principal import Principal
from services.common.settings import Settings

GRANT_METHODS = ("ListOrgRecords", "GetOrgRecord", "HandOverTask")


# ---------------------------------------------------------------- the table


def test_every_front_door_method_has_a_policy_line_and_every_line_a_method() -> None:
    methods = {f"{FRONTDOOR}{m.name}" for m in SERVICE.methods}
    lines = {k for k in POLICY if k.startswith(FRONTDOOR)}
    assert methods == lines


def test_the_front_door_applies_the_http_routes_grant_rules() -> None:
    assert POLICY["frontdoor.ListOrgRecords"].grant == POLICY["org.list_items"].grant == "org.read:{collection}"
    assert POLICY["frontdoor.GetOrgRecord"].grant == POLICY["org.get_item"].grant
    assert POLICY["frontdoor.HandOverTask"].grant == POLICY["issues.hand_over_task"].grant == ASSISTANCE_OPERATION
    for name in GRANT_METHODS:
        rule = POLICY[f"{FRONTDOOR}{name}"]
        assert rule.roles == frozenset() and rule.tenant_scoped, name  # departments under a grant, nobody else
    grants = POLICY["frontdoor.GetGrant"]
    assert grants.roles == {"district_department"} and not grants.tenant_scoped and not grants.grant


def identity(role: str, *tenants: str) -> Identity:
    return Identity(Principal(sub=f"t-{role}", role=role, tenants=tenants or ("*",)), token_id="tok_1")


@pytest.mark.parametrize("name", GRANT_METHODS)
def test_role_matrix_of_the_grant_methods(name: str) -> None:
    rule = POLICY[f"{FRONTDOOR}{name}"]
    _, refusal = decide(rule, name, ANONYMOUS, "taiqian", local=False)
    assert refusal is not None and refusal.status == 401
    for role in TOKEN_ROLES:
        for scope in ("taiqian", "daimiao", "*"):
            principal, refusal = decide(rule, name, identity(role, scope), "taiqian", local=False)
            if role == "district_department" and scope != "daimiao":
                assert refusal is None and principal is not None, (role, scope)
            else:
                assert refusal is not None and refusal.status == 403, (role, scope)


def test_peer_addresses() -> None:
    assert peer_address("ipv4:127.0.0.1:50312") == "127.0.0.1"
    assert peer_address("ipv6:[::1]:50312") == "::1"
    assert peer_address("unix:/tmp/x") == "unix:/tmp/x"


# ---------------------------------------------------------------- the door in-process


class NoNetwork:
    """Stands in for gateway.clients.Clients: any service call fails the test."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unit tests make no service calls (tried clients.{name})")


@dataclass
class Appended:
    seq: int


@dataclass
class FakeAudit:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def append(self, **entry: Any) -> Appended:
        self.entries.append(entry)
        return Appended(len(self.entries))


class NoGrants:
    """A governance store without any grant."""

    def grant(self, grant_id: str, *, trail: bool = True) -> None:
        return None

    def link_audit(self, grant_id: str, seq: int) -> None:
        raise AssertionError("no grant, no link")


@dataclass
class Running:
    stub: pb_grpc.DepartmentGatewayStub
    channel: grpc.Channel
    audit: FakeAudit
    tokens: Path

    def md(self, role: str, tenants: tuple[str, ...] = ("*",), sub: str = "") -> list[tuple[str, str]]:
        community = None
        if role == "community_worker":  # works for one community of one tenant
            tenants, community = ("taiqian",), "c-1"
        token, _ = TokenFile(self.tokens).create(sub or f"unit-{role}", role, list(tenants), community=community)
        return [("authorization", f"Bearer {token}")]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    tokens = tmp_path / "api-tokens.toml"
    settings = Settings(api_tokens_file=str(tokens))
    audit = FakeAudit()
    door = Door(
        settings,
        tokens=TokenStore(str(tokens)),
        sessions=None,
        clients=cast(Clients, NoNetwork()),
        store=cast(GovernanceStore, NoGrants()),
        audit=cast(AuditLog, audit),
    )
    server = FrontDoorServer(door, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield Running(pb_grpc.DepartmentGatewayStub(channel), channel, audit, tokens)
    channel.close()
    server.stop(0)


def refused(call: Any, code: grpc.StatusCode) -> dict[str, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    assert err.code() == code, err.details()
    trailing = dict(err.trailing_metadata())
    assert err.details() and trailing["x-request-id"]
    return {"message": err.details(), **trailing}


LIST = pb.ListOrgRecordsRequest(tenant="taiqian", collection="member-units")


def test_health_and_reflection_are_open(running: Running) -> None:
    resp = health_pb2_grpc.HealthStub(running.channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert SERVICE_NAME in {s.name for s in answers[0].list_services_response.service}


def test_no_token_or_a_bad_one_is_unauthenticated(running: Running) -> None:
    err = refused(lambda: running.stub.ListOrgRecords(LIST), grpc.StatusCode.UNAUTHENTICATED)
    assert err["x-hongling-error-reason"] == "unauthenticated" and "Bearer" in err["message"]
    bad = [("authorization", "Bearer hl_" + "q" * 43)]
    refused(
        lambda: running.stub.GetGrant(pb.GetGrantRequest(grant_id="gr-x"), metadata=bad),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    refused(
        lambda: running.stub.ListOrgRecords(LIST, metadata=[("authorization", "Basic x")]),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert running.audit.entries == []  # nobody known: nothing to attribute


def test_other_roles_are_refused_and_a_department_without_a_grant_is_told_so(running: Running) -> None:
    for role in ("community_worker", "subdistrict_admin", "district_approver", "resident", "ops"):
        err = refused(
            lambda r=role: running.stub.ListOrgRecords(LIST, metadata=running.md(r)), grpc.StatusCode.PERMISSION_DENIED
        )
        assert err["x-hongling-error-reason"] == "forbidden" and role in err["message"], err
        refused(
            lambda r=role: running.stub.GetGrant(pb.GetGrantRequest(grant_id="gr-x"), metadata=running.md(r)),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    assert running.audit.entries == []  # not department calls

    dept = running.md("district_department", sub="unit-dept")
    err = refused(lambda: running.stub.ListOrgRecords(LIST, metadata=dept), grpc.StatusCode.PERMISSION_DENIED)
    assert err["x-hongling-error-reason"] == "outside_grant" and err["x-hongling-error-field"] == "grant"
    assert "grant_id: gr-" in err["message"] and "X-Hongling-Grant" not in err["message"]  # this door's words
    assert "超出授权范围" in err["message"]
    task = pb.HandOverTaskRequest(tenant="taiqian", grant_id="gr-nope", title="协助")
    assert (
        refused(lambda: running.stub.HandOverTask(task, metadata=dept), grpc.StatusCode.PERMISSION_DENIED)[
            "x-hongling-error-field"
        ]
        == "grant"
    )
    err = refused(
        lambda: running.stub.ListOrgRecords(pb.ListOrgRecordsRequest(), metadata=dept), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err["x-hongling-error-field"] == "tenant"
    unknown = pb.ListOrgRecordsRequest(tenant="gotham", collection="people")
    assert (
        refused(lambda: running.stub.ListOrgRecords(unknown, metadata=dept), grpc.StatusCode.NOT_FOUND)[
            "x-hongling-error-reason"
        ]
        == "unknown_tenant"
    )
    scoped = running.md("district_department", ("daimiao",), sub="unit-dept")
    assert (
        refused(lambda: running.stub.ListOrgRecords(LIST, metadata=scoped), grpc.StatusCode.PERMISSION_DENIED)[
            "x-hongling-error-reason"
        ]
        == "tenant_out_of_scope"
    )
    # Its own grants only: none here.
    assert (
        refused(
            lambda: running.stub.GetGrant(pb.GetGrantRequest(grant_id="gr-" + "0" * 28), metadata=dept),
            grpc.StatusCode.NOT_FOUND,
        )["x-hongling-error-field"]
        == "grant_id"
    )

    entries = running.audit.entries
    assert all(e["action"] == "department.call" and e["actor"] == "unit-dept" for e in entries)
    assert all(e["detail"]["door"] == "grpc" and e["detail"]["method"].startswith(f"/{SERVICE_NAME}/") for e in entries)
    assert [(e["outcome"], e["detail"].get("missing") or e["detail"].get("reason")) for e in entries] == [
        ("refused", "grant"),
        ("refused", "grant"),
        ("refused", "invalid_argument"),
        ("refused", "unknown_tenant"),
        ("refused", "tenant_out_of_scope"),
        ("allowed", None),  # GetGrant: a department's call outside any grant, then NOT_FOUND
    ]


def test_a_method_without_a_policy_line_is_refused_to_all(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(policy.POLICY, "frontdoor.GetGrant")
    assert frontdoor.POLICY is policy.POLICY
    dept = running.md("district_department")
    err = refused(
        lambda: running.stub.GetGrant(pb.GetGrantRequest(grant_id="gr-x"), metadata=dept),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "default deny" in err["message"]
