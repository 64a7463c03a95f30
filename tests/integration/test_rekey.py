"""A state dir made with the former built-in keys, moved to its own keys (services.common.rekey) on FerretDB.

Personal data sealed with the former data key is readable afterwards with the new key only, new data is
sealed with the new key, and audit checkpoints signed with the former audit key verify with the new one
(except past a break in the chain, which verification still names)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.common import rekey
from services.common.audit import AuditLog, signing_key
from services.common.protect import protector
from services.common.settings import FORMER_BUILT_IN, Settings
from tests.conftest import unique

FORMER = protector(FORMER_BUILT_IN["data_key"])


@pytest.fixture
def scratch(infra: Settings, mongo_client: MongoClient[Any]) -> Iterator[Database[Any]]:
    name = f"hl_rekey_test_{unique('r').replace('-', '_')}"
    yield mongo_client[name]
    mongo_client.drop_database(name)


def test_personal_data_sealed_with_the_former_key_is_readable_after_rekey_and_new_data_uses_the_new_key(
    scratch: Database[Any],
) -> None:
    new = protector(secrets.token_urlsafe(32))
    people, issues = scratch["people"], scratch["issues"]
    people.insert_one(
        {
            "_id": "person-1",
            "name_zh": "李四",
            "phone_enc": FORMER.seal("13800138000"),
            "id_number_enc": FORMER.seal("37090219900101123X"),
            "id_number_key": FORMER.lookup_key("37090219900101123X"),
        }
    )
    people.create_index("id_number_key", unique=True)
    issues.insert_one({"_id": "issue-1", "contact": {"name_enc": FORMER.seal("王五"), "phone_enc": ""}})
    issues.insert_one({"_id": "issue-2", "contact": {"name_enc": new.seal("赵六"), "phone_enc": ""}})  # already new

    counts = rekey.rekey_database(scratch, FORMER, new)

    assert (counts.values, counts.documents) == (3, 2)
    person = people.find_one({"_id": "person-1"})
    assert person is not None
    assert new.open(person["phone_enc"]) == "13800138000"
    assert new.open(person["id_number_enc"]) == "37090219900101123X"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        FORMER.open(person["phone_enc"])
    # The person is found by their ID number under the new key (a spreadsheet import matches on it) ...
    assert people.find_one({"id_number_key": new.lookup_key("37090219900101123X")}) is not None
    # ... and the unique index still refuses a second person with that number.
    with pytest.raises(DuplicateKeyError):
        people.insert_one({"_id": "person-2", "id_number_key": new.lookup_key("37090219900101123X")})
    issue = issues.find_one({"_id": "issue-1"})
    assert issue is not None and new.open(issue["contact"]["name_enc"]) == "王五"
    other = issues.find_one({"_id": "issue-2"})
    assert other is not None and new.open(other["contact"]["name_enc"]) == "赵六"
    # New data is sealed with the new key; a second run finds nothing left to do.
    issues.insert_one({"_id": "issue-3", "contact": {"name_enc": new.seal("孙七"), "phone_enc": ""}})
    assert rekey.rekey_database(scratch, FORMER, new).values == 0
    latest = issues.find_one({"_id": "issue-3"})
    assert latest is not None and new.open(latest["contact"]["name_enc"]) == "孙七"


def append(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            actor="worker-1", role="community_worker", action="personal_data.reveal", outcome="done", target=f"p-{i}"
        )


def test_audit_checkpoints_signed_with_the_former_key_verify_with_the_new_one(scratch: Database[Any]) -> None:
    former_key, new_key = signing_key(FORMER_BUILT_IN["audit_signing_key"]), signing_key(secrets.token_urlsafe(32))
    append(AuditLog(scratch, former_key, checkpoint_every=3), 7)  # checkpoints at 3 and 6, former key
    log = AuditLog(scratch, new_key, checkpoint_every=3)
    before = log.verify()
    assert (before.ok, before.first_broken_seq, before.reason) == (False, 3, "checkpoint signature is invalid")

    assert rekey.resign_checkpoints(log, [former_key.public_key()]) == (2, 0)

    after = log.verify()
    assert after.ok, after.summary()
    assert (after.checked, after.checkpoints) == (7, 2)
    append(log, 2)  # the log goes on with the new key: a checkpoint at 9
    assert log.verify().checkpoints == 3
    assert rekey.resign_checkpoints(log, [former_key.public_key()]) == (0, 0)


def test_checkpoints_past_a_break_in_the_chain_are_not_signed_again(scratch: Database[Any]) -> None:
    former_key, new_key = signing_key(FORMER_BUILT_IN["audit_signing_key"]), signing_key(secrets.token_urlsafe(32))
    append(AuditLog(scratch, former_key, checkpoint_every=3), 7)
    scratch["entries"].update_one({"_id": 5}, {"$set": {"outcome": "refused"}})  # edited in the database
    log = AuditLog(scratch, new_key, checkpoint_every=3)

    # 3 signed again, 6 (after the break) left
    assert rekey.resign_checkpoints(log, [former_key.public_key()]) == (1, 1)

    result = log.verify()
    assert (result.ok, result.first_broken_seq) == (False, 5)
    assert result.checkpoints == 1
