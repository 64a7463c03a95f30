"""The signed, short-lived principal the gateway mints and every service verifies.

It travels in gRPC metadata `x-hongling-principal` as a JWT (HS256, shared secret): who (sub),
role, the tenants the caller may act on, and the grant id when a district department acts under an
approved request. Services refuse calls without a valid one (UNAUTHENTICATED).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt

from services.common.errors import PermissionDenied, Unauthenticated

METADATA_KEY = "x-hongling-principal"
ISSUER = "hongling-gateway"
AUDIENCE = "hongling-services"
ALGORITHM = "HS256"

ROLES = (
    "resident",
    "community_worker",
    "subdistrict_admin",
    "district_approver",
    "district_department",
    "ops",
    "public",
    "service",
)


@dataclass(frozen=True)
class Principal:
    sub: str
    role: str
    tenants: tuple[str, ...] = field(default_factory=tuple)
    grant_id: str | None = None

    def may_act_on(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants

    def require_tenant(self, tenant: str) -> None:
        if not self.may_act_on(tenant):
            raise PermissionDenied(
                f"principal {self.sub!r} ({self.role}) has no scope on tenant {tenant!r} (无权访问该街道/镇数据)",
                reason="tenant_out_of_scope",
            )


def mint(principal: Principal, secret: str, ttl_seconds: int = 60, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": principal.sub,
        "role": principal.role,
        "tenants": list(principal.tenants),
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if principal.grant_id:
        claims["grant"] = principal.grant_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str | None, secret: str) -> Principal:
    """The principal in a token, or Unauthenticated saying why it was refused."""
    if not token:
        raise Unauthenticated("no principal in call metadata: calls must come through the gateway")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("principal token expired: ask the gateway for a fresh one") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"principal token refused: {exc}") from None
    role = claims.get("role")
    tenants = claims.get("tenants")
    if role not in ROLES or not isinstance(tenants, list):
        raise Unauthenticated("principal token refused: unknown role or malformed tenant scope")
    return Principal(
        sub=str(claims["sub"]),
        role=str(role),
        tenants=tuple(str(t) for t in tenants),
        grant_id=claims.get("grant"),
    )
