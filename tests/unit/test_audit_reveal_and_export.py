"""Reveals of personal data are recorded in the audit log first, and refused when they cannot be; an
exported file verifies offline (whole, a range, a tenant's entries) and an edited line is named.

No infrastructure: the audit log is a stand-in (reveals) or a chain built in memory (exports).
tests/e2e/test_audit_api.py does the same against the running system.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pymongo.errors
import pytest

from gateway.routes_audit import export_record
from services.common import audit as audit_module
from services.common.audit import GENESIS, Entry, entry_hash, read_export, verify_export
from services.common.context import bound
from services.common.errors import PermissionDenied, Unavailable
from services.common.principal import Principal
from services.org import handlers

PERSON = handlers.SPECS["person"]
WORKER = Principal(sub="worker-7", role="community_worker", tenants=("taiqian",))


class Recorder:
    def __init__(self) -> None:
        self.appended: list[dict[str, Any]] = []

    def append(self, **entry: Any) -> None:
        self.appended.append(entry)


class Down:
    def append(self, **entry: Any) -> None:
        raise pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")


def test_a_reveal_is_appended_to_the_audit_log_without_personal_data(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Recorder()
    monkeypatch.setattr(audit_module, "shared_log", lambda: log)
    with bound(tenant="taiqian", principal=WORKER, request_id="req-0001"):
        assert handlers.may_reveal(True, PERSON, "p-42") is True
        assert handlers.may_reveal(False, PERSON, "p-42") is False  # masked: nothing to record
    assert log.appended == [
        {
            "actor": "worker-7",
            "role": "community_worker",
            "action": "personal_data.reveal",
            "outcome": "done",
            "tenant": "taiqian",
            "target": "person/p-42",
            "request_id": "req-0001",
        }
    ]


def test_no_reveal_without_its_audit_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "shared_log", lambda: Down())
    with bound(tenant="taiqian", principal=WORKER), pytest.raises(Unavailable) as refused:  # 503 + Retry-After
        handlers.may_reveal(True, PERSON, "p-42")
    assert refused.value.reason == "audit_unavailable" and "审计日志" in refused.value.message


def test_a_role_without_the_need_is_refused_before_anything_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Recorder()
    monkeypatch.setattr(audit_module, "shared_log", lambda: log)
    approver = Principal(sub="a-1", role="district_approver", tenants=("*",))
    with bound(tenant="taiqian", principal=approver), pytest.raises(PermissionDenied):
        handlers.may_reveal(True, PERSON, "p-42")
    assert log.appended == []


# ---------------------------------------------------------------- exports, checked offline


def chain(n: int) -> list[Entry]:
    out: list[Entry] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        draft = Entry(
            seq=seq,
            time=f"2026-11-27T00:00:{seq:02d}.000000Z",
            actor=f"a-{seq % 2}",
            role="district_approver",
            action="request.approve",
            outcome="allowed",
            tenant=("taiqian", "daimiao", "")[seq % 3],
            target=f"dr-{seq}",
            request_id=f"r{seq}",
            detail={"fields": ["name_zh"], "quota": seq, "说明": "批准"},
            prev_hash=prev,
        )
        entry = replace(draft, hash=entry_hash(draft))
        out.append(entry)
        prev = entry.hash
    return out


def lines(entries: list[Entry]) -> list[str]:
    """As the gateway's ndjson export writes them."""
    return [json.dumps(export_record(e), ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries]


def test_an_export_round_trips_to_the_same_entries_and_verifies() -> None:
    entries = chain(12)
    assert list(read_export(lines(entries))) == entries
    whole = verify_export(read_export(lines(entries)))
    assert (whole.ok, whole.checked) == (True, 12)
    assert verify_export(read_export(lines(entries[4:9]))).ok  # a seq range
    taiqian = [e for e in entries if e.tenant == "taiqian"]
    assert verify_export(read_export(lines(taiqian)), contiguous=False).ok
    assert not verify_export(read_export(lines(taiqian))).ok  # gaps: not a contiguous export


def test_an_edited_or_missing_line_is_named() -> None:
    entries = chain(12)
    edited = lines(entries)
    record = json.loads(edited[6])
    record["actor"] = "someone-else"
    edited[6] = json.dumps(record, ensure_ascii=False)
    result = verify_export(read_export(edited))
    assert (result.ok, result.first_broken_seq) == (False, 7)
    assert verify_export(read_export(edited), contiguous=False).first_broken_seq == 7
    gap = lines(entries)
    del gap[3]
    missing = verify_export(read_export(gap))
    assert (missing.ok, missing.first_broken_seq) == (False, 4)


def test_a_line_that_is_not_an_entry_is_reported_by_number() -> None:
    with pytest.raises(ValueError, match="line 2"):
        list(read_export([*lines(chain(1)), '{"seq": 2}\n']))
