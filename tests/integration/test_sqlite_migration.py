"""A `make up` state dir from before PostgreSQL keeps its data (deploy/local/migrate_sqlite.py).

The old data is made the way it was made then: FerretDB's SQLite handler (the same binary) writes SQLite
files into a state dir's ferretdb/data. The migration copies them into the running FerretDB on PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pymongo import ASCENDING, MongoClient

from services.common.settings import Settings
from tests.conftest import REPO, unique

SCRIPT = REPO / "deploy" / "local" / "migrate_sqlite.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migrate_sqlite", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def old_state(tmp_path: Path) -> tuple[Path, str]:
    """A state dir whose ferretdb/data holds SQLite files with one issue database."""
    binary = os.environ.get("HONGLING_FERRETDB_BIN", "")
    if not binary or not Path(binary).exists():
        pytest.fail("HONGLING_FERRETDB_BIN is not set: run the tests with `make test`")
    data = tmp_path / "ferretdb" / "data"
    data.mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    db = f"hl_itest_migrate_{unique('m').split('-')[1]}"
    with _module().sqlite_ferretdb(binary, data, tmp_path / "logs" / "old.log") as uri, MongoClient(uri) as old:
        issues = old[db]["issues"]
        issues.insert_many([{"_id": f"is-{i}", "title": f"楼道灯不亮 {i}", "n": i} for i in range(2500)])
        issues.create_index([("status", ASCENDING)], name="status_1")
        old[db]["version_claims"].insert_one({"_id": "issue:is-1:2"})
    assert list(data.glob("*.sqlite"))
    return tmp_path, db


def test_the_sqlite_data_is_copied_into_postgresql_and_kept_as_a_backup(
    old_state: tuple[Path, str], infra: Settings, mongo_client: MongoClient[Any]
) -> None:
    state, db = old_state
    env = {**os.environ, "HONGLING_STATE_DIR": str(state), "HONGLING_MONGO_URI": infra.mongo_uri}
    try:
        run = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        assert f"{db}.issues: 2500 documents, 1 indexes" in run.stdout
        issues = mongo_client[db]["issues"]
        assert issues.count_documents({}) == 2500
        assert issues.find_one({"_id": "is-7"})["title"] == "楼道灯不亮 7"  # type: ignore[index]
        assert "status_1" in issues.index_information()
        assert mongo_client[db]["version_claims"].find_one({"_id": "issue:is-1:2"}) is not None
        assert not (state / "ferretdb" / "data").exists()
        assert [p.name.startswith("data.sqlite-migrated-") for p in (state / "ferretdb").iterdir()] == [True]
        # Once moved, a second run has nothing to do.
        again = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and again.stdout == ""
    finally:
        mongo_client.drop_database(db)


def test_a_copy_interrupted_halfway_is_completed_by_the_next_run(
    old_state: tuple[Path, str], infra: Settings, mongo_client: MongoClient[Any]
) -> None:
    state, db = old_state
    # Half of the documents made it before the interruption.
    mongo_client[db]["issues"].insert_many(
        [{"_id": f"is-{i}", "title": f"楼道灯不亮 {i}", "n": i} for i in range(1200)]
    )
    try:
        migrate = _module().migrate
        copied = migrate(
            os.environ["HONGLING_FERRETDB_BIN"], state / "ferretdb" / "data", infra.mongo_uri, state / "m.log"
        )
        assert copied == 2501
        assert mongo_client[db]["issues"].count_documents({}) == 2500
        assert sorted(d["n"] for d in mongo_client[db]["issues"].find({"n": {"$gte": 2498}})) == [2498, 2499]
    finally:
        mongo_client.drop_database(db)
