"""People's sessions: the short-lived JWT `POST /api/v1/auth/login` issues and the gateway verifies.

A session token is a JWT (HS256) signed with HONGLING_SESSION_SECRET — a secret of its own, so a session
token is never a service principal nor the other way round — with the claims sub (the account name),
role, tenants, ver (the account's token_version when it was issued), iat, exp (HONGLING_SESSION_TTL_SECONDS,
30 minutes by default), iss `hongling-gateway-session` and aud `hongling-portal`.

Verifying one checks the signature, exp, iss and aud, then looks the account up by _id: it must still
exist, not be disabled, and its token_version must equal the token's ver. Log-out, a role change, a new
password and disabling all bump token_version, so they end every session of the account. The look-up is
cached for ACCOUNT_CACHE_SECONDS per gateway process; the process that makes a change forgets its cached
entry at once, other gateway processes (and changes made with `python -m gateway.users`) take effect
within that many seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import pymongo.errors

from gateway.tokens import AuthError
from gateway.users import Account
from services.common.principal import decode_signed_by_any

ISSUER = "hongling-gateway-session"
AUDIENCE = "hongling-portal"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 5  # clock differences between gateway processes
ACCOUNT_CACHE_SECONDS = 3.0
MAX_CACHED = 10_000
JWT_RE = re.compile(r"^[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}$")
REQUIRED = ["sub", "role", "tenants", "ver", "iat", "exp", "iss", "aud"]


class AccountsUnavailable(Exception):
    """The account database did not answer: the session can be neither accepted nor refused."""


def looks_like_session(token: str) -> bool:
    return bool(JWT_RE.match(token))


@dataclass(frozen=True)
class Claims:
    sub: str
    role: str
    tenants: tuple[str, ...]
    ver: int
    iat: int
    exp: int


def issue(account: Account, secret: str, ttl_seconds: int, now: float | None = None) -> tuple[str, Claims]:
    """A session token for the account as it is now, and its claims."""
    issued = int(now if now is not None else time.time())
    claims = Claims(
        sub=account.username,
        role=account.role,
        tenants=account.tenants,
        ver=account.token_version,
        iat=issued,
        exp=issued + ttl_seconds,
    )
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": claims.sub,
        "role": claims.role,
        "tenants": list(claims.tenants),
        "ver": claims.ver,
        "iat": claims.iat,
        "exp": claims.exp,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def _decode(token: str, secrets: Sequence[str]) -> dict[str, Any]:
    return decode_signed_by_any(
        token,
        secrets,
        algorithm=ALGORITHM,
        audience=AUDIENCE,
        issuer=ISSUER,
        leeway=LEEWAY_SECONDS,
        options={"require": REQUIRED},
    )


def decode(token: str, secret: str, accepted: Sequence[str] = ()) -> Claims:
    """The claims of a genuine, unexpired session token, or AuthError (expired / unknown).

    `accepted`: during a rotation of the session secret (docs/runbook.md), the other secret: sessions signed
    by a gateway that has switched and by one that has not both stay valid, so nobody is logged out."""
    try:
        raw = _decode(token, (secret, *(a for a in accepted if a and a != secret)))
    except jwt.ExpiredSignatureError:
        raise AuthError("expired", "session expired: log in again (登录已过期，请重新登录)") from None
    except jwt.InvalidTokenError:
        raise AuthError("unknown", "session token not recognised: log in again (会话令牌无效)") from None
    tenants, ver = raw.get("tenants"), raw.get("ver")
    if (
        not isinstance(tenants, list)
        or not all(isinstance(t, str) for t in tenants)
        or not isinstance(ver, int)
        or not isinstance(raw.get("role"), str)
    ):
        raise AuthError("unknown", "session token not recognised: log in again (会话令牌无效)")
    return Claims(
        sub=str(raw["sub"]),
        role=str(raw["role"]),
        tenants=tuple(tenants),
        ver=ver,
        iat=int(raw["iat"]),
        exp=int(raw["exp"]),
    )


class SessionVerifier:
    """Session token -> the account behind it, checked against the account's current state."""

    def __init__(
        self,
        secret: str,
        lookup: Callable[[str], Account | None],
        *,
        cache_seconds: float = ACCOUNT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        accepted: Sequence[str] = (),
    ) -> None:
        self.secret = secret
        self.accepted = tuple(accepted)
        self._lookup = lookup
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Account | None]] = {}
        self._lock = threading.Lock()

    def account(self, username: str) -> Account | None:
        """The account, from the cache while its entry is younger than cache_seconds."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(username)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            found = self._lookup(username)
        except pymongo.errors.PyMongoError as exc:
            raise AccountsUnavailable(str(exc)) from None
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) >= MAX_CACHED:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                    if len(self._cache) >= MAX_CACHED:
                        self._cache.clear()
                self._cache[username] = (now + self.cache_seconds, found)
        return found

    def forget(self, username: str) -> None:
        """Drop the cached account after a change made by this process (takes effect at once here)."""
        with self._lock:
            self._cache.pop(username, None)

    def authenticate(self, token: str) -> tuple[Account, Claims]:
        """The account behind a session token and the token's claims, or AuthError saying why it is
        refused; AccountsUnavailable when the account database cannot be asked."""
        claims = decode(token, self.secret, self.accepted)
        account = self.account(claims.sub)
        if account is None:
            raise AuthError("revoked", "the account of this session no longer exists (账号不存在)")
        if account.disabled:
            raise AuthError("revoked", "this account is disabled; ask an administrator (账号已停用)")
        if account.token_version != claims.ver:
            raise AuthError(
                "revoked",
                "this session has ended (logged out, or the account's role or password changed): "
                "log in again (会话已失效，请重新登录)",
            )
        return account, claims
