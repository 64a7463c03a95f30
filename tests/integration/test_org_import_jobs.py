"""Spreadsheet imports as background jobs against the real org service (gRPC, FerretDB, Kafka): a job of
thousands of rows shows its progress growing to the totals; a file with bad rows ends with the report and
writes nothing; the org service killed while a job runs resumes it after a restart, every row once; who
may read a job. Polled to generous deadlines, never slept on."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from hongling.org.v1 import org_pb2 as pb
from hongling.org.v1 import org_pb2_grpc
from pymongo import MongoClient

from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from tests.conftest import System, unique, wait_for
from tests.integration.test_org_sheets import csv_bom, rect

TENANT = "taiqian"
UNIT_HEADER = ["社区编号", "单位名称", "类型", "联系人", "加入日期"]
STAGES = ("checking", "writing")
STATUSES = ("queued", "running", "succeeded")
# A job of thousands of rows takes a while on a busy shared machine: a deadline for "it never ends".
DEADLINE = 900.0


class Jobs:
    """The org service's import-job methods as one principal (sub, role, community) of the tenant."""

    def __init__(self, system: System, sub: str, role: str = "subdistrict_admin", community: str | None = None) -> None:
        self.stub = org_pb2_grpc.OrgServiceStub(system.channel("org"))
        self.system = system
        self.principal = Principal(sub=sub, role=role, tenants=(TENANT,), community=community)

    def _md(self) -> list[tuple[str, str]]:
        return [(METADATA_KEY, mint(self.principal, self.system.settings.principal_secret)), (TENANT_KEY, TENANT)]

    def call(self, method: str, req: Any, timeout: float = 60) -> Any:
        rpc: Callable[..., Any] = getattr(self.stub, method)
        return rpc(req, metadata=self._md(), timeout=timeout)

    def start(self, entity: str, content: bytes, *, fmt: str = "csv", dry_run: bool = False) -> pb.ImportJob:
        req = pb.StartImportJobRequest(entity=entity, format=fmt, content=content, dry_run=dry_run, filename="名单.csv")
        job: pb.ImportJob = self.call("StartImportJob", req)
        return job

    def get(self, job_id: str) -> pb.ImportJob:
        job: pb.ImportJob = self.call("GetImportJob", pb.GetImportJobRequest(id=job_id), timeout=10)
        return job

    def fails(self, method: str, req: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as exc:
            self.call(method, req)
        return exc.value

    def follow(self, job_id: str, *, seen: list[pb.ImportJob] | None = None, timeout: float = DEADLINE) -> pb.ImportJob:
        """Poll the job until it has finished, keeping every answer in `seen`; an answer the service cannot
        give (it is being restarted) is polled again."""
        seen = seen if seen is not None else []

        def finished() -> pb.ImportJob | None:
            try:
                job = self.get(job_id)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return None
                raise
            seen.append(job)
            return job if job.status in ("succeeded", "failed") else None

        found: pb.ImportJob = wait_for(finished, timeout=timeout, interval=0.2)
        return found


@pytest.fixture(scope="module")
def admin(system: System) -> Jobs:
    return Jobs(system, unique("jobs-admin"))


@pytest.fixture(scope="module")
def community(admin: Jobs, system: System) -> str:
    """A community of its own (with a grid), for the rows of these tests."""
    c = unique("jc")
    admin.call("CreateCommunity", pb.Community(id=c, name_zh=f"导入任务社区{c}"))
    admin.call("CreateGrid", pb.Grid(id=f"{c}-g", community_id=c, name_zh="一网格", boundary_geojson=rect(117.3, 36.4)))
    return c


def units_file(community: str, names: list[str]) -> bytes:
    return csv_bom([UNIT_HEADER, *([community, n, "resident_unit", "王主任", "2024-01-01"] for n in names)])


def stored_names(mongo_client: MongoClient[Any], community: str) -> list[str]:
    units = mongo_client[f"hl_org_{TENANT}"]["member_units"].find({"community_id": community}, {"name_zh": 1})
    return [str(u["name_zh"]) for u in units]


def assert_never_back(seen: list[pb.ImportJob]) -> None:
    """Status, stage and counts only ever move forward from one answer to the next."""
    for before, after in itertools.pairwise(seen):
        assert STATUSES.index(after.status) >= STATUSES.index(before.status), (before.status, after.status)
        assert STAGES.index(after.stage) >= STAGES.index(before.stage)
        assert after.total_rows >= before.total_rows
        assert after.rows_checked >= before.rows_checked, (before.rows_checked, after.rows_checked)
        assert after.rows_written >= before.rows_written, (before.rows_written, after.rows_written)


# ---------------------------------------------------------------- a large job, followed


def test_a_job_of_thousands_of_rows_shows_its_progress_growing_to_the_totals(
    admin: Jobs, community: str, mongo_client: MongoClient[Any]
) -> None:
    n = 3000
    names = [f"进度单位{i:05d}-{unique()}" for i in range(n)]
    started = admin.start("member_units", units_file(community, names))
    assert started.status == "queued" and started.id.startswith("ij-")
    assert (started.collection, started.entity, started.filename) == ("member-units", "member_units", "名单.csv")
    assert (started.total_rows, started.rows_checked, started.rows_written) == (0, 0, 0)
    assert started.created_by == admin.principal.sub and started.HasField("created_at")
    assert not started.HasField("finished_at")

    seen: list[pb.ImportJob] = []
    done = admin.follow(started.id, seen=seen)
    assert done.status == "succeeded", done.message
    assert (done.total_rows, done.rows_checked, done.rows_written) == (n, n, n)
    assert (done.created, done.updated, done.unchanged, done.error_count) == (n, 0, 0, 0)
    assert list(done.errors) == [] and done.message == "" and done.stage == "writing"
    assert done.attempts == 1 and done.HasField("finished_at")
    assert_never_back(seen)
    # It was followed on its way, not only seen at its start and end: the counts were written as it went.
    assert any(0 < j.rows_written < n for j in seen) or any(0 < j.rows_checked < n for j in seen), [
        (j.status, j.rows_checked, j.rows_written) for j in seen
    ]
    assert sorted(stored_names(mongo_client, community)) == sorted(names)
    db = mongo_client[f"hl_org_{TENANT}"]
    # The file (encrypted while it waited) and the job's queue entry and leases are gone once it has finished.
    assert db["import_uploads"].find_one({"_id": started.id}) is None
    assert db["import_job_queue"].find_one({"_id": started.id}) is None
    assert db["import_job_leases"].count_documents({"job": started.id}) == 0

    listed = admin.call("ListImportJobs", pb.ListImportJobsRequest(page_size=5))
    assert started.id in [j.id for j in listed.items]
    again = admin.start("member_units", units_file(community, names), dry_run=True)
    dry = admin.follow(again.id)
    assert (dry.status, dry.dry_run, dry.stage, dry.rows_checked, dry.rows_written) == (
        "succeeded",
        True,
        "checking",
        n,
        0,
    )
    assert (dry.created, dry.updated, dry.unchanged) == (0, 0, n)  # the same file again: nothing to change
    first = admin.call("ListImportJobs", pb.ListImportJobsRequest(page_size=1))
    assert [j.id for j in first.items] == [again.id] and first.next_page_token == again.id  # newest first
    second = admin.call("ListImportJobs", pb.ListImportJobsRequest(page_size=1, page_token=first.next_page_token))
    assert [j.id for j in second.items] == [started.id]


# ---------------------------------------------------------------- bad rows, bad files, bad requests


def test_a_job_whose_rows_have_errors_ends_with_the_report_and_writes_nothing(
    admin: Jobs, community: str, mongo_client: MongoClient[Any]
) -> None:
    other = unique("jc-empty")
    admin.call("CreateCommunity", pb.Community(id=other, name_zh=f"空社区{other}"))
    rows = [[other, f"好单位{i}", "resident_unit", "", "2024-01-01"] for i in range(50)]
    rows[9] = [other, "坏类型", "物业集团", "", "2024-01-01"]  # row 11
    rows[29] = [other, "坏日期", "resident_unit", "", "去年"]  # row 31
    rows[39] = ["no-such-community", "无社区", "resident_unit", "", "2024-01-01"]  # row 41
    job = admin.follow(admin.start("member_units", csv_bom([UNIT_HEADER, *rows])).id)
    assert job.status == "failed" and job.error_count == 3
    assert [(e.row, e.column) for e in job.errors] == [(11, "类型"), (31, "加入日期"), (41, "社区编号")]
    assert "'物业集团' is not one of" in job.errors[0].reason
    assert "3 error(s) in the file: nothing was written" in job.message and "未写入任何数据" in job.message
    assert (job.total_rows, job.rows_checked, job.rows_written) == (50, 50, 0)
    assert (job.created, job.updated, job.unchanged) == (0, 0, 0)  # as the import route answers it
    assert stored_names(mongo_client, other) == []
    listed = admin.call("ListImportJobs", pb.ListImportJobsRequest(page_size=100))
    in_list = next(j for j in listed.items if j.id == job.id)
    assert in_list.error_count == 3 and list(in_list.errors) == []  # the rows are in the job, not the list

    dry = admin.follow(admin.start("member_units", csv_bom([UNIT_HEADER, *rows]), dry_run=True).id)
    assert dry.status == "succeeded" and dry.error_count == 3 and dry.message == ""  # a dry run's report
    assert dry.created == 47 and stored_names(mongo_client, other) == []  # what the good rows would do


def test_a_file_that_cannot_be_read_fails_the_job_saying_why(admin: Jobs) -> None:
    damaged = b"PK\x03\x04" + b"\x00" * 200  # starts as a workbook, is none
    job = admin.follow(admin.start("people", damaged, fmt="xlsx").id)
    assert job.status == "failed" and job.total_rows == 0 and job.error_count == 0
    assert "xlsx file is damaged" in job.message and "导入失败" in job.message


def test_the_largest_file_is_kept_with_its_job_and_read_back_whole(admin: Jobs) -> None:
    row = "no-such-community,单位" + "甲" * 60 + ",resident_unit,,2024-01-01\r\n"
    body = ",".join(UNIT_HEADER) + "\r\n" + row * ((5 * 1024 * 1024 - 200) // len(row.encode()))
    content = body.encode()
    assert 5 * 1024 * 1024 - 400 < len(content) <= 5 * 1024 * 1024
    job = admin.follow(admin.start("member_units", content).id)
    assert job.size_bytes == len(content)
    # Read back whole (the row limit is only found by reading every row): refused for its rows, not its bytes.
    assert job.status == "failed" and "more than 20,000 data rows" in job.message, job.message


def test_what_can_be_told_at_once_is_refused_at_once(admin: Jobs) -> None:
    for req, words in (
        (pb.StartImportJobRequest(entity="grids", format="csv", content=b"a\r\n"), "use one of: member_units"),
        (pb.StartImportJobRequest(entity="people", format="ods", content=b"a\r\n"), "use one of: xlsx, csv"),
        (pb.StartImportJobRequest(entity="people", format="csv", content=b""), "the file is empty"),
        (pb.StartImportJobRequest(entity="people", format="xlsx", content=b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"), ".xls"),
    ):
        err = admin.fails("StartImportJob", req)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and words in (err.details() or ""), err.details()
    err = admin.fails("GetImportJob", pb.GetImportJobRequest(id="ij-nothing"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "未找到该导入任务" in (err.details() or "")
    err = admin.fails("ListImportJobs", pb.ListImportJobsRequest(page_size=101))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_community_worker_reads_only_the_jobs_it_started_and_imports_only_its_community(
    system: System, admin: Jobs, community: str, mongo_client: MongoClient[Any]
) -> None:
    worker = Jobs(system, unique("worker"), "community_worker", community)
    colleague = Jobs(system, unique("worker"), "community_worker", community)
    elsewhere = unique("jc-b")
    admin.call("CreateCommunity", pb.Community(id=elsewhere, name_zh=f"别的社区{elsewhere}"))
    rows = [[community, f"本社区单位{unique()}", "resident_unit", "", "2024-01-01"]]
    rows.append([elsewhere, f"外社区单位{unique()}", "resident_unit", "", "2024-01-01"])  # row 3
    job = worker.follow(worker.start("member_units", csv_bom([UNIT_HEADER, *rows])).id)
    assert job.status == "failed" and [(e.row, e.column) for e in job.errors] == [(3, "社区编号")]
    assert "无权访问该社区数据" in job.errors[0].reason  # the worker's community, as in a call
    assert stored_names(mongo_client, elsewhere) == []

    assert admin.get(job.id).id == job.id  # the tenant's staff read every job
    err = colleague.fails("GetImportJob", pb.GetImportJobRequest(id=job.id))
    assert err.code() == grpc.StatusCode.NOT_FOUND and f"import job {job.id!r} not found" in (err.details() or "")
    mine = worker.call("ListImportJobs", pb.ListImportJobsRequest(page_size=100))
    assert [j.id for j in mine.items] == [job.id]
    assert colleague.call("ListImportJobs", pb.ListImportJobsRequest(page_size=100)).items == []
    resident = Jobs(system, unique("resident"), "resident")
    err = resident.fails("StartImportJob", pb.StartImportJobRequest(entity="people", format="csv", content=b"a"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- a crash while a job runs


def test_a_job_running_when_the_service_is_killed_is_finished_after_a_restart_every_row_once(
    system: System, admin: Jobs, mongo_client: MongoClient[Any]
) -> None:
    c = unique("jc-crash")
    admin.call("CreateCommunity", pb.Community(id=c, name_zh=f"崩溃社区{c}"))
    n = 2500
    names = [f"续传单位{i:05d}-{unique()}" for i in range(n)]
    started = admin.start("member_units", units_file(c, names))
    seen: list[pb.ImportJob] = []

    def writing() -> bool:
        job = admin.get(started.id)
        seen.append(job)
        assert job.status not in ("succeeded", "failed"), "the job ended before the service could be killed"
        return job.rows_written > 100

    wait_for(writing, timeout=DEADLINE, interval=0.1)
    system.kill("org")
    partly = len(stored_names(mongo_client, c))
    assert 0 < partly < n, partly  # killed halfway through writing
    system.start("org")

    done = admin.follow(started.id, seen=seen)
    assert done.status == "succeeded", done.message
    assert done.attempts == 2  # resumed once its lease had lapsed
    assert_never_back(seen)
    stored = stored_names(mongo_client, c)
    assert len(stored) == n and sorted(stored) == sorted(names)  # every row there, once
    # The rows saved before the crash were found equal the second time (idempotent), the rest created.
    assert done.unchanged >= partly and done.created + done.unchanged == n and done.updated == 0
    assert (done.total_rows, done.rows_checked, done.rows_written) == (n, n, n)


def test_a_job_running_when_the_service_is_stopped_is_handed_on_at_once_every_row_once(
    system: System, admin: Jobs, mongo_client: MongoClient[Any]
) -> None:
    c = unique("jc-stop")
    admin.call("CreateCommunity", pb.Community(id=c, name_zh=f"停机社区{c}"))
    n = 1500
    names = [f"交接单位{i:05d}-{unique()}" for i in range(n)]
    started = admin.start("member_units", units_file(c, names))
    wait_for(lambda: admin.get(started.id).rows_written > 100, timeout=DEADLINE, interval=0.1)
    pid_file = Path(system.settings_state_dir) / "run" / "org.pid"
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)  # a graceful stop: the job stops between two rows and gives its lease up

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=60)
    pid_file.unlink()
    lease = mongo_client[f"hl_org_{TENANT}"]["import_job_leases"].find_one({"_id": f"{started.id}:1"})
    assert lease is not None and lease["released"] is True
    assert admin_job_status(mongo_client, started.id) == "running"  # left to be resumed, not failed
    system.start("org")
    done = admin.follow(started.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert sorted(stored_names(mongo_client, c)) == sorted(names)
    assert done.created + done.unchanged == n and (done.rows_checked, done.rows_written) == (n, n)


def admin_job_status(mongo_client: MongoClient[Any], job_id: str) -> str:
    job = mongo_client[f"hl_org_{TENANT}"]["import_jobs"].find_one({"_id": job_id}, {"status": 1})
    return str((job or {}).get("status"))
