"""The alliance pages in English: a community worker switches the portal to English and walks through every
alliance page (meetings, one meeting, posts, activities, resources, hours, funds) by the menu; each page's title
is the English one and no heading, table header or form label is left in Chinese (the records' own names, which
people typed in Chinese, are data and stay as they are)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, log_in
from tests.conftest import System, unique, wait_for

pytestmark = pytest.mark.e2e
T = "shanggao"
HAN = re.compile(r"[\u4e00-\u9fff]")
# The page's own words: headings, table headers, form labels, card headers, tabs, descriptions' labels.
CHROME = ", ".join(
    f"main {s}"
    for s in ("h1", "h2", "th", ".el-form-item__label", ".el-card__header", ".el-tabs__item", ".el-descriptions__label")
)
MEETING = "Lighting review"


def api(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def chinese_left(page: Page) -> list[str]:
    texts = page.locator(CHROME).all_inner_texts()
    return [t.strip() for t in texts if HAN.search(t)]


def test_every_alliance_page_reads_in_english(system: System, page: Page, people: Callable[..., Person]) -> None:
    admin = system.auth("subdistrict_admin", T)
    resp = requests.post(
        api(system, "org/communities"), json={"name_zh": f"英文社区{unique()[-4:]}"}, headers=admin, timeout=10
    )
    assert resp.status_code == 201, resp.text
    community = resp.json()["id"]
    unit = {"community_id": community, "name_zh": "英文驻地单位", "kind": "resident_unit", "joined_on": "2024-05-01"}
    resp = requests.post(api(system, "org/member-units"), json=unit, headers=admin, timeout=10)
    assert resp.status_code == 201, resp.text
    start = datetime.now(UTC) + timedelta(days=3)
    meeting = {
        "community_id": community,
        "title": MEETING,
        "starts_at": start.isoformat(),
        "online": True,
        "online_link": "https://meet.example.org/lighting",
        "invitees": [{"kind": "member_unit", "id": resp.json()["id"]}],
        "agenda": [{"title": "Stairwell lamps", "source": "other"}],
    }
    resp = requests.post(api(system, "alliance/meetings"), json=meeting, headers=admin, timeout=10)
    assert resp.status_code == 201, resp.text
    made = resp.json()["id"]

    def listed() -> bool:
        found = requests.get(api(system, f"alliance/meetings?community_id={community}"), headers=admin, timeout=10)
        return any(m["id"] == made for m in found.json()["meetings"])

    wait_for(listed)  # the list is the read side, a moment behind

    log_in(page, system, people("community_worker", T, community), f"{T}/meetings")
    page.get_by_test_id("language").click()
    assert page.evaluate("() => document.documentElement.lang") == "en"
    nav = page.get_by_role("navigation")
    pages = [
        ("Joint meetings", "Joint meetings"),
        ("Posts", "Posts"),
        ("Activities", "Activities"),
        ("Resources", "Resources"),
        ("Volunteer hours", "Volunteer hours"),
        ("Community funds", "Community funds"),
    ]
    for entry, title in pages:
        nav.get_by_text(entry, exact=True).click()
        expect(page.locator("main h1").first).to_have_text(title)
        page.wait_for_load_state("networkidle")
        assert chinese_left(page) == [], f"{title}: Chinese left in the page's own words"
        if title == "Joint meetings":  # one meeting, opened from the list
            page.get_by_test_id("meeting-link").filter(has_text=MEETING).click()
            expect(page.locator("main h1").first).to_have_text(MEETING)
            expect(page.get_by_role("heading", name=re.compile("^Agenda"))).to_be_visible()
            page.wait_for_load_state("networkidle")
            assert chinese_left(page) == [], "the meeting page: Chinese left in the page's own words"
