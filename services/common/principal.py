"""The signed, short-lived principal the gateway mints and every service verifies.

It travels in gRPC metadata `x-hongling-principal` as a JWT (HS256, shared secret): who (sub),
role, the tenants the caller may act on, the grant id when a district department acts under an
approved request, and for a `member` (成员单位/个人: a member unit's contact, a registered party member or
volunteer) the one helper its credential is bound to, as `responder` = (kind, id), kind member_unit |
person | team; the claim is "kind:id" and absent for every other role (older tokens read as before), and
for a `community_worker` (社区工作者) the one community it works for, `community` (the community's id in the
tenant's org data): its lists are limited to that community and another community's records are answered
as missing (services/common/community.py). Only a community worker carries one, and a community worker
always does; the claim is absent for every other role, so tokens minted before it read as before.
Services refuse calls without a valid principal (UNAUTHENTICATED), a member's without its responder and a
community worker's without its community (`mint` refuses to sign one).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
    "member",
    "district_approver",
    "district_department",
    "ops",
    "public",
    "service",
)


# The kinds of helper a member's credential can be bound to (dispatch's Responder.kind); "unit" is read as
# member_unit, as dispatch accepts it.
RESPONDER_KINDS = ("member_unit", "person", "team")
KIND_ALIASES = {"unit": "member_unit"}
MAX_RESPONDER_ID = 120
# A community's id as the org service takes it (services/org/domain.py entity_id accepts these and more).
COMMUNITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# The one role whose principal is held to one community (社区范围).
COMMUNITY_ROLE = "community_worker"


def parse_responder(value: str) -> tuple[str, str]:
    """(kind, id) from "kind:id" (e.g. member_unit:mu-12, person:p-3), or ValueError saying what is wrong."""
    kind, sep, rid = value.strip().partition(":")
    kind = KIND_ALIASES.get(kind.strip(), kind.strip())
    rid = rid.strip()
    if (
        not sep
        or kind not in RESPONDER_KINDS
        or not rid
        or len(rid) > MAX_RESPONDER_ID
        or any(c.isspace() for c in rid)
    ):
        raise ValueError(
            f"responder {value!r} must be kind:id with kind one of {', '.join(RESPONDER_KINDS)} "
            "(成员单位/个人/队伍的编号), e.g. member_unit:mu-12"
        )
    return kind, rid


def format_responder(responder: tuple[str, str]) -> str:
    return f"{responder[0]}:{responder[1]}"


def parse_community(value: str) -> str:
    """A community id as a credential carries it (trimmed), or ValueError saying what is wrong."""
    community = value.strip()
    if not COMMUNITY_RE.match(community):
        raise ValueError(
            f"community {value!r} is not a community id: 1-64 letters, digits, '.', '_', ':' or '-', starting with "
            "a letter or digit (社区编号无效)"
        )
    return community


def community_binding_problem(role: str, community: str | None) -> str | None:
    """Why a principal of this role may not carry (or lack) this community; None when it is right: a
    community worker works for exactly one community, every other role for none."""
    if role == COMMUNITY_ROLE and not community:
        return "a community_worker works for one community and must carry it (社区工作者须绑定所属社区)"
    if role != COMMUNITY_ROLE and community:
        return f"only a community_worker carries a community, not a {role} (仅社区工作者绑定社区)"
    return None


@dataclass(frozen=True)
class Principal:
    sub: str
    role: str
    tenants: tuple[str, ...] = field(default_factory=tuple)
    grant_id: str | None = None
    # role "member" only: the helper (kind, id) the caller is; it acts as that helper and no other.
    responder: tuple[str, str] | None = None
    # role "community_worker" only: the one community it works for (社区范围); None for every other role.
    community: str | None = None

    def sees_community(self, community_id: str | None) -> bool:
        """Whether a record of this community is within the principal's reach: always for a principal without
        a community; for a community worker only its own community's (a record of no community is not)."""
        return self.community is None or community_id == self.community

    def may_act_on(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants

    def require_tenant(self, tenant: str) -> None:
        if not self.may_act_on(tenant):
            raise PermissionDenied(
                f"principal {self.sub!r} ({self.role}) has no scope on tenant {tenant!r} (无权访问该街道/镇数据)",
                reason="tenant_out_of_scope",
            )


# Tokens already minted and already verified in this process. A service calls another (and the gateway a
# service) for almost every request, as a handful of principals: signing and checking the same claims again on
# every call was a measurable share of a call's CPU. Entries are kept while they are young (minted) or until
# the token expires (verified), and both caches are bounded.
_MINTED: dict[tuple[Principal, str, int], tuple[str, float]] = {}
_VERIFIED: dict[tuple[str, str, tuple[str, ...]], tuple[Principal, float]] = {}
_CACHE_MAX = 4096


def _bounded(cache: dict[tuple[Any, ...], Any]) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()  # simple and rare: a burst of distinct principals starts the cache afresh


def token_for(principal: Principal, secret: str, ttl_seconds: int = 60) -> str:
    """mint(), reusing this process's token for the same principal while it has more than half its life left."""
    now = time.time()
    key = (principal, secret, ttl_seconds)
    hit = _MINTED.get(key)
    if hit is not None and now - hit[1] < ttl_seconds / 2:
        return hit[0]
    token = mint(principal, secret, ttl_seconds, now)
    _bounded(_MINTED)
    _MINTED[key] = (token, now)
    return token


def mint(principal: Principal, secret: str, ttl_seconds: int = 60, now: float | None = None) -> str:
    """The principal as a signed JWT; ValueError for a community worker without its community (or a community
    on any other role): such a principal is refused by every service, so it is never signed."""
    problem = community_binding_problem(principal.role, principal.community)
    if problem is not None:
        raise ValueError(f"refusing to mint a principal for {principal.sub!r}: {problem}")
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
    if principal.responder is not None:
        claims["responder"] = format_responder(principal.responder)
    if principal.community is not None:
        claims["community"] = principal.community
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str | None, secret: str, accepted: Sequence[str] = ()) -> Principal:
    """The principal in a token, or Unauthenticated saying why it was refused. A token verified before is
    taken from this process's cache until it expires (the same bytes under the same secrets).

    `accepted`: during a rotation of the principal secret (docs/runbook.md), the other secret, also good for a
    signature: a process that already signs with the new secret and one that still signs with the former one
    accept each other's calls while the deployment restarts one process at a time."""
    if not token:
        raise Unauthenticated("no principal in call metadata: calls must come through the gateway")
    hit = _VERIFIED.get((token, secret, tuple(accepted)))
    if hit is not None and time.time() < hit[1]:
        return hit[0]
    return _verify(token, secret, accepted)


def decode_signed_by_any(
    token: str, secrets: Sequence[str], algorithm: str = ALGORITHM, **options: Any
) -> dict[str, Any]:
    """jwt.decode with the first of `secrets` whose signature matches (a rotation's current secret first, then
    the other one); jwt's own errors otherwise: an expired or malformed token fails on the first secret."""
    for i, secret in enumerate(secrets):
        try:
            return dict(jwt.decode(token, secret, algorithms=[algorithm], **options))
        except jwt.InvalidSignatureError:
            if i == len(secrets) - 1:
                raise
    raise jwt.InvalidSignatureError("no secret to check the signature with")


def _decode(token: str, secrets: Sequence[str]) -> dict[str, Any]:
    return decode_signed_by_any(
        token, secrets, audience=AUDIENCE, issuer=ISSUER, options={"require": ["exp", "iat", "sub", "iss", "aud"]}
    )


def _verify(token: str, secret: str, accepted: Sequence[str] = ()) -> Principal:
    try:
        claims = _decode(token, (secret, *(a for a in accepted if a and a != secret)))
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("principal token expired: ask the gateway for a fresh one") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"principal token refused: {exc}") from None
    role = claims.get("role")
    tenants = claims.get("tenants")
    if role not in ROLES or not isinstance(tenants, list):
        raise Unauthenticated("principal token refused: unknown role or malformed tenant scope")
    raw = claims.get("responder")
    responder = None
    if raw is not None:
        try:
            responder = parse_responder(str(raw))
        except ValueError:
            raise Unauthenticated("principal token refused: malformed responder") from None
    if (role == "member") != (responder is not None):
        raise Unauthenticated("principal token refused: a member, and only a member, is bound to one responder")
    raw_community = claims.get("community")
    community = None
    if raw_community is not None:
        try:
            community = parse_community(str(raw_community))
        except ValueError:
            raise Unauthenticated("principal token refused: malformed community") from None
    problem = community_binding_problem(str(role), community)
    if problem is not None:
        raise Unauthenticated(f"principal token refused: {problem}")
    principal = Principal(
        sub=str(claims["sub"]),
        role=str(role),
        tenants=tuple(str(t) for t in tenants),
        grant_id=claims.get("grant"),
        responder=responder,
        community=community,
    )
    _bounded(_VERIFIED)
    _VERIFIED[(token, secret, tuple(accepted))] = (principal, float(claims["exp"]))
    return principal
