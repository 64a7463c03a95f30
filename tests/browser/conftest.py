"""The portal in a real browser: Debian's Chromium (deploy/local/browser.sh installs it with a CJK font) driven
by Playwright over the running test stack's gateway, which serves the built portal (make portal).

No browser is downloaded: Playwright launches $HONGLING_CHROMIUM (/usr/bin/chromium). Each test gets a fresh
browser context (no cookies, no storage), in a time zone other than Asia/Shanghai so that times shown in
Shanghai time are the portal's doing. Screenshots of the main pages are kept in build/test-artifacts/portal/
(git-ignored; overwritten by each run) for a person to look at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.conftest import System, unique

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts" / "portal"
AXE = REPO / "gateway" / "portal" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("HONGLING_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "Portal-Test-Pw-2026"
NAMES = {"subdistrict_admin": "街道管理员甲", "community_worker": "社区工作者乙", "district_approver": "区审核人丙"}
SETTLED = """() => document.getAnimations().every(a => {
    const t = a.effect && a.effect.getComputedTiming();
    return a.playState !== 'running' || !t || t.iterations === Infinity;
})"""
WCAG_AA = "{runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}"
# Generous: the browser shares two cores with the whole stack and the other tests.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Chromium with a new, empty profile: Playwright's launch makes a fresh temporary --user-data-dir itself."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium and fonts-noto-cjk)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    yield browser
    browser.close()


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    ctx = chromium.new_context(viewport={"width": 1366, "height": 860}, locale="zh-CN", timezone_id="America/New_York")
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    assert not errors, f"the page threw: {errors}"


@dataclass(frozen=True)
class Person:
    username: str
    password: str
    role: str
    tenant: str
    community_id: str = ""
    display_name: str = ""


@pytest.fixture(scope="session")
def people(system: System) -> Callable[..., Person]:
    """Make an account (through the API, as ops would): person(role, tenant, community). A new one each time:
    log-in attempts are limited per user name (the gateway's defaults hold in this stack)."""

    def person(role: str, tenant: str = "qiujiadian", community_id: str = "") -> Person:
        body: dict[str, Any] = {
            "username": unique(f"portal-{role.replace('_', '-')}"),
            "display_name": NAMES.get(role, "测试用户"),
            "role": role,
            "tenants": [tenant],
            "password": PASSWORD,
        }
        if community_id:
            body["community_id"] = community_id
        resp = requests.post(f"{system.gateway}/api/v1/users", json=body, headers=system.auth("ops"), timeout=15)
        assert resp.status_code == 201, resp.text
        return Person(body["username"], PASSWORD, role, tenant, community_id, body["display_name"])

    return person


def portal(system: System, path: str = "") -> str:
    return f"{system.gateway}/portal/{path}"


def log_in(page: Page, system: System, who: Person, path: str = "") -> None:
    page.goto(portal(system, path))
    page.get_by_label("账号").fill(who.username)
    page.get_by_label("密码", exact=True).fill(who.password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("who")).to_contain_text(who.display_name)


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot kept as a test artefact: build/test-artifacts/portal/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core (from the portal's npm lock) run in the page: WCAG 2.x A/AA rules, violations of these impacts."""
    # What a reader sees once the page is still: a tag or dialog still fading in (Element Plus's transitions)
    # has its colours mixed with the background, which axe would report as low contrast.
    page.wait_for_function(SETTLED, polling=100)
    page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated through the debugger: the page's CSP stays on
    result = page.evaluate(f"async () => await axe.run(document, {WCAG_AA})")
    found = []
    for v in result["violations"]:
        if v["impact"] in impacts:
            where = json.dumps([n["target"] for n in v["nodes"]][:5], ensure_ascii=False)
            found.append(f"{v['id']} ({v['impact']}): {v['help']} — {where}")
    return found
