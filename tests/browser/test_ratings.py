"""评单 in the portal: the reporter opens the follow page without logging in, types the issue's follow-up code,
sees its progress and rates the verified work (or rejects the result), in Chinese and in English; a community
worker reads the ratings and records a resident representative's rating of a member unit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, axe_violations, log_in, portal, shot
from tests.conftest import System, unique, wait_for
from tests.rating_builders import Place, place, report, verified_issue

pytestmark = pytest.mark.e2e
T = "xujialou"


@pytest.fixture(scope="module")
def where(system: System) -> Place:
    return place(system, T)


def still(page: Page) -> None:
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement && document.activeElement.blur()")


def open_follow(page: Page, system: System, issue_id: str, code: str) -> None:
    page.goto(portal(system, f"follow/{T}/{issue_id}"))
    expect(page.get_by_test_id("follow-issue")).to_have_value(issue_id)
    page.get_by_test_id("follow-code").fill(code)
    page.get_by_test_id("follow-submit").click()


def test_the_reporter_follows_and_rates_with_the_code(system: System, page: Page, where: Place) -> None:
    # Not yet verified: the page says so, and no form is offered.
    answer = report(system, where, 10)
    open_follow(page, system, answer["issue"]["id"], answer["follow_code"])
    expect(page.get_by_test_id("follow-why-not")).to_contain_text("尚未验收")
    expect(page.get_by_test_id("follow-rate")).to_have_count(0)
    assert answer["follow_code"] not in page.url  # typed on the page, never in the address

    issue, code, _, _ = verified_issue(system, where, 11)
    open_follow(page, system, issue["id"], code)
    expect(page.get_by_test_id("follow-verified")).not_to_have_text("尚未验收")
    expect(page.get_by_test_id("follow-rate")).to_be_visible()
    still(page)
    assert axe_violations(page) == []
    shot(page, "ratings-follow")
    page.get_by_test_id("follow-rate").click()  # no score picked: said beside the field
    expect(page.get_by_text("请选择1至5分")).to_be_visible()
    page.get_by_test_id("follow-score").locator(".el-rate__item").nth(4).click()
    page.get_by_test_id("follow-comment").fill("修得很及时，谢谢")
    page.get_by_test_id("follow-rate").click()
    expect(page.get_by_test_id("follow-done")).to_contain_text("感谢您的评价")
    expect(page.get_by_test_id("follow-rating")).to_contain_text("5 分")
    expect(page.get_by_test_id("follow-rate")).to_have_count(0)
    # The English switch.
    page.get_by_test_id("language").click()
    expect(page.get_by_role("heading", name="Follow and rate an issue")).to_be_visible()
    expect(page.get_by_test_id("follow-rating")).to_contain_text("Your rating: 5")
    still(page)
    assert axe_violations(page) == []


def test_the_reporter_rejects_the_result_with_a_reason(system: System, page: Page, where: Place) -> None:
    issue, code, _, _ = verified_issue(system, where, 12)
    open_follow(page, system, issue["id"], code)
    page.get_by_test_id("follow-reject").click()
    expect(page.get_by_text("请输入退回理由")).to_be_visible()
    page.get_by_test_id("follow-reason").fill("灯还是不亮")
    page.get_by_test_id("follow-reject").click()
    expect(page.get_by_test_id("follow-done")).to_contain_text("已退回")
    expect(page.get_by_test_id("follow-rejection")).to_contain_text("灯还是不亮")
    expect(page.get_by_test_id("follow-reject")).to_have_count(0)
    still(page)
    assert axe_violations(page) == []
    shot(page, "ratings-rejected")


def test_a_wrong_code_shows_nothing_of_the_issue(system: System, page: Page, where: Place) -> None:
    answer = report(system, where, 13)
    open_follow(page, system, answer["issue"]["id"], "ABCDE-FGHJK-MNPQR-STVWX")
    expect(page.get_by_test_id("follow-error")).to_contain_text("查询码不正确")
    expect(page.get_by_test_id("follow-result")).to_have_count(0)


def test_a_worker_reads_ratings_and_records_a_unit_rating(
    system: System, page: Page, where: Place, people: Callable[..., Person]
) -> None:
    admin = system.auth("subdistrict_admin", T)
    base = f"{system.gateway}/api/v1/tenants/{T}"
    unit_name = f"红色物业{unique()[-4:]}"
    unit = requests.post(
        f"{base}/org/member-units",
        json={
            "community_id": where.community_id,
            "name_zh": unit_name,
            "kind": "property_company",
            "joined_on": "2024-05-01",
        },
        headers=admin,
        timeout=15,
    )
    assert unit.status_code == 201, unit.text
    rep = requests.post(
        f"{base}/org/people",
        json={"community_id": where.community_id, "name_zh": "居民代表丁", "roles": ["resident_representative"]},
        headers=admin,
        timeout=15,
    )
    assert rep.status_code == 201, rep.text
    issue, code, _, _ = verified_issue(system, where, 14)
    rated = requests.post(
        f"{base}/issues/{issue['id']}/rating",
        json={"score": 4, "comment": "门户测试"},
        headers={"X-Follow-Code": code},
        timeout=15,
    )
    assert rated.status_code == 201, rated.text
    wait_for(
        lambda: any(
            r["issue_id"] == issue["id"]
            for r in requests.get(
                f"{base}/evaluation/issue-ratings",
                params={"community_id": where.community_id},
                headers=admin,
                timeout=15,
            ).json()["rows"]
        ),
        timeout=90,
    )
    worker = people("community_worker", T, where.community_id)
    log_in(page, system, worker, f"{T}/evaluation/ratings")
    expect(page.get_by_test_id("ratings-rows")).to_contain_text(issue["id"])
    expect(page.get_by_test_id("ratings-rows")).to_contain_text("门户测试")
    still(page)
    assert axe_violations(page) == []
    shot(page, "ratings-list")

    page.get_by_role("tab", name="成员单位评价").click()
    page.get_by_test_id("unit-rating-unit").click()
    page.get_by_role("option", name=unit_name).click()
    page.get_by_test_id("unit-rating-rater").click()
    page.get_by_role("option", name="居民代表丁").click()
    page.get_by_test_id("unit-rating-score").locator(".el-rate__item").nth(3).click()
    page.get_by_test_id("unit-rating-comment").fill("响应及时")
    page.get_by_test_id("unit-rating-submit").click()
    expect(page.get_by_test_id("unit-rating-saved")).to_contain_text(unit_name)
    expect(page.get_by_test_id("unit-ratings")).to_contain_text(unit_name)
    page.get_by_test_id("unit-rating-submit").click()  # the same representative again: refused
    expect(page.get_by_test_id("unit-rating-error")).to_contain_text("本季度已评价过")
    still(page)
    assert axe_violations(page) == []
    shot(page, "ratings-units")


def test_a_resident_who_reported_follows_after_logging_in_without_the_code(
    system: System, page: Page, where: Place, people: Callable[..., Person]
) -> None:
    resident = people("resident", T)
    login = requests.post(
        f"{system.gateway}/api/v1/auth/login",
        json={"username": resident.username, "password": resident.password},
        timeout=15,
    )
    assert login.status_code == 200, login.text
    mine = report(system, where, 15, headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    page.goto(portal(system))
    page.get_by_label("账号").fill(resident.username)
    page.get_by_label("密码", exact=True).fill(resident.password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="事项跟踪与评价")).to_be_visible()
    page.get_by_test_id("follow-issue").fill(mine["issue"]["id"])
    page.get_by_test_id("follow-submit").click()  # no code: the logged-in reporter
    expect(page.get_by_test_id("follow-result")).to_contain_text("楼道灯不亮15")
    expect(page.get_by_test_id("follow-why-not")).to_contain_text("尚未验收")
    still(page)
    assert axe_violations(page) == []
