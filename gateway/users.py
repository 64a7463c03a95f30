"""People's accounts (residents, community workers, admins, approvers): who may log in, as what.

Accounts live in one district-level database, `hl_identity`, collection `accounts`; `_id` is the login
name, normalised (NFKC, lower case), so every look-up is by `_id`. A document holds the display name, the
role (principal.ROLES except `service` and `public`), the tenant scope (slugs, or `["*"]` for every
tenant), for a `community_worker` the one community it works for (`community_id`, required, in exactly one
tenant; the gateway and the services hold its requests to that community, gateway/policy.py), for a
`member` (成员单位/个人) the one helper it acts as (`responder`, member_unit|person|team:id, in exactly one
tenant), the password's argon2id
hash (argon2-cffi defaults), a disabled flag, created/updated times and `token_version`: every session
JWT carries the version it was issued under, so bumping it (log-out, role change, new password,
disabling) ends every session of the account at once. Passwords are never stored, logged or taken from
a command line.

Who may manage whom (`may_manage`): ops any account; a subdistrict admin only accounts with a tenant-level
role (resident, community worker, subdistrict admin) whose tenants are all within its own scope — it can
never grant a district role or ops, nor a scope wider than its own. A member account is tenant-level too.

    python -m gateway.users create --username U --role R [--tenant T ...|--all-tenants] [--community C]
                                   [--responder KIND:ID] [--display-name NAME]  # password: stdin or prompted
    python -m gateway.users set-community --username U --community C   # a community worker's; ends sessions
    python -m gateway.users set-password --username U       # ends the account's sessions
    python -m gateway.users disable --username U             # ends the account's sessions
    python -m gateway.users enable --username U
    python -m gateway.users list [--tenant T]

Every change made here is appended to the audit log (services/common/audit.py) before it is made, so an
account change never happens unaudited: actor and role, action (account.create, role.change, …), the
account name as target, and roles/scopes as detail — never a display name or a password.

A community worker's community must exist in its tenant's org data: `create` and `set-community` ask the
org service of the running system (as the HTTP API does, gateway/routes_auth.py); check_scope checks the
id's form. A community worker's account from before communities were required has none: it cannot log in
or use a session (403 `community_required`, gateway/identity.py) until `set-community` gives it one.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import re
import secrets
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pymongo
import pymongo.errors
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.collection import Collection

from services.common.principal import (
    COMMUNITY_ROLE,
    ROLES,
    Principal,
    format_responder,
    parse_community,
    parse_responder,
)
from services.common.tenants import tenant_slugs

DATABASE = "hl_identity"
COLLECTION = "accounts"
ALL_TENANTS = "*"
ACCOUNT_ROLES = tuple(r for r in ROLES if r not in ("service", "public"))
# Roles that belong to a subdistrict/town: they need a tenant, and a subdistrict admin may grant them there.
TENANT_ROLES = ("resident", "community_worker", "subdistrict_admin", "member")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
RESERVED_USERNAMES = frozenset({"anonymous"})
MAX_DISPLAY_NAME = 64
MIN_PASSWORD = 10
MAX_PASSWORD = 256
SHANGHAI = ZoneInfo("Asia/Shanghai")
HASHER = PasswordHasher()  # argon2id, the library's current recommended parameters

# Runs and words that make a password easy to guess, checked case-insensitively (see weak_password).
_SEQUENCES = (
    "01234567890",
    "09876543210",
    "abcdefghijklmnopqrstuvwxyz",
    "zyxwvutsrqponmlkjihgfedcba",
    "qwertyuiop",
    "poiuytrewq",
    "asdfghjkl",
    "lkjhgfdsa",
    "zxcvbnm",
    "mnbvcxz",
    "1qaz2wsx3edc4rfv5tgb",
    "qazwsxedcrfvtgb",
    "!@#$%^&*()",
)
_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "admin",
        "administrator",
        "root",
        "user",
        "test",
        "guest",
        "welcome",
        "letmein",
        "iloveyou",
        "woaini",
        "aini",
        "1314",
        "520",
        "5201314",
        "888888",
        "666666",
        "monkey",
        "dragon",
        "master",
        "shadow",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "superman",
        "qwerty",
        "hello",
        "love",
        "secret",
        "changeme",
        "hongling",
        "taishan",
        "china",
        "beijing",
    }
)


class InvalidAccount(ValueError):
    """A value an account cannot have; `field` names the request field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class AccountExists(Exception):
    pass


class AccountNotFound(Exception):
    pass


class ChangedConcurrently(Exception):
    """The account changed between reading it and writing the change (its token_version moved)."""


class CommunityUnchecked(Exception):
    """Whether a community exists could not be asked (the org service did not answer)."""


# ---------------------------------------------------------------- names, scopes, permissions


def normalise_username(raw: str) -> str:
    """The account's _id for a typed login name (NFKC, trimmed, lower case), or InvalidAccount."""
    name = unicodedata.normalize("NFKC", raw).strip().lower()
    if not USERNAME_RE.match(name) or name in RESERVED_USERNAMES:
        raise InvalidAccount(
            "username must be 2-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit "
            "(用户名须为2-64位字母、数字或 . _ @ -)",
            "username",
        )
    return name


@dataclass(frozen=True)
class Scope:
    """What an account may do: its role, tenants, (community workers) community and (members) responder."""

    role: str
    tenants: tuple[str, ...]
    community_id: str | None = None
    responder: tuple[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "tenants": list(self.tenants), "community_id": self.community_id}
        if self.responder is not None:
            out["responder"] = format_responder(self.responder)
        return out


def check_scope(
    role: str, tenants: Sequence[str], community_id: str | None = None, responder: str | None = None
) -> Scope:
    """A valid scope, or InvalidAccount naming the field that is wrong."""
    if role not in ACCOUNT_ROLES:
        raise InvalidAccount(f"role must be one of: {', '.join(ACCOUNT_ROLES)} (角色无效)", "role")
    scope = tuple(dict.fromkeys(t.strip() for t in tenants))
    if ALL_TENANTS in scope and len(scope) > 1:
        raise InvalidAccount("give either ['*'] (every tenant) or a list of tenants, not both", "tenants")
    known = tenant_slugs()
    bad = [t for t in scope if t != ALL_TENANTS and t not in known]
    if bad:
        raise InvalidAccount(
            f"unknown tenant {', '.join(map(repr, bad))}; use one of: {', '.join(known)} (街道/镇不存在)", "tenants"
        )
    if role in TENANT_ROLES and not scope:
        raise InvalidAccount(f"a {role} needs at least one tenant (须指定所属街道/镇)", "tenants")
    if community_id is not None:
        if role != COMMUNITY_ROLE:
            raise InvalidAccount("only a community_worker has a community (仅社区工作者可指定社区)", "community_id")
        try:
            community_id = parse_community(community_id)
        except ValueError:
            raise InvalidAccount("community_id is not a valid id (社区编号无效)", "community_id") from None
        if len(scope) != 1 or scope[0] == ALL_TENANTS:
            raise InvalidAccount(
                "a community belongs to one tenant: give exactly that tenant (社区只属于一个街道/镇)", "tenants"
            )
    elif role == COMMUNITY_ROLE:
        raise InvalidAccount(
            "a community_worker works for one community: give community_id, the community's id in its tenant "
            "(社区工作者须指定所属社区)",
            "community_id",
        )
    bound: tuple[str, str] | None = None
    if role == "member":
        if not responder:
            raise InvalidAccount(
                "a member acts as one member unit, person or team: give responder kind:id, e.g. person:p-12 "
                "(成员须绑定成员单位、个人或队伍)",
                "responder",
            )
        try:
            bound = parse_responder(responder)
        except ValueError as exc:
            raise InvalidAccount(str(exc), "responder") from None
        if len(scope) != 1 or scope[0] == ALL_TENANTS:
            raise InvalidAccount("a member acts in exactly one tenant (成员只属于一个街道/镇)", "tenants")
    elif responder:
        raise InvalidAccount("only a member has a responder (仅成员可绑定成员单位或个人)", "responder")
    return Scope(role, tenants=scope, community_id=community_id or None, responder=bound)


def may_manage(actor: Principal, scope: Scope) -> bool:
    """Whether `actor` may create or change an account with this scope (before and after a change)."""
    if actor.role == "ops":
        return True
    if actor.role != "subdistrict_admin" or scope.role not in TENANT_ROLES or not scope.tenants:
        return False
    return all(actor.may_act_on(t) for t in scope.tenants)  # '*' only if the actor has '*'


# ---------------------------------------------------------------- passwords


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    return (hasher or HASHER).hash(password)


def verify_password(password_hash: str, password: str, hasher: PasswordHasher | None = None) -> bool:
    """Whether the password matches; a corrupt or foreign hash is a mismatch, never an exception.
    (The cost is the hash's own parameters, read from it.)"""
    try:
        return (hasher or HASHER).verify(password_hash, password)
    except (VerificationError, InvalidHashError):  # VerifyMismatchError is a VerificationError
        return False


def needs_rehash(password_hash: str, hasher: PasswordHasher | None = None) -> bool:
    """Whether the hash was made with other parameters than the hasher's (then hash again on log-in)."""
    try:
        return (hasher or HASHER).check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(24))


def dummy_hash() -> str:
    """A hash of a random password with the current parameters, made once per process (call it at start-up:
    the first use costs more)."""
    return _dummy_hash(HASHER)


def verify_dummy(password: str) -> None:
    """Spend what a real verification costs (an unknown user name must not answer faster)."""
    verify_password(dummy_hash(), password)


_LONGEST_WEAK = max(len(s) for s in (*_SEQUENCES, *_WORDS))
_REPEAT = re.compile(r"(.)\1{2,}")


def _weak_parts(text: str) -> set[int]:
    """Positions of `text` (lower case) covered by sequences, keyboard runs, common words or repeats."""
    covered: set[int] = set()
    for m in _REPEAT.finditer(text):
        covered.update(range(m.start(), m.end()))
    n = len(text)
    for i in range(n):
        for j in range(min(n, i + _LONGEST_WEAK), i + 2, -1):  # the longest weak part at i, 3 characters or more
            part = text[i:j]
            if part in _WORDS or (len(part) >= 4 and any(part in seq for seq in _SEQUENCES)):
                covered.update(range(i, j))
                break
    return covered


def weak_password(password: str, username: str = "") -> str | None:
    """Why a new password is refused (a bilingual message), or None when it is acceptable."""
    if len(password) < MIN_PASSWORD:
        return f"password must be at least {MIN_PASSWORD} characters (密码至少{MIN_PASSWORD}位)"
    if len(password) > MAX_PASSWORD:
        return f"password must be at most {MAX_PASSWORD} characters (密码最多{MAX_PASSWORD}位)"
    if password.strip() != password or any(unicodedata.category(c).startswith("C") for c in password):
        return "password must not start or end with spaces or hold control characters (密码含有无效字符)"
    lowered = password.lower()
    if username and len(username) >= 3 and username.lower() in lowered:
        return "password must not contain the user name (密码不能包含用户名)"
    if len(set(lowered)) < 4 or len(lowered) - len(_weak_parts(lowered)) < 4:
        return (
            "password is too easy to guess: avoid common words, repeated characters and runs like 12345678 or "
            "qwerty (密码过于简单，请避免常见词、重复字符和连续字符)"
        )
    return None


def check_password(password: str, username: str = "") -> None:
    problem = weak_password(password, username)
    if problem:
        raise InvalidAccount(problem, "password")


# ---------------------------------------------------------------- accounts


def _now() -> datetime:
    return datetime.now(UTC)


def local_time(ts: datetime) -> str:
    return ts.astimezone(SHANGHAI).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    role: str
    tenants: tuple[str, ...]
    community_id: str | None
    password_hash: str = field(repr=False)
    disabled: bool
    token_version: int
    created_at: datetime
    updated_at: datetime
    responder: tuple[str, str] | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.role, self.tenants, self.community_id, self.responder)

    def principal(self) -> Principal:
        """Who the account acts as: a community worker's carries its community (None for one from before
        communities were required: gateway/identity.py refuses it)."""
        return Principal(
            sub=self.username,
            role=self.role,
            tenants=self.tenants,
            responder=self.responder,
            community=self.community_id if self.role == COMMUNITY_ROLE else None,
        )

    def as_json(self) -> dict[str, Any]:
        """What the API shows (never the hash or the version)."""
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "tenants": list(self.tenants),
            "community_id": self.community_id,
            "responder": format_responder(self.responder) if self.responder else None,
            "disabled": self.disabled,
            "created_at": local_time(self.created_at),
            "updated_at": local_time(self.updated_at),
        }


def check_display_name(raw: str) -> str:
    name = unicodedata.normalize("NFKC", raw).strip()
    if not name or len(name) > MAX_DISPLAY_NAME or any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidAccount(
            f"display_name must be 1-{MAX_DISPLAY_NAME} printable characters (姓名无效)", "display_name"
        )
    return name


def _responder_of(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    raw = doc.get("responder")
    if not raw:
        return None
    try:
        return parse_responder(str(raw))
    except ValueError:
        return None  # a member without a valid responder gets no principal the services accept


def _from_doc(doc: Mapping[str, Any]) -> Account:
    created = doc["created_at"]
    return Account(
        username=str(doc["_id"]),
        display_name=str(doc.get("display_name", "")),
        role=str(doc["role"]),
        tenants=tuple(str(t) for t in doc.get("tenants", [])),
        community_id=doc.get("community_id") or None,
        password_hash=str(doc.get("password_hash", "")),
        disabled=bool(doc.get("disabled", False)),
        token_version=int(doc.get("token_version", 0)),
        created_at=created,
        updated_at=doc.get("updated_at", created),
        responder=_responder_of(doc),
    )


class AccountStore:
    """The accounts collection. The client connects on first use, so building one costs nothing."""

    def __init__(self, mongo_uri: str, *, collection: Collection[Any] | None = None) -> None:
        self.mongo_uri = mongo_uri
        self._collection = collection
        self._client: pymongo.MongoClient[Any] | None = None
        self._lock = threading.Lock()

    @property
    def accounts(self) -> Collection[Any]:
        if self._collection is None:
            with self._lock:
                if self._collection is None:
                    self._client = pymongo.MongoClient(
                        self.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000
                    )
                    self._collection = self._client[DATABASE][COLLECTION]
        return self._collection

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def get(self, username: str) -> Account | None:
        doc = self.accounts.find_one({"_id": username})
        return _from_doc(doc) if doc else None

    def create(self, username: str, display_name: str, scope: Scope, password_hash: str) -> Account:
        now = _now().replace(microsecond=0)
        doc = {
            "_id": username,
            "display_name": display_name,
            "role": scope.role,
            "tenants": list(scope.tenants),
            "community_id": scope.community_id,
            "responder": format_responder(scope.responder) if scope.responder else None,
            "password_hash": password_hash,
            "disabled": False,
            "token_version": 1,
            "created_at": now,
            "updated_at": now,
        }
        try:
            self.accounts.insert_one(doc)
        except pymongo.errors.DuplicateKeyError:
            raise AccountExists(username) from None
        return _from_doc(doc)

    def _modify(self, query: dict[str, Any], changes: dict[str, Any], *, bump: bool) -> Account | None:
        update: dict[str, Any] = {"$set": {**changes, "updated_at": _now().replace(microsecond=0)}}
        if bump:
            update["$inc"] = {"token_version": 1}
        doc = self.accounts.find_one_and_update(query, update, return_document=pymongo.ReturnDocument.AFTER)
        return _from_doc(doc) if doc else None

    def change_scope(self, account: Account, scope: Scope) -> Account:
        """Set role, tenants and community, ending the account's sessions; ChangedConcurrently if the
        account changed since `account` was read (its token_version is the optimistic lock)."""
        changed = self._modify(
            {"_id": account.username, "token_version": account.token_version},
            {
                "role": scope.role,
                "tenants": list(scope.tenants),
                "community_id": scope.community_id,
                "responder": format_responder(scope.responder) if scope.responder else None,
            },
            bump=True,
        )
        if changed is None:
            raise ChangedConcurrently(account.username)
        return changed

    def end_sessions(self, username: str) -> Account:
        """Bump token_version: every session JWT issued so far is refused from now on."""
        changed = self._modify({"_id": username}, {}, bump=True)
        if changed is None:
            raise AccountNotFound(username)
        return changed

    def set_password(self, username: str, password_hash: str) -> Account:
        """A new password; ends the account's sessions."""
        changed = self._modify({"_id": username}, {"password_hash": password_hash}, bump=True)
        if changed is None:
            raise AccountNotFound(username)
        return changed

    def rehash(self, username: str, old_hash: str, new_hash: str) -> None:
        """Replace a hash made with outdated parameters (same password: sessions stay valid)."""
        self.accounts.update_one({"_id": username, "password_hash": old_hash}, {"$set": {"password_hash": new_hash}})

    def set_disabled(self, username: str, disabled: bool) -> Account:
        changed = self._modify({"_id": username}, {"disabled": disabled}, bump=True)
        if changed is None:
            raise AccountNotFound(username)
        return changed

    def page(self, *, after: str = "", limit: int = 100, tenant: str | None = None) -> list[Account]:
        """Accounts in _id order after `after`; with `tenant`, those that may act on it (its slug or '*')."""
        query: dict[str, Any] = {"_id": {"$gt": after}} if after else {}
        if tenant is not None:
            query["tenants"] = {"$in": [tenant, ALL_TENANTS]}
        cursor = self.accounts.find(query, sort=[("_id", pymongo.ASCENDING)], limit=limit)
        return [_from_doc(doc) for doc in cursor]


# ---------------------------------------------------------------- CLI

CLI_ACTOR = "cli"


def _read_password(prompt_twice: bool) -> str:
    """The new password: one line of stdin when it is not a terminal, else typed twice without echo."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("new password (新密码): ")
    if prompt_twice and getpass.getpass("again (再次输入): ") != first:
        raise InvalidAccount("the two passwords differ (两次输入的密码不一致)", "password")
    return first


def _audit(settings: Any, action: str, target: str, detail: Mapping[str, Any] | None = None) -> None:
    from services.common.audit import open_log

    open_log(settings).append(
        actor=CLI_ACTOR, role="ops", action=action, outcome="allowed", target=target, detail=dict(detail or {})
    )


def check_community_exists(scope: Scope, exists: Callable[[str, str], bool]) -> None:
    """A community worker's community must be one of its tenant's (InvalidAccount otherwise); `exists(tenant,
    community_id)` asks the org data (gateway/community.py Communities.exists)."""
    if scope.role != COMMUNITY_ROLE or scope.community_id is None:
        return
    tenant = scope.tenants[0]
    if not exists(tenant, scope.community_id):
        raise InvalidAccount(
            f"community {scope.community_id!r} does not exist in {tenant} (该街道/镇没有这个社区)", "community_id"
        )


def _cli_check_community(settings: Any, scope: Scope) -> None:
    """check_community_exists against the running system's org service (CommunityUnchecked if it is down)."""
    if scope.role != COMMUNITY_ROLE or scope.community_id is None:
        return
    import grpc

    from gateway.community import cli_communities

    communities, channel = cli_communities(settings)
    try:
        check_community_exists(scope, communities.exists)
    except grpc.RpcError as exc:
        raise CommunityUnchecked(
            f"cannot check community {scope.community_id!r}: the org service at {settings.address('org')} answered "
            f"{exc.code().name}; start the system (make up) and retry (无法核对社区)"
        ) from None
    finally:
        channel.close()


def _cmd_create(store: AccountStore, settings: Any, args: argparse.Namespace) -> int:
    if args.all_tenants and args.tenant:
        raise InvalidAccount("give --tenant or --all-tenants, not both", "tenants")
    username = normalise_username(args.username)
    scope = check_scope(
        args.role, [ALL_TENANTS] if args.all_tenants else list(args.tenant or []), args.community, args.responder
    )
    display_name = check_display_name(args.display_name or username)
    if store.get(username) is not None:
        raise AccountExists(username)
    _cli_check_community(settings, scope)
    password = _read_password(prompt_twice=True)
    check_password(password, username)
    _audit(settings, "account.create", username, {"to": scope.as_dict()})
    account = store.create(username, display_name, scope, hash_password(password))
    community = f"; community {account.community_id}" if account.community_id else ""
    print(f"created {account.username} (role {account.role}; tenants {','.join(account.tenants) or '-'}{community})")
    return 0


def _cmd_set_community(store: AccountStore, settings: Any, args: argparse.Namespace) -> int:
    """Give a community worker's account the community it works for (audited as a role change; ends its
    sessions, as every scope change does)."""
    username = normalise_username(args.username)
    account = store.get(username)
    if account is None:
        raise AccountNotFound(username)
    if account.role != COMMUNITY_ROLE:
        raise InvalidAccount(
            f"{username} is a {account.role}: only a community_worker works for a community (仅社区工作者可指定社区)",
            "community_id",
        )
    scope = check_scope(account.role, list(account.tenants), args.community, None)
    if scope == account.scope:
        print(f"{username} already works for community {scope.community_id} (无需修改)")
        return 0
    _cli_check_community(settings, scope)
    _audit(settings, "role.change", username, {"from": account.scope.as_dict(), "to": scope.as_dict()})
    try:
        store.change_scope(account, scope)
    except ChangedConcurrently:
        print(f"error: {username} changed meanwhile; run the command again (账号已被修改，请重试)", file=sys.stderr)
        return 1
    print(f"{username} now works for community {scope.community_id}; its sessions have ended (已设置所属社区)")
    return 0


def _cmd_set_password(store: AccountStore, settings: Any, args: argparse.Namespace) -> int:
    username = normalise_username(args.username)
    if store.get(username) is None:
        raise AccountNotFound(username)
    password = _read_password(prompt_twice=True)
    check_password(password, username)
    _audit(settings, "account.password", username)
    store.set_password(username, hash_password(password))
    print(f"new password set for {username}; its sessions have ended (已修改密码，原有登录已失效)")
    return 0


def _set_disabled(disabled: bool) -> Callable[[AccountStore, Any, argparse.Namespace], int]:
    def run(store: AccountStore, settings: Any, args: argparse.Namespace) -> int:
        username = normalise_username(args.username)
        if store.get(username) is None:
            raise AccountNotFound(username)
        _audit(settings, "account.disable" if disabled else "account.enable", username)
        store.set_disabled(username, disabled)
        print(f"{username} {'disabled; its sessions have ended (已停用)' if disabled else 'enabled (已启用)'}")
        return 0

    return run


def _table(accounts: Iterable[Account]) -> list[str]:
    rows = [("username", "display name", "role", "tenants", "community", "status", "updated")]
    rows += [
        (
            a.username,
            a.display_name,
            a.role,
            ",".join(a.tenants) or "-",
            a.community_id or "-",
            "disabled" if a.disabled else "active",
            local_time(a.updated_at),
        )
        for a in accounts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _cmd_list(store: AccountStore, _settings: Any, args: argparse.Namespace) -> int:
    accounts: list[Account] = []
    after = ""
    while True:
        page = store.page(after=after, limit=500, tenant=args.tenant)
        accounts += page
        if len(page) < 500:
            break
        after = page[-1].username
    for line in _table(accounts):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.users", description="Manage people's accounts (passwords are read, never shown)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create an account; the password is read from stdin or prompted twice")
    create.add_argument("--username", required=True)
    create.add_argument("--role", required=True, choices=ACCOUNT_ROLES)
    create.add_argument("--tenant", action="append", help="a tenant the account may act on (repeatable)")
    create.add_argument("--all-tenants", action="store_true", help="every tenant ('*')")
    create.add_argument("--community", help="role community_worker (required): the community it works for")
    create.add_argument("--responder", help="a member's helper: member_unit:ID, person:ID or team:ID")
    create.add_argument("--display-name", help="the name shown in portals (default: the user name)")
    set_community = sub.add_parser(
        "set-community", help="set the community a community worker works for (checked with the org service)"
    )
    set_community.add_argument("--username", required=True)
    set_community.add_argument("--community", required=True, help="the community's id in the account's tenant")
    for name, text in (
        ("set-password", "set a new password (stdin or prompted twice); ends the account's sessions"),
        ("disable", "refuse log-ins and end the account's sessions"),
        ("enable", "allow log-ins again"),
    ):
        sub.add_parser(name, help=text).add_argument("--username", required=True)
    listing = sub.add_parser("list", help="list the accounts (never a password or hash)")
    listing.add_argument("--tenant", help="only accounts that may act on this tenant")
    args = parser.parse_args(argv)

    from services.common.settings import get_settings

    settings = get_settings()
    store = AccountStore(settings.mongo_uri)
    commands: dict[str, Callable[[AccountStore, Any, argparse.Namespace], int]] = {
        "create": _cmd_create,
        "set-community": _cmd_set_community,
        "set-password": _cmd_set_password,
        "disable": _set_disabled(True),
        "enable": _set_disabled(False),
        "list": _cmd_list,
    }
    try:
        return commands[args.command](store, settings, args)
    except InvalidAccount as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except AccountExists as exc:
        print(f"error: an account named {exc} exists already (账号已存在)", file=sys.stderr)
        return 1
    except AccountNotFound as exc:
        print(f"error: no account named {exc} (账号不存在)", file=sys.stderr)
        return 1
    except CommunityUnchecked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except pymongo.errors.PyMongoError as exc:
        print(f"error: the account database is not reachable at {settings.mongo_uri}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
