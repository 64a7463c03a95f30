"""Rate limits at the gateway: token buckets per client IP, per caller and for log-in attempts.

- Per client IP (every request except /healthz, /readyz, /metrics), checked before authentication so
  refused credentials count too: HONGLING_RATE_IP_PER_SECOND, burst HONGLING_RATE_IP_BURST (50/s, 100).
- Per authenticated caller (its principal's sub; API tokens and sessions alike, the anonymous public is
  limited per IP only), checked after authentication: HONGLING_RATE_PRINCIPAL_PER_SECOND, burst
  HONGLING_RATE_PRINCIPAL_BURST (20/s, 40).
- Log-in attempts (`POST /api/v1/auth/login`), to slow password guessing: per client IP and user name,
  HONGLING_RATE_LOGIN_PER_MINUTE (5), and per client IP alone, HONGLING_RATE_LOGIN_IP_PER_MINUTE (60),
  since every attempt costs an argon2 verification (unknown names included).
- Follow-up code checks (查询码: the reporter's follow, rating and rejection with X-Follow-Code), to slow
  guessing: per client IP, HONGLING_RATE_FOLLOW_PER_MINUTE (30).

Over a limit: 429 in the usual JSON error shape, code `rate_limited`, with `Retry-After` (whole seconds,
at least 1) saying when the bucket holds enough again.

The client IP is the direct peer (waitress's REMOTE_ADDR). X-Forwarded-For is believed only when the peer
is listed in HONGLING_TRUSTED_PROXIES: then the client is the right-most address in it that is not itself
a trusted proxy. IPv6 clients share one bucket per /64 (one host usually holds a whole /64).

The buckets are in memory, per gateway process: with N gateway processes (or replicas behind a load
balancer) each enforces the limits on its own share of the traffic, so a caller may get up to N times
the configured rate overall. Buckets idle long enough to be full again are pruned as requests arrive,
and at most MAX_KEYS are kept per limit (the least recently used go first).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flask import Flask, g, request
from prometheus_client import Counter

from gateway.errors import ApiError
from services.common.settings import Settings

MAX_KEYS = 100_000
EXEMPT_ENDPOINTS = frozenset({"healthz", "readyz", "metrics"})
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RATE_LIMITED = Counter(
    "hongling_gateway_rate_limited_total",
    "Requests the gateway refused with 429, by limit (ip, principal, login, login_ip, follow).",
    ["limit"],
)


class TokenBuckets:
    """One token bucket per key: `burst` tokens at most, refilled at `rate` per second; a request takes one.

    take() is thread-safe. A bucket that has been idle long enough to be full again is the same as no
    bucket, so it is dropped; keys are kept in least-recently-used order, which makes pruning a look at
    the oldest few on each call.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._refill_seconds = self.burst / self.rate  # empty -> full
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, as of)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from the key's bucket: 0.0 if they were there, else the seconds until they
        will be (nothing is taken then)."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            state = self._buckets.pop(key, None)
            if state is None:  # a new key: make room for it, least recently used first
                while len(self._buckets) >= self.max_keys:
                    self._buckets.popitem(last=False)
                state = (self.burst, now)
            tokens, since = state
            tokens = min(self.burst, tokens + max(0.0, now - since) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Drop the buckets that are full again (oldest first: the order is by last use)."""
        while self._buckets:
            key, (_tokens, since) = next(iter(self._buckets.items()))
            if now - since < self._refill_seconds:
                return
            del self._buckets[key]


def retry_after(wait: float) -> int:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """HONGLING_TRUSTED_PROXIES: comma-separated addresses or networks."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in value.split(",") if p.strip())


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = value.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def client_ip(remote_addr: str | None, forwarded_for: str | None, proxies: Sequence[IPNetwork]) -> str:
    """The client's address: the peer, or — when the peer is a trusted proxy — the right-most address of
    X-Forwarded-For that is not a trusted proxy (a malformed entry stops the walk at the last proxy)."""
    peer = _ip(remote_addr or "")
    if peer is None:
        return remote_addr or "unknown"
    if not forwarded_for or not _trusted(peer, proxies):
        return str(peer)
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        ip = _ip(hop)
        if ip is None:
            break
        client = ip
        if not _trusted(ip, proxies):
            break
    return str(client)


def bucket_key(address: str) -> str:
    """The key of an address's bucket: IPv4 as it is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Limit:
    name: str  # for the metric
    buckets: TokenBuckets
    message: str  # '{seconds}' is filled in

    def check(self, key: str) -> None:
        wait = self.buckets.take(key)
        if wait > 0:
            seconds = retry_after(wait)
            RATE_LIMITED.labels(self.name).inc()
            raise ApiError(
                429, "rate_limited", self.message.format(seconds=seconds), headers={"Retry-After": str(seconds)}
            )


class RateLimits:
    """The gateway's limits, built from the settings; `check_*` are the request hooks."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.proxies = parse_networks(settings.trusted_proxies)
        self.ip = Limit(
            "ip",
            TokenBuckets(settings.rate_ip_per_second, settings.rate_ip_burst, clock=clock),
            "too many requests from this address; retry in {seconds} s (请求过于频繁，请{seconds}秒后重试)",
        )
        self.principal = Limit(
            "principal",
            TokenBuckets(settings.rate_principal_per_second, settings.rate_principal_burst, clock=clock),
            "too many requests for this account or token; retry in {seconds} s (请求过于频繁，请{seconds}秒后重试)",
        )
        self.login = Limit(
            "login",
            TokenBuckets(settings.rate_login_per_minute / 60, settings.rate_login_per_minute, clock=clock),
            "too many log-in attempts for this user name; retry in {seconds} s (登录尝试过于频繁，请{seconds}秒后重试)",
        )
        self.login_ip = Limit(
            "login_ip",
            TokenBuckets(settings.rate_login_ip_per_minute / 60, settings.rate_login_ip_per_minute, clock=clock),
            "too many log-in attempts from this address; retry in {seconds} s (登录尝试过于频繁，请{seconds}秒后重试)",
        )

        self.follow = Limit(
            "follow",
            TokenBuckets(settings.rate_follow_per_minute / 60, settings.rate_follow_per_minute, clock=clock),
            "too many follow-up code checks from this address; retry in {seconds} s "
            "(查询过于频繁，请{seconds}秒后重试)",
        )

    def client(self) -> str:
        """The current request's client address (see client_ip)."""
        return client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"), self.proxies)

    def check_client(self) -> None:
        """before_request, ahead of authentication: the per-IP limit."""
        if request.routing_exception is None and request.endpoint in EXEMPT_ENDPOINTS:
            return
        self.ip.check(bucket_key(self.client()))

    def check_principal(self) -> None:
        """before_request, after authentication (g.identity): the per-caller limit."""
        identity = g.get("identity")
        if identity is None or identity.anonymous or request.endpoint in EXEMPT_ENDPOINTS:
            return
        self.principal.check(identity.principal.sub)

    def check_follow(self) -> None:
        """A follow-up code presented by the current client (gateway/routes_ratings.py)."""
        self.follow.check(bucket_key(self.client()))

    def check_login(self, username: str) -> None:
        """A log-in attempt for this (normalised) user name from the current client."""
        address = bucket_key(self.client())
        self.login_ip.check(address)  # first: attempts refused here leave no per-name bucket behind
        self.login.check(f"{address} {username}")


def install(app: Flask, settings: Settings) -> RateLimits:
    """The per-IP hook now (register it before authentication); the caller's hook is returned with the
    limits for registering after authentication: app.before_request(limits.check_principal)."""
    limits = RateLimits(settings)
    app.extensions["hongling.ratelimits"] = limits
    app.before_request(limits.check_client)
    return limits
