"""The audit log anchored in public (services/publication/anchor.py) on the test stack: the signed head at a
period's end comes from the audit read model the projector keeps, and `python -m services.common.audit verify
--heads` checks the deployment's log against a head published that way."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.common import audit
from services.common.audit_readmodel import projected_seq
from services.publication.anchor import anchor_at
from tests.conftest import REPO, System, unique, wait_for

pytestmark = pytest.mark.integration


def _append(log: audit.AuditLog, n: int) -> list[audit.Entry]:
    marker = unique("anchor")
    return [
        log.append(
            actor="ops-test",
            role="ops",
            action="anchor.test",
            outcome="done",
            tenant="taiqian",
            target=f"{marker}-{i}",
        )
        for i in range(n)
    ]


def test_the_head_at_a_periods_end_is_signed_and_verify_accepts_it(system: System, tmp_path: Path) -> None:
    infra = system.settings
    log = audit.open_log(infra)
    before = _append(log, 3)
    end = datetime.now(UTC) + timedelta(milliseconds=5)
    wait_for(lambda: datetime.now(UTC) > end)
    after = _append(log, 2)  # appended after the period's end: not in its head
    wait_for(lambda: projected_seq() >= after[-1].seq, timeout=120)

    anchor = anchor_at(end, log)
    assert before[-1].seq <= anchor["seq"] < after[0].seq
    assert anchor["at"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert anchor["hash"] == next(e.hash for e in log.iter_entries(from_seq=anchor["seq"], to_seq=anchor["seq"]))
    # The same head, taken again later, is byte for byte the same (a regenerated month is identical).
    assert anchor_at(end, log) == anchor

    notice = tmp_path / "monthly.json"
    notice.write_text(json.dumps({"content": {"audit_anchor": anchor}}, ensure_ascii=False), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "services.common.audit", "verify", "--heads", str(notice)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit chain intact" in done.stdout and "1 published head(s) matched" in done.stdout

    forged = dict(anchor, hash="0" * 64)  # a head whose signature does not cover what it says
    notice.write_text(json.dumps({"content": {"audit_anchor": forged}}), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "services.common.audit", "verify", "--heads", str(notice)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2 and "not this log's audit key" in done.stdout
