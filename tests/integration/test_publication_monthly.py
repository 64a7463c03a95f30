"""The monthly board's content from real sources: issues reported through the gateway (with a resident's name,
phone, address, title, description and rating comment planted in them), their tasks, a verification and a
rating; read from the read side, evaluation's measures and the other services over gRPC in this process. The
month is the current one (its content is built as the schedule will build it once the month closes, anchored
here at the month's start): the lines are the issues' references and public facts, 每月一题 is the recurring
category and grid, and nothing a resident typed or said about themselves is anywhere in the content."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests

from services.common import context
from services.common.principal import Principal
from services.publication import content
from services.publication.anchor import anchor_at
from services.publication.monthly import build
from tests.conftest import System, wait_for
from tests.rating_builders import follow, place, publish_verified, task_of

T = "taiqian"
SHANGHAI = ZoneInfo("Asia/Shanghai")
SECRETS = ("王秀英", "13907771234", "幸福路88号3单元", "楼道灯坏了一周没人管", "物业太差了投诉", "灯不亮请快修")


def report(system: System, where: Any, n: int) -> dict[str, Any]:
    body = {
        "title": f"{SECRETS[5]}{n}",
        "description": f"{SECRETS[3]}，住在{SECRETS[2]}",
        "channel": "resident_report",
        "category": "property_repair",
        "location": {**where.point(n), "address": SECRETS[2]},
        "contact": {"name": SECRETS[0], "phone": SECRETS[1]},
    }
    resp = requests.post(f"{system.gateway}/api/v1/tenants/{T}/issues", json=body, timeout=15)
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def month_now() -> tuple[str, datetime]:
    now = datetime.now(SHANGHAI)
    return now.strftime("%Y-%m"), now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def built(cid: str) -> content.MonthlyContent:
    period, start = month_now()
    me = Principal(sub="test-publication", role="service", tenants=(T,))
    with context.bound(tenant=T, principal=me):
        return build.month_content(T, cid, period, anchor_at(start))


def test_a_month_of_real_issues_is_published_by_reference_and_without_anything_personal(system: System) -> None:
    where = place(system, T)
    answers = [report(system, where, n) for n in range(3)]
    refs = sorted(a["issue"]["id"] for a in answers)
    first, code = answers[0]["issue"], answers[0]["follow_code"]
    task_id = task_of(system, T, first["id"])
    publish_verified(system, where, first["id"], task_id)
    wait_for(lambda: follow(system, T, first["id"], code).json().get("verified"), timeout=120)
    rated = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/issues/{first['id']}/rating",
        json={"score": 5, "comment": SECRETS[4]},
        headers={"X-Follow-Code": code},
        timeout=15,
    )
    assert rated.status_code in (200, 201), rated.text

    def complete() -> content.MonthlyContent | None:
        c = built(where.community_id)
        lines = {i["ref"]: i for i in c["issues"]}
        if set(refs) <= set(lines) and lines[first["id"]]["rating"] == 5:
            return c
        return None

    c = wait_for(complete, timeout=180, interval=2.0)
    lines = {i["ref"]: i for i in c["issues"]}
    assert sorted(lines) == refs
    one = lines[first["id"]]
    assert (one["category"], one["category_zh"], one["grid_zh"]) == ("property_repair", "物业维修", "评单网格")
    assert one["received_on"] == datetime.now(SHANGHAI).strftime("%Y-%m-%d")
    assert (one["verification"], one["rating"]) == ("passed", 5)
    assert c["summary"]["issues_received"] == 3 and c["summary"]["rated"] == 1
    assert c["summary"]["rating_average"] == 5.0
    problem = c["problem_of_month"]
    assert problem is not None and (problem["category"], problem["grid_zh"], problem["issues"]) == (
        "property_repair",
        "评单网格",
        3,
    )
    assert problem["topic_zh"] == "物业维修 · 评单网格"
    assert c["as_of"].startswith(month_now()[0]) is False  # the month's end: the first instant of the next month
    assert c["title_zh"].endswith("公示") and c["scope"] == where.community_id

    text = content.canonical(c)
    for planted in SECRETS:
        assert planted not in text, planted
    # Deterministic: the same read side gives the same content, byte for byte.
    assert content.canonical(built(where.community_id)) == text
