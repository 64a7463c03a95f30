"""An issue walked through the portal from intake to verified and rated: the whistle board (集结号看板) shows
the call with its deadlines counting down and who has reported in, the 点将台 ranks the helpers with their
reasons, staff assign the best one, record the answer and move the task on to done, and the issue follows;
then 验单: the done task waits in the verification queue, a review round (集中评议) passes it, and the task
and the issue are verified (a bare "verify" is no button any more); then 评单: the reporter opens the follow
page with the follow-up code, rates the work, and the issue is rated."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, axe_violations, log_in, portal, shot
from tests.conftest import System, unique, wait_for
from tests.e2e.test_dispatch_api import build_area

pytestmark = pytest.mark.e2e
TENANT = "xujialou"
# A spot of this tenant's map no other test's grid covers.
CENTER = (round(random.uniform(36.22, 36.28), 4), round(random.uniform(117.02, 117.08), 4))


def field(test_id: str) -> str:
    """An Element Plus input by its test id (the attribute lands on the <input> or on its wrapper)."""
    return f'input[data-testid="{test_id}"], [data-testid="{test_id}"] input'


def api(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{TENANT}/{path}"


def test_an_issue_from_intake_through_whistle_claim_assignment_and_review_to_verified_and_rated(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    area = build_area(system, TENANT, CENTER)
    title = f"楼道墙皮脱落{unique()[-4:]}"
    body = {
        "title": title,
        "description": "3号楼2单元楼道墙皮大面积脱落",
        "channel": "grid_patrol",
        "category": "property_repair",
        "location": {"lat": CENTER[0], "lon": CENTER[1], "address": "派单测试社区3号楼"},
    }
    filed = requests.post(api(system, "issues"), json=body, headers=system.auth("community_worker", TENANT), timeout=15)
    assert filed.status_code == 201, filed.text
    issue_id = filed.json()["issue"]["id"]
    follow_code = filed.json()["follow_code"]  # handed to the reporter once

    # The whistle board: the call is there, counting down, and the member unit has not reported in yet.
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/whistles?community={area.community_id}")
    card = page.get_by_test_id("whistle").filter(has=page.locator(f'a[href$="/issues/{issue_id}"]'))
    expect(card).to_have_count(1, timeout=60_000)
    expect(card.get_by_test_id("waiting")).to_contain_text("物业公司")
    countdown = card.get_by_test_id("report-in-countdown")
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first)  # it ticks
    whistle_id = requests.get(
        api(system, f"issues/{issue_id}"), headers=system.auth("subdistrict_admin", TENANT), timeout=10
    ).json()["task"]["id"]
    task = requests.get(
        api(system, f"tasks/{whistle_id}"), headers=system.auth("subdistrict_admin", TENANT), timeout=10
    )
    task_id, call_id = task.json()["id"], task.json()["whistle_id"]

    # The member unit reports in and a volunteer claims an assistant's place, each with its own credential.
    unit = system.member_auth(TENANT, "member_unit", area.unit)
    answered = requests.post(
        api(system, f"whistles/{call_id}/report-ins"), json={"answer": "accept"}, headers=unit, timeout=10
    )
    assert answered.status_code in (200, 201), answered.text
    volunteer = system.member_auth(TENANT, "person", area.people[0])
    claimed = requests.post(
        api(system, f"tasks/{task_id}/claims"), json={"role": "assistant"}, headers=volunteer, timeout=10
    )
    assert claimed.status_code in (200, 201), claimed.text
    expect(card.get_by_test_id("answered")).to_contain_text("物业公司", timeout=60_000)  # the board refreshes itself
    shot(page, "whistle-board")

    # 点将台: the fitter (房屋维修, level 5) ranks first with its reasons; assign, accept, start, finish.
    page.goto(f"{system.gateway}/portal/{TENANT}/tasks/{task_id}")
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/tasks/{task_id}")
    candidates = page.get_by_test_id("candidates")
    expect(candidates.locator("li.candidate").first).to_contain_text("维修能手")
    expect(candidates.locator("li.candidate").first).to_contain_text("房屋维修")
    shot(page, "assignment")
    page.get_by_test_id(f"assign-{area.fitter}").click()
    expect(page.get_by_test_id("task-status")).to_have_text("已派单")
    for action, status in (("accept", "已接单"), ("start", "办理中"), ("done", "已办结")):
        page.get_by_test_id(f"move-{action}").click()
        expect(page.get_by_test_id("task-status")).to_have_text(status)
    expect(page.get_by_test_id("crew")).to_contain_text("维修能手（主办）")
    expect(page.get_by_test_id("crew")).to_contain_text("志愿者0（协办）")
    expect(page.get_by_test_id("move-verify")).to_have_count(0)  # verifying is 验单's, no transition
    shot(page, "task-done")

    # The issue follows its task (intake hears dispatch's events).
    page.get_by_role("link", name="查看事项").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("已办结", timeout=60_000)

    # The community's dashboard counts the walk: one received, one call blown and answered in time, one done.
    def counted() -> bool:
        page.goto(f"{system.gateway}/portal/{TENANT}/dashboard?community={area.community_id}")
        log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/dashboard?community={area.community_id}")
        expect(page.get_by_test_id("kpi-received")).not_to_have_text("—")
        return (
            page.get_by_test_id("kpi-received").inner_text() == "1"
            and page.get_by_test_id("kpi-in-time").inner_text() == "100%"
        )

    wait_for(counted, timeout=90, interval=2)
    expect(page.get_by_test_id("chart")).to_have_count(6)  # by class, by status, the days, three spans
    shot(page, "dashboard-after-walk")

    # 验单: the done task waits in the queue; a review round of one reviewer (quorum 1) passes it.
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/verification?community={area.community_id}")
    queue = page.get_by_test_id("queue")
    row = queue.locator("tr").filter(has_text=title)
    expect(row).to_have_count(1, timeout=60_000)
    expect(row).to_contain_text("集中评议")
    shot(page, "verification-queue")
    row.locator(".el-checkbox").click()
    page.get_by_test_id("convene").click()
    form = page.get_by_test_id("round-form")
    form.locator(field("round-title")).fill("十二月集中评议")
    form.locator(field("reviewer-id-0")).fill("walk-reviewer")
    form.locator(field("reviewer-name-0")).fill("党委书记")
    form.locator(field("quorum")).fill("1")
    form.get_by_test_id("round-submit").click()
    expect(page.get_by_test_id("round-status")).to_have_text("评议中")
    expect(page.get_by_test_id("reviewers")).to_contain_text("社区党委")
    page.get_by_test_id(f"vote-{task_id}").click()
    page.get_by_test_id("vote-form").get_by_test_id("vote-submit").click()
    expect(page.get_by_test_id(f"votes-{task_id}")).to_contain_text("通过1票")
    page.get_by_test_id("close-round").click()
    expect(page.get_by_test_id("round-status")).to_have_text("已结束")
    expect(page.get_by_test_id(f"verdict-{task_id}")).to_have_text("验收通过")
    assert not axe_violations(page)
    shot(page, "review-round-closed")

    # Dispatch applies the verdict: the task is verified, and the issue follows.
    admin = system.auth("subdistrict_admin", TENANT)
    wait_for(
        lambda: requests.get(api(system, f"tasks/{task_id}"), headers=admin, timeout=10).json()["status"] == "verified",
        timeout=120,
    )
    page.get_by_test_id("round-tasks").get_by_role("link", name=title).click()
    expect(page.get_by_test_id("task-status")).to_have_text("已验收")
    page.get_by_role("link", name="查看事项").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("已验收", timeout=60_000)
    shot(page, "task-verified")

    # 评单: the reporter opens the follow page with the code (no login) and rates the verified work; the issue
    # is rated.
    page.context.clear_cookies()
    page.goto(portal(system, f"follow/{TENANT}/{issue_id}"))
    page.get_by_test_id("follow-code").fill(follow_code)
    page.get_by_test_id("follow-submit").click()
    page.get_by_test_id("follow-score").locator(".el-rate__item").nth(4).click()
    page.get_by_test_id("follow-comment").fill("墙皮补好了，谢谢")
    page.get_by_test_id("follow-rate").click()
    expect(page.get_by_test_id("follow-rating")).to_contain_text("5 分")
    shot(page, "issue-rated")
    wait_for(
        lambda: (
            requests.get(api(system, f"issues/{issue_id}"), headers=admin, timeout=10).json()["issue"]["status"]
            == "rated"
        ),
        timeout=120,
    )
