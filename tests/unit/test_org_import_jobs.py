"""Import jobs' bookkeeping without storage: progress written every N rows or every second (never every
row), never going back (a resumed job), stages; the job as its message, the result's fields, names."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.org import jobs, sheets
from services.org.jobs import CHECKING, WRITING, Progress, Tracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(shown: Progress | None = None, **kw: Any) -> tuple[Tracker, list[Progress], Clock]:
    flushed: list[Progress] = []
    clock = Clock()
    return Tracker(flushed.append, shown=shown, clock=clock, **kw), flushed, clock


def run_rows(t: Tracker, clock: Clock, total: int, per_row: float, *, write: bool = True, unchanged: int = 0) -> None:
    """An import of `total` rows, each taking `per_row` seconds to check and to write."""
    t.read(total)
    for n in range(1, total + 1):
        clock.now += per_row
        t.checked(n)
    if write:
        t.writing(unchanged)
        for n in range(unchanged + 1, total + 1):
            clock.now += per_row
            t.written(n)


def test_the_file_read_and_the_writing_start_are_written_at_once() -> None:
    t, flushed, _ = tracker()
    t.read(5000)
    assert flushed == [Progress(CHECKING, 5000, 0, 0)]
    t.writing(120)
    assert flushed[-1] == Progress(WRITING, 5000, 0, 120)


def test_fast_rows_are_written_every_n_rows_not_every_row() -> None:
    t, flushed, clock = tracker(every_rows=1000, every_seconds=1.0)
    run_rows(t, clock, 5000, per_row=0.0001)  # 10,000 rows a second: the row count decides
    checks = [p.rows_checked for p in flushed if p.stage == CHECKING][1:]
    assert checks == [1000, 2000, 3000, 4000, 5000]
    writes = [p.rows_written for p in flushed if p.stage == WRITING]
    assert writes == [0, 1000, 2000, 3000, 4000, 5000]
    assert t.flushes == len(flushed) == 12


def test_slow_rows_are_written_about_once_a_second() -> None:
    t, flushed, clock = tracker(every_rows=1000, every_seconds=1.0)
    run_rows(t, clock, 300, per_row=0.1, write=False)  # 10 rows a second for 30 s
    checks = [p.rows_checked for p in flushed][1:]
    assert 25 <= len(checks) <= 31  # once a second, not 300 times
    assert all(b - a in (10, 11) for a, b in itertools.pairwise(checks))


def test_nothing_new_is_not_written_again() -> None:
    t, flushed, clock = tracker()
    t.read(10)
    t.checked(3)
    clock.now += 5
    t.checked(4)
    count = len(flushed)
    clock.now += 5
    t.flush()
    t.flush()
    assert len(flushed) == count  # the same progress twice is one write


def test_progress_only_grows_and_ends_at_the_totals() -> None:
    t, flushed, clock = tracker(every_rows=7, every_seconds=0.5)
    run_rows(t, clock, 1234, per_row=0.003, unchanged=34)
    for before, after in itertools.pairwise(flushed):
        assert after.rows_checked >= before.rows_checked and after.rows_written >= before.rows_written
        assert jobs.STAGES.index(after.stage) >= jobs.STAGES.index(before.stage)
    t.flush()
    assert flushed[-1] == Progress(WRITING, 1234, 1234, 1234)


def test_a_resumed_job_never_shows_less_than_it_had_got() -> None:
    before_the_crash = Progress(WRITING, 3000, 3000, 1700)
    t, flushed, clock = tracker(shown=before_the_crash, every_rows=500)
    t.read(3000)
    assert flushed == [before_the_crash]  # checking again: still shown as it was
    for n in range(1, 3001):
        t.checked(n)
    t.writing(1800)  # the rows written before the crash are unchanged now, and a few more
    for n in range(1801, 3001):
        clock.now += 0.01
        t.written(n)
    t.flush()
    assert all(p.stage == WRITING and p.rows_checked == 3000 for p in flushed)
    written = [p.rows_written for p in flushed]
    assert written == sorted(written) and written[0] == 1700 and written[1] == 1800 and written[-1] == 3000


def test_the_check_runs_on_every_row_and_can_stop_the_import() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 42:
            raise jobs.Interrupted("stopping")

    t, _, _ = tracker(check=check)
    t.read(100)
    with pytest.raises(jobs.Interrupted):
        for n in range(1, 101):
            t.checked(n)
    assert len(calls) == 42


def test_progress_of_a_stored_job_and_the_furthest_of_two() -> None:
    assert Progress.of({}) == Progress(CHECKING, 0, 0, 0)
    assert Progress.of({"stage": "odd", "total_rows": 5}) == Progress(CHECKING, 5, 0, 0)
    a, b = Progress(WRITING, 10, 10, 2), Progress(CHECKING, 10, 4, 0)
    assert a.furthest(b) == b.furthest(a) == a


def result(errors: int, rows: int = 10) -> sheets.ImportResult:
    bad = [sheets.RowError(n + 2, "姓名", "required") for n in range(errors)]
    return sheets.ImportResult(rows=rows, created=4, updated=3, unchanged=3, errors=bad, error_count=errors)


def test_a_real_import_with_bad_rows_fails_and_a_dry_run_reports_them() -> None:
    failed = jobs.outcome(result(3), dry_run=False)
    assert failed["status"] == "failed" and failed["error_count"] == 3
    assert "3 error(s)" in failed["message"] and "未写入任何数据" in failed["message"]
    assert jobs.outcome(result(3), dry_run=True) == {
        "status": "succeeded",
        "created": 4,
        "updated": 3,
        "unchanged": 3,
        "error_count": 3,
        "message": "",
    }
    assert jobs.outcome(result(0), dry_run=False)["status"] == "succeeded"


def test_the_job_as_its_message_with_times_in_utc_and_the_collection_as_the_api_names_it() -> None:
    at = datetime(2025, 3, 1, 1, 2, 3, tzinfo=UTC)
    job = {
        "_id": "ij-1",
        "entity": "talent_entries",
        "status": "failed",
        "dry_run": False,
        "stage": "checking",
        "format": "csv",
        "total_rows": 3,
        "rows_checked": 3,
        "error_count": 1,
        "message": "bad",
        "created_by": "alice",
        "created_at": at,
        "updated_at": at.replace(tzinfo=None) + timedelta(seconds=5),  # as a client without tz_aware reads it
        "finished_at": None,
        "attempts": 1,
    }
    msg = jobs.to_message(job, [{"row": 2, "column": "技能", "reason": "required"}])
    assert (msg.id, msg.entity, msg.collection, msg.status) == ("ij-1", "talent_entries", "talent-entries", "failed")
    assert msg.created_at.ToDatetime(tzinfo=UTC) == at
    assert msg.updated_at.ToDatetime(tzinfo=UTC) == at + timedelta(seconds=5)
    assert not msg.HasField("finished_at")
    assert [(e.row, e.column, e.reason) for e in msg.errors] == [(2, "技能", "required")]


def test_job_ids_sort_by_time_and_file_names_are_cleaned() -> None:
    now = datetime.now(UTC)
    ids = [jobs.new_id(now + timedelta(milliseconds=n)) for n in (0, 1, 1000, 86_400_000)]
    assert ids == sorted(ids) and len(set(ids)) == 4 and all(i.startswith("ij-") for i in ids)
    assert jobs.clean_filename("C:\\Users\\李\\人员名单.xlsx") == "人员名单.xlsx"
    assert jobs.clean_filename("../../etc/\x00pass\nwd.csv") == "passwd.csv"
    assert len(jobs.clean_filename("a" * 500)) == jobs.MAX_FILENAME


def test_the_file_checks_before_a_job_is_queued() -> None:
    for fmt, content, words in (
        ("csv", b"", "empty"),
        ("xlsx", b"name,age\n", "not an xlsx workbook (it looks like text"),
        ("xlsx", sheets.OLE_MAGIC + b"x", "old Excel .xls"),
        ("csv", sheets.ZIP_MAGIC + b"x", "send it with format xlsx"),
        ("csv", b"x" * (sheets.MAX_BYTES + 1), "at most 5 MB"),
    ):
        with pytest.raises(InvalidArgument) as exc:
            sheets.check_file(fmt, content)
        assert words in exc.value.message
    sheets.check_file("csv", "姓名\r\n张三\r\n".encode())
    sheets.check_file("xlsx", sheets.ZIP_MAGIC + b"rest")
