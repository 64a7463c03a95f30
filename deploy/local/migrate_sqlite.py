"""Move a state dir's data from FerretDB's former SQLite backend into PostgreSQL, once.

Until the local stack stored FerretDB's data in PostgreSQL, `make up` kept it in SQLite files under
$HONGLING_STATE_DIR/ferretdb/data. `make up` runs this after the stack started: when such files exist, it
serves them read-side with the same FerretDB binary (its SQLite handler, on a free loopback port), copies
every database, collection and index into the running FerretDB (HONGLING_MONGO_URI, on PostgreSQL),
checks that every collection has as many documents as before, and only then renames the old directory to
`data.sqlite-migrated-<UTC time>` (a backup: delete it when you no longer want it). A failure leaves the
old files where they are and says what failed; the next run copies again, skipping documents already
copied (by _id). Without SQLite files it does nothing.

    .venv/bin/python deploy/local/migrate_sqlite.py      # with deploy/local/env.sh sourced (make up does)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import BulkWriteError, PyMongoError

SYSTEM_DATABASES = {"admin", "config", "local"}
BATCH = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sqlite_ferretdb(binary: str, data_dir: Path, log: Path) -> Iterator[str]:
    """FerretDB serving the SQLite files of data_dir on a free loopback port, for as long as the block runs."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="hl-ferretdb-sqlite-") as state, open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--handler=sqlite",
                f"--sqlite-url=file:{data_dir}/",
                f"--state-dir={state}",
                f"--listen-addr=127.0.0.1:{port}",
                "--debug-addr=-",
                "--telemetry=disable",
                "--log-level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        uri = f"mongodb://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"FerretDB (SQLite) exited with {proc.returncode} at start; see {log}")
                try:
                    with MongoClient(uri, serverSelectionTimeoutMS=1000) as probe:
                        probe.admin.command("ping")
                    break
                except PyMongoError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"FerretDB (SQLite) did not answer within 60 s; see {log}") from None
                    time.sleep(0.5)
            yield uri
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _copy_indexes(source: Any, target: Any) -> int:
    made = 0
    for name, info in source.index_information().items():
        if name == "_id_":
            continue
        options = {k: info[k] for k in ("unique", "sparse") if k in info}
        target.create_index(info["key"], name=name, **options)
        made += 1
    return made


def _copy_collection(source: Any, target: Any) -> int:
    """Copy every document not yet in target (by _id); return how many source holds."""
    total = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        try:
            target.insert_many(batch, ordered=False)
        except BulkWriteError as exc:  # a re-run: documents copied before keep their copy
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise
        batch.clear()

    for doc in source.find({}, batch_size=BATCH):
        batch.append(doc)
        total += 1
        if len(batch) >= BATCH:
            flush()
    flush()
    return total


def migrate(binary: str, data_dir: Path, target_uri: str, log: Path) -> int:
    """Copy everything in data_dir's SQLite files into target_uri; the number of documents copied."""
    copied = 0
    with (
        sqlite_ferretdb(binary, data_dir, log) as source_uri,
        MongoClient(source_uri) as src,
        MongoClient(target_uri) as dst,
    ):
        names = [
            (db, coll)
            for db in sorted(src.list_database_names())
            if db not in SYSTEM_DATABASES
            for coll in sorted(src[db].list_collection_names())
        ]
        for i, (db, coll) in enumerate(names, 1):
            n = _copy_collection(src[db][coll], dst[db][coll])
            indexes = _copy_indexes(src[db][coll], dst[db][coll])
            have = dst[db][coll].count_documents({})
            if have < n:
                raise RuntimeError(f"{db}.{coll}: {n} documents in SQLite, only {have} in PostgreSQL after the copy")
            print(f"[migrate {i}/{len(names)}] {db}.{coll}: {n} documents, {indexes} indexes", flush=True)
            copied += n
    return copied


def main() -> int:
    state = Path(os.environ.get("HONGLING_STATE_DIR", ".local/state"))
    data_dir = state / "ferretdb" / "data"
    if not any(data_dir.glob("*.sqlite")):
        return 0
    binary = os.environ.get("HONGLING_FERRETDB_BIN", "")
    target = os.environ.get("HONGLING_MONGO_URI", "")
    if not binary or not target:
        print("migrate: source deploy/local/env.sh first (HONGLING_FERRETDB_BIN, HONGLING_MONGO_URI)", file=sys.stderr)
        return 2
    log = state / "logs" / "ferretdb-sqlite-migration.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[migrate] data from FerretDB's former SQLite backend found in {data_dir}: copying it into PostgreSQL")
    started = time.monotonic()
    try:
        copied = migrate(binary, data_dir, target, log)
    except (RuntimeError, PyMongoError, OSError) as exc:
        print(
            f"[migrate] FAILED: {exc}\n"
            f"  The SQLite files are untouched in {data_dir}; fix the cause and run `make up` again (it resumes).",
            file=sys.stderr,
        )
        return 1
    backup = data_dir.with_name(f"data.sqlite-migrated-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    data_dir.rename(backup)
    print(
        f"[migrate] done: {copied} documents in {time.monotonic() - started:.0f} s; "
        f"the SQLite files are kept in {backup} (delete them when you no longer need them)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
