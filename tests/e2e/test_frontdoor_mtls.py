"""The front door under mutual TLS, against the running stack: a front door of the test's own (a FrontDoorServer
on a free loopback port, with the stack's settings, token file and databases) serving certificates made by the
test (tests/tls_certs.py). Department A's system reads A's grant with A's token; its certificate with
department B's token is refused PERMISSION_DENIED and the refusal is in the audit log; a plaintext client, a
client without a certificate and one whose certificate another CA signed never reach the door.
(The handshake and the table in detail, without the stack: tests/unit/test_frontdoor_tls.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from hongling.frontdoor.v1 import frontdoor_pb2 as pb
from hongling.frontdoor.v1 import frontdoor_pb2_grpc as pb_grpc
from pymongo import MongoClient

from gateway.frontdoor import CERTIFICATE_MISMATCH, Door, FrontDoorServer
from services.common.audit import DATABASE as AUDIT
from tests.conftest import System
from tests.e2e.test_department_access import community
from tests.e2e.test_frontdoor import bearer, grant_for
from tests.e2e.test_governance import department
from tests.tls_certs import Authority, Issued, server_dir


@dataclass(frozen=True)
class MtlsDoor:
    target: str
    ca: bytes
    a: Issued
    stranger: Issued
    subs: tuple[str, str]  # departments A and B
    headers: tuple[dict[str, str], dict[str, str]]


@pytest.fixture(scope="module")
def mtls_door(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtlsDoor]:
    d: Path = tmp_path_factory.mktemp("frontdoor-pki")
    ca = Authority(d, "ca")
    other = Authority(d / "other", "other")
    (sub_a, h_a), (sub_b, h_b) = department(system), department(system)
    a = ca.issue("a", f"{sub_a}.systems.example", uris=(f"spiffe://hongling/department/{sub_a}",))
    b = ca.issue("b", f"{sub_b}.systems.example")
    stranger = other.issue("stranger", f"{sub_a}.systems.example", uris=(f"spiffe://hongling/department/{sub_a}",))
    assert b.cert_path.exists()
    clients = d / "clients.toml"
    clients.write_text(
        f'[[client]]\ndepartment = "{sub_a}"\nuri = "spiffe://hongling/department/{sub_a}"\n\n'
        f'[[client]]\ndepartment = "{sub_b}"\ncommon_name = "{sub_b}.systems.example"\n'
    )
    settings = system.settings.model_copy(
        update={
            "host": "127.0.0.1",
            "api_tokens_file": str(system.tokens_file),
            "frontdoor_tls": "mtls",
            "frontdoor_tls_dir": str(server_dir(ca, d / "server")),
            "frontdoor_client_ca": str(ca.issued.cert_path),
            "frontdoor_clients_file": str(clients),
        }
    )
    server = FrontDoorServer(Door.open(settings), port=0)
    server.start()
    try:
        yield MtlsDoor(f"127.0.0.1:{server.port}", ca.pem, a, stranger, (sub_a, sub_b), (h_a, h_b))
    finally:
        server.stop(1)


def stub(door: MtlsDoor, client: Issued | None) -> tuple[grpc.Channel, pb_grpc.DepartmentGatewayStub]:
    creds = grpc.ssl_channel_credentials(
        door.ca, client.key_pem if client else None, client.cert_pem if client else None
    )
    ch = grpc.secure_channel(door.target, creds)
    return ch, pb_grpc.DepartmentGatewayStub(ch)


def test_department_a_certificate_and_token_read_its_grant_and_b_token_is_refused_and_audited(
    system: System, mtls_door: MtlsDoor, mongo_client: MongoClient[Any]
) -> None:
    h_a, h_b = mtls_door.headers
    sub_a, sub_b = mtls_door.subs
    gid = grant_for(system, community(system), h_a)["id"]
    ch, a = stub(mtls_door, mtls_door.a)
    with ch:
        got = a.GetGrant(pb.GetGrantRequest(grant_id=gid), metadata=bearer(h_a), timeout=15)
        assert json_format.MessageToDict(got.grant)["id"] == gid
        with pytest.raises(grpc.RpcError) as info:
            a.GetGrant(pb.GetGrantRequest(grant_id=gid), metadata=bearer(h_b), timeout=15)
    err: Any = info.value
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.details()
    assert dict(err.trailing_metadata())["x-hongling-error-reason"] == CERTIFICATE_MISMATCH
    assert sub_a in err.details() and sub_b in err.details()
    refused = list(mongo_client[AUDIT]["entries"].find({"actor": sub_b, "detail.reason": CERTIFICATE_MISMATCH}))
    assert len(refused) == 1 and refused[0]["outcome"] == "refused" and refused[0]["detail"]["door"] == "grpc"
    assert refused[0]["detail"]["certificate_department"] == sub_a


def test_plaintext_no_certificate_and_another_ca_never_reach_the_door(mtls_door: MtlsDoor) -> None:
    h_a = mtls_door.headers[0]
    request = pb.GetGrantRequest(grant_id="gr-none")
    plain = grpc.insecure_channel(mtls_door.target)
    for ch, call in (
        (plain, pb_grpc.DepartmentGatewayStub(plain)),
        stub(mtls_door, None),
        stub(mtls_door, mtls_door.stranger),
    ):
        with ch, pytest.raises(grpc.RpcError) as info:
            call.GetGrant(request, metadata=bearer(h_a), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
