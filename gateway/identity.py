"""Who is calling: `Authorization: Bearer <API token>` -> a Principal; no header -> the anonymous public.

A presented credential is always checked, on every route: a malformed header, an unknown, revoked or
expired token is refused with 401, the JSON error shape and `WWW-Authenticate: Bearer` (RFC 6750).
Tokens are looked up by their SHA-256 hash (gateway/tokens.py) and never logged; the request log
carries the principal's sub and role instead. Tokens in query strings are not accepted (URLs are logged).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter

from gateway.errors import ApiError
from gateway.tokens import AuthError, TokenStore
from services.common.principal import Principal

REALM = "hongling"
ANONYMOUS_SUB = "anonymous"
AUTH_OUTCOMES = Counter(
    "hongling_gateway_auth_total",
    "Credentials seen by the gateway, by outcome (token, anonymous, bad_header, malformed, unknown, expired, revoked).",
    ["outcome"],
)
_DESCRIPTIONS = {  # RFC 6750 error_description must be plain ASCII
    "bad_header": "send Authorization: Bearer <token>",
    "malformed": "this is not a Hongling API token",
    "unknown": "the token is not recognised",
    "expired": "the token has expired",
    "revoked": "the token has been revoked",
}


@dataclass(frozen=True)
class Identity:
    principal: Principal
    token_id: str | None = None  # which API token (its id, never the token); None for the anonymous public

    @property
    def anonymous(self) -> bool:
        return self.token_id is None


ANONYMOUS = Identity(Principal(sub=ANONYMOUS_SUB, role="public", tenants=()))


def challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    """The WWW-Authenticate header of a 401."""
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return {"WWW-Authenticate": value}


def unauthenticated(kind: str, message: str) -> ApiError:
    error = "invalid_request" if kind == "bad_header" else "invalid_token"
    code = {"expired": "token_expired", "revoked": "token_revoked"}.get(kind, "unauthenticated")
    return ApiError(401, code, message, headers=challenge(error, _DESCRIPTIONS.get(kind)))


def identify(authorization: str | None, store: TokenStore) -> Identity:
    """The caller behind an Authorization header value (None: no header), or a 401 ApiError."""
    if authorization is None:
        AUTH_OUTCOMES.labels("anonymous").inc()
        return ANONYMOUS
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        AUTH_OUTCOMES.labels("bad_header").inc()
        raise unauthenticated(
            "bad_header",
            "malformed Authorization header: send 'Authorization: Bearer <API token>' (认证头格式错误)",
        )
    try:
        record = store.authenticate(token)
    except AuthError as exc:
        AUTH_OUTCOMES.labels(exc.kind).inc()
        raise unauthenticated(exc.kind, exc.message) from None
    AUTH_OUTCOMES.labels("token").inc()
    return Identity(record.principal(), record.id)
