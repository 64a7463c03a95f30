"""The front door's transport: mutual TLS for district-department systems, plaintext for loopback development only.

Settings (services/common/settings.py):

- HONGLING_FRONTDOOR_TLS: `auto` (default: mutual TLS when HONGLING_FRONTDOOR_TLS_DIR is set, else plaintext),
  `mtls` (mutual TLS, and refuse to start without its files) or `off` (plaintext);
- HONGLING_FRONTDOOR_TLS_DIR: a directory holding the front door's server certificate chain `tls.crt` and its
  private key `tls.key` (the layout of a kubernetes.io/tls Secret, as cert-manager writes it);
- HONGLING_FRONTDOOR_CLIENT_CA: the PEM bundle of the CA(s) that sign departments' client certificates;
- HONGLING_FRONTDOOR_CLIENTS_FILE: the table of client certificates -> departments (TOML, below).

Plaintext is served only on a loopback host (127.0.0.1, ::1, localhost): on any other host without TLS the
front door refuses to start, naming the variables to set (`plan`, raising TransportError).

With mutual TLS a client must present a certificate the client CA signed (else the handshake fails: no call
reaches the door), and the certificate must be in the table (else UNAUTHENTICATED, `certificate_unknown`).
The table names, for each department system, its certificate's URI SAN (preferred, e.g.
spiffe://hongling/department/<sub>) or its subject common name, and the department: the `sub` of the
department's API tokens (role district_department, `python -m gateway.tokens create --role
district_department --sub <sub>`):

    [[client]]
    department = "dept-minzheng"                                  # the department's token sub
    uri = "spiffe://hongling/department/dept-minzheng"            # a URI SAN of its certificate, and/or
    common_name = "dept-minzheng.systems.example.gov.cn"          # its subject CN

The certificate authenticates the department's *system*; the bearer token still authenticates the department
and carries its role and tenants. Both must name the same department: a token of another department (or of
another role) over a department's certificate is refused PERMISSION_DENIED, `certificate_mismatch`, and
audited (gateway/frontdoor.py). The table is re-read when its file changes (no restart to add a department).
"""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import grpc

from gateway.tokens import SUB_RE
from services.common.settings import Settings

log = logging.getLogger("gateway.frontdoor")

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
URI_SAN = "peer_uri"  # grpc's auth_context: the peer certificate's URI SANs
COMMON_NAME = "x509_common_name"
HOW_TO_ENABLE = (
    "set HONGLING_FRONTDOOR_TLS_DIR (a directory with tls.crt and tls.key, the front door's server certificate "
    "and key), HONGLING_FRONTDOOR_CLIENT_CA (the CA bundle that signs department client certificates) and "
    "HONGLING_FRONTDOOR_CLIENTS_FILE (client certificate -> department table); see docs/runbook.md "
    '"Front door TLS"'
)


class TransportError(Exception):
    """The front door cannot serve as configured: the message says what to set."""


class TableError(Exception):
    """The client certificate table cannot be read as a whole."""


def is_loopback(host: str) -> bool:
    """Whether the host is this machine only (127.0.0.0/8, ::1, localhost); 0.0.0.0 and :: are not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Client:
    """A department system's client certificate, as the table names it."""

    department: str  # the department's token sub
    uri: str = ""
    common_name: str = ""


@dataclass(frozen=True)
class CertIdentity:
    """Whom a verified client certificate stands for, and which of its names said so."""

    department: str
    matched: str  # "uri:<uri>" or "cn:<common name>"


def parse_table(text: str, source: str = "clients file") -> tuple[Client, ...]:
    """The table's entries, checked: each names a department and a URI SAN and/or a common name, no name twice."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TableError(f"{source}: not valid TOML: {exc}") from None
    entries = data.get("client", [])
    unknown = set(data) - {"client"}
    if unknown or not isinstance(entries, list):
        raise TableError(f"{source}: expected only [[client]] tables, found {sorted(unknown) or 'client'}")
    clients: list[Client] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(entries, 1):
        where = f"{source}: client #{i}"
        if not isinstance(entry, dict) or set(entry) - {"department", "uri", "common_name"}:
            raise TableError(f"{where}: only department, uri and common_name are known")
        values = {k: entry.get(k, "") for k in ("department", "uri", "common_name")}
        if not all(isinstance(v, str) for v in values.values()):
            raise TableError(f"{where}: department, uri and common_name are strings")
        department, uri, cn = (values[k].strip() for k in ("department", "uri", "common_name"))
        if not SUB_RE.match(department):
            raise TableError(f"{where}: department {department!r} is not a token sub (the department's API token)")
        if not uri and not cn:
            raise TableError(f"{where}: name the certificate by uri (a URI SAN) or common_name (its subject CN)")
        for name in (f"uri:{uri}" if uri else "", f"cn:{cn}" if cn else ""):
            if name and seen.setdefault(name, department) != department:
                raise TableError(f"{where}: {name} already stands for {seen[name]!r}; one certificate, one department")
        clients.append(Client(department, uri, cn))
    return tuple(clients)


def _names(auth_context: Mapping[str, Sequence[bytes]], key: str) -> list[str]:
    return [v.decode("utf-8", "replace") for v in auth_context.get(key, ())]


class ClientTable:
    """The client certificate table of HONGLING_FRONTDOOR_CLIENTS_FILE, re-read when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_uri: dict[str, str] = {}
        self._by_cn: dict[str, str] = {}

    def load(self) -> None:
        """Read the file; TableError if it cannot be read. A later change that is broken keeps the last good table."""
        try:
            st = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TableError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        clients = parse_table(text, str(self.path))
        with self._lock:
            self._by_uri = {c.uri: c.department for c in clients if c.uri}
            self._by_cn = {c.common_name: c.department for c in clients if c.common_name}
            self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        log.info("front door client certificates: %d departments (%s)", len({c.department for c in clients}), self.path)

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return  # gone for a moment (a ConfigMap being swapped): keep the table
        if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
            try:
                self.load()
            except TableError as exc:
                log.error("front door client table not reloaded, keeping the last good one: %s", exc)
                self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def identify(self, auth_context: Mapping[str, Sequence[bytes]]) -> CertIdentity | None:
        """The department a verified peer certificate stands for (a URI SAN first, then the subject CN), or None."""
        self._refresh()
        with self._lock:
            for uri in _names(auth_context, URI_SAN):
                if uri in self._by_uri:
                    return CertIdentity(self._by_uri[uri], f"uri:{uri}")
            for cn in _names(auth_context, COMMON_NAME):
                if cn in self._by_cn:
                    return CertIdentity(self._by_cn[cn], f"cn:{cn}")
        return None


def describe_certificate(auth_context: Mapping[str, Sequence[bytes]]) -> str:
    """The names of a peer certificate, for a refusal's message and the log (URI SANs, then the CN)."""
    names = [f"uri:{u}" for u in _names(auth_context, URI_SAN)] + [f"cn:{c}" for c in _names(auth_context, COMMON_NAME)]
    return ", ".join(names) or "no URI SAN and no common name"


@dataclass(frozen=True)
class Transport:
    """How the front door listens: plaintext (credentials None, loopback only) or mutual TLS with its table."""

    credentials: grpc.ServerCredentials | None = None
    clients: ClientTable | None = None

    @property
    def mtls(self) -> bool:
        return self.credentials is not None


def _read(path: Path, what: str, variable: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TransportError(f"cannot read {what} {path} ({variable}): {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TransportError(f"{what} {path} ({variable}) is not PEM")
    return data


def plan(settings: Settings) -> Transport:
    """How the front door listens under these settings, or TransportError saying what to set (never a trace)."""
    mode = settings.frontdoor_tls
    if not settings.frontdoor_mtls():
        if not is_loopback(settings.host):
            raise TransportError(
                f"refusing to serve the front door in plaintext on {settings.host} (HONGLING_HOST): plaintext is for "
                f"a loopback host only (127.0.0.1, ::1). To serve department systems, {HOW_TO_ENABLE}"
                + (" and unset HONGLING_FRONTDOOR_TLS=off" if mode == "off" else "")
                + "; for local development set HONGLING_HOST=127.0.0.1."
            )
        return Transport()
    missing = [
        var
        for var, value in (
            ("HONGLING_FRONTDOOR_TLS_DIR", settings.frontdoor_tls_dir),
            ("HONGLING_FRONTDOOR_CLIENT_CA", settings.frontdoor_client_ca),
            ("HONGLING_FRONTDOOR_CLIENTS_FILE", settings.frontdoor_clients_file),
        )
        if not value.strip()
    ]
    if missing:
        raise TransportError(f"mutual TLS needs {', '.join(missing)}: {HOW_TO_ENABLE}")
    tls_dir = Path(settings.frontdoor_tls_dir)
    chain = _read(tls_dir / CERT_FILE, "the server certificate", "HONGLING_FRONTDOOR_TLS_DIR")
    key = _read(tls_dir / KEY_FILE, "the server key", "HONGLING_FRONTDOOR_TLS_DIR")
    ca = _read(Path(settings.frontdoor_client_ca), "the client CA bundle", "HONGLING_FRONTDOOR_CLIENT_CA")
    table = ClientTable(settings.frontdoor_clients_file)
    try:
        table.load()
    except TableError as exc:
        raise TransportError(f"HONGLING_FRONTDOOR_CLIENTS_FILE: {exc}") from None
    credentials = grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=True)
    return Transport(credentials, table)
