"""验单 in the portal: a done emergency task waits in the queue asking for an on-site check; the inspector records
one with a photo, too far from the issue: the check shows the place flag and the photo, the task is sent back;
the page passes axe and reads in English."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, axe_violations, log_in, shot
from tests.conftest import System, unique, wait_for
from tests.e2e.test_dispatch_api import build_area

pytestmark = pytest.mark.e2e
TENANT = "daimiao"
CENTER = (round(random.uniform(36.12, 36.16), 4), round(random.uniform(117.22, 117.26), 4))


def png(width: int = 40, height: int = 30) -> bytes:
    """A real (red) PNG, so that the browser draws it."""
    raw = b"".join(b"\x00" + b"\xc0\x20\x20" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def field(test_id: str) -> str:
    """An Element Plus input by its test id (the attribute lands on the <input> or on its wrapper)."""
    return f'input[data-testid="{test_id}"], [data-testid="{test_id}"] input'


def api(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{TENANT}/{path}"


def done_emergency_task(system: System, volunteer: str) -> dict[str, Any]:
    h = system.auth("subdistrict_admin", TENANT)
    body = {
        "title": f"楼道里有煤气味{unique()[-4:]}",
        "description": "2单元楼道有煤气味",
        "channel": "grid_patrol",
        "category": "property_repair",
        "hazards": ["gas"],
        "location": {"lat": CENTER[0], "lon": CENTER[1], "address": "验单测试社区2单元"},
    }
    filed = requests.post(api(system, "issues"), json=body, headers=h, timeout=15)
    assert filed.status_code == 201, filed.text
    issue_id = filed.json()["issue"]["id"]
    task_id = wait_for(
        lambda: (t := requests.get(api(system, f"issues/{issue_id}"), headers=h, timeout=10).json()["task"]) and t["id"]
    )
    claim = {"role": "lead", "claimant": {"kind": "person", "id": volunteer}}
    t = requests.post(api(system, f"tasks/{task_id}/claims"), json=claim, headers=h, timeout=10).json()
    for action in ("start", "done"):
        resp = requests.post(
            api(system, f"tasks/{task_id}/transitions"),
            json={"action": action},
            headers={**h, "If-Match": f'"{t["version"]}"'},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        t = resp.json()
    return {**t, "title": body["title"]}


def test_an_onsite_check_with_a_photo_shows_its_place_flag_and_sends_the_task_back(
    system: System, page: Page, people: Callable[..., Person], tmp_path: Path
) -> None:
    area = build_area(system, TENANT, CENTER)
    task = done_emergency_task(system, area.people[1])
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/verification?community={area.community_id}")
    row = page.get_by_test_id("queue").locator("tr").filter(has_text=task["title"])
    expect(row).to_have_count(1, timeout=60_000)
    expect(row).to_contain_text("现场核验")
    assert not axe_violations(page)
    row.get_by_test_id(f"check-{task['id']}").click()
    form = page.get_by_test_id("check-form")
    form.locator(field("check-lat")).fill(str(round(CENTER[0] + 0.005, 6)))
    form.locator(field("check-lon")).fill(str(CENTER[1]))
    form.locator("label.el-radio").filter(has_text="验收不通过").click()
    form.locator(field("check-reason")).fill("阀门未更换")
    form.locator('textarea[data-testid="check-notes"], [data-testid="check-notes"] textarea').fill("现场仍有异味")
    photo = tmp_path / "现场.png"
    photo.write_bytes(png())
    form.get_by_test_id("check-photos").set_input_files(str(photo))
    form.get_by_test_id("check-submit").click()
    view = page.get_by_test_id("check-view")
    expect(view.get_by_test_id("check-verdict")).to_have_text("验收不通过")
    expect(view.get_by_test_id("check-place")).to_contain_text("超过200米")
    expect(view.get_by_test_id("check-photo")).to_have_count(1)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=check-photo]')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert not axe_violations(page)
    shot(page, "onsite-check")

    # The verdict sends the task back to work (rejected, reopened).
    h = system.auth("subdistrict_admin", TENANT)
    wait_for(
        lambda: requests.get(api(system, f"tasks/{task['id']}"), headers=h, timeout=10).json()["status"] == "reopened",
        timeout=120,
    )
    # The checks tab lists it with its flag; the page reads in English.
    wait_for(
        lambda: requests.get(
            api(system, f"evaluation/onsite-checks?task_id={task['id']}"), headers=h, timeout=10
        ).json()["checks"]
    )
    page.keyboard.press("Escape")
    page.get_by_role("tab", name="现场核验").click()
    expect(page.get_by_test_id("checks").get_by_test_id("place-flag").first).to_be_visible()
    page.get_by_test_id("language").click()
    expect(page.get_by_role("tab", name="On-site checks")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Verification")
