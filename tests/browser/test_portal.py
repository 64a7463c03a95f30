"""The portal as its users meet it: log-in per role, the issue pages, languages, a phone's width,
accessibility (axe-core), and a session that never leaves the page's memory."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Person, axe_violations, log_in, portal, shot
from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique

pytestmark = pytest.mark.e2e
TENANT = "qiujiadian"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def report(system: System, title: str, **extra: object) -> dict[str, object]:
    body = {
        "title": title,
        "description": f"{title}：浏览器测试",
        "channel": "grid_patrol",
        "location": {"lat": TEST_POINT[0], "lon": TEST_POINT[1], "address": "测试小区1号楼"},
        "contact": {"name": "王小明", "phone": "13912345678"},
        **extra,
    }
    resp = requests.post(f"{system.gateway}/api/v1/tenants/{TENANT}/issues", json=body, timeout=15)
    assert resp.status_code == 201, resp.text
    issue: dict[str, object] = resp.json()["issue"]
    return issue


def test_the_gateway_serves_the_built_portal_with_a_strict_policy(system: System) -> None:
    page = requests.get(portal(system), timeout=10)
    assert page.status_code == 200 and '<div id="app">' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    deep = requests.get(portal(system, f"{TENANT}/issues/whatever"), timeout=10)
    assert deep.status_code == 200 and deep.text == page.text  # a page of the app: its router decides
    assert requests.get(portal(system, "assets/nope.js"), timeout=10).status_code == 404
    script = re.search(r'src="/portal/(assets/[^"]+\.js)"', page.text)
    assert script is not None
    zipped = requests.get(portal(system, script[1]), headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert zipped.headers["Content-Encoding"] == "gzip" and "immutable" in zipped.headers["Cache-Control"]
    plain = requests.get(portal(system, script[1]), headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers and plain.content == zipped.content  # requests un-gzips
    assert requests.get(system.gateway + "/", allow_redirects=False, timeout=10).headers["Location"] == "/portal/"


def test_an_admin_logs_in_to_the_dashboard_and_the_session_lives_only_in_memory(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    admin = people("subdistrict_admin", TENANT)
    log_in(page, system, admin)
    expect(page).to_have_url(f"{portal(system)}{TENANT}/dashboard")
    expect(page.get_by_role("heading", name="数据看板")).to_be_visible()
    expect(page.get_by_test_id("kpi-total")).not_to_have_text("—")
    expect(page.get_by_test_id("chart").first).to_be_visible()
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert not page.context.cookies()
    shot(page, "dashboard")
    page.reload()  # the token was in the page's memory only: gone
    expect(page.get_by_role("heading", name="登录")).to_be_visible()
    assert "next=" in page.url


def test_a_wrong_password_shows_the_apis_message_and_keeps_what_was_typed(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    admin = people("subdistrict_admin", TENANT)
    page.goto(portal(system))
    page.get_by_label("账号").fill(admin.username)
    page.get_by_label("密码", exact=True).fill("not-the-password")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("用户名或密码错误")
    expect(page.get_by_label("账号")).to_have_value(admin.username)
    shot(page, "login-refused")


def test_a_role_with_no_page_here_is_told_so(system: System, page: Page, people: Callable[..., Person]) -> None:
    ops = people("ops", TENANT)  # (a resident lands on the follow page: tests/browser/test_ratings.py)
    page.goto(portal(system))
    page.get_by_label("账号").fill(ops.username)
    page.get_by_label("密码", exact=True).fill(ops.password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("没有可用的页面")


def test_issues_are_found_opened_and_their_reporter_revealed_in_shanghai_time(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    title = f"楼道灯不亮{unique()}"
    issue = report(system, title)
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/issues")
    page.get_by_label("关键词").fill(title)
    page.get_by_test_id("search").click()
    row = page.get_by_test_id("issues").get_by_role("row").filter(has_text=title)
    expect(row).to_have_count(1, timeout=60_000)  # the read side follows within moments
    received = datetime.fromisoformat(str(issue["created_at"])).astimezone(SHANGHAI).strftime("%Y/%m/%d %H:%M")
    expect(row).to_contain_text(received)  # the browser is in New York; the portal shows Shanghai time
    shot(page, "issues")
    day = datetime.fromisoformat(str(issue["created_at"])).astimezone(SHANGHAI).date()
    page.get_by_test_id("filter-from").fill((day + timedelta(days=1)).isoformat())  # received after its day
    page.get_by_test_id("search").click()
    expect(row).to_have_count(0)
    page.get_by_test_id("filter-from").fill(day.isoformat())  # its own day (Shanghai), whatever the browser's
    page.get_by_test_id("search").click()
    expect(row).to_have_count(1)
    row.get_by_test_id("issue-link").click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    expect(page.get_by_test_id("history")).to_contain_text("已受理")
    expect(page.get_by_test_id("category-reasons")).to_contain_text("含关键词「楼道灯」 → 物业维修")  # none was chosen
    expect(page.get_by_test_id("contact")).to_contain_text("139****5678")
    page.get_by_test_id("reveal").click()
    expect(page.get_by_test_id("contact")).to_contain_text("13912345678")
    shot(page, "issue")


def test_a_refused_reclassification_shows_the_field_error_and_keeps_the_form(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    issue = report(system, f"井盖缺失{unique()}")
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/issues/{issue['id']}")
    page.get_by_test_id("reclassify").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("radio", name="紧急").check(force=True)
    dialog.get_by_test_id("reclass-save").click()  # no reason: the API refuses it, naming the field
    expect(dialog.get_by_text("reason", exact=False).first).to_be_visible()
    expect(dialog.get_by_role("radio", name="紧急")).to_be_checked()
    dialog.get_by_label("理由").fill("井盖缺失有坠落危险")
    dialog.get_by_test_id("reclass-save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_contain_text("紧急")


def test_english_beside_chinese(system: System, page: Page, people: Callable[..., Person]) -> None:
    log_in(page, system, people("subdistrict_admin", TENANT))
    page.get_by_test_id("language").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    assert page.evaluate("() => document.documentElement.lang") == "en"
    expect(page.get_by_test_id("nav-issues")).to_have_text("Issues")
    shot(page, "dashboard-en")


def test_a_phone_375_px_wide_gets_the_whole_page_and_a_menu_drawer(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page, system, people("subdistrict_admin", TENANT))
    expect(page.get_by_test_id("kpi-total")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    page.get_by_role("button", name="菜单").click()
    page.get_by_test_id("nav-issues").click()
    expect(page.get_by_role("heading", name="诉求事项")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    shot(page, "issues-375px")


# Every main page: (role, path under /portal/, the page's heading). Each is checked by axe-core and kept
# as a screenshot.
PAGES = [
    ("", "", "登录"),
    ("subdistrict_admin", f"{TENANT}/dashboard", "数据看板"),
    ("subdistrict_admin", f"{TENANT}/map", "网格地图"),
    ("subdistrict_admin", f"{TENANT}/issues", "诉求事项"),
    ("subdistrict_admin", f"{TENANT}/whistles", "集结号看板"),
    ("subdistrict_admin", f"{TENANT}/tasks", "点将台"),
    ("subdistrict_admin", f"{TENANT}/org", "组织架构"),
    ("community_worker", f"{TENANT}/field", "网格走访"),
    ("district_approver", "approvals", "审核把关"),
    # 一月一公示 (staff) and the public page (no log-in)
    ("subdistrict_admin", f"{TENANT}/publications", "一月一公示"),
    ("", f"public/{TENANT}", "公示公开"),
]


@pytest.mark.parametrize(("role", "path", "heading"), PAGES, ids=[p[1] or "login" for p in PAGES])
def test_every_main_page_has_no_serious_accessibility_violations(
    system: System, page: Page, people: Callable[..., Person], role: str, path: str, heading: str
) -> None:
    if role:
        community = TEST_COMMUNITY if role == "community_worker" else ""
        log_in(page, system, people(role, TENANT if role != "district_approver" else "*", community), path)
    else:
        page.goto(portal(system, path))  # the log-in page, or a page open to anyone
    expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
    page.wait_for_load_state("networkidle")
    shot(page, f"page-{(path or 'login').replace('/', '-')}")
    assert axe_violations(page) == []


def test_the_map_draws_the_grids_the_open_issues_and_this_months_hot_spots(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    title = f"路面坑洼{unique()[-5:]}"
    report(system, title, category="road_facility")
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/map")
    expect(page.get_by_test_id("hot-spots")).to_contain_text("测试网格")
    expect(page.locator(".issue-marker").first).to_be_visible()
    page.locator(".issue-marker").last.hover()  # the topmost: tests report at the same spot
    expect(page.locator(".leaflet-tooltip")).to_be_visible()
    assert page.locator(".leaflet-tile").count() == 0  # no tile service configured: no tile is fetched
    shot(page, "map")


def test_a_slow_answer_shows_progress_and_the_page_stays_usable(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/issues")
    expect(page.get_by_test_id("issues")).to_be_visible()
    held: list[Route] = []
    page.route(f"**/api/v1/tenants/{TENANT}/issues?*", lambda route: held.append(route))  # answered below
    page.get_by_test_id("search").click()
    expect(page.get_by_role("progressbar", name="加载中…")).to_be_visible()  # after a moment, not at once
    page.get_by_label("关键词").fill("仍可输入")  # the page is not frozen while it waits
    assert held, "the search was not sent"
    for route in held:
        route.continue_()
    page.unroute(f"**/api/v1/tenants/{TENANT}/issues?*")
    expect(page.get_by_role("progressbar", name="加载中…")).to_have_count(0)
    expect(page.get_by_label("关键词")).to_have_value("仍可输入")
