"""Builders for the ratings' (评单) e2e and browser tests, in one place (STYLE.md: test builders, not test
modules importing each other): a community with a grid of its own through the gateway, a report through the
gateway (its follow-up code), its task, and a TaskVerified published to Kafka as the verification area's
relay would publish it (real CloudEvents on hongling.evaluation.v1)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev
from kafka import KafkaProducer

from services.common.events import CloudEvent, record_key, topic_for
from services.org.seed import Rect
from tests.conftest import System, unique, wait_for

M_PER_DEG = 111_195.0


@dataclass(frozen=True)
class Place:
    tenant: str
    community_id: str
    lat: float  # the grid's centre
    lon: float

    def point(self, n: int) -> dict[str, Any]:
        """The n-th report's place: 150 m from any other (more than the duplicate distance), within the grid
        (7 rows of 4 columns: n < 28 are all apart)."""
        return {
            "lat": self.lat + (n % 7 - 3) * 150 / M_PER_DEG,
            "lon": self.lon + (n // 7 % 4 - 1.5) * 0.002,
            "address": "评单路",
        }


def place(system: System, tenant: str) -> Place:
    """A community with one 0.01° grid, somewhere no other test draws one."""
    base = f"{system.gateway}/api/v1/tenants/{tenant}/org"
    admin = system.auth("subdistrict_admin", "*")
    lat, lon = round(random.uniform(35.0, 35.4), 4), round(random.uniform(117.6, 118.0), 4)
    made = requests.post(f"{base}/communities", json={"name_zh": f"评单社区{unique()}"}, headers=admin, timeout=15)
    assert made.status_code == 201, made.text
    cid = str(made.json()["id"])
    grid = {
        "community_id": cid,
        "name_zh": "评单网格",
        "boundary_geojson": Rect(lon - 0.005, lat - 0.005, lon + 0.005, lat + 0.005).geojson(),
    }
    resp = requests.post(f"{base}/grids", json=grid, headers=admin, timeout=15)
    assert resp.status_code == 201, resp.text
    return Place(tenant, cid, lat, lon)


def report(
    system: System, where: Place, n: int, headers: dict[str, str] | None = None, title: str = "楼道灯不亮"
) -> dict[str, Any]:
    """Report an issue through the gateway (anonymously unless headers say who); the whole answer."""
    body = {
        "title": f"{title}{n}",
        "description": "评单测试：楼道灯坏了一周",
        "channel": "resident_report",
        "category": "property_repair",
        "location": where.point(n),
    }
    resp = requests.post(
        f"{system.gateway}/api/v1/tenants/{where.tenant}/issues", json=body, headers=headers or {}, timeout=15
    )
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def task_of(system: System, tenant: str, issue_id: str) -> str:
    url = f"{system.gateway}/api/v1/tenants/{tenant}/issues/{issue_id}"
    admin = system.auth("subdistrict_admin", "*")
    task = wait_for(lambda: requests.get(url, headers=admin, timeout=15).json()["task"])
    return str(task["id"])


def publish_verified(
    system: System, where: Place, issue_id: str, task_id: str, at: datetime | None = None, attempt: int = 1
) -> str:
    """TaskVerified of the task (method review, two crew members); returns its verification id."""
    at = at or datetime.now(UTC)
    stamp = Timestamp()
    stamp.FromDatetime(at)
    vid = f"v-{uuid.uuid4().hex[:12]}"
    msg = eev.TaskVerified(
        verification_id=vid,
        tenant=where.tenant,
        community_id=where.community_id,
        task_id=task_id,
        issue_id=issue_id,
        call_type="service",
        method="review",
        attempt=attempt,
        crew_ids=["person:e2e-crew-1", "member_unit:e2e-unit-1"],
        by="e2e-convenor",
        verified_at=stamp,
        votes_pass=3,
    )
    ce = CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/evaluation/{where.tenant}",
        type=msg.DESCRIPTOR.full_name,
        time=at,
        subject=f"tasks/{task_id}/verification",
        tenant=where.tenant,
        data=msg.SerializeToString(),
    )
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    try:
        producer.send(
            topic_for("evaluation"), key=record_key(where.tenant, vid), value=ce.data, headers=ce.headers()
        ).get(timeout=15)
    finally:
        producer.close(timeout=10)
    return vid


def follow(system: System, tenant: str, issue_id: str, code: str, headers: dict[str, str] | None = None) -> Any:
    return requests.get(
        f"{system.gateway}/api/v1/tenants/{tenant}/issues/{issue_id}/follow",
        headers={**(headers or {}), **({"X-Follow-Code": code} if code else {})},
        timeout=15,
    )


def verified_issue(system: System, where: Place, n: int) -> tuple[dict[str, Any], str, str, str]:
    """A reported issue whose task is verified, once the ratings area has heard: (issue, code, task, verification)."""
    answer = report(system, where, n)
    issue, code = answer["issue"], answer["follow_code"]
    task_id = task_of(system, where.tenant, issue["id"])
    vid = publish_verified(system, where, issue["id"], task_id)
    wait_for(lambda: follow(system, where.tenant, issue["id"], code).json().get("verified"))
    return issue, code, task_id, vid
