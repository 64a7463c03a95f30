"""People's accounts and sessions: passwords (argon2id, verification, rehash, strength), names and scopes,
who may manage whom, session JWTs (issue, verify, expiry, version bump, cache), the second credential kind
in gateway/identity.py, and the auth/users routes through Flask with the account store and audit log in
memory (tests/e2e/test_auth.py runs the same against the real database)."""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import grpc
import jwt
import pymongo.errors
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.clients import Clients
from gateway.errors import ApiError
from gateway.identity import identify
from gateway.sessions import AUDIENCE, ISSUER, AccountsUnavailable, SessionVerifier, decode, issue
from gateway.tokens import AuthError, TokenFile, TokenStore
from gateway.users import (
    Account,
    AccountExists,
    AccountNotFound,
    AccountStore,
    ChangedConcurrently,
    InvalidAccount,
    Scope,
    check_scope,
    dummy_hash,
    hash_password,
    may_manage,
    needs_rehash,
    normalise_username,
    verify_dummy,
    verify_password,
    weak_password,
)
from services.common.principal import Principal, mint
from services.common.settings import Settings
from tests.unit.test_gateway_policy import NoNetwork

SECRET = "unit-test-session-secret-0123456789abcdef"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # old, weaker parameters
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # the route tests' "current" parameters
T0 = datetime(2025, 5, 1, tzinfo=UTC)


def account(
    username: str = "alice", role: str = "community_worker", tenants: tuple[str, ...] = ("taiqian",), **kw: Any
) -> Account:
    values: dict[str, Any] = {
        "username": username,
        "display_name": "张三",
        "role": role,
        "tenants": tenants,
        "community_id": "c-1" if role == "community_worker" else None,
        "password_hash": "",
        "disabled": False,
        "token_version": 1,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(kw)
    return Account(**values)


# ---------------------------------------------------------------- passwords


def test_a_password_hash_is_argon2id_salted_and_verifies_only_the_password() -> None:
    first, second = hash_password("Zx9#kLm2Qp!"), hash_password("Zx9#kLm2Qp!")
    assert first.startswith("$argon2id$") and first != second  # a fresh salt each time
    assert "Zx9#kLm2Qp!" not in first
    assert verify_password(first, "Zx9#kLm2Qp!") and verify_password(second, "Zx9#kLm2Qp!")
    assert not verify_password(first, "Zx9#kLm2Qp?")
    assert not verify_password("not a hash", "Zx9#kLm2Qp!")  # corrupt hash: a mismatch, not an exception
    assert not needs_rehash(first)


def test_a_hash_made_with_other_parameters_needs_a_rehash_and_still_verifies() -> None:
    old = hash_password("Zx9#kLm2Qp!", CHEAP)
    assert verify_password(old, "Zx9#kLm2Qp!")
    assert needs_rehash(old) and needs_rehash("garbage")
    assert not needs_rehash(hash_password("Zx9#kLm2Qp!"))


def test_the_dummy_hash_for_unknown_names_costs_what_a_real_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dummy_hash() == dummy_hash() and not needs_rehash(dummy_hash())  # today's parameters, made once
    monkeypatch.setattr("gateway.users.HASHER", FAST)
    assert dummy_hash().startswith("$argon2id$v=19$m=1024,t=1,p=1$")  # follows the parameters in force
    verify_dummy("any password")  # never raises, never matches anything


@pytest.mark.parametrize(
    "password",
    ["short1!", "12345678aA", "Password12", "Abcd1234!!", "qwertyuiop1", "1qaz2wsx3edc", "aaaaaaaaab", "woaini1314520"],
)
def test_short_and_common_passwords_are_refused_bilingually(password: str) -> None:
    problem = weak_password(password)
    assert problem is not None and "密码" in problem


def test_good_passwords_pass_and_the_user_name_is_not_a_password() -> None:
    for password in ("Zx9#kLm2Qp", "correct horse battery", "Tr0ub4dor&3x"):
        assert weak_password(password, "alice") is None, password
    assert "用户名" in str(weak_password("alice-in-2024!", "alice"))
    assert weak_password(" leading-space-pw") is not None


# ---------------------------------------------------------------- names, scopes, who manages whom


def test_user_names_are_normalised_and_checked() -> None:
    assert normalise_username("  Alice.W ") == "alice.w"
    assert normalise_username("ＡＢＣ１２") == "abc12"  # full-width forms (NFKC)
    for bad in ("", "a", "-lead", "has space", "张三", "anonymous", "x" * 65):
        with pytest.raises(InvalidAccount) as exc:
            normalise_username(bad)
        assert exc.value.field == "username"


def test_scopes() -> None:
    assert check_scope("community_worker", ["taiqian"], "c-1") == Scope("community_worker", ("taiqian",), "c-1")
    assert check_scope("ops", []) == Scope("ops", ())
    assert check_scope("subdistrict_admin", ["*"]).tenants == ("*",)
    for role, tenants, community, field in (
        ("service", ["taiqian"], None, "role"),
        ("public", ["taiqian"], None, "role"),
        ("resident", [], None, "tenants"),
        ("resident", ["gotham"], None, "tenants"),
        ("resident", ["*", "taiqian"], None, "tenants"),
        ("resident", ["taiqian"], "c-1", "community_id"),
        ("community_worker", ["taiqian", "daimiao"], "c-1", "tenants"),
        ("community_worker", ["taiqian"], "bad id!", "community_id"),
        ("community_worker", ["taiqian"], None, "community_id"),  # a community worker works for one community
    ):
        with pytest.raises(InvalidAccount) as exc:
            check_scope(role, tenants, community)
        assert exc.value.field == field, (role, tenants, community)


def test_ops_manage_anyone_subdistrict_admins_their_tenants_tenant_roles_only() -> None:
    ops = Principal("o", "ops", ("taiqian",))
    admin = Principal("a", "subdistrict_admin", ("taiqian", "daimiao"))
    admin_all = Principal("a2", "subdistrict_admin", ("*",))
    assert may_manage(ops, Scope("district_approver", ())) and may_manage(ops, Scope("resident", ("caiyuan",)))
    assert may_manage(admin, Scope("community_worker", ("taiqian",)))
    assert may_manage(admin, Scope("subdistrict_admin", ("taiqian", "daimiao")))
    assert not may_manage(admin, Scope("resident", ("caiyuan",)))
    assert not may_manage(admin, Scope("resident", ("taiqian", "caiyuan")))
    assert not may_manage(admin, Scope("resident", ("*",)))
    assert may_manage(admin_all, Scope("resident", ("*",)))
    for district in ("district_approver", "district_department", "ops"):
        assert not may_manage(admin_all, Scope(district, ("*",)))
    for other in ("resident", "community_worker", "district_approver", "district_department", "public"):
        assert not may_manage(Principal("x", other, ("*",)), Scope("resident", ("taiqian",)))


# ---------------------------------------------------------------- session tokens


def test_a_session_token_carries_the_claims_and_round_trips() -> None:
    acc = account(token_version=7)
    token, claims = issue(acc, SECRET, 1800)
    raw = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert raw["sub"] == "alice" and raw["role"] == "community_worker" and raw["tenants"] == ["taiqian"]
    assert raw["ver"] == 7 and raw["exp"] - raw["iat"] == 1800
    assert raw["iss"] == "hongling-gateway-session" and raw["aud"] == "hongling-portal"
    assert "张三" not in token and "password" not in raw
    assert decode(token, SECRET) == claims


def test_expired_forged_and_foreign_tokens_are_refused() -> None:
    acc = account()
    old, _ = issue(acc, SECRET, 1800, now=time.time() - 3600)
    with pytest.raises(AuthError) as exc:
        decode(old, SECRET)
    assert exc.value.kind == "expired" and "登录已过期" in exc.value.message
    good, _ = issue(acc, SECRET, 1800)
    header, payload, signature = good.split(".")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    forged = [
        issue(acc, "another-secret-of-at-least-32-characters", 1800)[0],  # wrong key
        f"{header}.{payload}.{signature[::-1]}",  # bad signature
        jwt.encode({"sub": "alice", "role": "ops", "tenants": ["*"], "ver": 1}, SECRET, algorithm="HS256"),  # no exp
        mint(Principal("alice", "ops", ("*",)), SECRET),  # a service principal: other iss/aud
        jwt.encode(
            {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": "a",
                "role": "ops",
                "tenants": "*",
                "ver": 1,
                "iat": 1,
                "exp": 2**40,
            },
            SECRET,
            algorithm="HS256",
        ),  # tenants not a list
        f"{unsigned}.{payload}.",  # alg none
    ]
    for token in forged:
        with pytest.raises(AuthError) as exc:
            decode(token, SECRET)
        assert exc.value.kind == "unknown", token


class Lookups:
    def __init__(self, *accounts: Account) -> None:
        self.accounts = {a.username: a for a in accounts}
        self.calls = 0
        self.fail = False

    def __call__(self, username: str) -> Account | None:
        self.calls += 1
        if self.fail:
            raise pymongo.errors.ServerSelectionTimeoutError("no server")
        return self.accounts.get(username)


def test_a_version_bump_disabling_or_deleting_ends_the_session() -> None:
    acc = account(token_version=3)
    lookups = Lookups(acc)
    verifier = SessionVerifier(SECRET, lookups, cache_seconds=0)
    token, _ = issue(acc, SECRET, 1800)
    found, claims = verifier.authenticate(token)
    assert found == acc and claims.ver == 3
    for changed in (dataclasses.replace(acc, token_version=4), dataclasses.replace(acc, disabled=True)):
        lookups.accounts["alice"] = changed
        with pytest.raises(AuthError) as exc:
            verifier.authenticate(token)
        assert exc.value.kind == "revoked"
    del lookups.accounts["alice"]
    with pytest.raises(AuthError) as exc:
        verifier.authenticate(token)
    assert exc.value.kind == "revoked"


def test_the_account_lookup_is_cached_for_seconds_and_forgotten_on_change() -> None:
    acc = account()
    lookups = Lookups(acc)
    now = [100.0]
    verifier = SessionVerifier(SECRET, lookups, cache_seconds=3.0, clock=lambda: now[0])
    token, _ = issue(acc, SECRET, 1800)
    for _ in range(5):
        verifier.authenticate(token)
    assert lookups.calls == 1
    lookups.accounts["alice"] = dataclasses.replace(acc, token_version=2)
    verifier.authenticate(token)  # still cached: accepted for at most cache_seconds
    now[0] += 3.0
    with pytest.raises(AuthError):
        verifier.authenticate(token)
    assert lookups.calls == 2
    lookups.accounts["alice"] = acc
    now[0] += 3.0
    verifier.authenticate(token)
    lookups.accounts["alice"] = dataclasses.replace(acc, token_version=2)
    verifier.forget("alice")  # this process made the change: at once
    with pytest.raises(AuthError):
        verifier.authenticate(token)


def test_an_unreachable_account_database_is_not_a_refusal() -> None:
    acc = account()
    lookups = Lookups(acc)
    lookups.fail = True
    token, _ = issue(acc, SECRET, 1800)
    with pytest.raises(AccountsUnavailable):
        SessionVerifier(SECRET, lookups).authenticate(token)
    with pytest.raises(ApiError) as exc:
        identify(f"Bearer {token}", TokenStore(""), SessionVerifier(SECRET, lookups))
    assert exc.value.status == 503 and exc.value.headers["Retry-After"]


def test_identify_accepts_api_tokens_and_session_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "api-tokens.toml"
    api_token, record = TokenFile(tokens).create("unit-ops", "ops", ["*"])
    acc = account(token_version=2)
    verifier = SessionVerifier(SECRET, Lookups(acc))
    store = TokenStore(str(tokens))
    by_token = identify(f"Bearer {api_token}", store, verifier)
    assert by_token.kind == "api_token" and by_token.token_id == record.id and not by_token.anonymous
    session, _ = issue(acc, SECRET, 1800)
    by_session = identify(f"Bearer {session}", store, verifier)
    assert by_session.kind == "session" and by_session.account == acc and not by_session.anonymous
    assert by_session.principal == Principal("alice", "community_worker", ("taiqian",), community="c-1")
    assert identify(None, store, verifier).kind == "anonymous"
    for header, code in (
        ("Bearer not-a-token", "unauthenticated"),
        ("Bearer hl_guess", "unauthenticated"),
        (f"Bearer {issue(dataclasses.replace(acc, token_version=1), SECRET, 1800)[0]}", "token_revoked"),
        (f"Bearer {issue(acc, SECRET, 60, now=time.time() - 600)[0]}", "token_expired"),
    ):
        with pytest.raises(ApiError) as exc:
            identify(header, store, verifier)
        assert exc.value.status == 401 and exc.value.code == code, header
        assert exc.value.headers["WWW-Authenticate"].startswith("Bearer ")


# ---------------------------------------------------------------- the routes, with the store in memory


class MemoryAccounts(AccountStore):
    """AccountStore's contract over a dict (the real one is exercised by tests/e2e/test_auth.py)."""

    def __init__(self) -> None:
        super().__init__("mongodb://unused.invalid/")
        self.docs: dict[str, Account] = {}
        self.rehashed: list[str] = []

    def get(self, username: str) -> Account | None:
        return self.docs.get(username)

    def create(self, username: str, display_name: str, scope: Scope, password_hash: str) -> Account:
        if username in self.docs:
            raise AccountExists(username)
        self.docs[username] = account(
            username, scope.role, scope.tenants, display_name=display_name, password_hash=password_hash
        )
        self.docs[username] = dataclasses.replace(self.docs[username], community_id=scope.community_id)
        return self.docs[username]

    def _change(self, username: str, bump: bool = True, **changes: Any) -> Account:
        if username not in self.docs:
            raise AccountNotFound(username)
        old = self.docs[username]
        self.docs[username] = dataclasses.replace(old, token_version=old.token_version + int(bump), **changes)
        return self.docs[username]

    def change_scope(self, acc: Account, scope: Scope) -> Account:
        if self.docs[acc.username].token_version != acc.token_version:
            raise ChangedConcurrently(acc.username)
        return self._change(acc.username, role=scope.role, tenants=scope.tenants, community_id=scope.community_id)

    def end_sessions(self, username: str) -> Account:
        return self._change(username)

    def set_password(self, username: str, password_hash: str) -> Account:
        return self._change(username, password_hash=password_hash)

    def rehash(self, username: str, old_hash: str, new_hash: str) -> None:
        if self.docs[username].password_hash == old_hash:
            self.rehashed.append(username)
            self._change(username, bump=False, password_hash=new_hash)

    def set_disabled(self, username: str, disabled: bool) -> Account:
        return self._change(username, disabled=disabled)

    def page(self, *, after: str = "", limit: int = 100, tenant: str | None = None) -> list[Account]:
        names = sorted(n for n in self.docs if n > after)
        found = [self.docs[n] for n in names if tenant is None or {tenant, "*"} & set(self.docs[n].tenants)]
        return found[:limit]


class MemoryAudit:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, **entry: Any) -> None:
        self.entries.append(entry)


class Communities:
    """The org data the routes ask whether a community exists (gateway/community.py Communities)."""

    def __init__(self, known: set[tuple[str, str]]) -> None:
        self.known = known
        self.down = False

    def exists(self, tenant: str, community_id: str) -> bool:
        if self.down:
            raise DownRpcError()
        return (tenant, community_id) in self.known


class DownRpcError(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


@dataclasses.dataclass
class Rig:
    client: FlaskClient
    accounts: MemoryAccounts
    audit: MemoryAudit
    tokens: Path
    communities: Communities

    def bearer(self, role: str, *tenants: str, sub: str = "") -> dict[str, str]:
        token, _ = TokenFile(self.tokens).create(
            sub or f"unit-{role}-{'-'.join(tenants).replace('*', 'all') or 'none'}",
            role,
            tenants,
            community="c-1" if role == "community_worker" else None,
        )
        return {"Authorization": f"Bearer {token}"}

    def add(self, username: str, password: str, role: str = "community_worker", *tenants: str, **kw: Any) -> Account:
        acc = account(username, role, tenants or ("taiqian",), password_hash=hash_password(password), **kw)
        self.accounts.docs[username] = acc
        return acc

    def login(self, username: str, password: str) -> Any:
        return self.client.post("/api/v1/auth/login", json={"username": username, "password": password})


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setattr("gateway.users.HASHER", FAST)  # the routes' logic, not argon2's cost, is tested here
    settings = Settings(
        api_tokens_file=str(tmp_path / "api-tokens.toml"),
        session_secret=SECRET,
        rate_ip_per_second=1000,
        rate_ip_burst=1000,
        rate_principal_per_second=1000,
        rate_principal_burst=1000,
        rate_login_per_minute=100,
        rate_login_ip_per_minute=1000,
    )
    app: Flask = create_app(settings, clients=cast(Clients, NoNetwork()))
    accounts, audit = MemoryAccounts(), MemoryAudit()
    app.extensions["hongling.accounts"] = accounts
    app.extensions["hongling.sessions"] = SessionVerifier(SECRET, accounts.get, cache_seconds=0)
    app.extensions["hongling.audit"] = audit
    app.extensions["hongling.communities"] = communities = Communities({("taiqian", "c-1"), ("taiqian", "c-9")})
    yield Rig(app.test_client(), accounts, audit, tmp_path / "api-tokens.toml", communities)


def session_header(resp: Any) -> dict[str, str]:
    assert resp.status_code == 200, resp.json
    return {"Authorization": f"Bearer {resp.json['access_token']}"}


def test_log_in_use_the_session_and_log_out(rig: Rig) -> None:
    rig.add("alice", "Zx9#kLm2Qp!", "community_worker", "taiqian", community_id="c-1")
    resp = rig.login(" Alice ", "Zx9#kLm2Qp!")
    body = resp.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1800
    assert body["role"] == "community_worker" and body["tenants"] == ["taiqian"] and body["community_id"] == "c-1"
    assert resp.headers["Cache-Control"] == "no-store"
    headers = session_header(resp)
    me = rig.client.get("/api/v1/auth/me", headers=headers).json
    assert me == {
        "kind": "session",
        "sub": "alice",
        "role": "community_worker",
        "tenants": ["taiqian"],
        "display_name": "张三",
        "community_id": "c-1",
    }
    assert rig.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    refused = rig.client.get("/api/v1/auth/me", headers=headers)
    assert refused.status_code == 401 and refused.json["error"]["code"] == "token_revoked"


def test_wrong_password_unknown_user_and_disabled_account_get_the_same_401(rig: Rig) -> None:
    rig.add("alice", "Zx9#kLm2Qp!")
    rig.add("bob", "Zx9#kLm2Qp!", disabled=True)
    answers = [
        rig.login("alice", "wrong-password"),
        rig.login("nobody", "Zx9#kLm2Qp!"),
        rig.login("bob", "Zx9#kLm2Qp!"),
    ]
    answers.append(rig.login("不是名字", "Zx9#kLm2Qp!"))
    for resp in answers:
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer ")
        assert resp.json["error"]["code"] == "invalid_credentials"
    assert len({r.json["error"]["message"] for r in answers}) == 1
    assert rig.client.post("/api/v1/auth/login", json={"username": "alice"}).status_code == 400


def test_a_login_rehashes_a_password_hashed_with_old_parameters(rig: Rig) -> None:
    acc = rig.add("alice", "Zx9#kLm2Qp!")
    rig.accounts.docs["alice"] = dataclasses.replace(acc, password_hash=hash_password("Zx9#kLm2Qp!", CHEAP))
    headers = session_header(rig.login("alice", "Zx9#kLm2Qp!"))
    new = rig.accounts.docs["alice"].password_hash
    assert rig.accounts.rehashed == ["alice"] and verify_password(new, "Zx9#kLm2Qp!")
    assert not needs_rehash(new) and new.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert rig.client.get("/api/v1/auth/me", headers=headers).status_code == 200  # no version bump
    session_header(rig.login("alice", "Zx9#kLm2Qp!"))
    assert rig.accounts.rehashed == ["alice"]


def test_logout_needs_a_session(rig: Rig) -> None:
    assert rig.client.post("/api/v1/auth/logout").status_code == 401
    resp = rig.client.post("/api/v1/auth/logout", headers=rig.bearer("ops", "*"))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "not_a_session"
    me = rig.client.get("/api/v1/auth/me", headers=rig.bearer("ops", "*", sub="unit-ops")).json
    assert me["kind"] == "api_token" and me["sub"] == "unit-ops" and me["token_id"].startswith("tok_")
    assert rig.client.get("/api/v1/auth/me").json == {
        "kind": "anonymous",
        "sub": "anonymous",
        "role": "public",
        "tenants": [],
    }


def test_create_an_account_with_permissions_and_password_rules(rig: Rig) -> None:
    admin = rig.bearer("subdistrict_admin", "taiqian")
    new = {
        "username": "Carol",
        "display_name": "李四",
        "role": "resident",
        "tenants": ["taiqian"],
        "password": "Zx9#kLm2Qp!",
    }
    resp = rig.client.post("/api/v1/users", json=new, headers=admin)
    assert resp.status_code == 201 and resp.json["username"] == "carol" and "password_hash" not in resp.json
    assert verify_password(rig.accounts.docs["carol"].password_hash, "Zx9#kLm2Qp!")
    assert rig.audit.entries[-1]["action"] == "account.create" and rig.audit.entries[-1]["target"] == "carol"
    assert "李四" not in str(rig.audit.entries) and "Zx9#kLm2Qp!" not in str(rig.audit.entries)
    again = rig.client.post("/api/v1/users", json=new, headers=admin)
    assert again.status_code == 409
    weak = rig.client.post("/api/v1/users", json=new | {"username": "dave", "password": "12345678aA"}, headers=admin)
    assert weak.status_code == 400 and weak.json["error"]["field"] == "password"
    for body, code in (
        (new | {"username": "erin", "tenants": ["caiyuan"]}, "tenant_out_of_scope"),
        (new | {"username": "erin", "role": "district_approver", "tenants": []}, "forbidden"),
        (new | {"username": "erin", "role": "ops", "tenants": ["*"]}, "forbidden"),
    ):
        refused = rig.client.post("/api/v1/users", json=body, headers=admin)
        assert refused.status_code == 403 and refused.json["error"]["code"] == code, body
        assert rig.audit.entries[-1]["outcome"] == "refused"
    assert "erin" not in rig.accounts.docs
    assert (
        rig.client.post("/api/v1/users", json=new, headers=rig.bearer("community_worker", "taiqian")).status_code == 403
    )
    ops = rig.bearer("ops")
    made = rig.client.post(
        "/api/v1/users", json=new | {"username": "frank", "role": "district_approver", "tenants": []}, headers=ops
    )
    assert made.status_code == 201


def test_a_role_change_bumps_the_version_and_is_audited_in_scope_only(rig: Rig) -> None:
    rig.add("alice", "Zx9#kLm2Qp!", "resident", "taiqian")
    headers = session_header(rig.login("alice", "Zx9#kLm2Qp!"))
    other = rig.bearer("subdistrict_admin", "caiyuan")
    change = {"role": "community_worker", "tenants": ["taiqian"], "community_id": "c-9"}
    refused = rig.client.put("/api/v1/users/alice/role", json=change, headers=other)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "tenant_out_of_scope"
    assert rig.audit.entries[-1]["outcome"] == "refused" and rig.accounts.docs["alice"].role == "resident"
    up = rig.client.put(
        "/api/v1/users/alice/role", json={"role": "ops", "tenants": ["*"]}, headers=rig.bearer("subdistrict_admin", "*")
    )
    assert up.status_code == 403 and up.json["error"]["code"] == "forbidden"
    admin = rig.bearer("subdistrict_admin", "taiqian", sub="unit-admin")
    resp = rig.client.put("/api/v1/users/ALICE/role", json=change, headers=admin)
    assert resp.status_code == 200 and resp.json["role"] == "community_worker" and resp.json["community_id"] == "c-9"
    entry = rig.audit.entries[-1]
    assert entry["action"] == "role.change" and entry["actor"] == "unit-admin" and entry["target"] == "alice"
    assert entry["role"] == "subdistrict_admin" and entry["tenant"] == "taiqian"
    assert entry["detail"] == {
        "from": {"role": "resident", "tenants": ["taiqian"], "community_id": None},
        "to": {"role": "community_worker", "tenants": ["taiqian"], "community_id": "c-9"},
    }
    assert rig.client.get("/api/v1/auth/me", headers=headers).status_code == 401  # the old session ended
    count = len(rig.audit.entries)
    same = rig.client.put("/api/v1/users/alice/role", json=change, headers=admin)
    assert same.status_code == 200 and len(rig.audit.entries) == count  # nothing changed, nothing logged
    assert rig.client.put("/api/v1/users/nobody/role", json=change, headers=admin).status_code == 404
    bad = rig.client.put("/api/v1/users/alice/role", json={"role": "king", "tenants": ["taiqian"]}, headers=admin)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "role"


def test_nobody_changes_their_own_role(rig: Rig) -> None:
    rig.add("boss", "Zx9#kLm2Qp!", "subdistrict_admin", "taiqian")
    headers = session_header(rig.login("boss", "Zx9#kLm2Qp!"))
    resp = rig.client.put("/api/v1/users/boss/role", json={"role": "resident", "tenants": ["taiqian"]}, headers=headers)
    assert resp.status_code == 403 and rig.accounts.docs["boss"].role == "subdistrict_admin"


def test_list_accounts_shows_only_what_the_caller_may_manage(rig: Rig) -> None:
    rig.add("a-taiqian", "Zx9#kLm2Qp!", "resident", "taiqian")
    rig.add("b-caiyuan", "Zx9#kLm2Qp!", "resident", "caiyuan")
    rig.add("c-ops", "Zx9#kLm2Qp!", "ops", "*")
    admin = rig.bearer("subdistrict_admin", "taiqian")
    names = [u["username"] for u in rig.client.get("/api/v1/users", headers=admin).json["users"]]
    assert names == ["a-taiqian"]
    ops = rig.client.get("/api/v1/users?tenant=caiyuan", headers=rig.bearer("ops", "taiqian")).json
    assert [u["username"] for u in ops["users"]] == ["b-caiyuan", "c-ops"] and ops["next_page_token"] is None
    page = rig.client.get("/api/v1/users?page_size=2", headers=rig.bearer("ops")).json
    assert len(page["users"]) == 2 and page["next_page_token"] == "b-caiyuan"
    assert rig.client.get("/api/v1/users?tenant=caiyuan", headers=admin).status_code == 403
    assert rig.client.get("/api/v1/users?tenant=gotham", headers=admin).status_code == 404
    assert rig.client.get("/api/v1/users?page_size=0", headers=admin).status_code == 400
    assert rig.client.get("/api/v1/users", headers=rig.bearer("resident", "taiqian")).status_code == 403
    assert rig.client.get("/api/v1/users").status_code == 401


# ---------------------------------------------------------------- a community worker's community (社区范围)


def test_a_community_worker_account_needs_a_community_of_its_tenant(rig: Rig) -> None:
    admin = rig.bearer("subdistrict_admin", "taiqian")
    new = {
        "username": "wang",
        "display_name": "王社工",
        "role": "community_worker",
        "tenants": ["taiqian"],
        "password": "Zx9#kLm2Qp!",
    }
    missing = rig.client.post("/api/v1/users", json=new, headers=admin)
    assert missing.status_code == 400 and missing.json["error"]["field"] == "community_id"
    assert "社区工作者须指定所属社区" in missing.json["error"]["message"]
    unknown = rig.client.post("/api/v1/users", json=new | {"community_id": "nowhere"}, headers=admin)
    assert unknown.status_code == 400 and unknown.json["error"]["field"] == "community_id"
    assert "does not exist in taiqian" in unknown.json["error"]["message"]
    rig.communities.down = True
    down = rig.client.post("/api/v1/users", json=new | {"community_id": "c-9"}, headers=admin)
    assert down.status_code == 503 and down.headers["Retry-After"]
    rig.communities.down = False
    assert "wang" not in rig.accounts.docs
    made = rig.client.post("/api/v1/users", json=new | {"community_id": "c-9"}, headers=admin)
    assert made.status_code == 201 and made.json["community_id"] == "c-9"
    assert rig.audit.entries[-1]["detail"]["to"]["community_id"] == "c-9"
    me = rig.client.get("/api/v1/auth/me", headers=session_header(rig.login("wang", "Zx9#kLm2Qp!"))).json
    assert me["community_id"] == "c-9" and me["role"] == "community_worker"


def test_a_role_change_to_community_worker_needs_an_existing_community(rig: Rig) -> None:
    rig.add("bob", "Zx9#kLm2Qp!", "resident", "taiqian")
    admin = rig.bearer("subdistrict_admin", "taiqian")
    change = {"role": "community_worker", "tenants": ["taiqian"]}
    resp = rig.client.put("/api/v1/users/bob/role", json=change, headers=admin)
    assert resp.status_code == 400 and resp.json["error"]["field"] == "community_id"
    resp = rig.client.put("/api/v1/users/bob/role", json=change | {"community_id": "c-404"}, headers=admin)
    assert resp.status_code == 400 and "does not exist" in resp.json["error"]["message"]
    assert rig.accounts.docs["bob"].role == "resident"
    moved = rig.client.put("/api/v1/users/bob/role", json=change | {"community_id": "c-9"}, headers=admin)
    assert moved.status_code == 200 and moved.json["community_id"] == "c-9"


def test_an_account_without_its_community_may_not_log_in_nor_use_a_session(rig: Rig) -> None:
    acc = rig.add("old", "Zx9#kLm2Qp!", "community_worker", "taiqian")
    headers = session_header(rig.login("old", "Zx9#kLm2Qp!"))
    rig.accounts.docs["old"] = dataclasses.replace(acc, community_id=None)  # as stored before it was required
    for resp in (rig.client.get("/api/v1/auth/me", headers=headers), rig.login("old", "Zx9#kLm2Qp!")):
        assert resp.status_code == 403 and resp.json["error"]["code"] == "community_required"
        message = resp.json["error"]["message"]
        assert (
            "python -m gateway.users set-community --username old" in message
            and "社区工作者尚未绑定所属社区" in message
        )
    wrong = rig.login("old", "wrong-password-1")  # a wrong password still gets the one 401, telling nothing
    assert wrong.status_code == 401 and wrong.json["error"]["code"] == "invalid_credentials"


class Closed:
    def close(self) -> None:
        pass


def test_the_cli_sets_a_community_workers_community_audited(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import users

    store = MemoryAccounts()
    store.docs["old"] = account("old", community_id=None, token_version=3)
    store.docs["res"] = account("res", "resident")
    audited: list[tuple[str, str, Any]] = []
    monkeypatch.setattr(
        users, "_audit", lambda _s, action, target, detail=None: audited.append((action, target, detail))
    )
    known = Communities({("taiqian", "c-9")})
    monkeypatch.setattr("gateway.community.cli_communities", lambda _s: (known, Closed()))

    def run(*argv: str) -> int:
        parsed = dataclasses.make_dataclass("Args", ["username", "community"])(*argv)
        return users._cmd_set_community(store, Settings(), parsed)

    with pytest.raises(InvalidAccount, match="does not exist in taiqian"):
        run("old", "c-404")
    with pytest.raises(InvalidAccount, match="only a community_worker"):
        run("res", "c-9")
    assert not audited
    assert run("old", "c-9") == 0
    assert store.docs["old"].community_id == "c-9" and store.docs["old"].token_version == 4  # its sessions ended
    assert audited == [
        (
            "role.change",
            "old",
            {
                "from": {"role": "community_worker", "tenants": ["taiqian"], "community_id": None},
                "to": {"role": "community_worker", "tenants": ["taiqian"], "community_id": "c-9"},
            },
        )
    ]
