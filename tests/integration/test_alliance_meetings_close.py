"""The close timer of a meeting survives a restart of the alliance service: the absent are recorded after it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from services.org.seed import Rect
from tests.conftest import System, unique, wait_for

T = "shengzhuang"


def test_the_close_timer_records_the_absent_after_a_restart(system: System) -> None:
    admin = system.auth("subdistrict_admin", T)
    base = f"{system.gateway}/api/v1/tenants/{T}"
    # A place no other test of the tenant draws its grids in (test_community_scope's are in shengzhuang too).
    lat, lon = round(random.uniform(36.72, 36.80), 4), round(random.uniform(117.72, 117.80), 4)

    def org(collection: str, body: dict[str, Any]) -> str:
        resp = requests.post(f"{base}/org/{collection}", json=body, headers=admin, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    community = org("communities", {"name_zh": f"计时社区{unique()[-4:]}"})
    boundary = Rect(lon - 0.004, lat - 0.004, lon + 0.004, lat + 0.004).geojson()
    grid = org("grids", {"community_id": community, "name_zh": "计时网格", "boundary_geojson": boundary})
    station = org("grid-stations", {"grid_id": grid, "name_zh": "计时驿站", "point": {"lat": lat, "lon": lon}})
    unit = org(
        "member-units",
        {"community_id": community, "name_zh": "计时物业", "kind": "property_company", "joined_on": "2024-05-01"},
    )
    now = datetime.now(UTC)
    body = {
        "community_id": community,
        "title": "计时会议",
        "starts_at": (now - timedelta(minutes=5)).isoformat(),
        "ends_at": (now + timedelta(seconds=20)).isoformat(),
        "station_id": station,
        "invitees": [{"kind": "member_unit", "id": unit}],
    }
    resp = requests.post(f"{base}/alliance/meetings", json=body, headers=admin, timeout=15)
    assert resp.status_code == 201, resp.text
    meeting = resp.json()["id"]
    system.kill("alliance")  # down before the meeting ends: its timer waits in the database
    system.start("alliance")

    def absent() -> Any:
        got = requests.get(f"{base}/alliance/meetings/{meeting}", headers=admin, timeout=10)
        if got.status_code != 200:
            return None
        found = got.json()
        return found if found["status"] == "minuted" else None

    found = wait_for(absent, timeout=120)
    assert [(a["unit_id"], a["status"], a["recorded_by"]) for a in found["attendance"]] == [(unit, "absent", "system")]

    # A meeting entered after it ended (its start 5 h ago, no end: it closed 2 h ago): its timer, set just before
    # the meeting is written, is due at once; it closes the meeting all the same, and a retry with the same
    # idempotency key is the same meeting.
    held = body | {"starts_at": (datetime.now(UTC) - timedelta(hours=5)).isoformat(), "idempotency_key": unique()}
    del held["ends_at"]
    resp = requests.post(f"{base}/alliance/meetings", json=held, headers=admin, timeout=15)
    assert resp.status_code == 201, resp.text
    meeting = resp.json()["id"]
    found = wait_for(absent, timeout=120)
    assert [(a["unit_id"], a["status"], a["recorded_by"]) for a in found["attendance"]] == [(unit, "absent", "system")]
    again = requests.post(f"{base}/alliance/meetings", json=held, headers=admin, timeout=15)
    assert again.status_code == 201 and again.json()["id"] == meeting and again.json()["status"] == "minuted"
