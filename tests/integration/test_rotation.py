"""The re-sealing step of a data key rotation against the real FerretDB, while writers go on
(docs/runbook.md, 轮换密钥): every value ends up sealed with the current key, a concurrent change is never
overwritten with the value read before it, and two people with one ID number registered on either side of the
switch are left for a person to settle, not merged."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from services.common import rekey
from services.common.protect import Protector
from services.common.settings import Settings
from tests.conftest import unique

OLD, NEW = secrets.token_urlsafe(32), secrets.token_urlsafe(32)


@pytest.fixture
def scratch(infra: Settings, mongo_client: MongoClient[Any]) -> Iterator[Database[Any]]:
    name = f"hl_rotate_test_{unique('r').replace('-', '_')}"
    yield mongo_client[name]
    mongo_client.drop_database(name)


def test_re_sealing_while_a_writer_changes_the_same_documents_loses_no_change(scratch: Database[Any]) -> None:
    old, during, new_only = Protector(OLD), Protector(NEW, OLD), Protector(NEW)
    people = scratch["people"]
    people.insert_many([{"_id": f"p-{i}", "phone_enc": old.seal(f"1380000{i:04d}"), "visits": 0} for i in range(300)])
    stop = threading.Event()
    written: dict[str, str] = {}

    def writer() -> None:
        """A service that already seals with the new key, changing phones while the re-sealing runs."""
        i = 0
        while not stop.is_set() and i < 300:
            phone = f"1390000{i:04d}"
            people.update_one({"_id": f"p-{i}"}, {"$set": {"phone_enc": during.seal(phone)}, "$inc": {"visits": 1}})
            written[f"p-{i}"] = phone
            i += 3

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        counts = rekey.rekey_database(scratch, old, new_only)
    finally:
        stop.set()
        thread.join()
    again = rekey.rekey_database(scratch, old, new_only)  # a second run: what the first left, if anything

    assert counts.values + again.values <= 300 and counts.conflicts == again.conflicts == 0
    for doc in people.find({}):
        expected = written.get(doc["_id"], f"1380000{int(doc['_id'][2:]):04d}")
        assert new_only.open(doc["phone_enc"]) == expected, doc["_id"]  # readable with the new key alone
        assert doc["visits"] == (1 if doc["_id"] in written else 0)  # the writer's other change is kept


def test_two_people_with_one_id_number_across_the_switch_are_reported_not_merged(scratch: Database[Any]) -> None:
    old, new = Protector(OLD), Protector(NEW)
    number = "370902199001011234"
    people = scratch["people"]
    people.create_index("id_number_key", unique=True)
    people.insert_one({"_id": "p-before", "id_number_enc": old.seal(number), "id_number_key": old.lookup_key(number)})
    people.insert_one({"_id": "p-after", "id_number_enc": new.seal(number), "id_number_key": new.lookup_key(number)})

    counts = rekey.rekey_database(scratch, old, new)

    assert counts.conflicts == 1 and counts.documents == 0
    assert "merge or delete one" in counts.summary()
    left = people.find_one({"_id": "p-before"})
    assert left is not None and old.open(left["id_number_enc"]) == number  # untouched, still readable
