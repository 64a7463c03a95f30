"""People's log-in against the running system: accounts made through the API (with API tokens) and the
CLI, sessions used on org reads, log-out and role changes ending sessions, the same 401 for a wrong
password and an unknown user, role changes scoped to the admin's tenant and written to the audit log,
a community worker's community (checked against the org data, set on an old account from the CLI), and
the log-in rate limit (429 with Retry-After)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from gateway.users import hash_password
from services.common.audit import open_log
from tests.conftest import REPO, TEST_COMMUNITY, System, unique, wait_for

OWN, OTHER = "daimiao", "taiqian"
PASSWORD = "Lz8#qv-Mountain-Tai"


def api(system: System, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    return requests.request(method, f"{system.gateway}/api/v1/{path}", headers=headers or {}, timeout=10, **kw)


def create_user(
    system: System, admin: dict[str, str], role: str = "community_worker", tenant: str = OWN, **extra: Any
) -> str:
    username = unique("u")
    body = {"username": username, "display_name": "王五", "role": role, "tenants": [tenant], "password": PASSWORD}
    if role == "community_worker":
        body["community_id"] = TEST_COMMUNITY  # every tenant of the test stack has it
    resp = api(system, "POST", "users", admin, json=body | extra)
    assert resp.status_code == 201, resp.text
    assert resp.json()["username"] == username and "password_hash" not in resp.json()
    return username


def login(system: System, username: str, password: str = PASSWORD) -> Any:
    return api(system, "POST", "auth/login", json={"username": username, "password": password})


def session(system: System, username: str, password: str = PASSWORD) -> dict[str, str]:
    resp = login(system, username, password)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def org_read(system: System, headers: dict[str, str], tenant: str = OWN) -> Any:
    return api(system, "GET", f"tenants/{tenant}/org/communities?page_size=1", headers)


def test_log_in_use_the_session_on_org_reads_and_log_out(system: System) -> None:
    username = create_user(system, system.auth("subdistrict_admin", OWN))
    resp = login(system, username.upper())  # names are case-insensitive
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1800
    assert body["role"] == "community_worker" and body["tenants"] == [OWN]
    assert resp.headers["Cache-Control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}

    assert org_read(system, headers).status_code == 200
    other = org_read(system, headers, OTHER)
    assert other.status_code == 403 and other.json()["error"]["code"] == "tenant_out_of_scope"
    me = api(system, "GET", "auth/me", headers).json()
    assert me == {
        "kind": "session",
        "sub": username,
        "role": "community_worker",
        "tenants": [OWN],
        "display_name": "王五",
        "community_id": TEST_COMMUNITY,
    }

    assert api(system, "POST", "auth/logout", headers).status_code == 204
    refused = org_read(system, headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer ")
    assert org_read(system, session(system, username)).status_code == 200  # a new log-in works


def test_a_wrong_password_and_an_unknown_user_get_the_same_401(system: System) -> None:
    username = create_user(system, system.auth("subdistrict_admin", OWN))
    wrong = login(system, username, "Not-the-password-42")
    unknown = login(system, unique("nobody"), PASSWORD)
    for resp in (wrong, unknown):
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_credentials"
        assert "access_token" not in resp.text
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert "用户名或密码错误" in wrong.json()["error"]["message"]


def test_weak_passwords_and_scopes_beyond_the_admin_are_refused(system: System) -> None:
    admin = system.auth("subdistrict_admin", OWN)
    body = {"username": unique("u"), "display_name": "赵六", "role": "resident", "tenants": [OWN]}
    weak = api(system, "POST", "users", admin, json=body | {"password": "12345678aA"})
    assert weak.status_code == 400 and weak.json()["error"]["field"] == "password"
    for change, code in (
        ({"tenants": [OTHER]}, "tenant_out_of_scope"),
        ({"role": "ops", "tenants": ["*"]}, "forbidden"),
    ):
        resp = api(system, "POST", "users", admin, json=body | {"password": PASSWORD} | change)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == code, resp.text
    worker = api(system, "POST", "users", system.auth("community_worker", OWN), json=body | {"password": PASSWORD})
    assert worker.status_code == 403
    approver = api(
        system,
        "POST",
        "users",
        system.auth("ops", OWN),
        json=body | {"role": "district_approver", "tenants": []} | {"password": PASSWORD},
    )
    assert approver.status_code == 201, approver.text


def test_role_changes_stay_in_the_admins_tenant_end_sessions_and_are_audited(system: System) -> None:
    username = create_user(system, system.auth("subdistrict_admin", OWN), role="resident")
    headers = session(system, username)
    change = {"role": "community_worker", "tenants": [OWN], "community_id": TEST_COMMUNITY}

    foreign = api(system, "PUT", f"users/{username}/role", system.auth("subdistrict_admin", OTHER), json=change)
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "tenant_out_of_scope"
    assert api(system, "GET", "auth/me", headers).json()["role"] == "resident"  # untouched, session still valid

    done = api(system, "PUT", f"users/{username}/role", system.auth("subdistrict_admin", OWN), json=change)
    assert done.status_code == 200, done.text
    assert done.json()["role"] == "community_worker" and done.json()["community_id"] == TEST_COMMUNITY
    assert org_read(system, headers).status_code == 401  # the role changed: the old session ended
    assert api(system, "GET", "auth/me", session(system, username)).json()["role"] == "community_worker"

    entries = [e for e in open_log(system.settings).iter_entries() if e.target == username]
    assert [(e.action, e.outcome) for e in entries] == [
        ("account.create", "allowed"),
        ("role.change", "refused"),
        ("role.change", "allowed"),
    ]
    changed = entries[-1]
    assert changed.actor == f"test-subdistrict_admin-{OWN}" and changed.role == "subdistrict_admin"
    assert changed.tenant == OWN and changed.request_id == done.headers["X-Request-Id"]
    assert changed.detail == {
        "from": {"role": "resident", "tenants": [OWN], "community_id": None},
        "to": {"role": "community_worker", "tenants": [OWN], "community_id": TEST_COMMUNITY},
    }
    assert "王五" not in str(entries) and PASSWORD not in str(entries)
    assert entries[1].actor == f"test-subdistrict_admin-{OTHER}"
    assert open_log(system.settings).verify().ok


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """python -m gateway.users, as an administrator runs it against the running system."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.users", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_accounts_from_the_cli_log_in_and_disabling_ends_their_sessions(system: System) -> None:
    username = unique("cli")

    made = cli("create", "--username", username, "--role", "resident", "--tenant", OWN, stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr
    weak = cli("create", "--username", unique("cli"), "--role", "resident", "--tenant", OWN, stdin="12345678aA\n")
    assert weak.returncode == 2 and "密码" in weak.stderr
    listed = cli("list", "--tenant", OWN)
    assert listed.returncode == 0 and username in listed.stdout and "$argon2" not in listed.stdout

    headers = session(system, username)
    assert api(system, "GET", "auth/me", headers).json()["sub"] == username
    assert cli("disable", "--username", username).returncode == 0
    # Another process changed the account: the gateway notices within its few seconds of caching.
    wait_for(lambda: api(system, "GET", "auth/me", headers).status_code == 401, timeout=10)
    assert login(system, username).status_code == 401
    assert cli("enable", "--username", username).returncode == 0
    new_password = f"Renewed-{uuid.uuid4().hex[:8]}-Tai"
    assert cli("set-password", "--username", username, stdin=new_password + "\n").returncode == 0
    assert login(system, username).status_code == 401
    assert login(system, username, new_password).status_code == 200


def test_a_burst_of_log_in_attempts_is_429_with_retry_after(system: System) -> None:
    username = create_user(system, system.auth("subdistrict_admin", OWN))
    statuses = [login(system, username, f"guess-{n}-wrong-pw").status_code for n in range(5)]
    assert statuses == [401] * 5
    limited = login(system, username)  # the right password, but too many attempts
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["code"] == "rate_limited"
    assert limited.json()["error"]["request_id"] == limited.headers["X-Request-Id"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert api(system, "GET", "tenants").status_code == 200  # other requests from this address go on
    assert requests.get(f"{system.gateway}/healthz", timeout=5).status_code == 200


def test_passwords_and_session_tokens_never_reach_the_logs(system: System) -> None:
    username = create_user(system, system.auth("subdistrict_admin", OWN))
    token = login(system, username).json()["access_token"]
    login(system, username, "Typo-Password-99")
    logs = Path(system.settings_state_dir) / "logs"
    text = "".join(p.read_text("utf-8", errors="replace") for p in logs.glob("*.log"))
    assert PASSWORD not in text and token not in text and "Typo-Password-99" not in text
    assert f"session opened for {username}" in (logs / "gateway.log").read_text("utf-8")


# ---------------------------------------------------------------- a community worker's community (社区范围)


def test_a_community_worker_account_needs_a_community_that_exists_in_its_tenant(system: System) -> None:
    admin = system.auth("subdistrict_admin", OWN)
    body = {"username": unique("u"), "display_name": "孙社工", "role": "community_worker", "tenants": [OWN]}
    for extra, words in (({}, "社区工作者须指定所属社区"), ({"community_id": "no-such-place"}, "does not exist in")):
        resp = api(system, "POST", "users", admin, json=body | extra | {"password": PASSWORD})
        assert resp.status_code == 400 and resp.json()["error"]["field"] == "community_id", resp.text
        assert words in resp.json()["error"]["message"]
    made = cli(
        "create", "--username", unique("cli"), "--role", "community_worker", "--tenant", OWN,
        "--community", "no-such-place", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert made.returncode == 2 and "does not exist in" in made.stderr


def test_an_old_community_worker_account_is_refused_until_the_cli_sets_its_community(
    system: System, mongo_client: Any
) -> None:
    username = unique("old")
    accounts = mongo_client["hl_identity"]["accounts"]
    now = datetime.now(UTC).replace(microsecond=0)
    accounts.insert_one(  # as stored before a community worker needed a community
        {
            "_id": username,
            "display_name": "老社工",
            "role": "community_worker",
            "tenants": [OWN],
            "community_id": None,
            "password_hash": hash_password(PASSWORD),
            "disabled": False,
            "token_version": 1,
            "created_at": now,
            "updated_at": now,
        }
    )
    refused = login(system, username)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "community_required", refused.text
    assert f"python -m gateway.users set-community --username {username}" in refused.json()["error"]["message"]
    assert login(system, username, "Wrong-password-77").status_code == 401  # a wrong password learns nothing
    wrong = cli("set-community", "--username", username, "--community", "no-such-place")
    assert wrong.returncode == 2 and "does not exist in" in wrong.stderr
    done = cli("set-community", "--username", username, "--community", TEST_COMMUNITY)
    assert done.returncode == 0, done.stderr
    me = api(system, "GET", "auth/me", session(system, username)).json()
    assert (me["role"], me["community_id"]) == ("community_worker", TEST_COMMUNITY)
    [entry] = [e for e in open_log(system.settings).iter_entries() if e.target == username]
    assert (entry.action, entry.actor, entry.outcome) == ("role.change", "cli", "allowed")
    assert entry.detail["to"]["community_id"] == TEST_COMMUNITY and entry.detail["from"]["community_id"] is None
