"""Rate limits: token bucket math on an injected clock, pruning, Retry-After, the client address behind
trusted proxies, and the hooks through Flask (429 shape, exempt probes, per-caller and log-in limits)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, cast

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.clients import Clients
from gateway.ratelimit import TokenBuckets, bucket_key, client_ip, parse_networks, retry_after
from gateway.tokens import TokenFile
from services.common.settings import Settings
from tests.unit.test_gateway_policy import NoNetwork


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the bucket


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5)  # one token comes every 1/rate s
    clock.now += 0.25
    assert buckets.take("k") == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert buckets.take("k") == 0.0
    assert buckets.take("k") == pytest.approx(0.5)
    clock.now += 60
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]  # full again, never more than burst
    assert buckets.take("k") > 0


def test_keys_have_their_own_buckets_and_cost_counts() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=2, clock=clock)
    assert buckets.take("a", cost=2) == 0.0
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0
    assert buckets.take("b", cost=3) == pytest.approx(2.0)  # more than the burst: waits for tokens it can't hold


def test_idle_buckets_are_pruned_and_the_number_of_keys_is_capped() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=5, clock=clock)
    for key in ("a", "b"):
        buckets.take(key)
    assert len(buckets) == 2
    clock.now += 5  # empty -> full takes burst/rate = 5 s: both buckets are as good as new
    buckets.take("c")
    assert len(buckets) == 1

    capped = TokenBuckets(rate=1, burst=5, clock=clock, max_keys=2)
    assert all(capped.take("a") == 0 for _ in range(5))
    capped.take("b")
    assert capped.take("a") > 0  # a refusal counts as use: now b is the least recently used
    capped.take("c")  # a third key: the least recently used (b) goes
    assert len(capped) == 2
    assert capped.take("a") > 0  # a was kept, still empty


def test_a_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBuckets(rate=1, burst=0)


@pytest.mark.parametrize(("wait", "header"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (11.9, 12)])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: int) -> None:
    assert retry_after(wait) == header


# ---------------------------------------------------------------- the client address


PROXIES = parse_networks("10.0.0.0/8, 192.168.1.1, ::1")


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # an untrusted peer's header is ignored
        ("10.1.2.3", "1.2.3.4", "1.2.3.4"),
        ("10.1.2.3", "6.6.6.6, 1.2.3.4, 10.9.9.9", "1.2.3.4"),  # right-most that is not a proxy
        ("192.168.1.1", "1.2.3.4:5678", "1.2.3.4"),
        ("::1", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.1.2.3", "garbage, 10.9.9.9", "10.9.9.9"),  # a malformed hop stops at the last proxy
        ("10.1.2.3", "", "10.1.2.3"),
        ("::ffff:203.0.113.9", None, "203.0.113.9"),
        ("unix-socket", None, "unix-socket"),
    ],
)
def test_the_client_address(peer: str, xff: str | None, client: str) -> None:
    assert client_ip(peer, xff, PROXIES) == client


def test_proxies_parse_and_ipv6_clients_share_a_64() -> None:
    assert PROXIES[0] == ipaddress.ip_network("10.0.0.0/8") and len(PROXIES) == 3
    assert parse_networks("") == ()
    assert bucket_key("2001:db8:1:2:aaaa::1") == bucket_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert bucket_key("2001:db8:1:3::1") != bucket_key("2001:db8:1:2::1")
    assert bucket_key("203.0.113.9") == "203.0.113.9"


def test_a_bad_trusted_proxies_setting_names_the_variable() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.local")


# ---------------------------------------------------------------- through Flask


def make_app(tmp_path: Path, **limits: Any) -> Flask:
    values: dict[str, Any] = {
        "rate_ip_per_second": 1000,
        "rate_ip_burst": 1000,
        "rate_principal_per_second": 1000,
        "rate_principal_burst": 1000,
        "rate_login_per_minute": 5,
        "rate_login_ip_per_minute": 1000,
        "trusted_proxies": "",
    }
    values.update(limits)
    settings = Settings(api_tokens_file=str(tmp_path / "api-tokens.toml"), **values)
    return create_app(settings, clients=cast(Clients, NoNetwork()))


def assert_429(resp: Any, within: int) -> None:
    assert resp.status_code == 429, resp.json
    error = resp.json["error"]
    assert error["code"] == "rate_limited" and error["request_id"] == resp.headers["X-Request-Id"]
    assert "请" in error["message"] and "retry in" in error["message"]
    assert 1 <= int(resp.headers["Retry-After"]) <= within


def test_the_per_ip_limit_answers_429_with_retry_after_and_spares_the_probes(tmp_path: Path) -> None:
    client = make_app(tmp_path, rate_ip_per_second=0.5, rate_ip_burst=2).test_client()
    assert [client.get("/api/v1/tenants").status_code for _ in range(2)] == [200, 200]
    assert_429(client.get("/api/v1/tenants"), within=2)
    assert_429(client.get("/api/v1/tenants/taiqian/org/people"), within=2)  # before authentication
    for _ in range(20):
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
    other = client.get("/api/v1/tenants", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert other.status_code == 200


def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    trusting = make_app(tmp_path, rate_ip_per_second=0.5, rate_ip_burst=1, trusted_proxies="127.0.0.1").test_client()
    for n in range(5):  # five clients behind the proxy: a bucket each
        resp = trusting.get("/api/v1/tenants", headers={"X-Forwarded-For": f"198.51.100.{n}"})
        assert resp.status_code == 200
    assert trusting.get("/api/v1/tenants", headers={"X-Forwarded-For": "198.51.100.0"}).status_code == 429
    direct = make_app(tmp_path, rate_ip_per_second=0.5, rate_ip_burst=1).test_client()
    assert direct.get("/api/v1/tenants", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert direct.get("/api/v1/tenants", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 429


def test_the_per_caller_limit_applies_to_tokens_not_to_the_anonymous_public(tmp_path: Path) -> None:
    client: FlaskClient = make_app(tmp_path, rate_principal_per_second=0.1, rate_principal_burst=3).test_client()
    tokens = TokenFile(tmp_path / "api-tokens.toml")
    first, _ = tokens.create("unit-first", "ops", ["*"])
    second, _ = tokens.create("unit-second", "ops", ["*"])
    for _ in range(3):
        assert client.get("/api/v1/tenants", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    limited = client.get("/api/v1/tenants", headers={"Authorization": f"Bearer {first}"})
    assert_429(limited, within=10)
    assert "account or token" in limited.json["error"]["message"]
    assert client.get("/api/v1/tenants", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    assert all(client.get("/api/v1/tenants").status_code == 200 for _ in range(10))


def test_log_in_attempts_are_limited_per_address_and_user_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.users.HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    app = make_app(tmp_path, rate_login_per_minute=3, rate_login_ip_per_minute=5)

    class NoAccounts:
        def get(self, _username: str) -> None:
            return None

    app.extensions["hongling.accounts"] = NoAccounts()
    client = app.test_client()

    def attempt(name: str, addr: str = "127.0.0.1") -> Any:
        body = {"username": name, "password": "wrong-password"}
        return client.post("/api/v1/auth/login", json=body, environ_base={"REMOTE_ADDR": addr})

    assert [attempt("Alice").status_code for _ in range(3)] == [401, 401, 401]
    assert_429(attempt("alice"), within=20)  # the same name, normalised: 3 a minute -> one every 20 s
    assert attempt("alice", "203.0.113.7").status_code == 401  # another address has its own
    assert attempt("bob").status_code == 401
    limited = attempt("carol")  # 5 attempts from this address a minute, whatever the names (refused ones too)
    assert_429(limited, within=12)
    assert "address" in limited.json["error"]["message"]
