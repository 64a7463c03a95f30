"""The grid worker's phone view works offline: an issue captured without a connection (photo and position) is
kept on the device, shown as waiting, and sent once the connection returns — exactly once, even when the
first send reached the server and only its answer was lost (the idempotency key made at capture)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.browser.conftest import Person, log_in, portal, shot
from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique, wait_for

pytestmark = pytest.mark.e2e
TENANT = "qiujiadian"
# A 1x1 PNG: a photo for the form's file input.
PHOTO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def phone(browser: Browser, **kw: object) -> BrowserContext:
    return browser.new_context(
        viewport={"width": 375, "height": 740},
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        geolocation={"latitude": TEST_POINT[0], "longitude": TEST_POINT[1]},
        permissions=["geolocation"],
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def worker(people: Callable[..., Person]) -> Person:
    return people("community_worker", TENANT, TEST_COMMUNITY)


def filed(system: System, title: str) -> list[dict[str, object]]:
    resp = requests.get(
        f"{system.gateway}/api/v1/tenants/{TENANT}/issues",
        params={"text": title},
        headers=system.auth("subdistrict_admin", TENANT),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["issues"])


def capture_offline(page: Page, context: BrowserContext, title: str) -> None:
    context.set_offline(True)
    expect(page.get_by_test_id("connection")).to_have_text("离线")
    page.get_by_test_id("field-title").fill(title)
    page.get_by_label("情况描述").fill("路灯杆倾斜，有倒伏危险")
    page.get_by_test_id("field-photo").set_input_files({"name": "lamp.png", "mimeType": "image/png", "buffer": PHOTO})
    page.get_by_test_id("locate").click()
    expect(page.get_by_test_id("position")).to_contain_text(str(TEST_POINT[0]))
    page.get_by_test_id("capture").click()
    expect(page.get_by_test_id("saved")).to_be_visible()
    expect(page.get_by_test_id("waiting-item")).to_contain_text(title)
    expect(page.get_by_test_id("field-title")).to_have_value("")  # safely on the device: the form is cleared


@pytest.fixture
def no_workers(chromium: Browser) -> Iterator[BrowserContext]:
    # Requests go straight to the network (no service worker in between), so the test can drop an answer.
    ctx = phone(chromium, service_workers="block")
    yield ctx
    ctx.close()


def test_an_offline_capture_is_sent_exactly_once_when_the_connection_returns(
    system: System, no_workers: BrowserContext, worker: Person
) -> None:
    page = no_workers.new_page()
    log_in(page, system, worker, f"{TENANT}/field")
    title = f"路灯杆倾斜{unique()[-6:]}"
    capture_offline(page, no_workers, title)
    shot(page, "field-offline")

    lost: list[int] = []

    def drop_the_first_answer(route: Route) -> None:
        if route.request.method == "POST" and not lost:
            response = route.fetch()  # the server files it ...
            lost.append(response.status)
            route.abort("connectionreset")  # ... and the answer never reaches the phone
        else:
            route.continue_()

    page.route(f"**/api/v1/tenants/{TENANT}/issues", drop_the_first_answer)
    no_workers.set_offline(False)  # back online: the outbox sends at once
    deadline = time.monotonic() + 60
    while not lost and time.monotonic() < deadline:
        page.wait_for_timeout(100)  # Playwright runs the route handler while the page is waited on
    assert lost == [201]
    expect(page.get_by_test_id("waiting-item")).to_have_count(1)  # not confirmed: still waiting
    page.get_by_test_id("send-now").click()  # the retry, with the same key
    expect(page.get_by_test_id("waiting-item")).to_have_count(0)
    expect(page.get_by_test_id("sent")).to_contain_text(title)
    shot(page, "field-sent")

    issues = wait_for(lambda: filed(system, title) or None, timeout=60)
    assert len(issues) == 1, issues
    assert [a["content_type"] for a in issues[0]["attachments"]] == ["image/png"]  # type: ignore[index]
    assert issues[0]["channel"] == "household_visit"
    assert wait_for(lambda: len(filed(system, title)) == 1 or None)


def test_the_app_opens_offline_and_what_waits_goes_out_after_the_next_log_in(
    system: System, chromium: Browser, worker: Person
) -> None:
    context = phone(chromium)
    try:
        page = context.new_page()
        log_in(page, system, worker, f"{TENANT}/field")
        page.wait_for_function("async () => (await navigator.serviceWorker.ready).active !== null")
        title = f"井盖破损{unique()[-6:]}"
        capture_offline(page, context, title)
        page.reload()  # offline: the service worker opens the app; the session was in memory only
        expect(page.get_by_role("heading", name="登录")).to_be_visible()
        expect(page.get_by_test_id("device-waiting")).to_contain_text("1")
        shot(page, "login-offline")
        context.set_offline(False)
        log_in(page, system, worker, f"{TENANT}/field")
        expect(page.get_by_test_id("waiting-item")).to_have_count(0)
        assert len(wait_for(lambda: filed(system, title) or None, timeout=60)) == 1
    finally:
        context.close()


def test_the_field_view_is_a_phone_page(system: System, page: Page, worker: Person) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page, system, worker, f"{TENANT}/field")
    expect(page.get_by_role("heading", name="网格走访")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    assert portal(system) in page.url
