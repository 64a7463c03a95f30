from datetime import date, datetime, timedelta
from typing import Any

import pytest

from gateway.governance.domain import (
    ASSISTANCE_OPERATION,
    SHANGHAI,
    Narrowing,
    approve,
    check,
    use,
    validate_request,
)
from services.common.errors import InvalidArgument, PermissionDenied

TODAY = date(2026, 11, 27)


def body(**kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "data_access",
        "purpose": "核对辖区养老服务设施台账",
        "tenant": "taiqian",
        "community_id": "jiade",
        "public_affairs_item_id": "pa-elderly",
        "funding": {"amount_yuan": 5000, "source": "区民政局专项经费", "working_conditions": "派员协助录入"},
        "starts_on": "2026-12-01",
        "ends_on": "2026-12-31",
        "operations": ["org.read:member-units"],
        "fields": ["name_zh", "kind"],
    }
    data.update(kw)
    return data


def test_assessment_tasks_are_refused_at_filing() -> None:
    with pytest.raises(PermissionDenied, match="考核任务") as exc:
        validate_request(
            body(kind="assistance_task", tasks=["年度社区工作目标责任考核打分"], operations=[]), "民政局", TODAY
        )
    assert exc.value.reason == "assessment_task_refused"
    with pytest.raises(PermissionDenied):
        validate_request(body(purpose="开展社区评比排名"), "民政局", TODAY)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"kind": "favour"}, "kind"),
        ({"funding": {"amount_yuan": 0, "source": "x", "working_conditions": "y"}}, "funding.amount_yuan"),
        ({"funding": {"amount_yuan": 10, "source": "", "working_conditions": "y"}}, "source"),
        ({"ends_on": "2026-11-01"}, "ends_on"),
        ({"operations": ["org.write:people"]}, "operations"),
        ({"fields": []}, "fields"),
        ({"public_affairs_item_id": ""}, "public_affairs_item_id"),
    ],
)
def test_incomplete_requests_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_request(body(**kw), "民政局", TODAY)
    assert exc.value.field == field


def test_approval_can_only_narrow() -> None:
    req = validate_request(body(fields=["name_zh", "kind", "contact_name"]), "民政局", TODAY)
    grant = approve(req, "g1", "r1", Narrowing(fields=["name_zh"], ends_on=date(2026, 12, 15)))
    assert grant.fields == {"name_zh"}
    assert grant.expires_at == datetime(2026, 12, 16, tzinfo=SHANGHAI)
    with pytest.raises(InvalidArgument, match="cannot add"):
        approve(req, "g1", "r1", Narrowing(fields=["phone"]))
    with pytest.raises(InvalidArgument, match="shorten"):
        approve(req, "g1", "r1", Narrowing(ends_on=date(2027, 1, 31)))


def test_calls_inside_and_outside_the_grant() -> None:
    req = validate_request(body(), "民政局", TODAY)
    grant = approve(req, "g1", "r1")
    inside = datetime(2026, 12, 10, 9, 0, tzinfo=SHANGHAI)
    ok = dict(
        department="民政局",
        operation="org.read:member-units",
        tenant="taiqian",
        community_id="jiade",
        fields=["name_zh"],
        now=inside,
    )
    assert check(grant, **ok).allowed
    refusals = {
        "grant": check(None, **ok),
        "department": check(grant, **{**ok, "department": "城管局"}),
        "period": check(grant, **{**ok, "now": datetime(2027, 1, 1, tzinfo=SHANGHAI)}),
        "early": check(grant, **{**ok, "now": datetime(2026, 11, 30, 23, 59, tzinfo=SHANGHAI)}),
        "tenant": check(grant, **{**ok, "tenant": "daimiao"}),
        "community": check(grant, **{**ok, "community_id": "other"}),
        "operation": check(grant, **{**ok, "operation": "org.read:people"}),
        "fields": check(grant, **{**ok, "fields": ["name_zh", "contact_phone"]}),
    }
    for name, decision in refusals.items():
        assert not decision.allowed, name
    assert refusals["fields"].missing == "fields:contact_phone"
    assert "expired" in refusals["period"].reason


def test_assistance_quota_counts_down() -> None:
    req = validate_request(
        body(kind="assistance_task", operations=[], fields=[], tasks=["协助开展燃气安全入户宣传"], quota=2),
        "应急局",
        TODAY,
    )
    grant = approve(req, "g2", "r2")
    now = datetime(2026, 12, 2, tzinfo=SHANGHAI)
    args = dict(department="应急局", operation=ASSISTANCE_OPERATION, tenant="taiqian", community_id="jiade", now=now)
    grant = use(use(grant))
    decision = check(grant, **args)
    assert not decision.allowed and decision.missing == "quota"
    assert grant.expires_at - grant.starts_at == timedelta(days=31)
