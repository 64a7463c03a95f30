"""Backup and restore (deploy/local/backup.sh, docs/runbook.md): records written through the running services
are dumped from the test stack, restored into a fresh stack of its own (another state dir and port base, started
here with deploy/local/stack.sh and purged at the end), and every one of them is found there: every document of
the write side's collections (byte for byte, sealed contact data included) through the restored FerretDB, and the
read side's rows through its PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from pymongo import MongoClient

from services.org.seed import Rect
from tests.conftest import REPO, System, unique, wait_for

pytestmark = pytest.mark.timeout(900)  # a second stack starts and stops here: slow on a busy machine

T = "shengzhuang"
CENTRE = (36.3300, 117.3300)  # a place of this module's own (no other test's grid)
BACKUP_SH = REPO / "deploy" / "local" / "backup.sh"
STACK_SH = REPO / "deploy" / "local" / "stack.sh"
# The write side's collections this test writes to: every document in them is looked for after the restore.
COLLECTIONS = {
    f"hl_org_{T}": ("communities", "grids", "people", "member_units"),
    f"hl_intake_{T}": ("issues",),
    f"hl_dispatch_{T}": ("tasks", "whistles"),
}


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def created(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def run(script: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["bash", str(script), *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{script.name} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def fresh(system: System) -> Iterator[dict[str, str]]:
    """The environment of a fresh stack beside the test stack (port base + 500, a state dir of its own) with the
    test stack's secrets (the data is sealed with its data key); PostgreSQL and FerretDB only. Purged after."""
    base = system.settings.port_base + 500
    state = REPO / ".local" / f"restore-state-{base}"
    env = {**os.environ, "HONGLING_PORT_BASE": str(base), "HONGLING_STATE_DIR": str(state)}
    # Values derived from the test stack's base (env.sh re-derives its own defaults, not what a caller set).
    for name in ("HONGLING_MONGO_URI", "HONGLING_KAFKA_BOOTSTRAP", "HONGLING_READ_DB_PASSWORD_FILE"):
        env.pop(name, None)
    run(STACK_SH, "purge", env=env)
    shutil.rmtree(state, ignore_errors=True)
    try:
        run(STACK_SH, "start", "postgres", "ferretdb", env=env)
        yield env
    finally:
        run(STACK_SH, "purge", env=env)
        shutil.rmtree(state, ignore_errors=True)


def test_a_dump_restored_into_a_fresh_stack_holds_every_record(
    system: System, mongo_client: MongoClient[Any], fresh: dict[str, str], tmp_path: Path
) -> None:
    admin = system.auth("subdistrict_admin", T)
    cid = str(
        created(
            requests.post(
                url(system, "org/communities"), json={"name_zh": f"备份社区{unique()[-6:]}"}, headers=admin, timeout=15
            )
        )["id"]
    )
    lat, lon = CENTRE
    grid = {
        "community_id": cid,
        "name_zh": "备份网格",
        "boundary_geojson": Rect(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01).geojson(),
    }
    created(requests.post(url(system, "org/grids"), json=grid, headers=admin, timeout=15))
    for i in range(5):
        person = {"community_id": cid, "name_zh": f"备份居民{i}", "roles": ["volunteer"], "phone": f"1390000{i:04d}"}
        created(requests.post(url(system, "org/people"), json=person, headers=admin, timeout=15))
        unit = {
            "community_id": cid,
            "name_zh": f"备份单位{unique()}",
            "kind": "property_company",
            "joined_on": "2024-05-01",
        }
        created(requests.post(url(system, "org/member-units"), json=unit, headers=admin, timeout=15))
    issues = []
    for i in range(8):
        body = {
            "title": f"井盖缺失 {i}",
            "description": "路口井盖不见了，很危险。",
            "channel": "resident_report",
            "location": {"lat": lat - 0.008 + 0.002 * i, "lon": lon, "address": f"备份社区{i}号楼"},
            "contact": {"name": f"报事人{i}", "phone": f"1380000{i:04d}"},
        }
        issues.append(str(created(requests.post(url(system, "issues"), json=body, timeout=15))["issue"]["id"]))
    # Settled: every issue has its task, and the read side lists them.
    dispatch = mongo_client[f"hl_dispatch_{T}"]
    wait_for(lambda: dispatch["tasks"].count_documents({"issue_id": {"$in": issues}}) == len(issues), timeout=180)

    def read_rows(conninfo: str) -> set[str]:
        with psycopg.connect(conninfo) as conn:
            rows = conn.execute(f"SELECT id FROM hl_{T}.intake_issues WHERE id = ANY(%s)", (issues,)).fetchall()
        return {r[0] for r in rows}

    password = Path(system.settings_state_dir, "postgres", "password").read_text().strip()
    source_sql = (
        f"host=127.0.0.1 port={system.settings.port_base + 32} user=hongling password={password} dbname=hongling_read"
    )
    wait_for(lambda: read_rows(source_sql) == set(issues), timeout=180)

    # What the write side holds now: every document of these collections must be in the restored stack.
    before = {
        (db, coll): {d["_id"]: d for d in mongo_client[db][coll].find()}
        for db, colls in COLLECTIONS.items()
        for coll in colls
    }
    assert all(before.values()) and set(issues) <= set(before[(f"hl_intake_{T}", "issues")])
    out = run(BACKUP_SH, "dump", str(tmp_path / "backup"))
    assert "ferretdb" in out and "hongling_read" in out
    out = run(BACKUP_SH, "restore", str(tmp_path / "backup"), env=fresh)
    assert "restored" in out

    restored: MongoClient[Any] = MongoClient(
        f"mongodb://127.0.0.1:{int(fresh['HONGLING_PORT_BASE']) + 17}/", tz_aware=True
    )
    try:
        for (db, coll), docs in before.items():
            found = {d["_id"]: d for d in restored[db][coll].find({"_id": {"$in": list(docs)}})}
            assert set(found) == set(docs), (db, coll, len(found), len(docs))
            # The same documents: sealed phones (only readable with the data key the stack ran with) included.
            for ident in issues if coll == "issues" else ():
                assert (
                    found[ident]["contact"] == docs[ident]["contact"] and found[ident]["title"] == docs[ident]["title"]
                )
    finally:
        restored.close()
    fresh_password = Path(fresh["HONGLING_STATE_DIR"], "postgres", "password").read_text().strip()
    fresh_port = int(fresh["HONGLING_PORT_BASE"]) + 32
    fresh_sql = f"host=127.0.0.1 port={fresh_port} user=hongling password={fresh_password} dbname=hongling_read"
    assert read_rows(fresh_sql) == set(issues)

    # A backup damaged on its way is refused before anything is dropped.
    with open(tmp_path / "backup" / "ferretdb.pgdump", "ab") as f:
        f.write(b"x")
    damaged = subprocess.run(
        ["bash", str(BACKUP_SH), "restore", str(tmp_path / "backup")],
        cwd=REPO,
        env=fresh,
        capture_output=True,
        text=True,
    )
    assert damaged.returncode == 1 and "sha256" in damaged.stderr
