"""Who is calling: `Authorization: Bearer <credential>` -> a Principal; no header -> the anonymous public.

Two kinds of credential: an API token (`hl_…`, systems and scripts, gateway/tokens.py) or a person's
session token (a JWT from `POST /api/v1/auth/login`, gateway/sessions.py: signature, exp, iss and aud
checked, then the account must exist, be enabled and still have the token's version).

A presented credential is always checked, on every route: a malformed header, an unknown, revoked or
expired token is refused with 401, the JSON error shape and `WWW-Authenticate: Bearer` (RFC 6750). A
genuine credential of a community worker that carries no community (made before communities were
required) is refused with 403 `community_required`, saying that an administrator must set its community
and how: it would otherwise reach every community of its tenant.
API tokens are looked up by their SHA-256 hash (gateway/tokens.py); no credential is ever logged, the
request log carries the principal's sub and role instead. Tokens in query strings are not accepted (URLs are logged).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter

from gateway.community import REQUIRED, required_message
from gateway.errors import ApiError
from gateway.sessions import AccountsUnavailable, SessionVerifier, looks_like_session
from gateway.tokens import PREFIX, AuthError, TokenStore
from gateway.users import Account
from services.common.principal import COMMUNITY_ROLE, Principal

REALM = "hongling"
ANONYMOUS_SUB = "anonymous"
AUTH_OUTCOMES = Counter(
    "hongling_gateway_auth_total",
    "Credentials seen by the gateway, by outcome "
    "(token, session, anonymous, bad_header, malformed, unknown, expired, revoked, unavailable, "
    "community_required).",
    ["outcome"],
)
_DESCRIPTIONS = {  # RFC 6750 error_description must be plain ASCII
    "bad_header": "send Authorization: Bearer <token>",
    "malformed": "this is not a Hongling API token or session token",
    "unknown": "the token is not recognised",
    "expired": "the token has expired",
    "revoked": "the token has been revoked",
}


@dataclass(frozen=True)
class Identity:
    principal: Principal
    token_id: str | None = None  # which API token (its id, never the token); None for sessions and the public
    account: Account | None = None  # whose session (a person's account); None for API tokens and the public

    @property
    def anonymous(self) -> bool:
        return self.token_id is None and self.account is None

    @property
    def kind(self) -> str:
        """anonymous, api_token or session."""
        return "session" if self.account is not None else "api_token" if self.token_id is not None else "anonymous"


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


def identify(authorization: str | None, store: TokenStore, sessions: SessionVerifier | None = None) -> Identity:
    """The caller behind an Authorization header value (None: no header), or a 401 ApiError (503 when the
    account database cannot be asked about a session)."""
    if authorization is None:
        AUTH_OUTCOMES.labels("anonymous").inc()
        return ANONYMOUS
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        AUTH_OUTCOMES.labels("bad_header").inc()
        raise unauthenticated(
            "bad_header",
            "malformed Authorization header: send 'Authorization: Bearer <token>' (认证头格式错误)",
        )
    if sessions is not None and not token.startswith(PREFIX) and looks_like_session(token):
        return _session(token, sessions)
    if sessions is not None and not token.startswith(PREFIX):
        AUTH_OUTCOMES.labels("malformed").inc()
        raise unauthenticated(
            "malformed", "this is neither a Hongling API token (hl_…) nor a session token (令牌格式错误)"
        )
    try:
        record = store.authenticate(token)
    except AuthError as exc:
        AUTH_OUTCOMES.labels(exc.kind).inc()
        raise unauthenticated(exc.kind, exc.message) from None
    identity = Identity(record.principal(), record.id)
    _require_community(identity, record.id)
    AUTH_OUTCOMES.labels("token").inc()
    return identity


def _require_community(identity: Identity, name: str) -> None:
    """A community worker's credential without its community is refused (403), never let through unscoped."""
    p = identity.principal
    if p.role == COMMUNITY_ROLE and p.community is None:
        AUTH_OUTCOMES.labels(REQUIRED).inc()
        raise ApiError(403, REQUIRED, required_message(identity.kind, name))


def _session(token: str, sessions: SessionVerifier) -> Identity:
    try:
        account, _claims = sessions.authenticate(token)
    except AuthError as exc:
        AUTH_OUTCOMES.labels(exc.kind).inc()
        raise unauthenticated(exc.kind, exc.message) from None
    except AccountsUnavailable:
        AUTH_OUTCOMES.labels("unavailable").inc()
        raise ApiError(
            503,
            "service_unavailable",
            "the account database is not answering right now (服务暂不可用); retry shortly",
            headers={"Retry-After": "2"},
        ) from None
    identity = Identity(account.principal(), account=account)
    _require_community(identity, account.username)
    AUTH_OUTCOMES.labels("session").inc()
    return identity
