"""核实立案 in the portal: a community worker sees a report waiting for verification with its deadline counting
down, files one (受理立案) and declines another (不予立案) with a reason, a refused decline naming what is
missing; the issue list filters by 待核实 and 不予立案. The tenant's rules hold one category for verification
for the duration of the module and are restored afterwards."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, axe_violations, log_in, shot
from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique

pytestmark = pytest.mark.e2e
TENANT = "caiyuan"
CATEGORY = "greening"


def api(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{TENANT}/{path}"


def put_rules(system: System, rules: dict[str, Any]) -> None:
    etag = requests.get(api(system, "classification-rules"), timeout=15).headers["ETag"]
    admin = {**system.auth("subdistrict_admin", TENANT), "If-Match": etag}
    resp = requests.put(api(system, "classification-rules"), json=rules, headers=admin, timeout=15)
    assert resp.status_code == 200, resp.text


@pytest.fixture(scope="module")
def verify_rule(system: System) -> Iterator[None]:
    before = requests.get(api(system, "classification-rules"), timeout=15).json()
    put_rules(
        system,
        {
            **before,
            "duplicate_distance_m": 10,
            "filing": [{"mode": "verify", "category": CATEGORY, "deadline_minutes": 120}],
        },
    )
    yield
    put_rules(system, before)


def poll(page: Page, check: Callable[[], Any], timeout_s: float = 90.0) -> None:
    """Until check() is truthy, waiting in the page between tries; fails at a generous deadline."""
    for _ in range(int(timeout_s)):
        if check():
            return
        page.wait_for_timeout(1000)
    pytest.fail(f"condition not met within {timeout_s} s")


def report(system: System, title: str) -> dict[str, Any]:
    lat, lon = TEST_POINT
    body = {
        "title": title,
        "description": "小区绿地树木倒伏，挡住人行道。",
        "channel": "resident_report",
        "category": CATEGORY,
        "location": {"lat": lat + random.uniform(-0.004, 0.004), "lon": lon + random.uniform(-0.004, 0.004)},
    }
    resp = requests.post(api(system, "issues"), json=body, headers=system.auth("resident", TENANT), timeout=15)
    assert resp.status_code == 201, resp.text
    issue: dict[str, Any] = resp.json()["issue"]
    assert issue["status"] == "pending_verification"
    return issue


def test_a_worker_files_one_report_and_declines_another_with_a_reason(
    system: System, page: Page, people: Callable[..., Person], verify_rule: None
) -> None:
    first = report(system, f"树木倒伏{unique()[-5:]}")
    second = report(system, f"绿地占用{unique()[-5:]}")
    third = report(system, f"草坪枯死{unique()[-5:]}")
    worker = people("community_worker", TENANT, TEST_COMMUNITY)

    # Waiting: 待核实, the deadline ticking down, accept and decline at hand.
    log_in(page, system, worker, f"{TENANT}/issues/{first['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("待核实")
    card = page.get_by_test_id("filing")
    expect(card).to_contain_text("核实立案")
    countdown = card.get_by_test_id("filing-countdown")
    expect(countdown).to_contain_text("剩余")
    ticking = countdown.inner_text()
    expect(countdown).not_to_have_text(ticking)  # it ticks
    page.wait_for_load_state("networkidle")
    shot(page, "filing-pending")
    violations = axe_violations(page)
    assert violations == [], "\n".join(violations)
    card.get_by_test_id("filing-accept").click()
    expect(page.get_by_test_id("filing-decision")).to_contain_text("已受理立案")
    expect(page.get_by_role("heading", level=1)).not_to_contain_text("待核实")
    expect(page.get_by_test_id("history")).to_contain_text("社区已核实，受理立案")
    # Dispatch takes the filed report on: its task appears.
    staff = system.auth("subdistrict_admin", TENANT)
    poll(page, lambda: requests.get(api(system, f"issues/{first['id']}"), headers=staff, timeout=10).json()["task"])

    # Declining needs a reason's details: the API's refusal names the field, the form keeps what was chosen.
    page.goto(f"{system.gateway}/portal/{TENANT}/issues/{second['id']}")
    log_in(page, system, worker, f"{TENANT}/issues/{second['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("待核实")
    page.get_by_test_id("filing-decline").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("radio", name="信息不足").check(force=True)
    dialog.get_by_test_id("decline-confirm").click()
    expect(dialog.get_by_text("ask is required", exact=False)).to_be_visible()
    expect(dialog.get_by_role("radio", name="信息不足")).to_be_checked()
    dialog.get_by_role("radio", name="不属于社区职责").check(force=True)
    dialog.get_by_role("radio", name="12345热线").check(force=True)
    dialog.get_by_label("备注（选填，勿填个人信息）").fill("属物业服务合同纠纷")
    shot(page, "filing-decline-form")
    dialog.get_by_test_id("decline-confirm").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_contain_text("不予立案")
    expect(page.get_by_test_id("filing-note")).to_have_text("不予立案：不属于社区职责，已转12345热线")
    shot(page, "filing-declined")
    page.get_by_test_id("language").click()
    expect(page.get_by_test_id("filing-note")).to_have_text("declined: out of scope, referred to 12345")
    page.get_by_test_id("language").click()

    # The list: 待核实 holds the third report, 不予立案 the second.
    page.goto(f"{system.gateway}/portal/{TENANT}/issues")
    log_in(page, system, worker, f"{TENANT}/issues")
    expect(page.get_by_role("heading", level=1)).to_contain_text("诉求事项")
    page.wait_for_load_state("networkidle")
    violations = axe_violations(page)  # the list with its new filter, as it opens
    assert violations == [], "\n".join(violations)
    rows = page.get_by_test_id("issues").get_by_role("row")

    def filtered(status: str, title: str, absent: str) -> bool:
        page.get_by_test_id("filter-status").click()
        page.get_by_role("option", name=status, exact=True).click()
        page.get_by_test_id("search").click()
        page.wait_for_load_state("networkidle")
        return rows.filter(has_text=title).count() == 1 and rows.filter(has_text=absent).count() == 0

    poll(page, lambda: filtered("待核实", third["title"], first["title"]))
    expect(rows.filter(has_text=second["title"])).to_have_count(0)
    shot(page, "filing-list-pending")
    poll(page, lambda: filtered("不予立案", second["title"], third["title"]))
    shot(page, "filing-list-declined")
