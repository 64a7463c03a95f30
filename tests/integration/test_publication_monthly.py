"""The monthly board's content from real sources: issues reported through the gateway (with a resident's name,
phone, address, title, description and rating comment planted in them), their tasks, a verification and a
rating; read from the read side, evaluation's measures and the other services over gRPC in this process. The
month is the current one (its content is built as the schedule will build it once the month closes, anchored
here at the month's start): the lines are the issues' references and public facts, 每月一题 is the recurring
category and grid, and nothing a resident typed or said about themselves is anywhere in the content."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pypdfium2
import requests

from services.common import context
from services.common.principal import Principal
from services.publication import channels, content
from services.publication.anchor import anchor_at
from services.publication.monthly import build, sources
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


def pdf_text(data: bytes) -> str:
    pdf = pypdfium2.PdfDocument(io.BytesIO(data))
    return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))


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
    # A joint meeting of the community on the first issue: its decision is what was done about the month's problem.
    worker = system.worker_auth(T, where.community_id)
    unit = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/org/member-units",
        json={
            "community_id": where.community_id,
            "name_zh": "公示物业",
            "kind": "property_company",
            "joined_on": "2024-05-01",
        },
        headers=system.auth("subdistrict_admin", T),
        timeout=15,
    )
    assert unit.status_code == 201, unit.text
    now = datetime.now(UTC)
    meeting = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/alliance/meetings",
        json={
            "community_id": where.community_id,
            "title": f"联席会议 联系{SECRETS[1]}",
            "starts_at": (now - timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(),
            "online": True,
            "online_link": "https://meeting.example.org/pub-test",
            "invitees": [{"kind": "member_unit", "id": unit.json()["id"]}],
            "agenda": [{"source": "issue", "issue_id": first["id"]}, {"source": "other", "title": "物业维修"}],
        },
        headers=worker,
        timeout=15,
    )
    assert meeting.status_code == 201, meeting.text
    m = meeting.json()
    item = m["agenda"][0]["id"]
    decided = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/alliance/meetings/{m['id']}/agenda/{item}/decision",
        json={"outcome": "agreed", "voted": True, "votes_for": 1, "votes_against": 0, "votes_abstain": 0},
        headers=worker,
        timeout=15,
    )
    assert decided.status_code == 200, decided.text
    closed = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/alliance/meetings/{m['id']}/close", headers=worker, timeout=15
    )
    assert closed.status_code == 200, closed.text
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
        one = lines.get(first["id"])
        held = [x for x in c["meetings"] if x["ref"] == m["id"]]
        if not held or not (set(refs) <= set(lines)) or one is None:
            return None
        if (one["rating"], one["verification"]) == (5, "passed"):
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
    [held] = [x for x in c["meetings"] if x["ref"] == m["id"]]
    assert held["title_zh"].startswith("联席会议") and held["place_zh"] == "线上"
    assert (held["invited"], held["absent"]) == (1, 1)
    agreed = held["decisions"][0]
    assert (agreed["item_zh"], agreed["decision_zh"], agreed["votes"]) == (
        f"民情事项 {first['id']}",
        "同意",
        "赞成 1 · 反对 0 · 弃权 0",
    )
    assert any(first["id"] in a and "同意" in a for a in problem["actions_zh"]), problem["actions_zh"]
    assert c["summary"]["meetings"] == 1
    assert c["as_of"].startswith(month_now()[0]) is False  # the month's end: the first instant of the next month
    assert c["title_zh"].endswith("公示") and c["scope"] == where.community_id

    text = content.canonical(c)
    for planted in SECRETS:
        assert planted not in text, planted
    # Nor in any channel rendered from it (a PDF as a reader sees it: the text pdfium extracts from its pages).
    edition = channels.Edition(publication_id=f"monthly:{where.community_id}:{c['period']}:v1", version=1)
    for channel in channels.CHANNELS["monthly"]:
        out = channels.render(c, channel, edition)
        shown = pdf_text(out.data) if channel.startswith("pdf") else out.data.decode() + "".join(out.parts)
        assert one["ref"] in shown or channel == "wechat", channel
        for planted in SECRETS:
            assert planted not in shown, (channel, planted)
    # Deterministic: the same read side gives the same content, byte for byte. (The read side may still move a
    # moment after the facts above — a status, a measure catching up — so two builds in a row must come to agree;
    # a builder that put the clock or an unordered set into the content never would.)
    last = [text]

    def settled() -> bool:
        now = content.canonical(built(where.community_id))
        same, last[0] = now == last[0], now
        return same

    wait_for(settled, timeout=120, interval=1.0)


def test_every_fund_with_a_balance_is_published_even_in_a_month_it_did_not_move(system: System) -> None:
    """A fund allocated this month shows its movement; next month, with nothing in or out, it still shows, its
    opening the same as its closing; the month before its first movement it has no balance and is left out."""
    admin = system.auth("subdistrict_admin", T)
    made = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/org/communities",
        json={"name_zh": f"公示资金社区{datetime.now(UTC).strftime('%H%M%S%f')}"},
        headers=admin,
        timeout=15,
    )
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    body = {"community_id": cid, "fund": "running", "amount_fen": 120_000, "source": "区财政"}
    ok = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/alliance/fund-allocations", json=body, headers=admin, timeout=15
    )
    assert ok.status_code == 201, ok.text

    period, start = month_now()
    nxt = (start + timedelta(days=40)).strftime("%Y-%m")
    before = (start - timedelta(days=1)).strftime("%Y-%m")
    me = Principal(sub="test-publication", role="service", tenants=(T,))

    def funds_of(month: str) -> list[sources.FundMonth]:
        first, end = build.month_bounds(month)
        with context.bound(tenant=T, principal=me):
            return sources.read(sources.Month(cid, first, end)).funds

    moved = wait_for(lambda: funds_of(period) or None, timeout=120)
    assert moved == [sources.FundMonth("running", 120_000, 0, 120_000)]
    assert funds_of(nxt) == [sources.FundMonth("running", 0, 0, 120_000)]  # carried over: no movement, same balance
    assert funds_of(before) == []  # no balance yet

    with context.bound(tenant=T, principal=me):
        shown = build.month_content(T, cid, nxt, anchor_at(build.month_bounds(nxt)[0]))["funds"]
    assert [(f["fund"], f["opening_fen"], f["allocated_fen"], f["spent_fen"], f["closing_fen"]) for f in shown] == [
        ("running", 120_000, 0, 0, 120_000)
    ]
