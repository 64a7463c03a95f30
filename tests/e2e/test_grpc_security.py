"""Services refuse calls without a valid principal, and scope every call to its tenant (real gRPC)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hongling.common.v1 import location_pb2
from hongling.intake.v1 import intake_pb2, intake_pb2_grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from services.common.settings import FORMER_BUILT_IN, SERVICES
from tests.conftest import TEST_POINT, System, call_metadata, wait_for

NEW = intake_pb2.CreateIssueRequest(
    title="路灯不亮",
    description="小区门口路灯坏了",
    channel="grid_patrol",
    location=location_pb2.Location(lat=TEST_POINT[0], lon=TEST_POINT[1], address="岱庙街道"),
)


def intake(system: System) -> intake_pb2_grpc.IntakeServiceStub:
    return intake_pb2_grpc.IntakeServiceStub(system.channel("intake"))


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as exc:
        call()  # type: ignore[operator]
    return exc.value.code()  # type: ignore[attr-defined, no-any-return]


def test_call_without_principal_is_unauthenticated(system: System) -> None:
    assert code_of(lambda: intake(system).CreateIssue(NEW, metadata=[(TENANT_KEY, "daimiao")], timeout=5)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_forged_and_expired_principals_are_refused(system: System) -> None:
    p = Principal(sub="mallory", role="subdistrict_admin", tenants=("daimiao",))
    forged = mint(p, "not-the-gateway-secret-but-long-enough-0123456789")
    expired = mint(p, system.settings.principal_secret, ttl_seconds=5, now=time.time() - 120)
    for token in (forged, expired, "garbage"):
        md = [(METADATA_KEY, token), (TENANT_KEY, "daimiao")]
        assert code_of(lambda md=md: intake(system).CreateIssue(NEW, metadata=md, timeout=5)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )


def test_principal_signed_with_the_former_built_in_secret_is_refused(system: System) -> None:
    """The published secret of earlier versions signs nothing a service accepts (the stack has its own)."""
    p = Principal(sub="mallory", role="subdistrict_admin", tenants=("*",))
    md = [(METADATA_KEY, mint(p, FORMER_BUILT_IN["principal_secret"])), (TENANT_KEY, "taiqian")]
    listing = intake_pb2.ListIssuesRequest()
    assert (
        code_of(lambda: intake(system).ListIssues(listing, metadata=md, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    )
    org = org_pb2_grpc.OrgServiceStub(system.channel("org"))
    assert code_of(lambda: org.ListTenants(org_pb2.ListTenantsRequest(), metadata=md[:1], timeout=5)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # The same call signed with the stack's own secret is answered: it is the secret that is refused.
    intake(system).ListIssues(listing, metadata=call_metadata(system.settings, "taiqian"), timeout=5)


def test_principal_of_one_tenant_cannot_act_on_another(system: System) -> None:
    md = call_metadata(system.settings, "daimiao", scope=("taiqian",))
    with pytest.raises(grpc.RpcError) as exc:
        intake(system).ListIssues(intake_pb2.ListIssuesRequest(), metadata=md, timeout=5)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "daimiao" in exc.value.details()


def test_issue_of_one_tenant_is_invisible_from_another_at_grpc(system: System) -> None:
    created = intake(system).CreateIssue(NEW, metadata=call_metadata(system.settings, "taiqian"), timeout=5)
    with pytest.raises(grpc.RpcError) as exc:
        intake(system).GetIssue(
            intake_pb2.GetIssueRequest(id=created.id), metadata=call_metadata(system.settings, "daimiao"), timeout=5
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    same = intake(system).GetIssue(
        intake_pb2.GetIssueRequest(id=created.id), metadata=call_metadata(system.settings, "taiqian"), timeout=5
    )
    assert same.title == "路灯不亮"


def test_domain_errors_map_to_status_codes_with_readable_messages(system: System) -> None:
    bad = intake_pb2.CreateIssueRequest(
        title="", description="x", channel="online", location=location_pb2.Location(address="a")
    )
    with pytest.raises(grpc.RpcError) as exc:
        intake(system).CreateIssue(bad, metadata=call_metadata(system.settings, "taiqian"), timeout=5)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "title is required" in exc.value.details()
    assert dict(exc.value.trailing_metadata())["x-hongling-error-field"] == "title"
    with pytest.raises(grpc.RpcError) as exc:
        intake(system).CreateIssue(NEW, metadata=call_metadata(system.settings, "gotham", scope=("*",)), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown tenant 'gotham'" in exc.value.details()


def test_tenantless_method_needs_a_principal_but_no_tenant(system: System) -> None:
    org = org_pb2_grpc.OrgServiceStub(system.channel("org"))
    resp = org.ListTenants(org_pb2.ListTenantsRequest(), metadata=call_metadata(system.settings, None), timeout=5)
    assert [t.name_zh for t in resp.tenants][:3] == ["岱庙街道", "财源街道", "泰前街道"]
    assert code_of(lambda: org.ListTenants(org_pb2.ListTenantsRequest(), timeout=5)) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_serves_health_reflection_and_metrics(system: System, service: str) -> None:
    ch = system.channel(service)
    health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    responses = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    )
    names = {s.name for s in responses[0].list_services_response.service}
    if service == "alliance":  # one service per area (services/alliance/areas.py)
        assert any(n.startswith("hongling.alliance.v1.") for n in names), names
    else:
        assert f"hongling.{service}.v1.{service.capitalize()}Service" in names
    assert "grpc.health.v1.Health" in names
    metrics = requests.get(f"http://127.0.0.1:{system.settings.metrics_port(service)}/metrics", timeout=5).text
    assert "grpc_server_handled_total" in metrics


def test_refusals_are_counted_with_their_code(system: System) -> None:
    code_of(lambda: intake(system).GetIssue(intake_pb2.GetIssueRequest(id="x"), timeout=5))
    metrics = requests.get(f"http://127.0.0.1:{system.settings.metrics_port('intake')}/metrics", timeout=5).text
    assert 'grpc_code="UNAUTHENTICATED",grpc_method="GetIssue"' in metrics


def test_sigterm_shuts_a_service_down_gracefully(system: System) -> None:
    pid_file = Path(system.settings_state_dir) / "run" / "publication.pid"
    log_file = Path(system.settings_state_dir) / "logs" / "publication.log"
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=15)
    last = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines() if line.startswith("{")][-2:]
    assert [r["message"] for r in last] == ["publication shutting down", "publication stopped"]
    assert all(r["service"] == "publication" and r["level"] == "INFO" for r in last)
    pid_file.unlink()
    system.start("publication")
