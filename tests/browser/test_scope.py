"""Each person sees only what they may: a subdistrict admin only their tenant (街道/镇), a community worker only
their community — in the menus and selectors, in the lists, and when they type another's address."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, log_in, portal
from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique
from tests.e2e.test_dispatch_api import build_area

pytestmark = pytest.mark.e2e
TENANT, OTHER = "shanggao", "caiyuan"
# A spot of this tenant's map no other test's grid covers: a second community beside the test one.
ELSEWHERE = (36.31, 117.21)


def report(system: System, title: str, point: tuple[float, float]) -> str:
    body = {"title": title, "description": title, "channel": "online", "location": {"lat": point[0], "lon": point[1]}}
    resp = requests.post(f"{system.gateway}/api/v1/tenants/{TENANT}/issues", json=body, timeout=15)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["issue"]["id"])


def test_a_subdistrict_admin_sees_only_their_tenant(system: System, page: Page, people: Callable[..., Person]) -> None:
    log_in(page, system, people("subdistrict_admin", TENANT), f"{OTHER}/issues")
    # Another tenant's address leads back to their own: the portal never asks for what the gateway refuses.
    expect(page).to_have_url(f"{portal(system)}{TENANT}/issues")
    expect(page.get_by_test_id("tenant")).to_have_count(0)  # one tenant: no selector, its name
    expect(page.get_by_role("banner")).to_contain_text("上高街道")


def test_a_community_worker_sees_only_their_community(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    other = build_area(system, TENANT, ELSEWHERE)
    mine, theirs = f"本社区事项{unique()[-5:]}", f"外社区事项{unique()[-5:]}"
    report(system, mine, TEST_POINT)
    their_id = report(system, theirs, ELSEWHERE)
    worker = people("community_worker", TENANT, TEST_COMMUNITY)
    log_in(page, system, worker, f"{TENANT}/issues")
    expect(page.get_by_test_id("own-community")).to_contain_text("测试社区")
    expect(page.get_by_test_id("community")).to_have_count(0)  # no community selector for them
    table = page.get_by_test_id("issues")
    expect(table).to_contain_text(mine, timeout=60_000)
    expect(table).not_to_contain_text(theirs)
    # Typed by hand: another community's issue is not found, as a missing one would be.
    log_in(page, system, worker, f"{TENANT}/issues/{their_id}")
    expect(page.get_by_role("alert")).to_contain_text(their_id)
    expect(page.get_by_role("heading", name=theirs)).to_have_count(0)
    assert other.community_id != TEST_COMMUNITY
