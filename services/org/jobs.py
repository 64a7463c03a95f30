"""Spreadsheet imports as background jobs (导入任务): started by a call, run by a worker of the org service.

StartImportJob checks what it can at once (the entity, the format, the file's size and kind), stores the
file with a new job and answers with the job, `queued`. A worker (ImportJobWorker, one in each org process)
picks it up and runs sheets.import_sheet on it: the same checks and writes as ImportSheet, as the person
who started it (a community worker's rows are held to its community as in a call). The job's document keeps
its progress as it goes: rows checked, then rows written, of the total, written every PROGRESS_ROWS rows or
every PROGRESS_SECONDS, whichever comes first (never every row; Tracker). At the end the job holds the
result: the counts, or the bad rows (row, column, reason: the first MAX_JOB_ERRORS, all of them counted)
and nothing written, or why it failed. The file is deleted then.

A real import with a bad row fails (nothing is written) with the bad rows; a dry run succeeds with them, as
they are its result. A file that cannot be read, or data that changed underneath while it was written
(sheets._write), fails the job with the reason in `message`.

Storage, in the tenant's org database (hl_org_<tenant>):
- import_jobs: the job: status, progress, result, who started it. Small documents: a list reads them.
- import_job_errors: a finished job's bad rows ({_id: job id, errors}), read by GetImportJob only.
- import_uploads: the file, encrypted with the data key (it holds phones and ID numbers in the clear),
  until the job has finished. One document: a file is at most 5 MiB, far below a document's 16 MiB, as
  intake keeps its attachments. (GridFS: FerretDB 1.x does not support it, FerretDB/FerretDB#1754.)
- import_job_queue: {_id: job id} while the job is unfinished: what the workers look through.
- import_job_leases: {_id: "<job>:<attempt>", owner, at}: who runs the job.

One runner at a time (leases). A worker takes a job by inserting its next lease, "<job>:<n>" with n one
more than the job's attempts. An insert by _id is atomic on FerretDB and MongoDB alike and a conditional
update is not (FerretDB v1 runs one as an unisolated read-modify-write, services/common/unitofwork.py), so
of two workers, in one process or in two, exactly one wins attempt n. The winner renews its lease (`at`)
every lease/5 seconds from a thread of its own; no one else writes that document. A lease older than
`import_job_lease_seconds` was left by a worker that died (or lost the database) and the job is taken over
as the next attempt. Before each progress write and before the result, a runner looks for a newer lease of
its job and stops at once when there is one. A worker stopped gracefully stops its job between two rows
and marks its lease released, so the next worker takes it at once.

Nothing lost on a crash. An unfinished job keeps its queue entry: every org process looks through the queue
at start and every `import_job_poll_seconds` (and at once for a job started in it), finds the job's lease
stale, and runs the job again from its file. The import is idempotent: the rows saved before the crash are
found equal and counted unchanged (sheets._write), so every row ends up there once. The counts shown never
go back: a resumed job checks its rows again and shows the furthest it had got meanwhile (Tracker). A job
interrupted MAX_ATTEMPTS times fails rather than being tried for ever.

Who reads a job: the person who started it and the tenant's staff; a community worker only the jobs it
started (another's is NOT_FOUND, in the words a job that does not exist gets).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
import unicodedata
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo.errors
from bson import Binary
from hongling.org.v1 import org_pb2 as pb
from prometheus_client import Counter
from pymongo.collection import Collection

from services.common import context
from services.common.context import current_principal, require_tenant
from services.common.errors import HonglingError, InvalidArgument, NotFound
from services.common.mongo import tenant_database
from services.common.principal import COMMUNITY_ROLE, Principal
from services.common.protect import Protector
from services.common.tenants import tenant_slugs
from services.org import handlers, sheets

log = logging.getLogger(__name__)

JOBS, ERRORS, UPLOADS, QUEUE, LEASES = (
    "import_jobs",
    "import_job_errors",
    "import_uploads",
    "import_job_queue",
    "import_job_leases",
)
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
FINISHED = (SUCCEEDED, FAILED)
CHECKING, WRITING = "checking", "writing"
STAGES = (CHECKING, WRITING)
PROGRESS_ROWS = 1_000
PROGRESS_SECONDS = 1.0
MAX_JOB_ERRORS = 1_000  # bad rows kept with a job (error_count counts them all)
MAX_ATTEMPTS = 5
PAGE_DEFAULT, PAGE_MAX = 20, 100
MAX_FILENAME = 200
MAX_ID = 100
# A queue entry whose job was never written (its StartImportJob died between the two inserts) is removed
# after this long, with its file.
ORPHAN_AFTER = timedelta(minutes=5)
SERVICE = Principal(sub="service:org-import-jobs", role="service", tenants=("*",))

JOBS_FINISHED = Counter(
    "hongling_import_jobs_finished_total", "Spreadsheet import jobs finished, by outcome.", ["tenant", "status"]
)
JOBS_TAKEN = Counter(
    "hongling_import_jobs_started_total", "Attempts at import jobs (a resumed job counts again).", ["tenant"]
)

# The running workers of this process: StartImportJob wakes them.
_workers: weakref.WeakSet[ImportJobWorker] = weakref.WeakSet()
_workers_lock = threading.Lock()


def _coll(name: str, tenant: str | None = None) -> Collection[Any]:
    found: Collection[Any] = tenant_database(tenant or require_tenant())[name]
    return found


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def new_id(now: datetime) -> str:
    """ij-<milliseconds, 12 hex digits><random>: later jobs sort after earlier ones, so _id order is time order."""
    return f"ij-{int(now.timestamp() * 1000):012x}{secrets.token_hex(6)}"


def clean_filename(value: str) -> str:
    """The uploaded file's name as shown with the job: its last path part, printable, at most 200 characters."""
    name = value.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:MAX_FILENAME]


# ---------------------------------------------------------------- progress bookkeeping (no storage)


@dataclass(frozen=True)
class Progress:
    """How far a job has got, as its document shows it."""

    stage: str = CHECKING
    total_rows: int = 0
    rows_checked: int = 0
    rows_written: int = 0

    def furthest(self, other: Progress) -> Progress:
        """The further of the two, count by count (a resumed job never shows less than it had)."""
        return Progress(
            stage=STAGES[max(STAGES.index(self.stage), STAGES.index(other.stage))],
            total_rows=max(self.total_rows, other.total_rows),
            rows_checked=max(self.rows_checked, other.rows_checked),
            rows_written=max(self.rows_written, other.rows_written),
        )

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> Progress:
        stage = str(job.get("stage") or CHECKING)
        return cls(
            stage=stage if stage in STAGES else CHECKING,
            total_rows=int(job.get("total_rows") or 0),
            rows_checked=int(job.get("rows_checked") or 0),
            rows_written=int(job.get("rows_written") or 0),
        )


class Tracker:
    """Told of every row an import checks and writes (sheets.ImportProgress), it hands the job's progress to
    `flush` when PROGRESS_ROWS rows have passed or PROGRESS_SECONDS since the last flush, whichever comes
    first, and at once when the file has been read and when the writing starts: never for every row.

    What it hands on never goes back: a resumed job starts again from its first row, and shows the furthest
    it had got (`shown`, the job's stored progress) until it passes it. `check` runs on every row (cheap:
    is the worker stopping?) and may raise to stop the import there."""

    def __init__(
        self,
        flush: Callable[[Progress], None],
        *,
        shown: Progress | None = None,
        every_rows: int = PROGRESS_ROWS,
        every_seconds: float = PROGRESS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        check: Callable[[], None] | None = None,
    ) -> None:
        self._flush = flush
        self._start = shown or Progress()
        self.current = Progress()  # this attempt's own counts
        self.shown = self._start  # what was last handed to flush
        self.every_rows = every_rows
        self.every_seconds = every_seconds
        self._clock = clock
        self._check = check
        self._last_at = clock()
        self._last_rows = 0
        self.flushes = 0

    # sheets.ImportProgress

    def read(self, total: int) -> None:
        self.current = replace(self.current, total_rows=total)
        self.flush()

    def checked(self, count: int) -> None:
        self.current = replace(self.current, rows_checked=count)
        self._row()

    def writing(self, done: int) -> None:
        self.current = replace(self.current, stage=WRITING, rows_written=done)
        self.flush()

    def written(self, done: int) -> None:
        self.current = replace(self.current, rows_written=done)
        self._row()

    # the bookkeeping

    def _rows(self) -> int:
        return self.current.rows_checked + self.current.rows_written

    def _row(self) -> None:
        if self._check is not None:
            self._check()
        moved = self._rows() - self._last_rows
        if moved >= self.every_rows or (moved > 0 and self._clock() - self._last_at >= self.every_seconds):
            self.flush()

    def progress(self) -> Progress:
        """What the job shows now: the furthest of where it had got and where this attempt is."""
        return self._start.furthest(self.current)

    def flush(self) -> None:
        """Hand the progress on now, if it changed since the last time."""
        self._last_at = self._clock()
        self._last_rows = self._rows()
        shown = self.progress()
        if shown != self.shown or self.flushes == 0:
            self._flush(shown)
            self.shown = shown
            self.flushes += 1


# ---------------------------------------------------------------- the calls


def _caller() -> Principal:
    principal = current_principal.get()
    if principal is None:  # the interceptor binds one to every call; never assume it
        raise RuntimeError("no principal bound to this call")
    return principal


def _may_read(job: Mapping[str, Any], principal: Principal) -> bool:
    """Staff of the tenant read every job of it; a community worker only the jobs it started."""
    return principal.role != COMMUNITY_ROLE or job.get("created_by") == principal.sub


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"import job {job_id!r} not found in this tenant (未找到该导入任务)", field="id")


def start(entity: str, fmt: str, content: bytes, dry_run: bool, filename: str, protector: Protector) -> dict[str, Any]:
    """A new job for this file, queued (the current call's tenant, started by its principal)."""
    sheet = sheets.sheet_for(entity)
    fmt = sheets.format_of(fmt)
    sheets.check_file(fmt, content)
    principal = _caller()
    now = datetime.now(UTC)
    job_id = new_id(now)
    # The file first, then the queue entry, then the job: a worker finds the job through its entry, and an
    # entry whose job never came (this call died) is removed later with its file (ORPHAN_AFTER).
    _coll(UPLOADS).insert_one(
        {
            "_id": job_id,
            "content": Binary(protector.seal_bytes(content)),
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "created_at": now,
        }
    )
    _coll(QUEUE).insert_one({"_id": job_id, "at": now})
    job: dict[str, Any] = {
        "_id": job_id,
        "entity": sheet.entity,
        "format": fmt,
        "filename": clean_filename(filename),
        "size_bytes": len(content),
        "dry_run": bool(dry_run),
        "status": QUEUED,
        "stage": CHECKING,
        "total_rows": 0,
        "rows_checked": 0,
        "rows_written": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "error_count": 0,
        "message": "",
        "attempts": 0,
        "created_by": principal.sub,
        "role": principal.role,
        "community": principal.community or "",
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
    }
    _coll(JOBS).insert_one(job)
    log.info(
        "import job %s queued: %s %s of %s, %d bytes, by %s",
        job_id,
        "dry run" if dry_run else "import",
        fmt,
        sheet.entity,
        len(content),
        principal.sub,
    )
    wake()
    return job


def get(job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job and its bad rows, or NotFound (also for a job the caller may not read)."""
    if not job_id or len(job_id) > MAX_ID:
        raise _not_found(job_id[:MAX_ID])
    job = _coll(JOBS).find_one({"_id": job_id})
    if job is None or not _may_read(job, _caller()):
        raise _not_found(job_id)
    errors: list[dict[str, Any]] = []
    if job.get("error_count"):
        found = _coll(ERRORS).find_one({"_id": job_id})
        errors = list((found or {}).get("errors") or [])
    return job, errors


def list_jobs(page_size: int, page_token: str) -> tuple[list[dict[str, Any]], str]:
    """A page of the tenant's jobs the caller may read, newest first, and the next page's token ("" at the end)."""
    if page_size < 0 or page_size > PAGE_MAX:
        raise InvalidArgument(f"page_size must be 1..{PAGE_MAX}", field="page_size")
    size = page_size or PAGE_DEFAULT
    if len(page_token) > MAX_ID:
        raise InvalidArgument("page_token is not one this list gave", field="page_token")
    query: dict[str, Any] = {}
    if page_token:
        query["_id"] = {"$lt": page_token}
    principal = _caller()
    if principal.role == COMMUNITY_ROLE:
        query["created_by"] = principal.sub
    docs = list(_coll(JOBS).find(query).sort("_id", -1).limit(size + 1))
    return docs[:size], (str(docs[size - 1]["_id"]) if len(docs) > size else "")


def _timestamp(target: Any, value: datetime | None) -> None:
    if value is not None:
        target.FromDatetime(_aware(value))


def to_message(job: Mapping[str, Any], errors: Iterable[Mapping[str, Any]] = ()) -> pb.ImportJob:
    entity = str(job.get("entity") or "")
    msg = pb.ImportJob(
        id=str(job["_id"]),
        entity=entity,
        collection=entity.replace("_", "-"),
        status=str(job.get("status") or ""),
        dry_run=bool(job.get("dry_run")),
        stage=str(job.get("stage") or CHECKING),
        format=str(job.get("format") or ""),
        filename=str(job.get("filename") or ""),
        total_rows=int(job.get("total_rows") or 0),
        rows_checked=int(job.get("rows_checked") or 0),
        rows_written=int(job.get("rows_written") or 0),
        created=int(job.get("created") or 0),
        updated=int(job.get("updated") or 0),
        unchanged=int(job.get("unchanged") or 0),
        errors=[pb.RowError(row=int(e["row"]), column=str(e["column"]), reason=str(e["reason"])) for e in errors],
        error_count=int(job.get("error_count") or 0),
        message=str(job.get("message") or ""),
        created_by=str(job.get("created_by") or ""),
        attempts=int(job.get("attempts") or 0),
        size_bytes=int(job.get("size_bytes") or 0),
    )
    _timestamp(msg.created_at, job.get("created_at"))
    _timestamp(msg.updated_at, job.get("updated_at"))
    _timestamp(msg.finished_at, job.get("finished_at"))
    return msg


def wake() -> None:
    """Tell this process's workers a job was queued (the others find it on their next look)."""
    with _workers_lock:
        workers = list(_workers)
    for w in workers:
        w.wake()


# ---------------------------------------------------------------- the result


def failure_message(result: sheets.ImportResult) -> str:
    return (
        f"{result.error_count} error(s) in the file: nothing was written; correct the rows listed and import "
        f"the file again (文件有{result.error_count}处错误，未写入任何数据；请修改后重新导入)"
    )


INTERRUPTED_MESSAGE = (
    f"the import was interrupted {MAX_ATTEMPTS} times (the service stopped while it ran); rows saved so far "
    "stay saved: import the same file again to finish (导入多次中断，已保存的行不受影响；请重新导入同一文件)"
)
INTERNAL_MESSAGE = (
    "the import failed on an internal error (job {job}); the operators have the details; rows saved so far stay "
    "saved: import the same file again to finish (导入因内部错误中断，请重新导入同一文件)"
)
UPLOAD_GONE_MESSAGE = "the uploaded file is no longer there; start the import again (上传的文件已不存在，请重新导入)"


def outcome(result: sheets.ImportResult, dry_run: bool) -> dict[str, Any]:
    """The finished job's fields for an import's result (the bad rows are kept apart)."""
    failed = bool(result.errors) and not dry_run
    return {
        "status": FAILED if failed else SUCCEEDED,
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "error_count": result.error_count,
        "message": failure_message(result) if failed else "",
    }


# ---------------------------------------------------------------- the worker


class Interrupted(Exception):
    """The worker is stopping: the job stops between two rows, to be resumed."""


class Superseded(Exception):
    """Another worker holds a newer lease of the job: this one must not write anything more."""


class _Heartbeat:
    """Renews one lease every `interval` seconds from a thread of its own (the only writer of that lease)."""

    def __init__(self, leases: Collection[Any], lease_id: str, interval: float) -> None:
        self._leases = leases
        self._lease_id = lease_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"import-lease-{lease_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Renew no more (idempotent); returns once the thread has stopped writing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._leases.update_one({"_id": self._lease_id}, {"$set": {"at": datetime.now(UTC)}})
            except Exception as exc:  # the database is away: the lease may lapse, and the job be taken over
                log.warning("import job lease %s not renewed: %s", self._lease_id, exc)


@dataclass
class _Run:
    """One attempt at one job."""

    tenant: str
    job: dict[str, Any]
    attempt: int
    lease_id: str
    stop: threading.Event
    jobs: Collection[Any] = field(init=False)
    leases: Collection[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = _coll(JOBS, self.tenant)
        self.leases = _coll(LEASES, self.tenant)

    @property
    def job_id(self) -> str:
        return str(self.job["_id"])

    def check_lease(self) -> None:
        """Superseded when another worker took the job over (it holds a newer lease)."""
        if self.leases.find_one({"_id": lease_name(self.job_id, self.attempt + 1)}, {"_id": 1}) is not None:
            raise Superseded(f"import job {self.job_id}: attempt {self.attempt + 1} took it over")

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted(f"import job {self.job_id}: the worker is stopping")

    def write_progress(self, progress: Progress) -> None:
        self.check_lease()
        fields = {
            "stage": progress.stage,
            "total_rows": progress.total_rows,
            "rows_checked": progress.rows_checked,
            "rows_written": progress.rows_written,
            "updated_at": datetime.now(UTC),
        }
        self.jobs.update_one({"_id": self.job_id}, {"$set": fields})

    def finish(self, fields: Mapping[str, Any], errors: Sequence[sheets.RowError] = ()) -> None:
        """The job's result (bad rows first, then the job), then its queue entry, file and leases go."""
        self.check_lease()
        if errors:
            kept = [{"row": e.row, "column": e.column, "reason": e.reason} for e in errors[:MAX_JOB_ERRORS]]
            _coll(ERRORS, self.tenant).replace_one(
                {"_id": self.job_id}, {"_id": self.job_id, "errors": kept}, upsert=True
            )
        now = datetime.now(UTC)
        self.jobs.update_one({"_id": self.job_id}, {"$set": {**fields, "finished_at": now, "updated_at": now}})
        JOBS_FINISHED.labels(self.tenant, fields["status"]).inc()
        log.info(
            "import job %s %s: %s",
            self.job_id,
            fields["status"],
            fields.get("message")
            or ", ".join(f"{k} {fields.get(k, 0)}" for k in ("rows_written", "created", "updated", "unchanged")),
        )
        cleanup(self.tenant, self.job_id, self.attempt + 1)

    def fail(self, message: str) -> None:
        self.finish({"status": FAILED, "message": message})


def lease_name(job_id: str, attempt: int) -> str:
    return f"{job_id}:{attempt}"


def cleanup(tenant: str, job_id: str, attempts: int) -> None:
    """A finished job's queue entry, file and leases (each delete is idempotent: a crash here is redone)."""
    _coll(QUEUE, tenant).delete_one({"_id": job_id})
    _coll(UPLOADS, tenant).delete_one({"_id": job_id})
    names = [lease_name(job_id, n) for n in range(1, max(attempts, 1) + 2)]
    _coll(LEASES, tenant).delete_many({"_id": {"$in": names}})


class ImportJobWorker:
    """Runs the queued import jobs of every tenant, one at a time (a worker for services.common.runner)."""

    def __init__(
        self,
        protector: Protector,
        *,
        lease_seconds: float = 30.0,
        poll_seconds: float = 5.0,
        tenants: Iterable[str] | None = None,
        every_rows: int = PROGRESS_ROWS,
        every_seconds: float = PROGRESS_SECONDS,
        name: str = "org-import-jobs",
    ) -> None:
        self.name = name
        self.ctx = handlers.Context(protector)
        self.protector = protector
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.tenants = tuple(tenants) if tenants is not None else None
        self.every_rows = every_rows
        self.every_seconds = every_seconds
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        with _workers_lock:
            _workers.add(self)
        log.info("import job worker %s started (lease %.0f s)", self.owner, self.lease.total_seconds())
        try:
            while not stop.is_set():
                self._wake.clear()
                if not self.poll_once(stop):
                    self._wake.wait(self.poll_seconds)
        finally:
            with _workers_lock:
                _workers.discard(self)

    def poll_once(self, stop: threading.Event | None = None) -> int:
        """Look through every tenant's queue once, running what is due; returns how many attempts ran."""
        stop = stop or threading.Event()
        ran = 0
        for tenant in self.tenants if self.tenants is not None else tenant_slugs():
            if stop.is_set():
                break
            try:
                with context.bound(tenant=tenant, principal=SERVICE, trace="org.import-jobs"):
                    entries = list(_coll(QUEUE).find({}).sort("_id", 1))
                for entry in entries:
                    if stop.is_set():
                        break
                    ran += self.consider(tenant, entry, stop)
            except Exception:
                log.exception("import jobs of tenant %s: looking through the queue failed; trying again later", tenant)
        return ran

    def consider(self, tenant: str, entry: Mapping[str, Any], stop: threading.Event) -> bool:
        """Run the job of this queue entry if nobody else is running it; whether an attempt ran."""
        job_id = str(entry["_id"])
        with context.bound(tenant=tenant, principal=SERVICE, trace="org.import-jobs"):
            job = _coll(JOBS).find_one({"_id": job_id})
            if job is None:
                if datetime.now(UTC) - _aware(entry.get("at") or datetime.now(UTC)) > ORPHAN_AFTER:
                    log.warning("import job %s was never written: its queue entry and file are removed", job_id)
                    cleanup(tenant, job_id, 0)
                return False
            if job.get("status") in FINISHED:
                cleanup(tenant, job_id, int(job.get("attempts") or 0))  # a runner died while cleaning up
                return False
            attempt = self._claim(tenant, job_id, int(job.get("attempts") or 0))
            if attempt is None:
                return False
            self._run(_Run(tenant, job, attempt, lease_name(job_id, attempt), stop))
            return True

    def _claim(self, tenant: str, job_id: str, attempts: int) -> int | None:
        """Insert the job's next lease (atomic by _id); None while another worker's lease is alive."""
        leases = _coll(LEASES, tenant)
        now = datetime.now(UTC)
        if attempts and not self._lapsed(leases.find_one({"_id": lease_name(job_id, attempts)}), now):
            return None
        attempt = attempts + 1
        for _ in range(MAX_ATTEMPTS * 4):
            try:
                leases.insert_one(
                    {
                        "_id": lease_name(job_id, attempt),
                        "job": job_id,
                        "owner": self.owner,
                        "at": now,
                        "released": False,
                    }
                )
                return attempt
            except pymongo.errors.DuplicateKeyError:
                # Someone took this attempt: it runs it, unless its lease lapsed before it wrote the job (it died).
                if not self._lapsed(leases.find_one({"_id": lease_name(job_id, attempt)}), now):
                    return None
                attempt += 1
        return None

    def _lapsed(self, lease: Mapping[str, Any] | None, now: datetime) -> bool:
        return lease is None or bool(lease.get("released")) or now - _aware(lease["at"]) >= self.lease

    def _run(self, run: _Run) -> None:
        JOBS_TAKEN.labels(run.tenant).inc()
        heartbeat = _Heartbeat(run.leases, run.lease_id, max(self.lease.total_seconds() / 5, 0.2))
        heartbeat.start()
        try:
            self._attempt(run)
        except Interrupted:
            log.info("import job %s stopped with the worker; it is resumed by the next one", run.job_id)
            heartbeat.stop()  # the lease's one writer: no renewal may overwrite the release
            try:
                run.leases.update_one({"_id": run.lease_id}, {"$set": {"released": True}})
            except Exception as exc:
                log.warning("import job %s: lease not released (%s); it is resumed once it lapses", run.job_id, exc)
        except Superseded as exc:
            log.warning("%s; this attempt (%d) stops without writing more", exc, run.attempt)
        except pymongo.errors.ConnectionFailure as exc:
            log.warning("import job %s: the database is away (%s); resumed once its lease lapses", run.job_id, exc)
        except Exception:
            log.exception("import job %s failed on an internal error", run.job_id)
            try:
                run.fail(INTERNAL_MESSAGE.format(job=run.job_id))
            except Superseded:
                pass
            except Exception:
                log.exception("import job %s: its failure could not be recorded; it is resumed", run.job_id)
        finally:
            heartbeat.stop()

    def _attempt(self, run: _Run) -> None:
        now = datetime.now(UTC)
        started = {"status": RUNNING, "attempts": run.attempt, "owner": self.owner, "updated_at": now}
        run.check_lease()
        run.jobs.update_one({"_id": run.job_id}, {"$set": started})
        if run.attempt > MAX_ATTEMPTS:
            run.fail(INTERRUPTED_MESSAGE)
            return
        job = run.job
        log.info("import job %s: attempt %d by %s", run.job_id, run.attempt, self.owner)
        upload = _coll(UPLOADS, run.tenant).find_one({"_id": run.job_id})
        if upload is None:
            run.fail(UPLOAD_GONE_MESSAGE)
            return
        try:
            content = self.protector.open_bytes(bytes(upload["content"]))
        except ValueError:
            run.fail(UPLOAD_GONE_MESSAGE)
            return
        starter = Principal(
            sub=str(job.get("created_by") or ""),
            role=str(job.get("role") or ""),
            tenants=(run.tenant,),
            community=str(job.get("community") or "") or None,
        )
        tracker = Tracker(
            run.write_progress,
            shown=Progress.of(job),
            every_rows=self.every_rows,
            every_seconds=self.every_seconds,
            check=run.check_stop,
        )
        request_id = f"import-job-{run.job_id}-{run.attempt}"
        try:
            with context.bound(tenant=run.tenant, principal=starter, request_id=request_id, trace="org.import-job"):
                result = sheets.import_sheet(
                    str(job["entity"]), str(job["format"]), content, bool(job.get("dry_run")), self.ctx, tracker
                )
        except HonglingError as exc:  # a file that cannot be read, data changed underneath, out of scope
            tracker.flush()
            run.fail(f"{exc.message} (导入失败)")
            return
        done = tracker.progress()
        if not result.errors:
            done = replace(done, rows_checked=result.rows)
        if not result.errors and not job.get("dry_run"):
            done = replace(done, stage=WRITING, rows_written=result.rows)
        fields = {
            **outcome(result, bool(job.get("dry_run"))),
            "stage": done.stage,
            "total_rows": result.rows,
            "rows_checked": done.rows_checked,
            "rows_written": done.rows_written,
        }
        run.finish(fields, result.errors)


def build_worker(protector: Protector) -> Callable[[Any], ImportJobWorker]:
    """The worker factory for run_service(workers=[...]): settings -> the worker."""

    def factory(settings: Any) -> ImportJobWorker:
        return ImportJobWorker(
            protector,
            lease_seconds=settings.import_job_lease_seconds,
            poll_seconds=settings.import_job_poll_seconds,
        )

    return factory
