"""API tokens for systems and scripts: `Authorization: Bearer hl_...` at the gateway.

A token is `hl_` + secrets.token_urlsafe(32). Only its SHA-256 hash is kept, with who it is for
(sub), the role, the tenant scope (`*` = every tenant), when it was made, when it expires and, once
revoked, when. A `member` token (成员单位/个人) is also bound to the one helper it acts as, `responder`
(member_unit|person|team:id), in exactly one tenant; the gateway takes that helper from the token, never
from a request. A `community_worker` token carries the one community it works for, `community`, in exactly
one tenant (社区范围: its lists are that community's, another community's records are not found; see
gateway/policy.py). A community worker's token from before communities were required has none: it is
kept in the file but refused at authentication (403 `community_required`) until an administrator gives it
one with `set-community` (or makes a new token with --community). The file (TOML, named by
HONGLING_API_TOKENS_FILE) is written only by this module: read-modify-write under a lock file, then an
atomic rename, so the gateway never reads half a file. The gateway re-reads it whenever it changes, so a
revocation takes effect without a restart.

    python -m gateway.tokens create --sub NAME --role ROLE [--tenant T ...|--all-tenants] [--days N]
                                    [--responder member_unit:ID|person:ID|team:ID]   # role member only
                                    [--community ID]                       # role community_worker only
    python -m gateway.tokens set-community --id ID --community ID    # a community worker's token
    python -m gateway.tokens list
    python -m gateway.tokens revoke --sub NAME | --id ID
    python -m gateway.tokens verify < token-file        # which principal a token is, or why it is refused
    python -m gateway.tokens sweep                       # write the tokens expired since the last look (cron)

Every change the CLI makes is written to the audit log as the API's changes are (token.create, token.revoke,
token.set_community; actor `cli:<os user>`, role ops; the token's id, sub, role, tenants and expiry, never the
token): when the log cannot be written the change is undone and the command fails. Expiries are written once
each (token.expire) by `sweep` and by every changing command; run `sweep` daily (cron, a systemd timer).

`create` and `set-community` check with the org service that the community exists in the token's tenant
(the running system's, as `python -m services.org.seed` reaches it); the Python API (make_record,
TokenFile.create) checks the id's form only.

`create` prints the token on stdout, once; nothing else ever shows it. Tokens are never logged.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from services.common.principal import (
    COMMUNITY_ROLE,
    ROLES,
    Principal,
    format_responder,
    parse_community,
    parse_responder,
)
from services.common.tenants import tenant_slugs

if TYPE_CHECKING:  # the CLI opens the log only when it writes (services.common.audit pulls in pymongo)
    from services.common.audit import AuditLog

log = logging.getLogger("gateway.tokens")

PREFIX = "hl_"
TOKEN_RE = re.compile(r"^hl_[A-Za-z0-9_-]{43}$")
SUB_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
ALL_TENANTS = "*"
# Services authenticate to each other with the signed principal, never with an API token.
TOKEN_ROLES = tuple(r for r in ROLES if r != "service")
MAX_DAYS = 3650
DEFAULT_DAYS = 90
SHANGHAI = ZoneInfo("Asia/Shanghai")
HEADER = (
    "# Hongling API tokens: managed by `python -m gateway.tokens` (create, list, revoke).\n"
    "# Holds SHA-256 hashes only; a token itself is shown once, when it is created.\n"
)


class TokenFileError(Exception):
    """The token file cannot be read as a whole (syntax, structure)."""


class AuthError(Exception):
    """A presented credential is refused. `kind`: malformed, unknown, expired, revoked."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class TokenRecord:
    id: str
    sub: str
    role: str
    tenants: tuple[str, ...]
    sha256: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    responder: tuple[str, str] | None = None  # role member only: the helper (kind, id) it acts as
    community: str | None = None  # role community_worker only: the community it works for (None: refused)
    # When the CLI wrote the token's expiry to the audit log (token.expire), so that it is written once.
    expiry_noted_at: datetime | None = None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return Principal(
            sub=self.sub, role=self.role, tenants=self.tenants, responder=self.responder, community=self.community
        )


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(value: str) -> bool:
    return bool(TOKEN_RE.match(value))


def _now() -> datetime:
    return datetime.now(UTC)


def _local(ts: datetime) -> str:
    return ts.astimezone(SHANGHAI).isoformat(timespec="seconds")


def check_scope(role: str, tenants: Sequence[str]) -> tuple[str, ...]:
    """The role and tenant scope a token may carry, or ValueError saying what is wrong."""
    if role not in TOKEN_ROLES:
        raise ValueError(f"role {role!r} cannot hold an API token; use one of: {', '.join(TOKEN_ROLES)}")
    scope = tuple(dict.fromkeys(tenants))
    if ALL_TENANTS in scope and len(scope) > 1:
        raise ValueError("give either '*' (every tenant) or a list of tenants, not both")
    known = tenant_slugs()
    bad = [t for t in scope if t != ALL_TENANTS and t not in known]
    if bad:
        raise ValueError(f"unknown tenant {', '.join(map(repr, bad))}; use one of: {', '.join(known)}")
    return scope


def check_responder(
    role: str, tenants: Sequence[str], responder: str | tuple[str, str] | None
) -> tuple[str, str] | None:
    """The helper a token of this role and scope is bound to: a member needs exactly one, in exactly one
    tenant; no other role has one. ValueError saying what is wrong."""
    if role != "member":
        if responder:
            raise ValueError(f"only a member token is bound to a responder, not a {role} token")
        return None
    if not responder:
        raise ValueError(
            "a member token needs --responder kind:id (member_unit, person or team) (须绑定成员单位或个人)"
        )
    if len(tenants) != 1 or tenants[0] == ALL_TENANTS:
        raise ValueError("a member token acts in exactly one tenant: give one --tenant (成员只属于一个街道/镇)")
    return parse_responder(responder) if isinstance(responder, str) else parse_responder(format_responder(responder))


def check_community(role: str, tenants: Sequence[str], community: str | None, *, required: bool = True) -> str | None:
    """The community a token of this role and scope works for: a community worker's one community, in exactly
    one tenant; no other role has one. `required=False` reads a community worker's token from before
    communities were required (None: kept, refused at authentication). ValueError saying what is wrong."""
    if role != COMMUNITY_ROLE:
        if community:
            raise ValueError(f"only a community_worker token carries a community, not a {role} token")
        return None
    if not community:
        if required:
            raise ValueError(
                "a community_worker token needs --community ID: the community it works for (社区工作者须绑定所属社区)"
            )
        return None
    if len(tenants) != 1 or tenants[0] == ALL_TENANTS:
        raise ValueError(
            "a community_worker token acts in exactly one tenant, its community's: give one --tenant "
            "(社区只属于一个街道/镇)"
        )
    return parse_community(community)


def make_record(
    sub: str,
    role: str,
    tenants: Sequence[str],
    expires_at: datetime,
    now: datetime | None = None,
    responder: str | tuple[str, str] | None = None,
    community: str | None = None,
) -> tuple[str, TokenRecord]:
    """A new token and the record to store for it (the token itself is not in the record). `responder`
    ("kind:id" or (kind, id)): the helper a member token acts as; required for role member, refused for others.
    `community`: the community a community_worker token works for; required for that role, refused for others
    (its form is checked here; that it exists, by the CLI)."""
    if not SUB_RE.match(sub):
        raise ValueError(f"sub {sub!r} must be 1-64 letters, digits, '.', '_', '@' or '-'")
    scope = check_scope(role, tenants)
    bound = check_responder(role, scope, responder)
    works_for = check_community(role, scope, community)
    token = new_token()
    record = TokenRecord(
        id="tok_" + secrets.token_hex(4),
        sub=sub,
        role=role,
        tenants=scope,
        sha256=token_hash(token),
        created_at=(now or _now()).replace(microsecond=0),
        expires_at=expires_at.astimezone(UTC).replace(microsecond=0),
        responder=bound,
        community=works_for,
    )
    return token, record


# ---------------------------------------------------------------- the file


def _toml_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def dumps(records: Sequence[TokenRecord]) -> str:
    parts = [HEADER, "version = 1\n"]
    for r in records:
        lines = [
            "",
            "[[token]]",
            f"id = {_toml_str(r.id)}",
            f"sub = {_toml_str(r.sub)}",
            f"role = {_toml_str(r.role)}",
            f"tenants = [{', '.join(_toml_str(t) for t in r.tenants)}]",
            f"sha256 = {_toml_str(r.sha256)}",
            f"created_at = {_toml_time(r.created_at)}",
            f"expires_at = {_toml_time(r.expires_at)}",
        ]
        if r.revoked_at is not None:
            lines.append(f"revoked_at = {_toml_time(r.revoked_at)}")
        if r.responder is not None:
            lines.append(f"responder = {_toml_str(format_responder(r.responder))}")
        if r.community is not None:
            lines.append(f"community = {_toml_str(r.community)}")
        if r.expiry_noted_at is not None:
            lines.append(f"expiry_noted_at = {_toml_time(r.expiry_noted_at)}")
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def _time(entry: dict[str, Any], key: str, where: str) -> datetime:
    value = entry.get(key)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}.{key} is not an RFC 3339 time") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{where}.{key} must be a time with an offset, e.g. 2030-01-01T00:00:00Z")
    return value.astimezone(UTC)


def _record(entry: Any, where: str) -> TokenRecord:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a table")
    strings = {k: entry.get(k) for k in ("id", "sub", "role", "sha256")}
    for key, value in strings.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}.{key} is missing or not a string")
    tenants = entry.get("tenants")
    if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise ValueError(f"{where}.tenants must be a list of tenant slugs or ['*']")
    if not HASH_RE.match(str(strings["sha256"])):
        raise ValueError(f"{where}.sha256 must be 64 lower-case hex digits")
    if not SUB_RE.match(str(strings["sub"])):
        raise ValueError(f"{where}.sub is not a valid name")
    scope = check_scope(str(strings["role"]), tenants)
    responder = entry.get("responder")
    if responder is not None and not isinstance(responder, str):
        raise ValueError(f"{where}.responder must be a string kind:id")
    community = entry.get("community")
    if community is not None and not isinstance(community, str):
        raise ValueError(f"{where}.community must be a string, a community id")
    try:
        bound = check_responder(str(strings["role"]), scope, responder)
        works_for = check_community(str(strings["role"]), scope, community, required=False)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return TokenRecord(
        id=str(strings["id"]),
        sub=str(strings["sub"]),
        role=str(strings["role"]),
        tenants=scope,
        sha256=str(strings["sha256"]),
        created_at=_time(entry, "created_at", where),
        expires_at=_time(entry, "expires_at", where),
        revoked_at=_time(entry, "revoked_at", where) if "revoked_at" in entry else None,
        responder=bound,
        community=works_for,
        expiry_noted_at=_time(entry, "expiry_noted_at", where) if "expiry_noted_at" in entry else None,
    )


def loads(text: str) -> tuple[list[TokenRecord], list[str]]:
    """The valid records and a problem per invalid one; TokenFileError if the file is not readable at all."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TokenFileError(f"not valid TOML: {exc}") from None
    entries = data.get("token", [])
    if not isinstance(entries, list):
        raise TokenFileError("'token' must be an array of tables ([[token]])")
    records: list[TokenRecord] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        where = f"token[{i}]" + (f" ({entry.get('id')})" if isinstance(entry, dict) and entry.get("id") else "")
        try:
            records.append(_record(entry, where))
        except ValueError as exc:
            problems.append(str(exc))
    return records, problems


class TokenFile:
    """The token file as the CLI (and test fixtures) change it: locked read-modify-write, atomic replace."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> tuple[list[TokenRecord], list[str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []
        try:
            return loads(text)
        except TokenFileError as exc:
            raise TokenFileError(f"{self.path}: {exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def update(self, change: Callable[[list[TokenRecord]], list[TokenRecord]]) -> list[str]:
        """Apply `change` to the current records and write the result atomically. An unreadable file is
        refused rather than overwritten; entries the gateway ignores as invalid are dropped, and the
        problems with them returned so the caller can say so."""
        with self._locked():
            records, problems = self.read()
            new = change(list(records))
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(dumps(new))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        for problem in problems:
            log.warning("dropped an invalid entry from %s: %s", self.path, problem)
        return problems

    def create(
        self,
        sub: str,
        role: str,
        tenants: Sequence[str],
        days: int = DEFAULT_DAYS,
        now: datetime | None = None,
        responder: str | tuple[str, str] | None = None,
        community: str | None = None,
    ) -> tuple[str, TokenRecord]:
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days must be 1..{MAX_DAYS}")
        now = now or _now()
        token, record = make_record(sub, role, tenants, now + timedelta(days=days), now, responder, community)
        self.update(lambda records: [*records, record])
        return token, record

    def set_community(self, token_id: str, community: str) -> TokenRecord:
        """Give a community worker's token (by id) the community it works for; ValueError if there is no such
        token, it is not a community worker's, or the community is not a valid id."""
        found: list[TokenRecord] = []

        def change(records: list[TokenRecord]) -> list[TokenRecord]:
            out = []
            for r in records:
                if r.id == token_id:
                    r = replace(r, community=check_community(r.role, r.tenants, community))
                    found.append(r)
                out.append(r)
            if not found:
                raise ValueError(f"no token with id {token_id!r} (令牌不存在)")
            return out

        self.update(change)
        return found[0]

    def revoke(self, *, sub: str | None = None, token_id: str | None = None, now: datetime | None = None) -> int:
        """Revoke the active tokens of a sub (or the one with this id); how many were revoked."""
        return len(self.revoke_records(sub=sub, token_id=token_id, now=now))

    def revoke_records(
        self, *, sub: str | None = None, token_id: str | None = None, now: datetime | None = None
    ) -> list[TokenRecord]:
        """Revoke the active tokens of a sub (or the one with this id); the records revoked, as now stored."""
        when = (now or _now()).replace(microsecond=0)
        revoked: list[TokenRecord] = []

        def change(records: list[TokenRecord]) -> list[TokenRecord]:
            out = []
            for r in records:
                if r.revoked_at is None and (r.sub == sub if sub is not None else r.id == token_id):
                    r = replace(r, revoked_at=when)
                    revoked.append(r)
                out.append(r)
            return out

        self.update(change)
        return revoked


# ---------------------------------------------------------------- the gateway's view


class TokenStore:
    """What the gateway authenticates against: the file's records, re-read whenever the file changes.

    An unreadable file after start-up fails closed (no token is accepted until it is fixed) and is
    logged; anonymous callers are unaffected.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._records: tuple[TokenRecord, ...] = ()

    def load(self) -> None:
        """Read the file now; TokenFileError if it is unreadable (used at start-up to stop with a message)."""
        if not self.path:
            return
        with self._lock:
            self._read(strict=True)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def _read(self, strict: bool) -> None:
        stamp = self._stat()
        if stamp is None:
            if self._stamp is not None or strict:
                log.warning("API token file %s does not exist: no API token is accepted until it does", self.path)
            self._records, self._stamp = (), None
            return
        try:
            records, problems = TokenFile(self.path).read()
        except TokenFileError as exc:
            if strict:
                raise
            log.error("API token file unreadable, refusing every token until it is fixed: %s", exc)
            self._records, self._stamp = (), stamp
            return
        for problem in problems:
            log.error("API token file %s: skipping an invalid entry: %s", self.path, problem)
        self._records, self._stamp = tuple(records), stamp  # records first: readers check the stamp
        log.info("API tokens loaded from %s: %d entries", self.path, len(records))

    def records(self) -> tuple[TokenRecord, ...]:
        if not self.path:
            return ()
        if self._stat() == self._stamp:  # the common case: one stat, no lock
            return self._records
        with self._lock:
            if self._stat() != self._stamp:
                self._read(strict=False)
            return self._records

    def authenticate(self, token: str, now: datetime | None = None) -> TokenRecord:
        """The record of a presented token, or AuthError saying why it is refused."""
        if not looks_like_token(token):
            raise AuthError("malformed", "this is not a Hongling API token (hl_…) (令牌格式错误)")
        digest = token_hash(token)
        found: TokenRecord | None = None
        for r in self.records():  # compare against every record, in constant time each, no early exit
            if hmac.compare_digest(r.sha256, digest):
                found = r
        if found is None:
            raise AuthError("unknown", "API token not recognised (令牌无效)")
        status = found.status(now or _now())
        if status == "revoked":
            raise AuthError("revoked", "API token has been revoked; ask an administrator for a new one (令牌已被撤销)")
        if status == "expired":
            raise AuthError(
                "expired",
                f"API token expired at {_local(found.expires_at)}; ask an administrator for a new one (令牌已过期)",
            )
        return found


# ---------------------------------------------------------------- CLI


def _default_file() -> str:
    from services.common.settings import get_settings

    return get_settings().api_tokens_file


def _check_exists(tenants: Sequence[str], community: str) -> None:
    """That the community exists in the (one) tenant, asked of the running system's org service; ValueError
    when it does not or cannot be asked."""
    import grpc

    from gateway.community import cli_communities, missing_message
    from services.common.settings import get_settings

    settings = get_settings()
    communities, channel = cli_communities(settings)
    try:
        if not communities.exists(tenants[0], community):
            raise ValueError(missing_message(tenants[0], community))
    except grpc.RpcError as exc:
        raise ValueError(
            f"cannot check community {community!r}: the org service at {settings.address('org')} answered "
            f"{exc.code().name}; start the system (make up) and retry (无法核对社区)"
        ) from None
    finally:
        channel.close()


# The CLI acts as the operator who runs it, in the role that manages credentials. Its audit entries are the API's
# (account.create, role.change) for tokens: who, what, which token (its id, never the token), whose and for what.
CLI_ROLE = "ops"
# How long the CLI waits for the audit log's database before it gives up (and changes nothing).
AUDIT_TIMEOUT_MS = 5000


def cli_actor() -> str:
    """`cli:<os user>`: the operator running the command (the audit entry's actor)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"cli:{user}"[:64]


def _token_detail(r: TokenRecord) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "token_id": r.id,
        "sub": r.sub,
        "role": r.role,
        "tenants": list(r.tenants),
        "expires_at": r.expires_at.isoformat().replace("+00:00", "Z"),
    }
    if r.responder is not None:
        detail["responder"] = format_responder(r.responder)
    if r.community is not None:
        detail["community"] = r.community
    return detail


def _token_tenant(r: TokenRecord) -> str:
    """The tenant an entry about this token belongs to: its one tenant, else the district's ("")."""
    return r.tenants[0] if len(r.tenants) == 1 and r.tenants[0] != ALL_TENANTS else ""


class AuditUnavailable(Exception):
    """The audit log could not be written: the CLI's change was undone (or never made)."""


class CliAudit:
    """The audit entries of the CLI's changes: opened on first use; a failed write raises AuditUnavailable."""

    def __init__(self, recorder: AuditLog | None = None) -> None:
        self._recorder = recorder
        self.actor = cli_actor()

    def _log(self) -> AuditLog:
        if self._recorder is None:
            from services.common.audit import open_log
            from services.common.settings import get_settings

            self._recorder = open_log(
                get_settings(), serverSelectionTimeoutMS=AUDIT_TIMEOUT_MS, connectTimeoutMS=AUDIT_TIMEOUT_MS
            )
        return self._recorder

    def record(self, action: str, r: TokenRecord, **extra: Any) -> None:
        try:
            self._log().append(
                actor=self.actor,
                role=CLI_ROLE,
                action=action,
                outcome="done",
                tenant=_token_tenant(r),
                target=r.id,
                detail={**_token_detail(r), **extra},
            )
        except Exception as exc:  # the database unreachable, a timeout: the caller undoes its change
            log.warning("audit entry %s for %s not written: %s", action, r.id, type(exc).__name__)
            raise AuditUnavailable(
                f"the audit log could not be written ({type(exc).__name__}); is the system running (make up)? "
                "(审计日志无法写入)"
            ) from None


def note_expiries(tf: TokenFile, audit: CliAudit, now: datetime | None = None) -> list[TokenRecord]:
    """Write a token.expire entry for each token that has expired since the last look (never revoked before),
    then mark it noted in the file: each expiry is written once (twice at worst, after a crash in between)."""
    when = now or _now()
    records, _ = tf.read()
    due = [r for r in records if r.revoked_at is None and when >= r.expires_at and r.expiry_noted_at is None]
    for r in due:
        audit.record("token.expire", r)
    if due:
        ids = {r.id for r in due}
        noted = when.replace(microsecond=0)
        tf.update(lambda rs: [replace(r, expiry_noted_at=noted) if r.id in ids else r for r in rs])
    return due


def _cmd_create(tf: TokenFile, args: argparse.Namespace, audit: CliAudit) -> int:
    if args.all_tenants and args.tenant:
        raise ValueError("give --tenant or --all-tenants, not both")
    tenants = [ALL_TENANTS] if args.all_tenants else list(args.tenant or [])
    community = check_community(args.role, check_scope(args.role, tenants), args.community)
    if community is not None:
        _check_exists(tenants, community)
    token, r = tf.create(args.sub, args.role, tenants, args.days, responder=args.responder, community=community)
    try:
        audit.record("token.create", r)
    except AuditUnavailable as exc:
        tf.update(lambda records: [x for x in records if x.id != r.id])
        raise AuditUnavailable(f"{exc}; no token was created (未创建令牌)") from None
    scope = ", ".join(r.tenants) if r.tenants else "none (only routes that are not tenant-scoped)"
    bound = f"; acts as {format_responder(r.responder)}" if r.responder else ""
    bound += f"; works for community {r.community}" if r.community else ""
    print(token)
    print(
        f"created {r.id} for {r.sub} (role {r.role}; tenants {scope}{bound}); expires {_local(r.expires_at)}.\n"
        "The token is shown only this once: store it now (令牌只显示这一次，请妥善保存).",
        file=sys.stderr,
    )
    return 0


def _cmd_set_community(tf: TokenFile, args: argparse.Namespace, audit: CliAudit) -> int:
    records, _ = tf.read()
    found = next((r for r in records if r.id == args.id), None)
    if found is None:
        raise ValueError(f"no token with id {args.id!r} (令牌不存在)")
    community = check_community(found.role, found.tenants, args.community)
    assert community is not None  # check_community requires one for a community worker, refuses other roles
    _check_exists(found.tenants, community)
    r = tf.set_community(args.id, community)
    try:
        audit.record("token.set_community", r, previous_community=found.community)
    except AuditUnavailable as exc:
        tf.update(lambda records: [replace(x, community=found.community) if x.id == r.id else x for x in records])
        raise AuditUnavailable(f"{exc}; the community was not changed (所属社区未更改)") from None
    print(f"{r.id} ({r.sub}) now works for community {r.community} (已设置所属社区)", file=sys.stderr)
    return 0


def _cmd_list(tf: TokenFile, _args: argparse.Namespace, _audit: CliAudit) -> int:
    records, problems = tf.read()
    now = _now()
    rows = [("id", "sub", "role", "tenants", "responder", "community", "created", "expires", "status")]
    rows += [
        (
            r.id,
            r.sub,
            r.role,
            ",".join(r.tenants) or "-",
            format_responder(r.responder) if r.responder else "-",
            r.community or ("(none: refused)" if r.role == COMMUNITY_ROLE else "-"),
            _local(r.created_at),
            _local(r.expires_at),
            r.status(now),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for p in problems:
        print(f"invalid entry (ignored by the gateway): {p}", file=sys.stderr)
    return 0


def _cmd_revoke(tf: TokenFile, args: argparse.Namespace, audit: CliAudit) -> int:
    if (args.sub is None) == (args.id is None):
        raise ValueError("give exactly one of --sub or --id")
    revoked = tf.revoke_records(sub=args.sub, token_id=args.id)
    count = len(revoked)
    try:
        for r in revoked:
            audit.record("token.revoke", r)
    except AuditUnavailable as exc:
        ids = {r.id for r in revoked}
        tf.update(lambda rs: [replace(x, revoked_at=None) if x.id in ids else x for x in rs])
        raise AuditUnavailable(f"{exc}; no token was revoked (未吊销令牌)") from None
    what = f"sub {args.sub!r}" if args.sub is not None else f"id {args.id!r}"
    print(f"revoked {count} active token(s) of {what}", file=sys.stderr)
    return 0 if count else 1


def _cmd_verify(tf: TokenFile, _args: argparse.Namespace, _audit: CliAudit) -> int:
    token = sys.stdin.readline().strip()
    try:
        r = TokenStore(str(tf.path)).authenticate(token)
    except AuthError as exc:
        print(f"refused ({exc.kind}): {exc.message}", file=sys.stderr)
        return 1
    bound = f", responder {format_responder(r.responder)}" if r.responder else ""
    bound += f", community {r.community}" if r.community else ""
    if r.role == COMMUNITY_ROLE and r.community is None:
        print(
            f"refused (community_required): {r.id} is a community worker's token without a community; "
            f"set it with `python -m gateway.tokens set-community --id {r.id} --community <社区编号>`",
            file=sys.stderr,
        )
        return 1
    print(
        f"{r.id}: sub {r.sub}, role {r.role}, tenants {','.join(r.tenants) or '-'}{bound}, "
        f"expires {_local(r.expires_at)}"
    )
    return 0


def _cmd_sweep(tf: TokenFile, _args: argparse.Namespace, audit: CliAudit) -> int:
    due = note_expiries(tf, audit)
    print(f"{len(due)} expired token(s) written to the audit log (已记录过期令牌 {len(due)} 个)", file=sys.stderr)
    return 0


# The commands that change the file: each is written to the audit log, and notes the expiries found since.
CHANGING = ("create", "set-community", "revoke", "sweep")


def main(argv: Sequence[str] | None = None, recorder: AuditLog | None = None) -> int:
    """The CLI. Its changes are written to the audit log (`recorder`: the deployment's log by default); when the
    log cannot be written, the change is undone and the command fails (exit 2)."""
    parser = argparse.ArgumentParser(prog="python -m gateway.tokens", description="Manage the gateway's API tokens.")
    parser.add_argument("--file", help="the token file (default: $HONGLING_API_TOKENS_FILE)")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a token and print it, once")
    create.add_argument("--sub", required=True, help="who or what the token is for, e.g. a system's name")
    create.add_argument("--role", required=True, choices=TOKEN_ROLES)
    create.add_argument("--tenant", action="append", help="a tenant the token may act on (repeatable)")
    create.add_argument("--all-tenants", action="store_true", help="every tenant ('*')")
    create.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"valid for N days (default {DEFAULT_DAYS})")
    create.add_argument(
        "--responder",
        help="role member: the helper the token acts as, member_unit:ID, person:ID or team:ID (one tenant)",
    )
    create.add_argument(
        "--community",
        help="role community_worker (required): the community it works for, in its one tenant (checked with org)",
    )
    set_community = sub.add_parser(
        "set-community", help="give a community worker's token the community it works for (checked with org)"
    )
    set_community.add_argument("--id", required=True, help="the token's id (tok_…), as `list` shows it")
    set_community.add_argument("--community", required=True)
    sub.add_parser("list", help="list the tokens (never the tokens themselves)")
    revoke = sub.add_parser("revoke", help="revoke the active tokens of a sub, or one token by id")
    revoke.add_argument("--sub")
    revoke.add_argument("--id")
    sub.add_parser("verify", help="read a token on stdin and say whose it is, or why it is refused")
    sub.add_parser(
        "sweep", help="write the expiry of every token that expired since the last look to the audit log (cron)"
    )
    args = parser.parse_args(argv)
    path = args.file or _default_file()
    if not path:
        print("error: no token file: set HONGLING_API_TOKENS_FILE or pass --file", file=sys.stderr)
        return 2
    commands: dict[str, Callable[[TokenFile, argparse.Namespace, CliAudit], int]] = {
        "create": _cmd_create,
        "set-community": _cmd_set_community,
        "list": _cmd_list,
        "revoke": _cmd_revoke,
        "verify": _cmd_verify,
        "sweep": _cmd_sweep,
    }
    tf, audit = TokenFile(path), CliAudit(recorder)
    try:
        code = commands[args.command](tf, args, audit)
    except (ValueError, TokenFileError, AuditUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command in CHANGING and args.command != "sweep":
        try:
            note_expiries(tf, audit)
        except (TokenFileError, AuditUnavailable) as exc:  # the command itself is done (and written)
            print(f"warning: expired tokens not written to the audit log now: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
