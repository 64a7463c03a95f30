"""一月一公示 in the portal: a subdistrict admin drafts the subdistrict's monthly report of a closed month, finds it
in the list, opens it, approves and releases it; anyone then reads it on the public page without logging in — with
its content — while a draft of an earlier month is not listed; the public burden ledger (减负台账) renders
from the released monthly report; the English switch shows English labels. axe finds no serious or critical
violation on the staff detail page nor on the public pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Person, axe_violations, log_in, portal, shot
from tests.conftest import System, unique, wait_for

pytestmark = pytest.mark.e2e
T = "shengzhuang"  # the staff flow's tenant (a report is a whole subdistrict's)
LEDGER_T = "xujialou"
MONTHLY_T = "taiqian"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def closed_months(n: int) -> list[str]:
    """The n months before the current one (Asia/Shanghai), newest first: months that have closed."""
    now = datetime.now(SHANGHAI)
    y, m = now.year, now.month
    out = []
    for _ in range(n):
        m -= 1
        if m == 0:
            y, m = y - 1, 12
        out.append(f"{y}-{m:02d}")
    return out


def zh_month(period: str) -> str:
    y, m = period.split("-")
    return f"{y}年{int(m)}月"


def api(system: System, method: str, path: str, expected: int, tenant: str = T, **kw: Any) -> dict[str, Any]:
    resp = requests.request(
        method,
        f"{system.gateway}/api/v1/tenants/{tenant}/{path}",
        headers=system.auth("subdistrict_admin", tenant),
        timeout=60,
        **kw,
    )
    assert resp.status_code == expected, resp.text
    body: dict[str, Any] = resp.json()
    return body


def new_community(system: System, tenant: str) -> tuple[str, str]:
    """A community of its own (no other test publishes it), listed by org before the portal loads its names."""
    name = f"公示测试社区{unique()[-5:]}"
    community = str(api(system, "POST", "org/communities", 201, tenant, json={"name_zh": name})["id"])

    def listed() -> bool:
        token = ""
        while True:
            found = api(system, "GET", "org/communities", 200, tenant, params={"page_size": 100, "page_token": token})
            if any(c["id"] == community for c in found["items"]):
                return True
            token = found.get("next_page_token") or ""
            if not token:
                return False

    wait_for(listed, timeout=60, interval=1)
    return community, name


def release_over_api(system: System, tenant: str, kind: str, scope: str, period: str) -> dict[str, Any]:
    body = {"kind": kind, "scope": scope, "period": period}
    draft = api(system, "POST", "publications", 201, tenant, json=body)
    api(system, "POST", f"publications/{draft['id']}/review", 200, tenant, json={"approve": True, "note": ""})
    return api(system, "POST", f"publications/{draft['id']}/release", 200, tenant)


def test_a_draft_is_made_reviewed_and_released_and_the_public_reads_it_without_logging_in(
    system: System, page: Page, chromium: Browser, people: Callable[..., Person]
) -> None:
    month, earlier = closed_months(2)

    # Staff: draft the subdistrict's report of the last closed month, find it in the list, open it.
    log_in(page, system, people("subdistrict_admin", T), f"{T}/publications")
    expect(page.get_by_role("heading", level=1)).to_contain_text("一月一公示")
    page.get_by_test_id("pub-new").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_test_id("pub-form-kind").get_by_text("月度报告").click()
    expect(dialog.get_by_test_id("pub-form-scope")).to_contain_text("全街道")  # a report is the subdistrict's
    dialog.get_by_test_id("pub-form-period").click()
    page.get_by_role("option", name=zh_month(month), exact=True).click()
    dialog.get_by_test_id("pub-form-submit").click()
    expect(page.get_by_test_id("pub-created")).to_be_visible(timeout=120_000)  # built from the sources now
    row = page.get_by_test_id("pub-list").locator("tr", has_text="月度报告").filter(has_text=zh_month(month))
    expect(row).to_have_count(1, timeout=60_000)
    expect(row.get_by_test_id("pub-status")).to_have_text("草稿")
    row.get_by_test_id("pub-link").click()

    # The detail: edition, status, the content as a page; review, then release (confirmed).
    expect(page.get_by_test_id("pub-detail-status")).to_have_text("草稿")
    expect(page.get_by_test_id("pub-edition")).to_have_text("第 1 版")
    expect(page.get_by_role("heading", name="社区排名")).to_be_visible()
    expect(page.get_by_role("heading", name="减负台账")).to_be_visible()
    expect(page.get_by_test_id("pub-anchor")).to_contain_text("核验方法")
    expect(page.get_by_test_id("pub-downloads")).to_contain_text("报表（Excel）")
    page.get_by_test_id("pub-approve").click()
    page.get_by_role("dialog").get_by_test_id("pub-review-submit").click()
    expect(page.get_by_test_id("pub-detail-status")).to_have_text("已审核")
    page.get_by_test_id("pub-release").click()
    confirm = page.get_by_role("dialog", name="发布")
    expect(confirm).to_contain_text("不可修改")
    confirm.get_by_test_id("pub-release-confirm").click()
    expect(page.get_by_test_id("pub-detail-status")).to_have_text("已发布")
    expect(confirm).to_be_hidden()
    expect(page.get_by_test_id("pub-versions")).to_contain_text("已发布")
    shot(page, "publication")
    assert axe_violations(page) == []

    # Its data file, fetched with the session token (kept in memory, not a cookie) and saved from a blob.
    with page.expect_download() as saved:
        page.get_by_test_id("pub-download-json").click()
    assert saved.value.suggested_filename.endswith(".json")
    data = json.loads(Path(saved.value.path()).read_text(encoding="utf-8"))
    assert (data["version"], data["draft"], data["content"]["period"]) == (1, False, month)

    # An earlier month's report: returned (a note is required), then drafted again — it stays unreleased.
    page.get_by_role("link", name="返回公示列表").click()
    page.get_by_test_id("pub-new").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_test_id("pub-form-kind").get_by_text("月度报告").click()
    dialog.get_by_test_id("pub-form-period").click()
    page.get_by_role("option", name=zh_month(earlier), exact=True).click()
    dialog.get_by_test_id("pub-form-submit").click()
    row = page.get_by_test_id("pub-list").locator("tr", has_text="月度报告").filter(has_text=zh_month(earlier))
    expect(row).to_have_count(1, timeout=120_000)
    row.get_by_test_id("pub-link").click()
    expect(page.get_by_test_id("pub-detail-status")).to_have_text("草稿")
    page.get_by_test_id("pub-return").click()
    review = page.get_by_role("dialog", name="退回修改")
    review.get_by_test_id("pub-review-submit").click()
    expect(review).to_contain_text("退回时请填写审核意见")  # beside the field, nothing sent
    review.get_by_test_id("pub-review-note-input").fill("排名口径需与区里核对")
    review.get_by_test_id("pub-review-submit").click()
    expect(page.get_by_test_id("pub-detail-status")).to_have_text("已退回")
    expect(page.get_by_test_id("pub-review-note")).to_have_text("排名口径需与区里核对")
    page.get_by_test_id("pub-redraft").click()
    expect(page.get_by_test_id("pub-detail-status")).to_have_text("草稿")
    expect(page.get_by_test_id("pub-approve")).to_be_visible()

    # The public, in a browser that never logged in: the released report is listed and readable.
    public = chromium.new_context(
        viewport={"width": 1366, "height": 860}, locale="zh-CN", timezone_id="America/New_York"
    )
    try:
        anyone = public.new_page()
        errors: list[str] = []
        anyone.on("pageerror", lambda e: errors.append(str(e)))
        anyone.goto(portal(system, f"public/{T}"))
        expect(anyone.get_by_role("heading", level=1)).to_have_text("公示公开")
        expect(anyone.get_by_test_id("public-tenant")).to_have_text("省庄镇")
        listed = anyone.get_by_test_id("public-list")
        expect(listed.locator("tr", has_text=zh_month(month))).to_have_count(1, timeout=60_000)
        expect(listed).not_to_contain_text(zh_month(earlier))  # the draft, returned and drafted again
        expect(anyone.get_by_test_id("public-current")).to_contain_text("第 1 版")
        assert axe_violations(anyone) == []
        shot(anyone, "public-publications")
        feed = requests.get(f"{system.gateway}{anyone.get_by_test_id('public-feed').get_attribute('href')}", timeout=30)
        assert feed.status_code == 200 and feed.headers["Content-Type"].startswith("application/atom+xml")
        assert zh_month(month) in feed.text and zh_month(earlier) not in feed.text
        listed.get_by_test_id("public-link").first.click()
        expect(anyone.get_by_test_id("public-edition")).to_have_text("第 1 版")
        expect(anyone.get_by_test_id("pub-content")).to_contain_text(zh_month(month))
        expect(anyone.get_by_role("heading", name="社区排名")).to_be_visible()
        expect(anyone.get_by_test_id("ledger-table")).to_be_visible()
        assert axe_violations(anyone) == []
        shot(anyone, "public-publication")

        # The English switch: English labels beside the Chinese data.
        anyone.get_by_test_id("language").click()
        expect(anyone.get_by_role("heading", name="Community rankings")).to_be_visible()
        expect(anyone.get_by_role("heading", name="Burden ledger")).to_be_visible()
        assert anyone.evaluate("() => document.documentElement.lang") == "en"
        assert not errors, f"the page threw: {errors}"
    finally:
        public.close()


def test_the_public_ledger_of_a_month_renders_from_the_released_report(system: System, page: Page) -> None:
    month = closed_months(1)[0]
    report = release_over_api(system, LEDGER_T, "report", "*", month)
    assert report["status"] == "released"
    page.goto(portal(system, f"public/{LEDGER_T}/ledger?period={month}"))  # nobody logged in
    expect(page.get_by_role("heading", level=1)).to_have_text("减负台账")
    expect(page.get_by_test_id("ledger-table")).to_be_visible()
    expect(page.get_by_test_id("ledger-report")).to_contain_text(f"report:*:{month}")
    assert axe_violations(page) == []
    shot(page, "public-ledger")
    page.get_by_test_id("language").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Burden ledger")
    expect(page.get_by_test_id("ledger-table")).to_contain_text("Data requests")


def test_a_communitys_monthly_notice_shows_its_month_as_a_page_to_staff_and_to_the_public(
    system: System, page: Page, chromium: Browser, people: Callable[..., Person]
) -> None:
    month = closed_months(1)[0]  # the last closed month: the test cannot make facts in it, so its figures are 0
    community, name = new_community(system, MONTHLY_T)
    log_in(page, system, people("subdistrict_admin", MONTHLY_T), f"{MONTHLY_T}/publications")
    page.get_by_test_id("pub-new").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_test_id("pub-form-scope").click()  # 月度公示 is the form's first kind
    page.get_by_role("option", name=name, exact=True).click()
    dialog.get_by_test_id("pub-form-period").click()
    page.get_by_role("option", name=zh_month(month), exact=True).click()
    dialog.get_by_test_id("pub-form-submit").click()
    row = page.get_by_test_id("pub-list").locator("tr", has_text=name)
    expect(row).to_have_count(1, timeout=120_000)
    expect(row).to_contain_text("月度公示")
    row.get_by_test_id("pub-link").click()
    expect(page.get_by_test_id("pub-content")).to_contain_text(name)
    expect(page.get_by_test_id("pub-summary-issues_received")).to_contain_text("0")
    for part in ("本月诉求办理", "吹哨报到", "会议与决议", "每月一题", "社区经费", "考核指标", "审计锚点"):
        expect(page.get_by_role("heading", name=part)).to_be_visible()
    page.get_by_test_id("pub-approve").click()
    page.get_by_role("dialog").get_by_test_id("pub-review-submit").click()
    page.get_by_test_id("pub-release").click()
    page.get_by_role("dialog", name="发布").get_by_test_id("pub-release-confirm").click()
    expect(page.get_by_test_id("pub-detail-status")).to_have_text("已发布")
    pub_id = f"monthly:{community}:{month}:v1"
    # The WeChat group message, part by part with a copy button each; the printable notice as a PDF.
    page.get_by_test_id("pub-wechat-load").click()
    expect(page.get_by_test_id("pub-wechat")).to_contain_text(name)
    expect(page.get_by_test_id("pub-wechat").get_by_role("button", name="复制第 1 条")).to_be_visible()
    with page.expect_download() as saved:
        page.get_by_test_id("pub-download-pdf_a4").click()
    assert saved.value.suggested_filename.endswith(".pdf")
    assert Path(saved.value.path()).read_bytes().startswith(b"%PDF")

    public = chromium.new_context(
        viewport={"width": 1366, "height": 860}, locale="zh-CN", timezone_id="America/New_York"
    )
    try:
        anyone = public.new_page()
        anyone.goto(portal(system, f"public/{MONTHLY_T}/publications/{pub_id}"))
        expect(anyone.get_by_test_id("public-title")).to_contain_text(name)
        expect(anyone.get_by_test_id("pub-summary")).to_contain_text("受理诉求")
        expect(anyone.get_by_role("heading", name="每月一题")).to_be_visible()
        expect(anyone.get_by_test_id("pub-anchor")).to_contain_text("核验方法")
        assert axe_violations(anyone) == []
        shot(anyone, "public-monthly")
        with anyone.expect_download() as fetched:  # a plain link: the public needs no token
            anyone.get_by_test_id("public-downloads").get_by_role("link", name="公示栏 A4（PDF）").click()
        assert Path(fetched.value.path()).read_bytes().startswith(b"%PDF")
        anyone.get_by_test_id("language").click()
        expect(anyone.get_by_test_id("pub-summary")).to_contain_text("Issues received")
        expect(anyone.get_by_role("heading", name="Problem of the month")).to_be_visible()
        # The community's notices, past and current, by the community's own address.
        anyone.get_by_role("link", name="Public notices").click()
        expect(anyone.get_by_test_id("public-list")).to_contain_text(name, timeout=60_000)
    finally:
        public.close()
