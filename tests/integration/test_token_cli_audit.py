"""`python -m gateway.tokens`, run as an operator runs it, writes its changes to the deployment's audit log (the
real one, on FerretDB) as the API writes its own; with the log unreachable it changes nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.tokens import TokenFile, make_record
from services.common.audit import open_log
from services.common.settings import Settings
from tests.conftest import unique

ROOT = Path(__file__).resolve().parents[2]


def cli(file: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.tokens", "--file", str(file), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_clis_changes_are_in_the_deployments_audit_log(infra: Settings, tmp_path: Path) -> None:
    log = open_log(infra)
    start = log.last_seq() + 1
    file = tmp_path / "api-tokens.toml"
    sub = f"cli-{unique()[-8:]}"
    made = cli(file, "create", "--sub", sub, "--role", "ops", "--tenant", "taiqian")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    (record,) = TokenFile(file).read()[0]
    assert cli(file, "revoke", "--id", record.id).returncode == 0
    now = datetime.now(UTC)
    _, lapsed = make_record(f"{sub}-old", "ops", ["taiqian"], now - timedelta(days=1), now - timedelta(days=31))
    TokenFile(file).update(lambda rs: [*rs, lapsed])
    assert cli(file, "sweep").returncode == 0
    assert cli(file, "sweep").returncode == 0  # once each

    mine = [e for e in log.iter_entries(tenant="taiqian", from_seq=start) if e.target in (record.id, lapsed.id)]
    assert [(e.action, e.target, e.outcome, e.role) for e in mine] == [
        ("token.create", record.id, "done", "ops"),
        ("token.revoke", record.id, "done", "ops"),
        ("token.expire", lapsed.id, "done", "ops"),
    ]
    assert all(e.actor.startswith("cli:") and e.detail["sub"].startswith(sub) for e in mine)
    assert token not in repr(mine) and record.sha256 not in repr(mine)


def test_with_the_audit_log_unreachable_the_cli_creates_nothing(infra: Settings, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    file = tmp_path / "api-tokens.toml"
    down = {"HONGLING_MONGO_URI": f"mongodb://127.0.0.1:{closed}/"}
    done = cli(file, "create", "--sub", "never-made", "--role", "ops", "--tenant", "taiqian", env=down)
    assert done.returncode == 2 and done.stdout == ""
    assert "audit log could not be written" in done.stderr and "no token was created" in done.stderr
    assert "Traceback" not in done.stderr
    assert TokenFile(file).read()[0] == []
