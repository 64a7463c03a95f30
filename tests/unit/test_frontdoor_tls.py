"""The front door's transport (gateway/frontdoor_tls.py): mutual TLS with department client certificates mapped
to departments, plaintext on a loopback host only. A real FrontDoorServer on a free loopback port with the door's
stores faked (no stack): certificates are made by the test into a temporary directory (tests/tls_certs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hongling.frontdoor.v1 import frontdoor_pb2 as pb
from hongling.frontdoor.v1 import frontdoor_pb2_grpc as pb_grpc

from gateway.frontdoor import CERTIFICATE_MISMATCH, CERTIFICATE_UNKNOWN, Door, FrontDoorServer
from gateway.frontdoor_tls import ClientTable, TableError, TransportError, is_loopback, parse_table, plan
from gateway.tokens import TokenFile, TokenStore
from services.common.settings import Settings
from tests.conftest import REPO
from tests.tls_certs import Authority, Issued, server_dir

URI_A = "spiffe://hongling/department/dept-a"
TABLE = f"""
[[client]]
department = "dept-a"
uri = "{URI_A}"

[[client]]
department = "dept-b"
common_name = "dept-b.systems.example"
"""


@dataclass
class FakeAudit:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def append(self, **entry: Any) -> None:
        self.entries.append(entry)


class NoGrants:
    def grant(self, grant_id: str) -> None:
        return None


class NoClients:
    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Pki:
    ca: Authority
    server: Path  # HONGLING_FRONTDOOR_TLS_DIR
    a: Issued  # department A's system: URI SAN
    b: Issued  # department B's system: common name
    unlisted: Issued  # signed by the CA, not in the table
    stranger: Issued  # department A's names, signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = Authority(d, "ca")
    other = Authority(d / "other", "other")
    return Pki(
        ca,
        server_dir(ca, d / "server"),
        ca.issue("a", "dept-a.systems.example", uris=(URI_A,)),
        ca.issue("b", "dept-b.systems.example"),
        ca.issue("unlisted", "someone.example", uris=("spiffe://hongling/department/nobody",)),
        other.issue("stranger", "dept-a.systems.example", uris=(URI_A,)),
    )


def tls_settings(pki: Pki, tmp: Path, **kw: Any) -> Settings:
    clients = tmp / "clients.toml"
    clients.write_text(TABLE)
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "frontdoor_tls_dir": str(pki.server),
        "frontdoor_client_ca": str(pki.ca.issued.cert_path),
        "frontdoor_clients_file": str(clients),
        "api_tokens_file": str(tmp / "tokens.toml"),
    }
    values.update(kw)
    return Settings(**values)


@dataclass
class Running:
    target: str
    health_target: str
    audit: FakeAudit
    tokens: dict[str, str]
    ca: bytes


@pytest.fixture(scope="module")
def door(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("door")
    settings = tls_settings(pki, tmp)
    tokens = {
        sub: TokenFile(settings.api_tokens_file).create(sub, "district_department", ["*"], days=1)[0]
        for sub in ("dept-a", "dept-b")
    }
    tokens["ops"] = TokenFile(settings.api_tokens_file).create("ops-x", "ops", ["*"], days=1)[0]
    store = TokenStore(settings.api_tokens_file)
    store.load()
    audit = FakeAudit()
    d = Door(settings, tokens=store, sessions=None, clients=NoClients(), store=NoGrants(), audit=audit)  # type: ignore[arg-type]
    server = FrontDoorServer(d, port=0)
    server.start()
    try:
        yield Running(f"127.0.0.1:{server.port}", f"127.0.0.1:{server.health_port}", audit, tokens, pki.ca.pem)
    finally:
        server.stop(0)


def channel(run: Running, client: Issued | None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        run.ca, client.key_pem if client else None, client.cert_pem if client else None
    )
    return grpc.secure_channel(run.target, creds)


def get_grant(ch: grpc.Channel, token: str | None) -> grpc.RpcError:
    md = [("authorization", f"Bearer {token}")] if token else []
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.DepartmentGatewayStub(ch).GetGrant(pb.GetGrantRequest(grant_id="gr-none"), metadata=md, timeout=5)
    return info.value


def reason(err: Any) -> str:
    return str(dict(err.trailing_metadata() or ()).get("x-hongling-error-reason", ""))


# ---------------------------------------------------------------- the handshake


def test_a_plaintext_client_is_refused_by_the_tls_server(door: Running) -> None:
    with grpc.insecure_channel(door.target) as ch:
        err: Any = get_grant(ch, door.tokens["dept-a"])
    assert err.code() == grpc.StatusCode.UNAVAILABLE  # no TLS handshake: no call reaches the door


def test_a_client_without_a_certificate_is_refused(door: Running) -> None:
    with channel(door, None) as ch:
        err: Any = get_grant(ch, door.tokens["dept-a"])
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_of_another_ca_is_refused(door: Running, pki: Pki) -> None:
    with channel(door, pki.stranger) as ch:  # department A's names, the wrong signer
        err: Any = get_grant(ch, door.tokens["dept-a"])
    assert err.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------- certificate -> department, with the token


def test_department_a_certificate_with_a_token_is_admitted(door: Running, pki: Pki) -> None:
    with channel(door, pki.a) as ch:
        err: Any = get_grant(ch, door.tokens["dept-a"])
    # through the door's checks to the method, which finds no such grant (the fake store holds none)
    assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    with channel(door, pki.b) as ch:  # B's system is named by its common name
        assert get_grant(ch, door.tokens["dept-b"]).code() == grpc.StatusCode.NOT_FOUND


def test_department_a_certificate_with_b_token_is_refused_and_audited(door: Running, pki: Pki) -> None:
    before = len(door.audit.entries)
    with channel(door, pki.a) as ch:
        err: Any = get_grant(ch, door.tokens["dept-b"])
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason(err) == CERTIFICATE_MISMATCH
        assert "'dept-a'" in err.details() and "'dept-b'" in err.details()
        ops: Any = get_grant(ch, door.tokens["ops"])  # another role's token over a department's certificate
        assert ops.code() == grpc.StatusCode.PERMISSION_DENIED and reason(ops) == CERTIFICATE_MISMATCH
    new = door.audit.entries[before:]
    assert [(e["actor"], e["outcome"], e["detail"]["reason"]) for e in new] == [
        ("dept-b", "refused", CERTIFICATE_MISMATCH),
        ("ops-x", "refused", CERTIFICATE_MISMATCH),
    ]
    assert new[0]["detail"]["certificate_department"] == "dept-a" and new[0]["detail"]["door"] == "grpc"


def test_a_certificate_not_in_the_table_is_unauthenticated(door: Running, pki: Pki) -> None:
    with channel(door, pki.unlisted) as ch:
        err: Any = get_grant(ch, door.tokens["dept-a"])
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and reason(err) == CERTIFICATE_UNKNOWN
    assert "spiffe://hongling/department/nobody" in err.details()


def test_a_known_certificate_without_a_token_is_unauthenticated(door: Running, pki: Pki) -> None:
    with channel(door, pki.a) as ch:
        err: Any = get_grant(ch, None)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "dept-a" in err.details()


def test_health_is_served_over_mtls_and_alone_in_plaintext_for_probes(door: Running, pki: Pki) -> None:
    with channel(door, pki.a) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
    with grpc.insecure_channel(door.health_target) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        with pytest.raises(grpc.RpcError) as info:  # the department methods are not on the health port
            pb_grpc.DepartmentGatewayStub(ch).GetGrant(pb.GetGrantRequest(grant_id="x"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------- start-up: plaintext on loopback only


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "frontdoor.example"])
def test_hosts_that_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_plaintext_is_planned_on_loopback_only() -> None:
    assert not plan(Settings(host="127.0.0.1")).mtls
    for mode in ("auto", "off"):
        with pytest.raises(TransportError) as info:
            plan(Settings(host="0.0.0.0", frontdoor_tls=mode))
        message = str(info.value)
        for var in ("HONGLING_FRONTDOOR_TLS_DIR", "HONGLING_FRONTDOOR_CLIENT_CA", "HONGLING_FRONTDOOR_CLIENTS_FILE"):
            assert var in message
        assert "0.0.0.0" in message


def test_mtls_mode_without_its_files_names_what_is_missing(pki: Pki) -> None:
    with pytest.raises(TransportError) as info:
        plan(Settings(host="127.0.0.1", frontdoor_tls="mtls", frontdoor_tls_dir=str(pki.server)))
    assert "HONGLING_FRONTDOOR_CLIENT_CA, HONGLING_FRONTDOOR_CLIENTS_FILE" in str(info.value)
    with pytest.raises(TransportError, match="cannot read the server certificate"):
        plan(
            Settings(
                host="0.0.0.0",
                frontdoor_tls_dir="/nonexistent",
                frontdoor_client_ca=str(pki.ca.issued.cert_path),
                frontdoor_clients_file="/nonexistent.toml",
            )
        )


def test_mtls_is_planned_on_any_host_with_its_files(pki: Pki, tmp_path: Path) -> None:
    assert plan(tls_settings(pki, tmp_path, host="0.0.0.0")).mtls


def test_the_process_refuses_to_start_in_plaintext_on_a_public_host_with_a_message() -> None:
    env = {**os.environ, "HONGLING_HOST": "0.0.0.0", "HONGLING_FRONTDOOR_TLS_DIR": "", "HONGLING_FRONTDOOR_TLS": ""}
    env = {k: v for k, v in env.items() if v != "" or not k.startswith("HONGLING_FRONTDOOR_TLS")}
    run = subprocess.run(
        [sys.executable, "-m", "gateway.frontdoor"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "refusing to serve the front door in plaintext on 0.0.0.0" in run.stderr
    assert "HONGLING_FRONTDOOR_TLS_DIR" in run.stderr


# ---------------------------------------------------------------- the table


def test_the_table_prefers_the_uri_san_and_falls_back_to_the_common_name(tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(TABLE)
    table = ClientTable(path)
    table.load()
    both = {"peer_uri": [URI_A.encode()], "x509_common_name": [b"dept-b.systems.example"]}
    assert table.identify(both).department == "dept-a"  # type: ignore[union-attr]
    assert table.identify({"x509_common_name": [b"dept-b.systems.example"]}).department == "dept-b"  # type: ignore[union-attr]
    assert table.identify({"x509_common_name": [b"dept-a.systems.example"]}) is None
    assert table.identify({}) is None
    # re-read when the file changes: a department added without a restart
    path.write_text(TABLE + '\n[[client]]\ndepartment = "dept-c"\ncommon_name = "c.example"\n')
    os.utime(path, ns=(1, 1))
    assert table.identify({"x509_common_name": [b"c.example"]}).department == "dept-c"  # type: ignore[union-attr]
    # a broken change keeps the last good table
    path.write_text("[[client]]\ndepartment = 3\n")
    assert table.identify({"x509_common_name": [b"c.example"]}).department == "dept-c"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text, complaint",
    [
        ('[[client]]\ndepartment = "d"\n', "by uri (a URI SAN) or common_name"),
        ('[[client]]\ndepartment = "not a sub"\ncommon_name = "x"\n', "is not a token sub"),
        ('[[client]]\ndepartment = "a"\nuri = "u:1"\n[[client]]\ndepartment = "b"\nuri = "u:1"\n', "already stands"),
        ('[[client]]\ndepartment = "a"\ncn = "x"\n', "only department, uri and common_name"),
        ("client = 1\n", "[[client]]"),
        ("[[client]\n", "not valid TOML"),
    ],
)
def test_a_broken_table_is_refused_naming_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(TableError) as info:
        parse_table(text)
    assert complaint in str(info.value)


def test_the_healthcheck_probes_the_plaintext_health_port_under_mtls() -> None:
    from services.common.healthcheck import port_of

    # The ports given, not derived from the port base: `make test` exports every HONGLING_*_PORT of its stack.
    ports = {"frontdoor_port": 20050, "frontdoor_health_port": 20049}
    assert port_of(Settings(**ports), "frontdoor") == 20050
    mtls = Settings(**ports, frontdoor_tls="mtls", frontdoor_tls_dir="/etc/hongling/frontdoor-tls")
    assert port_of(mtls, "frontdoor") == 20049
