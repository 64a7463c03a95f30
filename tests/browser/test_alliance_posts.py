"""The alliance's posts and activities pages in the browser: a worker defines a post with a shift, a member claims
its last place and checks in; a worker publishes an activity of one place, two members sign up (the second
waits), the first withdraws and the second gets the place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import requests
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import PASSWORD, Person, axe_violations, log_in, shot
from tests.conftest import System, unique

TENANT = "qiujiadian"
COMMUNITY = "test-place"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def member(system: System) -> Person:
    """A member account bound to a person of its own (as ops would make it)."""
    body = {
        "username": unique("portal-member"),
        "display_name": "志愿者丁",
        "role": "member",
        "tenants": [TENANT],
        "responder": f"person:{unique('p')}",
        "password": PASSWORD,
    }
    resp = requests.post(f"{system.gateway}/api/v1/users", json=body, headers=system.auth("ops"), timeout=15)
    assert resp.status_code == 201, resp.text
    return Person(body["username"], PASSWORD, "member", TENANT, "", body["display_name"])


def local(at: datetime) -> str:
    """A datetime-local value: the wall time in Asia/Shanghai (the browser's own zone is New York here)."""
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


def until(page: Page, check: Callable[[], bool], tries: int = 60) -> None:
    """Poll: the lists come from the read side, which follows a write within moments (the page's own refresh
    button reloads them; reloading the page would end the session, kept in the page's memory only)."""
    for _ in range(tries):
        if check():
            return
        page.wait_for_timeout(1000)
        page.get_by_test_id("refresh").click()
    raise AssertionError("the page never showed it")


def test_a_member_claims_the_last_place_of_a_shift_and_checks_in(
    system: System, page: Page, context: BrowserContext, people: Callable[..., Person]
) -> None:
    name = f"文明劝导岗{unique()[-4:]}"
    start = datetime.now(SHANGHAI) + timedelta(minutes=10)
    log_in(page, system, people("community_worker", TENANT, COMMUNITY), f"{TENANT}/alliance/posts")
    page.get_by_test_id("post-name").fill(name)
    page.get_by_test_id("post-place").fill("3号楼门口")
    page.get_by_test_id("post-starts").fill(local(start))
    page.get_by_test_id("post-ends").fill(local(start + timedelta(hours=2)))
    page.get_by_test_id("post-create").click()
    card = page.get_by_test_id("post").filter(has_text=name)
    until(page, lambda: card.count() == 1)
    expect(card.get_by_test_id("open")).to_have_text("1")
    assert not axe_violations(page)
    shot(page, "alliance-posts-worker")

    mine = context.new_page()
    log_in(mine, system, member(system), f"{TENANT}/alliance/posts")
    own = mine.get_by_test_id("post").filter(has_text=name)
    until(mine, lambda: own.count() == 1)
    own.get_by_test_id("claim").click()
    expect(own.get_by_test_id("open")).to_have_text("0")
    row = mine.get_by_test_id("my-claims").locator("tr").filter(has_text=name)
    expect(row.get_by_test_id("claim-status")).to_have_text("已认领")
    row.get_by_test_id("check-in").click()
    expect(row.get_by_test_id("claim-status")).to_have_text("已上岗")
    assert not axe_violations(mine)
    shot(mine, "alliance-posts-member")


def test_a_withdrawal_promotes_the_first_waiting_member(
    system: System, page: Page, context: BrowserContext, people: Callable[..., Person]
) -> None:
    title = f"小区清洁日{unique()[-4:]}"
    start = datetime.now(SHANGHAI) + timedelta(days=2)
    log_in(page, system, people("community_worker", TENANT, COMMUNITY), f"{TENANT}/alliance/activities")
    page.get_by_test_id("activity-title").fill(title)
    page.get_by_test_id("activity-starts").fill(local(start))
    page.get_by_test_id("activity-ends").fill(local(start + timedelta(hours=3)))
    page.get_by_role("spinbutton", name="名额").fill("1")
    page.get_by_role("spinbutton", name="名额").press("Tab")
    page.get_by_test_id("activity-publish").click()
    until(page, lambda: page.get_by_test_id("activity").filter(has_text=title).count() == 1)
    assert not axe_violations(page)
    shot(page, "alliance-activities-worker")

    first, second = context.new_page(), context.new_page()
    log_in(first, system, member(system), f"{TENANT}/alliance/activities")
    log_in(second, system, member(system), f"{TENANT}/alliance/activities")
    a = first.get_by_test_id("activity").filter(has_text=title)
    b = second.get_by_test_id("activity").filter(has_text=title)
    until(first, lambda: a.count() == 1)
    a.get_by_test_id("sign-up").click()
    expect(a.get_by_test_id("my-status")).to_have_text("已报名")
    until(second, lambda: b.count() == 1)
    b.get_by_test_id("sign-up").click()
    expect(b.get_by_test_id("my-status")).to_have_text("候补第 1 位")

    a.get_by_test_id("withdraw").click()
    expect(a.get_by_test_id("sign-up")).to_be_visible()
    # The tag changes with a transition: for a moment the old one leaves while the new one enters.
    until(second, lambda: b.get_by_test_id("my-status").filter(has_text="已报名").count() == 1)
    expect(b.get_by_test_id("taken")).to_contain_text("1/1")
    assert not axe_violations(second)
    shot(second, "alliance-activities-member")
