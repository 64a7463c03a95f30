import time

import jwt
import pytest

from services.common.errors import PermissionDenied, Unauthenticated
from services.common.principal import Principal, mint, verify

SECRET = "s" * 40


def test_round_trip_keeps_who_role_scope_and_grant() -> None:
    p = Principal(sub="u1", role="district_department", tenants=("taiqian",), grant_id="g-1")
    assert verify(mint(p, SECRET), SECRET) == p


def test_missing_token_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated, match="through the gateway"):
        verify(None, SECRET)


def test_token_signed_with_another_secret_is_refused() -> None:
    token = mint(Principal(sub="u1", role="ops", tenants=("*",)), "x" * 40)
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        verify(token, SECRET)


def test_expired_token_is_refused() -> None:
    token = mint(Principal(sub="u1", role="ops", tenants=("*",)), SECRET, ttl_seconds=5, now=time.time() - 60)
    with pytest.raises(Unauthenticated, match="expired"):
        verify(token, SECRET)


def test_unsigned_token_is_refused() -> None:
    token = jwt.encode(
        {
            "sub": "u1",
            "role": "ops",
            "tenants": ["*"],
            "iss": "hongling-gateway",
            "aud": "hongling-services",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        key=None,
        algorithm="none",
    )
    with pytest.raises(Unauthenticated):
        verify(token, SECRET)


def test_unknown_role_is_refused() -> None:
    token = jwt.encode(
        {
            "sub": "u1",
            "role": "emperor",
            "tenants": ["*"],
            "iss": "hongling-gateway",
            "aud": "hongling-services",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(Unauthenticated, match="unknown role"):
        verify(token, SECRET)


def test_scope_is_enforced_per_tenant() -> None:
    p = Principal(sub="admin", role="subdistrict_admin", tenants=("taiqian",))
    p.require_tenant("taiqian")
    with pytest.raises(PermissionDenied, match="daimiao"):
        p.require_tenant("daimiao")
    Principal(sub="svc", role="service", tenants=("*",)).require_tenant("daimiao")
