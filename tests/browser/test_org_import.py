"""A spreadsheet import in the portal: the dry run lists every bad row (row, column, reason) and writes nothing;
the corrected file imports as a background job whose progress the page follows to its counts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person, log_in, shot
from tests.conftest import TEST_COMMUNITY, System, unique

pytestmark = pytest.mark.e2e
TENANT = "qiujiadian"
ROWS = 1500


def sheet(tag: str, bad: bool) -> bytes:
    lines = ["姓名,社区编号,身份"]
    lines += [f"志愿者{tag}-{n},{TEST_COMMUNITY},志愿者" for n in range(ROWS)]
    if bad:
        lines[3] = f",{TEST_COMMUNITY},志愿者"  # row 4: no name
        lines[10] = f"志愿者{tag}-x,{TEST_COMMUNITY},外星人"  # row 11: no such role
    return ("\n".join(lines) + "\n").encode("utf-8")


def people_named(system: System, tag: str) -> int:
    resp = requests.get(
        f"{system.gateway}/api/v1/tenants/{TENANT}/org/people/export",
        params={"format": "csv", "community_id": TEST_COMMUNITY},
        headers=system.auth("subdistrict_admin", TENANT),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.content.decode("utf-8-sig").count(f"志愿者{tag}-")


def test_a_dry_run_reports_bad_rows_then_the_import_runs_as_a_followed_job(
    system: System, page: Page, people: Callable[..., Person]
) -> None:
    tag = unique()[-6:]
    log_in(page, system, people("subdistrict_admin", TENANT), f"{TENANT}/org")
    page.get_by_role("tab", name="人员").click()
    page.get_by_test_id("import").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_test_id("import-file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": sheet(tag, bad=True)}
    )
    dialog.get_by_test_id("dry-run").click()
    errors = dialog.get_by_test_id("row-errors")
    expect(errors).to_contain_text("姓名", timeout=60_000)
    expect(errors).to_contain_text("外星人")
    expect(errors.get_by_role("row").filter(has_text="外星人")).to_contain_text("11")
    expect(dialog.get_by_test_id("run-import")).to_be_disabled()  # not with bad rows
    shot(page, "org-import-dry-run")
    assert people_named(system, tag) == 0  # a dry run writes nothing

    dialog.get_by_test_id("import-file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": sheet(tag, bad=False)}
    )
    dialog.get_by_test_id("dry-run").click()
    expect(dialog.get_by_test_id("import-report")).to_contain_text(f"已检查 {ROWS} 行：0 行有问题", timeout=60_000)
    dialog.get_by_test_id("run-import").click()
    expect(dialog.get_by_test_id("import-stage")).to_contain_text("行")  # the job's progress, followed
    expect(dialog.get_by_test_id("import-report")).to_contain_text(f"新增 {ROWS}", timeout=120_000)
    shot(page, "org-import-done")
    assert people_named(system, tag) == ROWS
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("import-jobs")).to_contain_text("已完成")
