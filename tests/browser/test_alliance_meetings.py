"""A joint meeting through the portal: a community worker schedules it from the month's hot topic, records
attendance and the decision, opens an action item as an issue and downloads the minutes; an invited member unit
checks in naming who attends for it and proposes an item, which the worker sees (with the attendee) and puts
on the agenda."""

from __future__ import annotations

import io
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from docx import Document
from playwright.sync_api import BrowserContext, Page, expect

from services.org.seed import Rect
from tests.browser.conftest import PASSWORD, Person, axe_violations, log_in, shot
from tests.conftest import System, unique, wait_for

pytestmark = pytest.mark.e2e
T = "caiyuan"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Element Plus puts a data-testid on the native input or on its wrapper, depending on the component.
TITLE_INPUT = 'input[data-testid="title"], [data-testid="title"] input'
ACTION_INPUT = 'input[data-testid="action-title"], [data-testid="action-title"] input'


def api(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def test_a_worker_schedules_from_a_hot_topic_records_decides_follows_up_and_prints_minutes(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    admin = system.auth("subdistrict_admin", T)
    lat, lon = round(random.uniform(36.50, 36.58), 4), round(random.uniform(117.20, 117.28), 4)

    def org(collection: str, body: dict[str, Any]) -> str:
        resp = requests.post(api(system, f"org/{collection}"), json=body, headers=admin, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    community = org("communities", {"name_zh": f"门户会议社区{unique()[-4:]}"})
    boundary = Rect(lon - 0.004, lat - 0.004, lon + 0.004, lat + 0.004).geojson()
    grid = org("grids", {"community_id": community, "name_zh": "门户会议网格", "boundary_geojson": boundary})
    org("grid-stations", {"grid_id": grid, "name_zh": "门户会议驿站", "point": {"lat": lat, "lon": lon}})
    unit = org(
        "member-units",
        {"community_id": community, "name_zh": "门户物业", "kind": "property_company", "joined_on": "2024-05-01"},
    )
    code = requests.get(api(system, "classification-rules"), headers=admin, timeout=10).json()["categories"][0]["code"]
    for n in range(2):
        report = {
            "title": f"门户热点{n}",
            "description": "门户测试",
            "channel": "online",
            "category": code,
            "location": {"lat": lat + 0.001 * n, "lon": lon, "address": "门户"},
        }
        assert requests.post(api(system, "issues"), json=report, timeout=10).status_code == 201
    wait_for(
        lambda: (
            requests.get(
                api(system, f"alliance/meetings/hot-topics?community_id={community}"), headers=admin, timeout=10
            )
            .json()
            .get("categories")
        )
    )

    log_in(page, system, people("community_worker", T, community), f"{T}/meetings")
    page.get_by_test_id("schedule").click()
    form = page.get_by_test_id("schedule-form")
    form.get_by_test_id("hot-topic").first.click()
    expect(form.get_by_test_id("chosen-topics")).to_contain_text("件")
    expect(form.locator(TITLE_INPUT).first).not_to_have_value("")
    start = datetime.now(SHANGHAI) - timedelta(minutes=5)
    form.get_by_test_id("starts-at").fill(start.strftime("%Y-%m-%dT%H:%M"))
    form.get_by_test_id("ends-at").fill((start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    form.get_by_test_id("station").click()
    page.locator(".el-select-dropdown__item:visible", has_text="门户会议驿站").click()
    form.get_by_test_id("units").click()
    page.locator(".el-select-dropdown__item:visible", has_text="门户物业").click()
    page.keyboard.press("Escape")
    form.get_by_test_id("submit").click()

    expect(page.get_by_test_id("meeting-status")).to_have_text("已安排")
    page.get_by_test_id(f"record-{unit}-on_time").click()
    expect(page.get_by_test_id(f"att-{unit}")).to_have_text("按时参会")
    item = page.get_by_test_id("agenda-item").first
    item.get_by_test_id("decide").click()
    expect(item.get_by_test_id("decision")).to_contain_text("通过")
    item.locator(ACTION_INPUT).first.fill("更换楼道灯具")
    item.get_by_test_id("open-action").click()
    expect(item.get_by_test_id("action-item")).to_contain_text("更换楼道灯具")
    issue_href = item.get_by_test_id("action-issue").get_attribute("href") or ""
    assert f"/{T}/issues/" in issue_href
    assert axe_violations(page) == []
    shot(page, "alliance-meeting")

    page.get_by_test_id("close").click()
    expect(page.get_by_test_id("meeting-status")).to_have_text("已形成纪要")
    with page.expect_download() as download:
        page.get_by_test_id("minutes").click()
    path = Path(download.value.path())
    doc = Document(io.BytesIO(path.read_bytes()))
    text = "\n".join(p.text for p in doc.paragraphs)
    assert "会议纪要" in text and "门户会议驿站" in text and "更换楼道灯具" in text and "参会代表签字" in text
    page.get_by_test_id("action-issue").first.click()  # the portal keeps its session in memory: no reload
    expect(page).to_have_url(re.compile(f"/issues/{issue_href.rsplit('/', 1)[-1]}$"))
    expect(page.get_by_text("更换楼道灯具").first).to_be_visible()


def test_a_member_unit_checks_in_naming_its_attendee_and_proposes_an_item(
    system: System, page: Page, context: BrowserContext, people: Callable[..., Person]
) -> None:
    admin = system.auth("subdistrict_admin", T)

    def org(collection: str, body: dict[str, Any]) -> str:
        resp = requests.post(api(system, f"org/{collection}"), json=body, headers=admin, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    community = org("communities", {"name_zh": f"成员签到社区{unique()[-4:]}"})
    unit = org(
        "member-units",
        {"community_id": community, "name_zh": "签到驻地单位", "kind": "resident_unit", "joined_on": "2024-05-01"},
    )
    attendee = org(
        "people",
        {"community_id": community, "name_zh": "单位联络员李", "roles": ["volunteer"], "member_unit_id": unit},
    )
    meeting = {
        "community_id": community,
        "title": "成员签到联席会议",
        "starts_at": (datetime.now(SHANGHAI) + timedelta(minutes=20)).isoformat(),  # check-in opens 1 h before
        "online": True,
        "online_link": "https://meet.example.org/members",
        "invitees": [{"kind": "member_unit", "id": unit}],
        "agenda": [{"title": "楼道照明", "source": "other"}],
    }
    resp = requests.post(api(system, "alliance/meetings"), json=meeting, headers=admin, timeout=10)
    assert resp.status_code == 201, resp.text
    made = resp.json()["id"]
    account = {
        "username": unique("portal-member"),
        "display_name": "驻地单位联络员",
        "role": "member",
        "tenants": [T],
        "responder": f"member_unit:{unit}",
        "password": PASSWORD,
    }
    resp = requests.post(f"{system.gateway}/api/v1/users", json=account, headers=system.auth("ops"), timeout=15)
    assert resp.status_code == 201, resp.text

    # The member unit: check-in names who attends; a wrong id is refused beside the field, nothing recorded.
    log_in(page, system, Person(account["username"], PASSWORD, "member", T), f"{T}/meetings/{made}")
    expect(page.locator("main h1")).to_have_text("成员签到联席会议")
    expect(page.get_by_test_id("record-" + unit + "-on_time")).to_have_count(0)  # staff's buttons are not a member's
    page.get_by_test_id("check-in-person").fill("p-nobody")
    page.get_by_test_id("check-in").click()
    expect(page.get_by_test_id("check-in-card").locator(".el-form-item__error")).to_be_visible()
    expect(page.get_by_test_id(f"att-{unit}")).to_have_text("未记录")
    page.get_by_test_id("check-in-person").fill(attendee)
    page.get_by_test_id("check-in").click()
    expect(page.get_by_test_id("my-attendance")).to_contain_text("按时参会")
    expect(page.get_by_test_id("my-attendance")).to_contain_text("单位联络员李")
    expect(page.get_by_test_id(f"attendee-{unit}")).to_have_text("单位联络员李")
    page.get_by_test_id("proposal-title").fill("增设电动车充电桩")
    page.get_by_test_id("proposal-note").fill("夜间楼道充电隐患")
    page.get_by_test_id("propose").click()
    expect(page.get_by_test_id("proposals")).to_contain_text("增设电动车充电桩")
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    expect(page.locator(".el-message")).to_have_count(0, timeout=15_000)
    assert axe_violations(page) == []
    shot(page, "alliance-meeting-member")

    # The worker sees who attended for the unit, and puts the proposal on the agenda.
    staff = context.new_page()
    log_in(staff, system, people("community_worker", T, community), f"{T}/meetings/{made}")
    expect(staff.get_by_test_id(f"att-{unit}")).to_have_text("按时参会")
    expect(staff.get_by_test_id(f"attendee-{unit}")).to_have_text("单位联络员李")
    staff.get_by_test_id("proposals").get_by_test_id("accept-proposal").click()
    expect(staff.get_by_test_id("agenda-item").filter(has_text="增设电动车充电桩")).to_have_count(1)
    expect(staff.get_by_test_id("proposals")).to_have_count(0)
    staff.close()
