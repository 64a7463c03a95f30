"""API tokens: format, hashing, the file, expiry, revocation without restart, the CLI, the header."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ApiError
from gateway.identity import ANONYMOUS, identify
from gateway.tokens import (
    AuthError,
    TokenFile,
    TokenFileError,
    TokenStore,
    check_scope,
    looks_like_token,
    main,
    make_record,
    new_token,
    token_hash,
)
from services.common.principal import Principal

NOW = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "api-tokens.toml"


class Entries:
    """What the CLI asks the audit log to append (the real log: tests/integration/test_token_cli_audit.py)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.entries: list[dict[str, Any]] = []

    def append(self, **entry: Any) -> object:
        if self.fail:
            raise ConnectionError("audit database down")
        self.entries.append(entry)
        return entry


@pytest.fixture
def audit() -> Entries:
    return Entries()


def test_a_token_is_random_urlsafe_with_the_hl_prefix() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for t in tokens:
        assert t.startswith("hl_") and len(t) == 46 and looks_like_token(t)
    assert not looks_like_token("hl_short")
    assert not looks_like_token("xx_" + "a" * 43)


def test_the_hash_is_sha256_of_the_whole_token() -> None:
    t = new_token()
    assert token_hash(t) == hashlib.sha256(t.encode()).hexdigest()


def test_the_file_holds_hashes_only_and_is_private(path: Path) -> None:
    token, record = TokenFile(path).create(
        "erp-sync", "community_worker", ["taiqian"], days=7, now=NOW, community="jiade"
    )
    text = path.read_text(encoding="utf-8")
    assert token not in text and token[3:] not in text
    assert record.sha256 in text and 'sub = "erp-sync"' in text and 'tenants = ["taiqian"]' in text
    assert 'community = "jiade"' in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert record.expires_at == NOW + timedelta(days=7)
    assert record.created_at == NOW


def test_a_valid_token_gives_its_principal(path: Path) -> None:
    token, record = TokenFile(path).create("portal", "subdistrict_admin", ["daimiao", "taiqian"], days=30)
    found = TokenStore(str(path)).authenticate(token)
    assert found == record
    p = found.principal()
    assert (p.sub, p.role, p.tenants) == ("portal", "subdistrict_admin", ("daimiao", "taiqian"))


@pytest.mark.parametrize(
    ("presented", "kind"),
    [("hl_" + "A" * 43, "unknown"), ("hl_short", "malformed"), ("Bearer x", "malformed"), ("", "malformed")],
)
def test_unknown_and_malformed_tokens_are_refused(path: Path, presented: str, kind: str) -> None:
    TokenFile(path).create("portal", "resident", ["taiqian"])
    with pytest.raises(AuthError) as exc:
        TokenStore(str(path)).authenticate(presented)
    assert exc.value.kind == kind


def test_an_expired_token_is_refused_saying_so(path: Path) -> None:
    token, _ = TokenFile(path).create("portal", "resident", ["taiqian"], days=1, now=NOW)
    store = TokenStore(str(path))
    assert store.authenticate(token, now=NOW + timedelta(hours=23)).sub == "portal"
    with pytest.raises(AuthError) as exc:
        store.authenticate(token, now=NOW + timedelta(days=1))
    assert exc.value.kind == "expired" and "令牌已过期" in exc.value.message


def test_revocation_is_seen_without_a_restart(path: Path) -> None:
    tf = TokenFile(path)
    token, _ = tf.create("portal", "community_worker", ["taiqian"], community="jiade")
    other, _ = tf.create("other", "community_worker", ["taiqian"], community="jiade")
    store = TokenStore(str(path))
    store.load()
    assert store.authenticate(token).sub == "portal"
    assert tf.revoke(sub="portal") == 1  # within the same second: the file is replaced, so its inode changes
    with pytest.raises(AuthError) as exc:
        store.authenticate(token)
    assert exc.value.kind == "revoked"
    assert store.authenticate(other).sub == "other"
    assert tf.revoke(sub="portal") == 0  # already revoked


def test_revoke_one_token_by_id(path: Path) -> None:
    tf = TokenFile(path)
    first, r1 = tf.create("portal", "community_worker", ["taiqian"], community="jiade")
    second, _ = tf.create("portal", "community_worker", ["taiqian"], community="jiade")
    assert tf.revoke(token_id=r1.id) == 1
    store = TokenStore(str(path))
    with pytest.raises(AuthError):
        store.authenticate(first)
    assert store.authenticate(second).sub == "portal"


def test_a_file_created_after_start_is_picked_up(path: Path) -> None:
    store = TokenStore(str(path))
    store.load()  # no file yet: no tokens, no error
    assert store.records() == ()
    token, _ = TokenFile(path).create("late", "ops", [])
    assert store.authenticate(token).role == "ops"


def test_no_file_configured_means_no_tokens() -> None:
    store = TokenStore("")
    store.load()
    with pytest.raises(AuthError) as exc:
        store.authenticate(new_token())
    assert exc.value.kind == "unknown"


def test_an_unreadable_file_stops_start_up_and_later_fails_closed(path: Path) -> None:
    path.write_text("this is [not toml", encoding="utf-8")
    with pytest.raises(TokenFileError, match="not valid TOML"):
        TokenStore(str(path)).load()
    path.unlink()
    token, _ = TokenFile(path).create("portal", "resident", ["taiqian"])
    store = TokenStore(str(path))
    store.load()
    assert store.authenticate(token).sub == "portal"
    path.write_text(path.read_text(encoding="utf-8") + "\n[[[broken\n", encoding="utf-8")
    with pytest.raises(AuthError) as exc:
        store.authenticate(token)
    assert exc.value.kind == "unknown"


def test_invalid_entries_are_skipped_not_the_whole_file(path: Path) -> None:
    tf = TokenFile(path)
    token, _ = tf.create("portal", "resident", ["taiqian"])
    forged = new_token()
    # A hand-written entry for the internal `service` role: services never take API tokens.
    path.write_text(
        path.read_text(encoding="utf-8") + '\n[[token]]\nid = "tok_bad"\nsub = "x"\nrole = "service"\ntenants = ["*"]\n'
        f'sha256 = "{token_hash(forged)}"\ncreated_at = 2025-01-01T00:00:00Z\nexpires_at = 2099-01-01T00:00:00Z\n',
        encoding="utf-8",
    )
    store = TokenStore(str(path))
    store.load()
    assert store.authenticate(token).sub == "portal"
    with pytest.raises(AuthError):
        store.authenticate(forged)
    _records, problems = tf.read()
    assert problems and "service" in problems[0]


@pytest.mark.parametrize(
    ("role", "tenants", "message"),
    [
        ("service", ["*"], "cannot hold an API token"),
        ("mayor", ["*"], "cannot hold an API token"),
        ("ops", ["*", "taiqian"], "not both"),
        ("resident", ["gotham"], "unknown tenant 'gotham'"),
    ],
)
def test_scope_is_checked(role: str, tenants: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_scope(role, tenants)


def test_a_bad_sub_is_refused() -> None:
    with pytest.raises(ValueError, match="sub"):
        make_record("has space", "ops", [], NOW + timedelta(days=1))


def test_cli_prints_the_token_once_and_never_again(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, audit: Entries
) -> None:
    assert (
        main(
            ["--file", str(path), "create", "--sub", "demo-admin", "--role", "subdistrict_admin", "--all-tenants"],
            audit,
        )
        == 0
    )
    out, err = capsys.readouterr()
    token = out.strip()
    assert looks_like_token(token) and "shown only this once" in err and token not in err
    assert main(["--file", str(path), "list"], audit) == 0
    out, _ = capsys.readouterr()
    assert "demo-admin" in out and "subdistrict_admin" in out and "active" in out and token not in out
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["--file", str(path), "verify"], audit) == 0
    assert "demo-admin" in capsys.readouterr().out
    assert main(["--file", str(path), "revoke", "--sub", "demo-admin"], audit) == 0
    assert main(["--file", str(path), "revoke", "--sub", "demo-admin"], audit) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["--file", str(path), "verify"], audit) == 1
    assert "revoked" in capsys.readouterr().err
    assert main(["--file", str(path), "list"], audit) == 0
    assert "revoked" in capsys.readouterr().out


def test_cli_refuses_bad_input_with_a_message(path: Path, capsys: pytest.CaptureFixture[str], audit: Entries) -> None:
    assert main(["--file", str(path), "create", "--sub", "x", "--role", "ops", "--tenant", "gotham"], audit) == 2
    assert "unknown tenant 'gotham'" in capsys.readouterr().err
    args = ["--file", str(path), "create", "--sub", "x", "--role", "ops", "--tenant", "taiqian", "--all-tenants"]
    assert main(args, audit) == 2
    assert main(["--file", str(path), "create", "--sub", "x", "--role", "ops", "--days", "0"], audit) == 2
    assert "days must be" in capsys.readouterr().err
    assert not path.exists()


# ---------------------------------------------------------------- the Authorization header


def test_no_header_is_the_anonymous_public(path: Path) -> None:
    assert identify(None, TokenStore(str(path))) is ANONYMOUS
    assert ANONYMOUS.principal.role == "public" and ANONYMOUS.anonymous


@pytest.mark.parametrize(
    ("header", "error", "code"),
    [
        ("Basic dXNlcjpwdw==", "invalid_request", "unauthenticated"),
        ("Bearer", "invalid_request", "unauthenticated"),
        ("", "invalid_request", "unauthenticated"),
        ("Bearer a b", "invalid_request", "unauthenticated"),
        ("Bearer not-a-token", "invalid_token", "unauthenticated"),
        ("Bearer hl_" + "z" * 43, "invalid_token", "unauthenticated"),
    ],
)
def test_bad_headers_are_401_with_a_bearer_challenge(path: Path, header: str, error: str, code: str) -> None:
    TokenFile(path).create("portal", "resident", ["taiqian"])
    with pytest.raises(ApiError) as exc:
        identify(header, TokenStore(str(path)))
    assert exc.value.status == 401 and exc.value.code == code
    challenge = exc.value.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="hongling"') and f'error="{error}"' in challenge
    assert challenge.isascii()


def test_expired_and_revoked_have_their_own_codes(path: Path) -> None:
    tf = TokenFile(path)
    old, _ = tf.create("old", "resident", ["taiqian"], days=1, now=NOW - timedelta(days=5))
    gone, _ = tf.create("gone", "resident", ["taiqian"])
    tf.revoke(sub="gone")
    store = TokenStore(str(path))
    for token, code in ((old, "token_expired"), (gone, "token_revoked")):
        with pytest.raises(ApiError) as exc:
            identify(f"Bearer {token}", store)
        assert exc.value.status == 401 and exc.value.code == code


def test_the_scheme_is_case_insensitive(path: Path) -> None:
    token, _ = TokenFile(path).create("portal", "resident", ["taiqian"])
    found = identify(f"bearer  {token} ", TokenStore(str(path)))
    assert found.principal.sub == "portal" and not found.anonymous


# ---------------------------------------------------------------- a community worker's community (社区范围)


class FakeCommunities:
    """Stands in for the org service the CLI asks (gateway/community.py cli_communities)."""

    def __init__(self, known: set[tuple[str, str]]) -> None:
        self.known = known
        self.asked: list[tuple[str, str]] = []

    def exists(self, tenant: str, community_id: str) -> bool:
        self.asked.append((tenant, community_id))
        return (tenant, community_id) in self.known


class Closed:
    def close(self) -> None:
        pass


@pytest.fixture
def communities(monkeypatch: pytest.MonkeyPatch) -> FakeCommunities:
    fake = FakeCommunities({("taiqian", "jiade")})
    monkeypatch.setattr("gateway.community.cli_communities", lambda _settings: (fake, Closed()))
    return fake


def legacy_worker_token(path: Path) -> tuple[str, str]:
    """A community worker's token as made before communities were required: (token, id)."""
    token = new_token()
    path.write_text(
        '[[token]]\nid = "tok_old1"\nsub = "old-portal"\nrole = "community_worker"\ntenants = ["taiqian"]\n'
        f'sha256 = "{token_hash(token)}"\ncreated_at = 2025-01-01T00:00:00Z\nexpires_at = 2099-01-01T00:00:00Z\n',
        encoding="utf-8",
    )
    return token, "tok_old1"


def test_a_community_worker_token_carries_its_community_into_the_principal(path: Path) -> None:
    token, record = TokenFile(path).create("portal", "community_worker", ["taiqian"], community=" jiade ")
    assert record.community == "jiade"
    found = identify(f"Bearer {token}", TokenStore(str(path)))
    assert found.principal == Principal("portal", "community_worker", ("taiqian",), community="jiade")


@pytest.mark.parametrize(
    ("role", "tenants", "community", "message"),
    [
        ("community_worker", ["taiqian"], None, "needs --community"),
        ("community_worker", ["taiqian", "daimiao"], "jiade", "exactly one tenant"),
        ("community_worker", ["*"], "jiade", "exactly one tenant"),
        ("community_worker", ["taiqian"], "has space", "not a community id"),
        ("subdistrict_admin", ["taiqian"], "jiade", "only a community_worker"),
        ("resident", ["taiqian"], "jiade", "only a community_worker"),
    ],
)
def test_only_a_community_worker_has_a_community_and_it_must_have_one(
    role: str, tenants: list[str], community: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_record("portal", role, tenants, NOW + timedelta(days=1), NOW, community=community)


def test_a_community_workers_token_without_a_community_is_refused_until_it_gets_one(path: Path) -> None:
    token, token_id = legacy_worker_token(path)
    store = TokenStore(str(path))
    [record], problems = TokenFile(path).read()  # kept in the file (not an invalid entry) ...
    assert not problems and record.community is None
    with pytest.raises(ApiError) as exc:  # ... but never let through unscoped
        identify(f"Bearer {token}", store)
    assert exc.value.status == 403 and exc.value.code == "community_required"
    assert f"python -m gateway.tokens set-community --id {token_id}" in exc.value.message
    assert "社区工作者尚未绑定所属社区" in exc.value.message
    fixed = TokenFile(path).set_community(token_id, "jiade")
    assert fixed.community == "jiade"
    assert identify(f"Bearer {token}", store).principal.community == "jiade"


def test_set_community_is_for_community_workers_tokens_only(path: Path) -> None:
    _, admin = TokenFile(path).create("portal", "subdistrict_admin", ["taiqian"])
    with pytest.raises(ValueError, match="only a community_worker"):
        TokenFile(path).set_community(admin.id, "jiade")
    with pytest.raises(ValueError, match="no token with id"):
        TokenFile(path).set_community("tok_nothing", "jiade")
    assert TokenFile(path).read()[0][0].community is None


def test_cli_checks_the_community_exists_in_the_tenant(
    path: Path, capsys: pytest.CaptureFixture[str], communities: FakeCommunities, audit: Entries
) -> None:
    base = ["--file", str(path), "create", "--sub", "w", "--role", "community_worker", "--tenant", "taiqian"]
    assert main(base, audit) == 2
    assert "needs --community" in capsys.readouterr().err
    assert main([*base, "--community", "nowhere"], audit) == 2
    assert "does not exist in taiqian" in capsys.readouterr().err and not path.exists()
    assert main([*base, "--community", "jiade"], audit) == 0
    assert "works for community jiade" in capsys.readouterr().err
    assert communities.asked == [("taiqian", "nowhere"), ("taiqian", "jiade")]
    assert main(["--file", str(path), "list"], audit) == 0
    assert "jiade" in capsys.readouterr().out


def test_cli_sets_the_community_of_an_old_token(
    path: Path,
    capsys: pytest.CaptureFixture[str],
    communities: FakeCommunities,
    monkeypatch: pytest.MonkeyPatch,
    audit: Entries,
) -> None:
    token, token_id = legacy_worker_token(path)
    assert main(["--file", str(path), "list"], audit) == 0
    assert "(none: refused)" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["--file", str(path), "verify"], audit) == 1
    assert "community_required" in capsys.readouterr().err
    assert main(["--file", str(path), "set-community", "--id", token_id, "--community", "nowhere"], audit) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--file", str(path), "set-community", "--id", token_id, "--community", "jiade"], audit) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["--file", str(path), "verify"], audit) == 0
    assert "community jiade" in capsys.readouterr().out


# ---------------------------------------------------------------- the CLI's audit entries


def test_every_change_the_cli_makes_is_audited_without_the_token(
    path: Path, capsys: pytest.CaptureFixture[str], audit: Entries
) -> None:
    args = ["--file", str(path), "create", "--sub", "mzj-sys", "--role", "district_department", "--all-tenants"]
    assert main(args, audit) == 0
    token = capsys.readouterr().out.strip()
    (record,) = TokenFile(path).read()[0]
    assert main(["--file", str(path), "list"], audit) == 0  # a read: no entry
    assert main(["--file", str(path), "revoke", "--id", record.id], audit) == 0
    assert [(e["action"], e["outcome"], e["role"], e["target"]) for e in audit.entries] == [
        ("token.create", "done", "ops", record.id),
        ("token.revoke", "done", "ops", record.id),
    ]
    first = audit.entries[0]
    assert first["actor"].startswith("cli:") and first["tenant"] == ""  # every tenant: the district's entry
    assert first["detail"]["sub"] == "mzj-sys" and first["detail"]["tenants"] == ["*"]
    assert first["detail"]["role"] == "district_department" and first["detail"]["expires_at"].endswith("Z")
    assert token not in repr(audit.entries) and record.sha256 not in repr(audit.entries)


def test_when_the_audit_log_cannot_be_written_the_cli_changes_nothing(
    path: Path, capsys: pytest.CaptureFixture[str], audit: Entries
) -> None:
    args = ["--file", str(path), "create", "--sub", "kept", "--role", "ops", "--tenant", "taiqian"]
    assert main(args, audit) == 0
    down = Entries(fail=True)
    capsys.readouterr()
    assert main(["--file", str(path), "create", "--sub", "other", "--role", "ops", "--tenant", "taiqian"], down) == 2
    out, err = capsys.readouterr()
    assert out == "" and "audit log could not be written" in err and "no token was created" in err
    assert main(["--file", str(path), "revoke", "--sub", "kept"], down) == 2
    assert "no token was revoked" in capsys.readouterr().err
    (kept,) = TokenFile(path).read()[0]
    assert kept.sub == "kept" and kept.status(datetime.now(UTC)) == "active"


def test_each_expiry_is_audited_once(path: Path, capsys: pytest.CaptureFixture[str], audit: Entries) -> None:
    _, old = make_record("old-sys", "ops", ["taiqian"], NOW + timedelta(days=1), NOW)
    _, revoked = make_record("gone-sys", "ops", ["taiqian"], NOW + timedelta(days=1), NOW)
    TokenFile(path).update(lambda rs: [*rs, old, revoked])
    TokenFile(path).revoke(token_id=revoked.id)  # revoked before it expired: its end is the revocation
    assert main(["--file", str(path), "sweep"], audit) == 0
    assert main(["--file", str(path), "sweep"], audit) == 0
    args = ["--file", str(path), "create", "--sub", "new-sys", "--role", "ops", "--tenant", "taiqian"]
    assert main(args, audit) == 0  # a changing command looks too, and finds nothing new
    assert [(e["action"], e["target"], e["tenant"]) for e in audit.entries] == [
        ("token.expire", old.id, "taiqian"),
        ("token.create", TokenFile(path).read()[0][-1].id, "taiqian"),
    ]
    assert "1 expired token(s)" in capsys.readouterr().err
