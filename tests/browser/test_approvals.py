"""A district approver in the portal (审核把关): a department's request approved narrowed (a field struck off,
a lower quota), another rejected with a reason, the grant's use shown, and the audit chain checked."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, log_in, shot
from tests.conftest import System, unique
from tests.e2e.test_governance import REQUESTS, Place, body, department
from tests.e2e.test_governance import place as place  # the fixture (a community and its 承办 item), reused

pytestmark = pytest.mark.e2e


def filed(system: System, headers: dict[str, str], where: Place, **kw: object) -> dict[str, object]:
    resp = requests.post(system.gateway + REQUESTS, json=body(where, **kw), headers=headers, timeout=15)
    assert resp.status_code == 201, resp.text
    out: dict[str, object] = resp.json()
    return out


def test_an_approver_narrows_one_request_rejects_another_and_checks_the_chain(
    system: System, page: Page, people: Callable[..., Person], place: Place
) -> None:
    _, dept = department(system)
    title, other = f"养老设施台账{unique()[-4:]}", f"考勤统计{unique()[-4:]}"
    narrowed = filed(system, dept, place, title=title, quota=10)
    rejected = filed(system, dept, place, title=other)
    log_in(page, system, people("district_approver", "*"), "approvals")
    requests_table = page.get_by_test_id("requests")
    expect(requests_table).to_contain_text(title)
    shot(page, "approvals")

    requests_table.get_by_role("link", name=title).click()
    drawer = page.get_by_role("dialog")
    # Its purpose (核对…台账) is let through with a flag: the approver reads the phrase and why before deciding.
    expect(drawer.get_by_test_id("request-flags")).to_contain_text("「台账」")
    expect(drawer.get_by_test_id("request-flags")).to_contain_text("减负")
    drawer.locator("label.el-checkbox", has_text="contact_name").click()  # narrowed: no contact names
    expect(drawer.get_by_role("checkbox", name="contact_name")).not_to_be_checked()
    drawer.get_by_role("spinbutton", name="次数上限").fill("5")
    drawer.get_by_test_id("decision-reason").fill("联系人姓名不在核对范围内")
    drawer.get_by_test_id("approve").click()
    expect(drawer.get_by_test_id("decision")).to_contain_text("已批准")
    expect(drawer.get_by_test_id("grant-use")).to_contain_text("0 / 5")
    grant = requests.get(
        f"{system.gateway}{REQUESTS}/{narrowed['id']}", headers=system.auth("district_approver", "*"), timeout=10
    )
    assert sorted(grant.json()["grant"]["fields"]) == ["kind", "name_zh"] and grant.json()["grant"]["quota"] == 5
    page.keyboard.press("Escape")

    requests_table.get_by_role("link", name=other).click()
    drawer.get_by_test_id("reject").click()  # no reason: the API says what is missing, the form stays
    expect(drawer.get_by_role("alert").or_(drawer.locator(".el-form-item__error")).first).to_contain_text("reason")
    drawer.get_by_test_id("decision-reason").fill("属于考核统计，不予协助")
    drawer.get_by_test_id("reject").click()
    expect(drawer.get_by_test_id("decision")).to_contain_text("已驳回")
    assert (
        requests.get(f"{system.gateway}{REQUESTS}/{rejected['id']}", headers=dept, timeout=10).json()["status"]
        == "rejected"
    )
    page.keyboard.press("Escape")

    # An assessment task in other words (迎检) is refused at filing; the audit tab says why.
    refused = requests.post(
        system.gateway + REQUESTS, json=body(place, title=f"做好迎检准备{unique()[-4:]}"), headers=dept, timeout=15
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "assessment_task_refused"
    page.get_by_role("tab", name="审计日志").click()
    expect(page.get_by_test_id("audit")).to_contain_text("request.approve")
    expect(page.get_by_test_id("audit-why").filter(has_text="迎检是为上级检查做准备").first).to_be_visible(
        timeout=60_000
    )
    page.get_by_test_id("verify-chain").click()
    expect(page.get_by_test_id("chain-status")).to_contain_text("审计链完整", timeout=60_000)
    shot(page, "audit")
