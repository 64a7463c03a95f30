"""Measures, boards and weights through the gateway (REST -> EvaluationService), fed by real events on Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev
from kafka import KafkaProducer

from services.common.events import CloudEvent, record_key, topic_for
from tests.conftest import System, unique, wait_for

T = "xujialou"


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/evaluation/{path}"


def publish(producer: KafkaProducer, service: str, key: str, msg: Message, at: datetime) -> None:
    ce = CloudEvent(
        uuid.uuid4().hex, f"/hongling/{service}/{T}", msg.DESCRIPTOR.full_name, at, key, T, msg.SerializeToString()
    )
    producer.send(topic_for(service), key=record_key(T, key), value=ce.data, headers=ce.headers()).get(timeout=15)


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def test_a_communitys_measures_and_the_dashboards_rates_follow_the_events(
    system: System, producer: KafkaProducer
) -> None:
    community = unique("c-api")
    at = datetime.now(UTC) - timedelta(hours=1)
    w, unit = unique("w"), unique("u")
    publish(
        producer,
        "dispatch",
        w,
        dev.WhistleBlown(
            whistle_id=w,
            tenant=T,
            community_id=community,
            target_kinds=["member_unit"],
            target_ids=[unit],
            blown_at=ts(at),
        ),
        at,
    )
    publish(
        producer,
        "dispatch",
        w,
        dev.UnitReportedIn(
            whistle_id=w, tenant=T, responder_kind="member_unit", responder_id=unit, answer="accept", reported_at=ts(at)
        ),
        at,
    )
    task = unique("t")
    publish(
        producer,
        "evaluation",
        task,
        eev.TaskVerified(
            verification_id=unique("v"),
            tenant=T,
            community_id=community,
            task_id=task,
            attempt=1,
            crew_ids=[f"member_unit:{unit}"],
            verified_at=ts(at),
        ),
        at,
    )
    publish(
        producer,
        "evaluation",
        task,
        eev.IssueRated(
            issue_id=unique("i"),
            tenant=T,
            community_id=community,
            score=5,
            crew_ids=[f"member_unit:{unit}"],
            rating_id=unique("r"),
            rated_at=ts(at),
        ),
        at,
    )
    admin = system.auth("subdistrict_admin", T)

    def measured() -> dict[str, Any] | None:
        resp = requests.get(
            url(system, "measures"), params={"subject": f"community:{community}"}, headers=admin, timeout=10
        )
        assert resp.status_code == 200, resp.text
        found = {m["key"]: m for m in resp.json()["measures"]}
        return found if found["satisfaction"].get("has_rate") else None

    found = wait_for(measured, timeout=180)
    assert found["response"]["rate"] == 1.0 and found["resolution"]["rate"] == 1.0
    assert found["response"]["name_zh"] == "响应率" and found["response"]["definition"]
    unit_page = requests.get(
        url(system, "measures/subjects"),
        params={"subject_kind": "member_unit", "community_id": community},
        headers=admin,
        timeout=10,
    )
    assert [s["subject"] for s in unit_page.json()["subjects"]] == [f"member_unit:{unit}"]
    rates = requests.get(url(system, "rates"), headers=admin, timeout=10)
    assert rates.status_code == 200
    assert [r["key"] for r in rates.json()["this_quarter"]] == ["response", "resolution", "satisfaction"]
    bad = requests.get(url(system, "measures"), params={"period": "2026-13"}, headers=admin, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "period"


def test_the_current_quarters_boards_are_provisional_and_a_bad_quarter_is_named(system: System) -> None:
    admin = system.auth("subdistrict_admin", T)
    resp = requests.get(url(system, "boards"), headers=admin, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "provisional"
    assert [b["kind"] for b in body["boards"]] == ["red_property", "social_org", "party_member", "volunteer"]
    assert body["boards"][0]["name_zh"] == "红色物业光荣榜" and "k·" in body["formula_text"]
    bad = requests.get(url(system, "boards"), params={"quarter": "2026Q5"}, headers=admin, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "quarter"


def test_weights_are_set_with_if_match_and_checked_naming_the_field(system: System) -> None:
    admin = system.auth("subdistrict_admin", T)
    got = requests.get(url(system, "weights"), headers=admin, timeout=10)
    assert got.status_code == 200
    etag = got.headers["ETag"]
    assert {w["component"]: w["weight"] for w in got.json()["weights"]}["satisfaction"] >= 0
    assert requests.put(url(system, "weights"), json={}, headers=admin, timeout=10).status_code == 428
    wrong = requests.put(
        url(system, "weights"),
        json={"weights": [{"component": "speed", "weight": 1}]},
        headers={**admin, "If-Match": etag},
        timeout=10,
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "weights"
    assert "未知权重" in wrong.json()["error"]["message"]
    body = {"weights": [{"component": "satisfaction", "weight": 0.4}], "prior": 5, "min_workload": 1, "grace_hours": 72}
    put = requests.put(url(system, "weights"), json=body, headers={**admin, "If-Match": etag}, timeout=10)
    assert put.status_code == 200, put.text
    assert {w["component"]: w["weight"] for w in put.json()["weights"]}["satisfaction"] == 0.4
    stale = requests.put(url(system, "weights"), json=body, headers={**admin, "If-Match": etag}, timeout=10)
    assert stale.status_code == 412
    back = {
        "weights": [{"component": "satisfaction", "weight": 0.25}],
        "prior": 5,
        "min_workload": 1,
        "grace_hours": 72,
    }
    assert requests.put(
        url(system, "weights"), json=back, headers={**admin, "If-Match": put.headers["ETag"]}, timeout=10
    ).ok


def test_ops_recount_a_quarter_and_nobody_else_may(system: System) -> None:
    quarter = f"{datetime.now(UTC).year}Q1"
    rebuilds = f"{system.gateway}/api/v1/evaluation/rebuilds"
    ok = requests.post(rebuilds, json={"tenant": T, "quarter": quarter}, headers=system.auth("ops", T), timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json()["differing"] in (0, "0")
    assert (
        requests.post(
            rebuilds, json={"tenant": T, "quarter": quarter}, headers=system.auth("subdistrict_admin", T), timeout=10
        ).status_code
        == 403
    )
