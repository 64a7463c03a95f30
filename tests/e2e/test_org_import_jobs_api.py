"""Spreadsheet imports as background jobs through the gateway: 202 with Location, the job polled there until
it has succeeded (progress, counts, times in Asia/Shanghai), the bad rows of a failed one, the tenant's list
newest first, who may read a job, and the requests refused before a job is made."""

from __future__ import annotations

import itertools
from typing import Any

import requests

from tests.conftest import System, unique, wait_for
from tests.e2e.test_org_api import T, error, new_community, org

UNITS = "社区编号,单位名称,类型,加入日期\n"


def units(community: str, n: int) -> bytes:
    return (UNITS + "".join(f"{community},任务单位{i:04d},驻地单位,2024-03-01\n" for i in range(n))).encode()


def follow(system: System, location: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """GET the job at Location until it has finished; every answer, in order."""
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        resp = requests.get(
            system.gateway + location, headers=headers or system.auth("subdistrict_admin", "*"), timeout=10
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["Cache-Control"] == "no-store"
        seen.append(resp.json())
        return seen[-1]["status"] in ("succeeded", "failed")

    wait_for(finished, timeout=600, interval=0.25)
    return seen


def test_a_job_is_202_with_location_and_is_followed_there_until_it_has_succeeded(system: System) -> None:
    c = new_community(system)["id"]
    sheet = units(c, 400)
    resp = org(system, "POST", "member-units/import-jobs", files={"file": ("成员单位.csv", sheet, "text/csv")})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert resp.headers["Location"] == f"/api/v1/tenants/{T}/org/import-jobs/{job['id']}"
    assert (job["status"], job["collection"], job["dry_run"], job["stage"]) == (
        "queued",
        "member-units",
        False,
        "checking",
    )
    assert (job["filename"], job["format"], job["size_bytes"], job["created_by"]) == (
        "成员单位.csv",
        "csv",
        len(sheet),
        "test-subdistrict_admin-all",
    )
    assert job["created_at"].endswith("+08:00") and job["finished_at"] is None and job["errors"] == []

    seen = follow(system, resp.headers["Location"])
    done = seen[-1]
    assert done["status"] == "succeeded", done
    assert (done["total_rows"], done["rows_checked"], done["rows_written"], done["stage"]) == (400, 400, 400, "writing")
    assert (done["created"], done["updated"], done["unchanged"], done["error_count"]) == (400, 0, 0, 0)
    assert done["message"] == "" and done["attempts"] == 1
    assert done["finished_at"].endswith("+08:00") and done["updated_at"] >= done["created_at"]
    for before, after in itertools.pairwise(seen):
        assert after["rows_checked"] >= before["rows_checked"] and after["rows_written"] >= before["rows_written"]
    listed = org(system, "GET", f"member-units?community_id={c}&page_size=500").json()["items"]
    assert len(listed) == 400

    # The same file again, as a raw body: every row unchanged.
    again = org(system, "POST", "member-units/import-jobs?format=csv", data=sheet)
    assert again.status_code == 202, again.text
    assert follow(system, again.headers["Location"])[-1]["unchanged"] == 400

    page = org(system, "GET", "import-jobs?page_size=1")
    assert page.status_code == 200, page.text
    assert [j["id"] for j in page.json()["items"]] == [again.json()["id"]]  # newest first
    token = page.json()["next_page_token"]
    assert [j["id"] for j in org(system, "GET", f"import-jobs?page_size=1&page_token={token}").json()["items"]] == [
        job["id"]
    ]


def test_a_job_with_bad_rows_fails_with_them_and_writes_nothing(system: System) -> None:
    c = new_community(system)["id"]
    sheet = (UNITS + f"{c},好单位,驻地单位,2024-03-01\n{c},坏单位,驻地单位,明年\n").encode()
    resp = org(system, "POST", "member-units/import-jobs?format=csv", data=sheet)
    assert resp.status_code == 202, resp.text
    done = follow(system, resp.headers["Location"])[-1]
    assert done["status"] == "failed" and done["error_count"] == 1
    assert done["errors"] == [{"row": 3, "column": "加入日期", "reason": "joined_on '明年' is not a date (YYYY-MM-DD)"}]
    assert "未写入任何数据" in done["message"]
    assert org(system, "GET", f"member-units?community_id={c}").json()["items"] == []

    dry = org(system, "POST", "member-units/import-jobs?format=csv&dry_run=true", data=sheet)
    report = follow(system, dry.headers["Location"])[-1]
    assert (report["status"], report["dry_run"], report["created"], report["error_count"]) == (
        "succeeded",
        True,
        1,
        1,
    )


def test_requests_refused_before_any_job_is_made(system: System) -> None:
    error(org(system, "POST", "people/import-jobs?format=pdf", data=b"x"), 400, "invalid_argument", "format")
    error(org(system, "POST", "people/import-jobs", data=b"x"), 400, "invalid_argument", "format")
    error(org(system, "POST", "communities/import-jobs?format=csv", data=b"x"), 404, "no_spreadsheets")
    error(org(system, "POST", "people/import-jobs?format=csv", data=b""), 400, field="file")
    error(org(system, "POST", "people/import-jobs?format=csv&dry_run=maybe", data=b"a"), 400, field="dry_run")
    old_excel = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64
    err = error(org(system, "POST", "people/import-jobs?format=xlsx", data=old_excel), 400, "invalid_argument")
    assert ".xls" in err["message"]
    error(org(system, "POST", "people/import-jobs?format=csv", data=b"x" * (5 * 1024 * 1024 + 1)), 413)
    error(org(system, "GET", "import-jobs/ij-000000000000nothing"), 404, "not_found", "id")
    error(org(system, "GET", "import-jobs?page_size=101"), 400, field="page_size")


def test_a_community_worker_reads_only_its_own_jobs(system: System) -> None:
    c = new_community(system)["id"]
    mine = system.worker_auth(T, c, unique("worker"))
    colleague = system.worker_auth(T, c, unique("worker"))
    sheet = units(c, 3)
    started = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/org/member-units/import-jobs?format=csv",
        data=sheet,
        headers=mine,
        timeout=10,
    )
    assert started.status_code == 202, started.text
    assert follow(system, started.headers["Location"], mine)[-1]["status"] == "succeeded"
    theirs = requests.get(system.gateway + started.headers["Location"], headers=colleague, timeout=10)
    error(theirs, 404, "not_found")  # as a job that does not exist
    assert "未找到该导入任务" in theirs.json()["error"]["message"]
    listed = requests.get(f"{system.gateway}/api/v1/tenants/{T}/org/import-jobs", headers=mine, timeout=10)
    assert [j["id"] for j in listed.json()["items"]] == [started.json()["id"]]
    admin = org(system, "GET", f"import-jobs/{started.json()['id']}")
    assert admin.status_code == 200  # the tenant's staff read every job
    resident = requests.get(
        f"{system.gateway}/api/v1/tenants/{T}/org/import-jobs", headers=system.auth("resident", T), timeout=10
    )
    error(resident, 403, "forbidden")
