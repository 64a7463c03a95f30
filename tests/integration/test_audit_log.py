"""The audit log on the real FerretDB: appends from many threads, and tampering found by verification."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from services.common.audit import AuditLog, signing_key
from services.common.settings import Settings
from tests.conftest import unique


@pytest.fixture
def audit(infra: Settings, mongo_client: MongoClient[Any]) -> Iterator[AuditLog]:
    name = f"hl_audit_test_{unique('a').replace('-', '_')}"
    yield AuditLog(mongo_client[name], signing_key("integration-test-audit-key-0123456789"), checkpoint_every=10)
    mongo_client.drop_database(name)


def test_concurrent_appends_form_one_unbroken_chain(audit: AuditLog) -> None:
    def writer(i: int) -> None:
        for j in range(10):
            audit.append(
                actor=f"dept-{i}",
                role="district_department",
                action="department.call",
                outcome="allowed" if j % 2 else "refused",
                tenant="taiqian",
                target=f"call-{i}-{j}",
            )

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = audit.verify()
    assert result.ok, result.summary()
    assert result.checked == 40 and result.checkpoints == 4
    assert [e.seq for e in audit.iter_entries()] == list(range(1, 41))


def test_an_entry_edited_in_the_database_is_named(audit: AuditLog, mongo_client: MongoClient[Any]) -> None:
    for i in range(25):
        audit.append(
            actor="approver-1", role="district_approver", action="grant.approve", outcome="done", target=f"request-{i}"
        )
    assert audit.verify().ok
    audit.entries.update_one({"_id": 17}, {"$set": {"outcome": "refused"}})
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 17)
    assert "entry 17" in result.summary()


def test_deleted_entry_is_named(audit: AuditLog) -> None:
    for i in range(12):
        audit.append(actor="x", role="ops", action="role.change", outcome="done", target=str(i))
    audit.entries.delete_one({"_id": 6})
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 6)


def test_a_lagging_head_hint_still_chains_correctly(audit: AuditLog) -> None:
    """A writer that crashed after its insert but before moving the hint leaves the hint behind."""
    for i in range(5):
        audit.append(actor="x", role="ops", action="role.change", outcome="done", target=str(i))
    audit.meta.update_one({"_id": "head"}, {"$set": {"seq": 2}})
    head = audit.head()
    assert head is not None and head.seq == 5 and audit.last_seq() == 2
    entry = audit.append(actor="y", role="ops", action="role.change", outcome="done", target="after-crash")
    assert entry.seq == 6 and audit.last_seq() == 6
    assert audit.verify().ok


def test_iter_entries_reads_a_seq_range_of_some_tenants_in_order(audit: AuditLog) -> None:
    for i in range(20):
        audit.append(actor="x", role="ops", action="role.change", outcome="done", tenant=("taiqian", "")[i % 2])
    assert [e.seq for e in audit.iter_entries(from_seq=5, to_seq=9)] == [5, 6, 7, 8, 9]
    district = [e.seq for e in audit.iter_entries(tenant="", from_seq=3)]
    assert district == list(range(4, 21, 2))
    both = [e.seq for e in audit.iter_entries(tenants=("taiqian", ""), to_seq=6, batch=2)]
    assert both == [1, 2, 3, 4, 5, 6]
