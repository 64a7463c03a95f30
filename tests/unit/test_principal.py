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


def test_a_token_is_reused_for_the_same_principal_while_young_and_minted_afresh_after() -> None:
    from services.common import principal as module

    p, q = Principal(sub="svc-a", role="service", tenants=("taiqian",)), Principal(sub="svc-b", role="service")
    first = module.token_for(p, SECRET, 60)
    assert module.token_for(p, SECRET, 60) == first
    assert module.token_for(q, SECRET, 60) != first
    token, minted = module._MINTED[(p, SECRET, 60)]
    module._MINTED[(p, SECRET, 60)] = (token, minted - 31)  # more than half its life gone
    fresh = module.token_for(p, SECRET, 60)
    assert module._MINTED[(p, SECRET, 60)][1] >= minted  # minted again, not the aged one
    assert verify(fresh, SECRET) == p


def test_a_verified_token_is_not_taken_from_the_cache_once_expired_or_under_another_secret() -> None:
    p = Principal(sub="u2", role="ops", tenants=("*",))
    token = mint(p, SECRET, ttl_seconds=2)
    assert verify(token, SECRET) == p
    assert verify(token, SECRET) == p  # from the cache
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        verify(token, "y" * 40)
    time.sleep(3.1)
    with pytest.raises(Unauthenticated, match="expired"):
        verify(token, SECRET)
