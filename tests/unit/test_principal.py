import time

import jwt
import pytest

from services.common import community
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


# ---------------------------------------------------------------- community scope (社区范围)


def claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "w1",
        "role": "community_worker",
        "tenants": ["taiqian"],
        "iss": "hongling-gateway",
        "aud": "hongling-services",
        "iat": now,
        "exp": now + 60,
    }
    return {**base, **extra}


def test_a_community_worker_carries_its_community_through_mint_and_verify() -> None:
    p = Principal(sub="w1", role="community_worker", tenants=("taiqian",), community="jiade")
    token = mint(p, SECRET)
    assert jwt.decode(token, options={"verify_signature": False})["community"] == "jiade"
    assert verify(token, SECRET) == p


def test_other_roles_carry_no_community_and_their_tokens_read_as_before() -> None:
    admin = Principal(sub="a1", role="subdistrict_admin", tenants=("taiqian",))
    token = mint(admin, SECRET)
    assert "community" not in jwt.decode(token, options={"verify_signature": False})
    assert verify(token, SECRET).community is None
    old = jwt.encode(claims(role="resident"), SECRET, algorithm="HS256")  # minted before the claim existed
    assert verify(old, SECRET) == Principal(sub="w1", role="resident", tenants=("taiqian",))


def test_mint_refuses_a_community_worker_without_its_community_and_a_community_on_another_role() -> None:
    with pytest.raises(ValueError, match="社区工作者须绑定所属社区"):
        mint(Principal(sub="w1", role="community_worker", tenants=("taiqian",)), SECRET)
    with pytest.raises(ValueError, match="only a community_worker"):
        mint(Principal(sub="a1", role="subdistrict_admin", tenants=("taiqian",), community="jiade"), SECRET)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "must carry it"),  # a community worker's token from before the claim existed
        ({"community": ""}, "malformed community"),
        ({"community": "has space"}, "malformed community"),
        ({"community": "jiade", "role": "subdistrict_admin"}, "only a community_worker"),
        ({"community": "jiade", "role": "member", "responder": "person:p-1"}, "only a community_worker"),
    ],
    ids=["worker-without", "empty", "malformed", "admin-with", "member-with"],
)
def test_verify_refuses_a_community_binding_that_is_wrong(extra: dict[str, object], message: str) -> None:
    token = jwt.encode(claims(**extra), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match=message):
        verify(token, SECRET)


def test_a_community_worker_sees_its_own_community_only() -> None:
    worker = Principal(sub="w1", role="community_worker", tenants=("taiqian",), community="jiade")
    assert worker.sees_community("jiade")
    assert not worker.sees_community("other") and not worker.sees_community("") and not worker.sees_community(None)
    admin = Principal(sub="a1", role="subdistrict_admin", tenants=("taiqian",))
    assert admin.sees_community("other") and admin.sees_community(None)


def test_lists_are_held_to_the_community_and_another_is_refused_with_the_shared_message() -> None:
    worker = Principal(sub="w1", role="community_worker", tenants=("taiqian",), community="jiade")
    admin = Principal(sub="a1", role="subdistrict_admin", tenants=("taiqian",))
    assert community.list_filter("", worker) == "jiade" and community.list_filter("jiade", worker) == "jiade"
    assert community.list_filter("", admin) == "" and community.list_filter("other", admin) == "other"
    with pytest.raises(PermissionDenied) as exc:
        community.list_filter("other", worker)
    assert exc.value.reason == "community_out_of_scope" and exc.value.field == "community_id"
    assert (
        "'jiade'" in exc.value.message and "'other'" in exc.value.message and "无权访问该社区数据" in exc.value.message
    )
    assert community.sees("jiade", worker) and not community.sees("other", worker) and community.sees("x", admin)


def test_a_record_out_of_scope_reads_as_a_missing_one() -> None:
    assert community.not_found_message("issue", "i-1") == "issue 'i-1' not found in this tenant (未找到该事项)"
    assert community.not_found_message("task", "t-1") == "task 't-1' not found in this tenant (未找到该任务)"
    assert community.not_found_message("call", "w-1") == "call 'w-1' not found in this tenant (未找到该集结号)"
    assert community.not_found_message("person", "p-1") == "person 'p-1' not found in this tenant (未找到)"
