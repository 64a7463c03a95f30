"""The quarterly boards (四榜) in the portal: a closed quarter's frozen red-property board with its entrant's
explanation (events produced to Kafka as dispatch, org and evaluation produce them), and the three rates on the
dashboard; axe finds no serious or critical violation on either page."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.events.v1 import org_events_pb2 as oev
from kafka import KafkaProducer
from playwright.sync_api import Page, expect

from services.common.events import CloudEvent, record_key, topic_for
from tests.browser.conftest import Person, axe_violations, log_in, shot
from tests.conftest import System, unique, wait_for

pytestmark = pytest.mark.e2e
T = "daimiao"
QUARTER = "2025Q3"


def publish(producer: KafkaProducer, service: str, key: str, msg: Message, at: datetime) -> None:
    ce = CloudEvent(
        uuid.uuid4().hex, f"/hongling/{service}/{T}", msg.DESCRIPTOR.full_name, at, key, T, msg.SerializeToString()
    )
    producer.send(topic_for(service), key=record_key(T, key), value=ce.data, headers=ce.headers()).get(timeout=15)


def test_a_frozen_board_shows_each_entrants_explanation_and_the_dashboard_its_three_rates(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    at = datetime(2025, 8, 12, 2, 0, tzinfo=UTC)
    unit, name = unique("u"), f"嘉德物业{uuid.uuid4().hex[:4]}"
    try:
        publish(
            producer,
            "org",
            unit,
            oev.UnitJoined(unit_id=unit, community_id=unique("c"), name_zh=name, kind="property_company", version=1),
            at,
        )
        admin = system.auth("subdistrict_admin", T)
        board_url = f"{system.gateway}/api/v1/tenants/{T}/evaluation/boards"

        def on_board() -> bool:
            stamp = Timestamp()
            stamp.FromDatetime(at + timedelta(days=1))
            task = unique("t")
            publish(
                producer,
                "evaluation",
                task,
                eev.TaskVerified(
                    verification_id=unique("v"),
                    tenant=T,
                    task_id=task,
                    attempt=1,
                    crew_ids=[f"member_unit:{unit}"],
                    verified_at=stamp,
                ),
                at,
            )
            body = requests.get(
                board_url,
                params={"quarter": QUARTER, "board": "red_property", "page_size": 200},
                headers=admin,
                timeout=10,
            ).json()
            return body["status"] == "frozen" and any(e["name_zh"] == name for e in body["boards"][0]["entries"])

        # Each try adds a verified task: the unit reaches the board once org's event has named its kind.
        wait_for(on_board, timeout=180, interval=2)
    finally:
        producer.close(timeout=10)

    log_in(page, system, people("subdistrict_admin", T), f"{T}/evaluation/boards")
    expect(page.get_by_test_id("boards-status")).to_be_visible()
    page.get_by_test_id("boards-quarter").click()
    page.get_by_role("option", name=QUARTER).click()
    expect(page.get_by_test_id("boards-status")).to_contain_text("已冻结")
    row = page.get_by_test_id("board-red_property").locator("tr", has_text=name).first
    expect(row).to_be_visible()
    row.locator(".el-table__expand-icon").click()
    expect(page.get_by_test_id("board-explanation").first).to_contain_text("权重")
    shot(page, "boards")
    assert axe_violations(page) == []

    page.get_by_test_id("nav-dashboard").click()
    expect(page.get_by_test_id("rate-response")).to_contain_text("响应率")
    assert axe_violations(page) == []
