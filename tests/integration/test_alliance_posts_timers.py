"""The shift-end timer survives a restart: with the alliance service down when a claimed shift ends, the missed
shift is recorded once it is back (its timer worker rescans at start and fires what came due meanwhile)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from tests.conftest import System, unique, wait_for

T = "shengzhuang"


def test_a_shift_that_ended_while_the_service_was_down_is_recorded_missed_after_restart(system: System) -> None:
    base = f"{system.gateway}/api/v1/tenants/{T}/alliance"
    worker = system.auth("community_worker", T)
    start = datetime.now(UTC) + timedelta(seconds=5)
    shift = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(seconds=3)).isoformat(), "capacity": 1}
    post = requests.post(f"{base}/posts", json={"name": "网格信息员", "shifts": [shift]}, headers=worker, timeout=10)
    assert post.status_code == 201, post.text
    shift_id = post.json()["shifts"][0]["id"]
    pid = unique("p")
    claim = requests.post(
        f"{base}/shifts/{shift_id}/claims", json={}, headers=system.member_auth(T, "person", pid), timeout=10
    )
    assert claim.status_code == 201, claim.text

    system.kill("alliance")
    try:
        wait_for(lambda: datetime.now(UTC) > start + timedelta(seconds=4), timeout=30)  # the shift is over, unseen
    finally:
        system.start("alliance")

    def missed() -> object:
        resp = requests.get(f"{base}/shifts/{shift_id}/roster", headers=worker, timeout=10)
        if resp.status_code != 200:
            return None  # the service is still starting
        return [c for c in resp.json()["claims"] if c["status"] == "missed" and c["person_id"] == pid]

    [found] = wait_for(missed, timeout=120)
    assert found["id"] == claim.json()["id"]
