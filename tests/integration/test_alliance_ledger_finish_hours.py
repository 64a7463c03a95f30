"""An hours correction that a crash left between its steps is finished by its durable timer, as an allocation is
(tests/integration/test_alliance_ledger_finish.py): the state the command leaves when it dies after its step 1
(the correction inserted, not applied, and its "alliance.ledger_finish" timer) is written while the service is
down; once it is back, the timer adds the hours to the person's balance and marks the entry, so the balance the
read side shows counts it, once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests
from pymongo import MongoClient

from services.alliance.ledger import domain
from services.alliance.ledger.documents import HoursAccountDoc, HoursEntryDoc
from services.alliance.ledger.handlers import FINISH_KIND
from services.common import clocks, mongo
from tests.conftest import System, unique, wait_for

T = "qiujiadian"


def hours(system: System, person_id: str) -> dict[str, Any] | None:
    resp = requests.get(
        f"{system.gateway}/api/v1/tenants/{T}/alliance/hours/{person_id}",
        headers=system.auth("subdistrict_admin", T),
        timeout=10,
    )
    return resp.json() if resp.status_code == 200 else None  # None: the service is starting


def test_a_correction_stranded_by_a_crash_is_credited_once_after_the_restart(
    system: System, mongo_client: MongoClient[Any]
) -> None:
    person = unique("p")
    db = mongo_client[mongo.database_name("alliance", T)]
    system.kill("alliance")  # the process writing a correction of this person's hours died after its step 1
    try:
        now = datetime.now(UTC)
        eid = f"hc-stranded-{unique()}"
        entry = HoursEntryDoc(
            id=eid,
            person_id=person,
            community_id="test-place",
            hours=1.5,
            source_kind=domain.CORRECTION,
            source_id="he-lost-shift",
            corrects_entry_id="he-lost-shift",
            reason="漏记一次班次",
            by="test:crash",
            at=now,
            applied=False,
            created_at=now,
            updated_at=now,
        )
        db[HoursEntryDoc._get_collection_name()].insert_one(entry.to_mongo().to_dict())
        _group, _due, fields = clocks._prepare(
            f"ledger-finish:{eid}", FINISH_KIND, now, {"kind": "hours", "entry_id": eid}, None
        )
        db[clocks.collection_name(clocks.DEFAULT_GROUP)].insert_one({"_id": f"ledger-finish:{eid}", **fields})
    finally:
        system.start("alliance")

    # Finished by the timer: the person's balance counts the correction, once, and the entry is marked applied.
    row = wait_for(
        lambda: (b := hours(system, person)) is not None and int(b.get("entries", 0)) == 1 and b, timeout=120
    )
    assert float(row["hours"]) == 1.5
    stored = db[HoursEntryDoc._get_collection_name()].find_one({"_id": eid})
    assert stored is not None and stored["applied"] is True and float(stored["balance"]) == 1.5
    account = db[HoursAccountDoc._get_collection_name()].find_one({"_id": person})
    assert account is not None and float(account["balance"]) == 1.5 and int(account["entries"]) == 1
    assert db[clocks.collection_name(clocks.DEFAULT_GROUP)].find_one({"_id": f"ledger-finish:{eid}"}) is None


def test_a_correction_that_finishes_is_credited_and_cancels_its_timer(
    system: System, mongo_client: MongoClient[Any]
) -> None:
    """The guarded path's other end: a correction that runs through credits the person once and leaves no timer."""
    person = unique("p")
    db = mongo_client[mongo.database_name("alliance", T)]
    now = datetime.now(UTC)
    credited = HoursEntryDoc(  # an applied credit of a verified fact, as the consumer leaves it
        id=f"he-{unique()}",
        person_id=person,
        community_id="test-place",
        hours=2.0,
        source_kind="activity",
        source_id=unique("act"),
        at=now,
        applied=True,
        balance=2.0,
        created_at=now,
        updated_at=now,
    )
    db[HoursEntryDoc._get_collection_name()].insert_one(credited.to_mongo().to_dict())
    resp = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/alliance/hours-entries/{credited.id}/corrections",
        json={"hours": 0.5, "reason": "少记半小时", "idempotency_key": unique()},
        headers=system.auth("subdistrict_admin", T),
        timeout=30,
    )
    assert resp.status_code in (200, 201), resp.text
    cid = resp.json()["id"]
    stored = db[HoursEntryDoc._get_collection_name()].find_one({"_id": cid})
    assert stored is not None and stored["applied"] is True and float(stored["hours"]) == 0.5
    assert db[clocks.collection_name(clocks.DEFAULT_GROUP)].find_one({"_id": f"ledger-finish:{cid}"}) is None
