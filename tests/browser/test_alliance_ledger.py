"""The alliance ledger in the portal: a community worker allocates money to a fund and spends part of it (the
balance shown), a member unit pledges an item of its resource list and the worker confirms delivery, and the
hours of a served shift (an event produced to Kafka as the posts area produces it) appear on the hours page."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import alliance_events_pb2 as aev
from kafka import KafkaProducer
from playwright.sync_api import BrowserContext, Page, expect

from services.common.events import CloudEvent, record_key, topic_for
from tests.browser.conftest import PASSWORD, Person, axe_violations, log_in, shot
from tests.conftest import System, unique, wait_for

pytestmark = pytest.mark.e2e
T = "shanggao"


def api(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def org(system: System, collection: str, body: dict[str, object]) -> str:
    resp = requests.post(
        api(system, f"org/{collection}"), json=body, headers=system.auth("subdistrict_admin", T), timeout=10
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def activity(system: System, community: str) -> str:
    """A co-building activity of the community next week: what the spending and the pledge are for."""
    start = datetime.now(UTC) + timedelta(days=7)
    body = {
        "community_id": community,
        "title": "楼道照明共建",
        "kind": "cleanup",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "capacity": 10,
    }
    resp = requests.post(
        api(system, "alliance/activities"), json=body, headers=system.auth("subdistrict_admin", T), timeout=10
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def member_account(system: System, responder: str) -> Person:
    body = {
        "username": unique("portal-member"),
        "display_name": "驻地单位联络员",
        "role": "member",
        "tenants": [T],
        "responder": responder,
        "password": PASSWORD,
    }
    resp = requests.post(f"{system.gateway}/api/v1/users", json=body, headers=system.auth("ops"), timeout=15)
    assert resp.status_code == 201, resp.text
    return Person(body["username"], PASSWORD, "member", T, "", body["display_name"])


@pytest.fixture
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


def served(producer: KafkaProducer, community: str, person: str, hours: float) -> None:
    at = Timestamp()
    at.FromDatetime(datetime.now(UTC))
    msg = aev.ShiftServed(
        post_id="post-portal",
        tenant=T,
        community_id=community,
        shift_id=f"s-{unique()}",
        person_id=person,
        hours=hours,
        at=at,
    )
    ce = CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/alliance/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=datetime.now(UTC),
        subject="post-portal",
        tenant=T,
        data=msg.SerializeToString(),
    )
    producer.send(topic_for("alliance"), key=record_key(T, "post-portal"), value=ce.data, headers=ce.headers()).get(
        timeout=15
    )


def test_funds_pledges_and_hours_in_the_portal(
    system: System, page: Page, context: BrowserContext, people: Callable[..., Person], producer: KafkaProducer
) -> None:
    community = org(system, "communities", {"name_zh": f"台账门户社区{unique()[-4:]}"})
    unit = org(
        system,
        "member-units",
        {"community_id": community, "name_zh": "泰山驻地单位", "kind": "resident_unit", "joined_on": "2024-05-01"},
    )
    org(
        system,
        "unit-resource-entries",
        {"unit_id": unit, "resource": "应急照明车", "category": "vehicle", "quantity": 2, "unit_of_measure": "台"},
    )
    person = org(system, "people", {"community_id": community, "name_zh": "门户志愿者", "roles": ["volunteer"]})
    worker = people("community_worker", T, community)
    lamp = activity(system, community)

    # A meeting of the community agreed an item: what the second spending is for (listed before the page opens).
    admin = system.auth("subdistrict_admin", T)
    meeting = {
        "community_id": community,
        "title": "照明经费联席会议",
        "starts_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),  # begun: its items can be decided
        "online": True,
        "online_link": "https://meet.example.org/funds",
        "invitees": [{"kind": "member_unit", "id": unit}],
        "agenda": [{"title": "更换楼道灯具", "source": "other"}],
    }
    resp = requests.post(api(system, "alliance/meetings"), json=meeting, headers=admin, timeout=10)
    assert resp.status_code == 201, resp.text
    met = resp.json()
    item = met["agenda"][0]["id"]
    resp = requests.post(
        api(system, f"alliance/meetings/{met['id']}/agenda/{item}/decision"),
        json={"outcome": "agreed"},
        headers=admin,
        timeout=10,
    )
    assert resp.status_code == 200, resp.text

    def decided() -> bool:
        found = requests.get(api(system, f"alliance/meetings?community_id={community}"), headers=admin, timeout=10)
        return any(m["id"] == met["id"] and int(m["decided_items"]) for m in found.json()["meetings"])

    wait_for(decided)

    # Funds: allocate ¥1,000 to the running budget and spend ¥300 of it; the balance shows ¥700.
    log_in(page, system, worker, f"{T}/funds")
    page.get_by_test_id("alloc-amount").locator("input").fill("1000")
    page.get_by_test_id("alloc-source").fill("街道拨款")
    page.get_by_test_id("alloc-submit").click()
    expect(page.get_by_test_id("fund-balance-running")).to_have_text("1000.00", timeout=30_000)
    page.get_by_test_id("spend-amount").locator("input").fill("300")
    page.locator(".el-radio-button", has_text="活动").click()
    page.get_by_test_id("spend-activity").click()  # the community's activities, picked by title
    page.locator(".el-select-dropdown__item:visible", has_text="楼道照明共建").click()
    page.get_by_test_id("spend-submit").click()
    expect(page.get_by_test_id("fund-balance-running")).to_have_text("700.00", timeout=30_000)
    expect(page.get_by_test_id("fund-entries")).to_contain_text(lamp)
    # ¥100 for the agreed item, picked by its meeting and its title; the balance shows ¥600.
    page.get_by_test_id("spend-amount").locator("input").fill("100")
    page.locator(".el-radio-button", has_text="会议决议").click()
    page.get_by_test_id("spend-meeting").click()
    page.locator(".el-select-dropdown__item:visible", has_text="照明经费联席会议").click()
    page.get_by_test_id("spend-item").click()
    page.locator(".el-select-dropdown__item:visible", has_text="更换楼道灯具").click()
    page.get_by_test_id("spend-submit").click()
    expect(page.get_by_test_id("fund-balance-running")).to_have_text("600.00", timeout=30_000)
    expect(page.get_by_test_id("fund-entries")).to_contain_text(met["id"])
    expect(page.locator(".el-message")).to_have_count(0, timeout=15_000)  # the toasts have gone
    page.mouse.move(0, 0)  # the submit button no longer hovered (its hover colour is the lighter one)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    assert axe_violations(page) == []
    shot(page, "alliance-funds")

    # A member unit pledges an item of its list; the worker confirms delivery.
    member_page = context.new_page()
    log_in(member_page, system, member_account(system, f"member_unit:{unit}"), f"{T}/resources")
    # The item is picked from the unit's own list, which shows what it offers; the quantity stops there.
    member_page.get_by_test_id("pledge-entry").click()
    option = member_page.locator(".el-select-dropdown__item:visible", has_text="应急照明车")
    expect(option).to_contain_text("可提供 2 台")
    option.click()
    quantity = member_page.get_by_test_id("pledge-quantity").locator("input")
    quantity.fill("5")
    quantity.blur()
    expect(quantity).to_have_value("2")
    member_page.locator(".el-radio-button", has_text="活动").click()
    member_page.get_by_test_id("pledge-for").fill(lamp)
    member_page.get_by_test_id("pledge-submit").click()
    row = member_page.get_by_test_id("pledges").locator("tr", has_text="应急照明车")
    expect(row).to_have_count(1, timeout=30_000)
    expect(row).to_contain_text("× 2 台")
    shot(member_page, "alliance-pledge")
    expect(row.get_by_test_id("pledge-age")).not_to_be_empty()
    member_page.close()

    page.get_by_role("navigation").get_by_text("资源承诺", exact=True).click()  # the session lives in the page
    mine = page.get_by_test_id("pledges").locator("tr", has_text="应急照明车")
    expect(mine).to_have_count(1, timeout=30_000)
    mine.get_by_test_id("confirm-delivery").click()
    expect(mine).to_have_count(0, timeout=30_000)

    def delivered() -> list[str] | None:
        found = requests.get(
            api(system, f"alliance/pledges?community_id={community}&status=delivered"),
            headers=system.auth("subdistrict_admin", T),
            timeout=10,
        ).json()["pledges"]
        return [p["resource"] for p in found] or None

    assert wait_for(delivered) == ["应急照明车"]

    # Hours: a served shift (produced as the posts area produces it) shows on the hours page.
    served(producer, community, person, 2.5)
    page.get_by_role("navigation").get_by_text("志愿时长", exact=True).click()
    page.get_by_test_id("hours-person").fill(person)
    balance = page.get_by_test_id("hours-balance")
    for _ in range(120):
        page.get_by_test_id("hours-load").click()
        page.wait_for_timeout(500)
        if balance.count() and balance.inner_text() == "2.50":
            break
    expect(balance).to_have_text("2.50")
    expect(page.get_by_test_id("hours-entries")).to_contain_text("岗位值守")
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    assert axe_violations(page) == []
    shot(page, "alliance-hours")


def test_attendance_recorded_in_the_activity_page_credits_the_persons_hours(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    """A worker records a signed-up person's attendance in the activity's roster; the time bank credits the hours
    from the ActivityAttended event, and they show on the hours page."""
    admin = system.auth("subdistrict_admin", T)
    community = org(system, "communities", {"name_zh": f"签到门户社区{unique()[-4:]}"})
    person = org(system, "people", {"community_id": community, "name_zh": "共建志愿者", "roles": ["volunteer"]})
    start = datetime.now(UTC) + timedelta(minutes=10)  # signs up still open; attendance taken from 30 min before
    body = {
        "community_id": community,
        "title": "社区义诊",
        "kind": "health_fair",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=3)).isoformat(),
        "capacity": 5,
    }
    resp = requests.post(api(system, "alliance/activities"), json=body, headers=admin, timeout=10)
    assert resp.status_code == 201, resp.text
    fair = resp.json()["id"]
    resp = requests.post(
        api(system, f"alliance/activities/{fair}/signups"),
        json={"participant": {"kind": "person", "id": person}},
        headers=admin,
        timeout=10,
    )
    assert resp.status_code == 201, resp.text

    log_in(page, system, people("community_worker", T, community), f"{T}/alliance/activities")
    card = page.get_by_test_id("activity").filter(has_text="社区义诊")
    for _ in range(60):  # the list is the read side: refresh until the activity shows
        if card.count():
            break
        page.get_by_test_id("refresh").click()
        page.wait_for_timeout(500)
    card.get_by_test_id("roster").click()
    row = page.get_by_test_id("participants").locator("tr", has_text=person)
    expect(row).to_contain_text("已报名")
    row.get_by_role("spinbutton").fill("2.5")
    row.get_by_role("spinbutton").blur()
    row.get_by_role("button", name="记录参加").click()
    expect(row).to_contain_text("已参加 2.5 小时")
    page.keyboard.press("Escape")

    page.get_by_role("navigation").get_by_text("志愿时长", exact=True).click()
    page.get_by_test_id("hours-person").fill(person)
    balance = page.get_by_test_id("hours-balance")
    for _ in range(120):  # the time bank credits from the event: look again until it has
        page.get_by_test_id("hours-load").click()
        page.wait_for_timeout(500)
        if balance.count() and balance.inner_text() == "2.50":
            break
    expect(balance).to_have_text("2.50")
    expect(page.get_by_test_id("hours-entries")).to_contain_text("共建活动")
    expect(page.get_by_test_id("hours-entries")).to_contain_text(fair)
