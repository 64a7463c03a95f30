"""Settings from the environment, validated once at start-up.

Every port derives from HONGLING_PORT_BASE (default 17000) unless set on its own, matching
deploy/local/env.sh, so a second checkout runs beside the first by changing that one variable.
A bad value stops the process with a message naming the variable and what is expected.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from ipaddress import ip_network
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("org", "intake", "dispatch", "evaluation", "publication", "alliance")
# Offsets from HONGLING_PORT_BASE: gRPC port, metrics port. The projector (python -m services.projector) keeps
# the SQL read models and serves health and metrics only; alliance (联盟共建: meetings, posts, resources,
# activities, hours, funds) came after it, hence 57.
SERVICE_PORT_OFFSETS = {name: (51 + i, 151 + i) for i, name in enumerate(SERVICES[:5])}
SERVICE_PORT_OFFSETS["projector"] = (56, 156)
SERVICE_PORT_OFFSETS["alliance"] = (57, 157)
# The secrets every process needs; none has a default. Locally deploy/local/secrets.sh generates them once
# into $HONGLING_STATE_DIR/secrets.env and deploy/local/env.sh loads that file (a value already set in the
# environment wins); any other deployment sets them itself (docker-compose.yml requires them).
SECRET_SETTINGS = ("principal_secret", "data_key", "audit_signing_key", "session_secret")
# During a rotation (docs/runbook.md, 轮换密钥): the other secret of each pair, accepted to verify or to open and
# never used to sign or to seal; unset outside a rotation. Checked like a secret when set, never shown.
ACCEPTED_SETTINGS = ("principal_secret_accepted", "session_secret_accepted", "data_key_accepted")
HIDDEN_SETTINGS = SECRET_SETTINGS + ACCEPTED_SETTINGS
# PUBLISHED values, hence no secrets: the built-in defaults of earlier versions (in this repository's history)
# and docker-compose.yml's former placeholder. A process given one of them refuses to start. The former data
# and audit keys are still read by services.common.rekey, once, to re-seal what a local state dir made before
# holds with the new keys; nothing writes with them.
FORMER_BUILT_IN = {
    "principal_secret": "hongling-local-development-secret-not-for-production",
    "data_key": "hongling-local-development-data-key-not-for-production",
    "audit_signing_key": "hongling-local-development-audit-signing-key-not-for-production",
    "session_secret": "hongling-local-development-session-secret-not-for-production",
}
KNOWN_PUBLIC_VALUES = {
    **{value: f"the former built-in HONGLING_{name.upper()}" for name, value in FORMER_BUILT_IN.items()},
    "change-me-to-a-long-random-secret-for-this-deployment": "docker-compose.yml's former placeholder",
}
# Obvious placeholders, whatever their length: "change-me…", "…-not-for-production", "your-secret-here", "xxxx…".
_PLACEHOLDER = re.compile(
    r"change[-_ ]?me|replace[-_ ]?me|not[-_ ]for[-_ ]production|placeholder|your[-_ ]?(own[-_ ]?)?"
    r"(secret|key|password)|^(.)\3*$",
    re.IGNORECASE,
)
HOW_TO_SET_SECRETS = (
    "A secret is a random value of at least 32 characters, e.g. from "
    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`. Locally, `make up` and `make test` "
    "generate them once into $HONGLING_STATE_DIR/secrets.env (deploy/local/secrets.sh) and "
    "`source deploy/local/env.sh` loads them; elsewhere set them in the environment."
)


def _secret(value: str) -> str:
    """A secret setting: set, not a published value or an obvious placeholder, long enough."""
    stripped = value.strip()
    if not stripped:
        raise ValueError("not set")
    known = KNOWN_PUBLIC_VALUES.get(stripped) or KNOWN_PUBLIC_VALUES.get(stripped.lower())
    if known:
        raise ValueError(f"is {known}, a published value anyone can use: set a secret of your own")
    if _PLACEHOLDER.search(stripped):
        raise ValueError("is a placeholder, not a secret: set a random value")
    if len(stripped) < 32:
        raise ValueError("is shorter than 32 characters: set a longer random value")
    return value


Secret = Annotated[str, AfterValidator(_secret)]


def _optional_secret(value: str) -> str:
    """A rotation's accepted secret: unset, or a secret like any other."""
    return _secret(value) if value.strip() else ""


OptionalSecret = Annotated[str, AfterValidator(_optional_secret)]


def _public_keys(value: str) -> str:
    """HONGLING_AUDIT_TRUSTED_KEYS: comma-separated Ed25519 public keys (base64 of 32 bytes), checked."""
    import base64
    import binascii

    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            raw = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                f"{part[:60]!r} is not an Ed25519 public key (base64 of 32 bytes, as "
                "`python -m services.common.audit public-key` prints it)"
            )
    return value


def _ip_networks(value: str) -> str:
    """A comma-separated list of IP addresses or networks (HONGLING_TRUSTED_PROXIES), checked."""
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HONGLING_", extra="ignore")

    port_base: int = Field(17000, ge=1024, le=65000)
    mongo_uri: str = ""
    kafka_bootstrap: str = ""
    mongo_port: int | None = Field(None, ge=1, le=65535)
    kafka_port: int | None = Field(None, ge=1, le=65535)
    host: str = "127.0.0.1"
    # Signs the principal the gateway sends with every call to a service (services/common/principal.py).
    principal_secret: Secret = Field("", validate_default=True)
    # Encrypts personal data at rest (phones, ID numbers); changing it makes stored values unreadable
    # (services.common.rekey re-seals them from a former key).
    data_key: Secret = Field("", validate_default=True)
    # Signs the audit log's checkpoints (Ed25519 key derived from it); keep it out of the database's reach.
    audit_signing_key: Secret = Field("", validate_default=True)
    # Rotation without downtime (docs/runbook.md, 轮换密钥): the other secret of a pair, accepted to verify a
    # principal / a session, or to open personal data, and never used to sign or seal; unset outside a rotation.
    principal_secret_accepted: OptionalSecret = ""
    session_secret_accepted: OptionalSecret = ""
    data_key_accepted: OptionalSecret = ""
    # Public keys of retired audit signing keys (and of the next one while it is rolled out): checkpoints and
    # published heads signed by any of them verify. Public, not secret: printed by `… audit public-key`.
    audit_trusted_keys: Annotated[str, AfterValidator(_public_keys)] = ""
    principal_ttl_seconds: int = Field(60, ge=5, le=3600)
    # The gateway's API tokens (SHA-256 hashes, managed by `python -m gateway.tokens`); empty = no tokens.
    api_tokens_file: str = ""
    # Signs people's session JWTs (gateway/sessions.py, `POST /api/v1/auth/login`); set it in any shared deployment.
    session_secret: Secret = Field("", validate_default=True)
    session_ttl_seconds: int = Field(1800, ge=60, le=86400)
    # Rate limits (gateway/ratelimit.py), token buckets per gateway process: requests per second and burst.
    rate_principal_per_second: float = Field(20.0, gt=0, le=100000)
    rate_principal_burst: int = Field(40, ge=1, le=1000000)
    rate_ip_per_second: float = Field(50.0, gt=0, le=100000)
    rate_ip_burst: int = Field(100, ge=1, le=1000000)
    # Log-in attempts per minute, per client IP and user name, and per client IP alone (argon2 costs CPU).
    rate_login_per_minute: int = Field(5, ge=1, le=10000)
    rate_login_ip_per_minute: int = Field(60, ge=1, le=100000)
    # Follow-up code (查询码) checks per client address (gateway/routes_ratings.py), to slow guessing.
    rate_follow_per_minute: int = Field(30, ge=1, le=100000)
    # Proxies whose X-Forwarded-For is believed, comma-separated IPs or CIDRs ("10.0.0.0/8,::1"); empty = none.
    trusted_proxies: Annotated[str, AfterValidator(_ip_networks)] = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    grpc_workers: int = Field(16, ge=1, le=256)
    call_timeout_seconds: float = Field(5.0, gt=0, le=120)
    consumer_max_retries: int = Field(3, ge=0, le=20)
    # Consumers off the whistle's path (intake's lifecycle, dispatch's webhooks and matching model) poll at
    # most this often while records keep coming, so that a poll brings several (services/common/consumer.py).
    consumer_gather_ms: int = Field(50, ge=0, le=1000)
    relay_interval_seconds: float = Field(1.0, gt=0, le=60)
    # The projector's workers (services/common/projection.py) poll at most this often while state records keep
    # coming, so that a poll brings a batch; a record waits up to this long more before its rows are written.
    # Measured at 50 issues/s on 2 cores, changes handed to the relay (bench/read_scale.py, HONGLING_BENCH_READ_
    # PHASES=lag: 201 -> row): 250 ms p50 0.29 s, p99 0.70 s; 1000 ms p50 0.81 s, p99 1.48 s (goal p99 < 1 s);
    # 250 ms with rows made from state records: p50 0.34 s, p99 0.79 s.
    # The whistle's p99 barely moves with it (bench/dispatch_pipeline.py; batching saves little CPU per issue).
    projection_gather_ms: int = Field(250, ge=0, le=10000)
    # Dispatch's durable timers (services/common/clocks.py): how often each worker rereads every tenant's
    # timers (those scheduled in this process fire on time without it; the rescan finds those written by
    # another process or left by a dead one), the lease of one firing, and the retry backoff. A rescan reads
    # every pending timer of every tenant (about 150 ms of the local FerretDB per 1,000), hence once a minute.
    timer_rescan_seconds: float = Field(60.0, gt=0, le=3600)
    timer_lease_seconds: float = Field(60.0, ge=1, le=3600)
    timer_backoff_base_seconds: float = Field(1.0, gt=0, le=3600)
    timer_backoff_max_seconds: float = Field(300.0, gt=0, le=86400)
    # The org service's spreadsheet import jobs (services/org/jobs.py): a worker holds a running job under a
    # lease it renews every lease/5 seconds; a job whose lease is older (its process died) is taken over. How
    # often each worker looks for jobs started in another process or left by a dead one.
    import_job_lease_seconds: float = Field(30.0, ge=2, le=3600)
    import_job_poll_seconds: float = Field(5.0, gt=0, le=600)
    # Dispatch's webhook notifier (services/dispatch/webhooks.py): per-attempt timeout, attempts before
    # a delivery is failed, retry backoff (base doubling up to the max).
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=120)
    webhook_max_attempts: int = Field(8, ge=1, le=50)
    webhook_backoff_base_seconds: float = Field(2.0, gt=0, le=3600)
    webhook_backoff_max_seconds: float = Field(600.0, gt=0, le=86400)
    # Deliveries sent at once (a slow receiver does not hold up the others).
    webhook_concurrency: int = Field(4, ge=1, le=64)
    gateway_port: int | None = Field(None, ge=1, le=65535)
    gateway_metrics_port: int | None = Field(None, ge=1, le=65535)
    # The gRPC front door for district-department systems (gateway/frontdoor.py).
    frontdoor_port: int | None = Field(None, ge=1, le=65535)
    # Its transport (gateway/frontdoor_tls.py): "auto" = mutual TLS when frontdoor_tls_dir is set, else plaintext;
    # "mtls" = mutual TLS, refusing to start without its files; "off" = plaintext. Plaintext on a loopback host
    # only: on any other the front door refuses to start. The directory holds tls.crt and tls.key (a
    # kubernetes.io/tls Secret's layout); the CA bundle signs department client certificates; the clients file
    # maps a client certificate (URI SAN or common name) to its department (docs/runbook.md "Front door TLS").
    frontdoor_tls: Literal["auto", "mtls", "off"] = "auto"
    frontdoor_tls_dir: str = ""
    frontdoor_client_ca: str = ""
    frontdoor_clients_file: str = ""
    # Under mutual TLS, the standard gRPC health service alone, in plaintext, for probes that cannot present a
    # client certificate (the kubelet's gRPC probe, services.common.healthcheck); default port base + 49.
    frontdoor_health_port: int | None = Field(None, ge=1, le=65535)
    org_port: int | None = Field(None, ge=1, le=65535)
    intake_port: int | None = Field(None, ge=1, le=65535)
    dispatch_port: int | None = Field(None, ge=1, le=65535)
    evaluation_port: int | None = Field(None, ge=1, le=65535)
    publication_port: int | None = Field(None, ge=1, le=65535)
    alliance_port: int | None = Field(None, ge=1, le=65535)
    # Where to reach each service, when not on this host at its port (compose, k8s): "intake:7052".
    org_addr: str = ""
    intake_addr: str = ""
    dispatch_addr: str = ""
    evaluation_addr: str = ""
    publication_addr: str = ""
    alliance_addr: str = ""
    org_metrics_port: int | None = Field(None, ge=1, le=65535)
    intake_metrics_port: int | None = Field(None, ge=1, le=65535)
    dispatch_metrics_port: int | None = Field(None, ge=1, le=65535)
    evaluation_metrics_port: int | None = Field(None, ge=1, le=65535)
    publication_metrics_port: int | None = Field(None, ge=1, le=65535)
    alliance_metrics_port: int | None = Field(None, ge=1, le=65535)
    projector_port: int | None = Field(None, ge=1, le=65535)
    projector_metrics_port: int | None = Field(None, ge=1, le=65535)
    projector_addr: str = ""
    # The SQL read side (services/common/readside.py): a SQLAlchemy URL of the PostgreSQL database that holds
    # the read models. Empty: the local stack's (deploy/local/stack.sh), database hongling_read at base + 32.
    read_db_url: str = ""
    postgres_port: int | None = Field(None, ge=1, le=65535)
    # A file holding the read side's password (the local stack's $HONGLING_STATE_DIR/postgres/password), used
    # when the URL names none; elsewhere put it in the URL or in PGPASSWORD.
    read_db_password_file: str = ""
    # Connections per process to the read side (a pool; a list or count holds one for a few milliseconds).
    read_db_pool_size: int = Field(8, ge=1, le=200)
    # The portal's grid map: a raster tile service where the deployment has one, as a URL template with {z},
    # {x} and {y} (https; http only on this host), and the attribution its licence asks for. Empty: the grids
    # are drawn from their boundaries alone, with no tile server (gateway/routes_portal.py).
    # 核实立案 without a rule of the tenant: "verify" (routine and major wait for a community worker's decision,
    # urgent goes straight to dispatch) or "direct" (every class straight to dispatch, as before 核实立案).
    filing_default: Literal["verify", "direct"] = "verify"
    map_tile_url: str = ""
    map_tile_attribution: str = Field("", max_length=200)
    # Copies of every topic the project makes (services.common.topics): 1 on a single broker (the local stack,
    # compose's default), 3 on a cluster of three (compose's `cluster` profile, k8s). With 3 the topics also get
    # min.insync.replicas=2, so a write acknowledged by acks=all (the relay's) survives the loss of one broker.
    kafka_replication_factor: int = Field(1, ge=1, le=7)

    @field_validator("map_tile_url")
    @classmethod
    def _tile_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        url = urlsplit(value)
        loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
        if url.scheme != "https" and not (url.scheme == "http" and loopback):
            raise ValueError("must be an https:// URL (http:// only on this host)")
        if not all(part in value for part in ("{z}", "{x}", "{y}")):
            raise ValueError("must hold {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png")
        return value

    @model_validator(mode="after")
    def _accepted_differs(self) -> Settings:
        """An accepted secret equal to the one in use is a rotation half-done by mistake: say so."""
        for name in ACCEPTED_SETTINGS:
            current = name.removesuffix("_accepted")
            if getattr(self, name) and getattr(self, name).strip() == str(getattr(self, current)).strip():
                raise ValueError(
                    f"HONGLING_{name.upper()} equals HONGLING_{current.upper()}: during a rotation it holds the "
                    "other secret (the former or the next one); unset it outside a rotation"
                )
        return self

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        base = self.port_base
        if not self.mongo_uri:
            self.mongo_uri = f"mongodb://127.0.0.1:{self.mongo_port or base + 17}/"
        if not self.read_db_url:
            self.read_db_url = (
                f"postgresql+psycopg://hongling@127.0.0.1:{self.postgres_port or base + 32}/hongling_read"
            )
        if not self.kafka_bootstrap:
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port or base + 92}"
        for name, (grpc_off, metrics_off) in SERVICE_PORT_OFFSETS.items():
            if getattr(self, f"{name}_port") is None:
                setattr(self, f"{name}_port", base + grpc_off)
            if getattr(self, f"{name}_metrics_port") is None:
                setattr(self, f"{name}_metrics_port", base + metrics_off)
        if self.gateway_port is None:
            self.gateway_port = base + 80
        if self.gateway_metrics_port is None:
            self.gateway_metrics_port = base + 160
        if self.frontdoor_port is None:
            self.frontdoor_port = base + 50
        if self.frontdoor_health_port is None:
            self.frontdoor_health_port = base + 49
        return self

    def grpc_port(self, service: str) -> int:
        port = getattr(self, f"{service}_port")
        assert isinstance(port, int)
        return port

    def metrics_port(self, service: str) -> int:
        port = getattr(self, f"{service}_metrics_port")
        assert isinstance(port, int)
        return port

    def frontdoor_mtls(self) -> bool:
        """Whether the front door serves mutual TLS (gateway/frontdoor_tls.py), as HONGLING_FRONTDOOR_TLS says."""
        return self.frontdoor_tls == "mtls" or (self.frontdoor_tls == "auto" and bool(self.frontdoor_tls_dir.strip()))

    def principal_secrets(self) -> tuple[str, ...]:
        """The secrets a principal may be signed with: the current one first, then the rotation's other one."""
        return tuple(s for s in (self.principal_secret, self.principal_secret_accepted) if s)

    def session_secrets(self) -> tuple[str, ...]:
        """The secrets a session token may be signed with: the current one first, then the rotation's other."""
        return tuple(s for s in (self.session_secret, self.session_secret_accepted) if s)

    def data_keys(self) -> tuple[str, ...]:
        """The data keys personal data may be sealed with: the current one (seals) first, then the other."""
        return tuple(s for s in (self.data_key, self.data_key_accepted) if s)

    def address(self, service: str) -> str:
        override = getattr(self, f"{service}_addr")
        if override:
            return str(override)
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"{host}:{self.grpc_port(service)}"


def describe_errors(exc: ValidationError) -> str:
    """One line per bad variable, naming it; a secret's value is never shown."""
    lines = []
    for err in exc.errors():
        var = "HONGLING_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["loc"] and err["loc"][0] in HIDDEN_SETTINGS:
            lines.append(f"  {var}: {msg}")
        else:
            lines.append(f"  {var}: {msg} (got {err.get('input')!r})")
    if any(err["loc"] and err["loc"][0] in HIDDEN_SETTINGS for err in exc.errors()):
        lines.append(HOW_TO_SET_SECRETS)
    return "invalid settings — fix these environment variables:\n" + "\n".join(lines)


@cache
def get_settings() -> Settings:
    """The process settings; exits with a clear message if the environment holds a bad value."""
    try:
        return Settings()
    except ValidationError as exc:
        print(describe_errors(exc), file=sys.stderr)
        raise SystemExit(2) from None
