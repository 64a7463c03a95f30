"""A fund entry that a crash left between its steps is finished by its durable timer, never lost or doubled.

The state such a crash leaves is written into the alliance service's tenant database as the command would have
written it before dying (services/alliance/ledger/handlers.py: step 1, the entry inserted "pending", and its
"alliance.ledger_finish" timer), while the service is down; once it is back, its timer worker finds the timer at
start, posts the entry to the fund and marks it, so the balance the community reads (the read side) counts it,
once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests
from pymongo import MongoClient

from services.alliance.ledger import domain
from services.alliance.ledger.documents import FundEntryDoc, PostingDoc
from services.alliance.ledger.handlers import FINISH_KIND
from services.common import clocks, mongo
from tests.conftest import System, unique, wait_for

T = "qiujiadian"


def balance(system: System, community: str) -> dict[str, Any] | None:
    resp = requests.get(
        f"{system.gateway}/api/v1/tenants/{T}/alliance/funds?community_id={community}",
        headers=system.auth("subdistrict_admin", T),
        timeout=10,
    )
    if resp.status_code != 200:
        return None  # the service is starting
    rows = [b for b in resp.json()["balances"] if b["fund"] == "running"]
    return rows[0] if rows else None


def test_an_allocation_stranded_by_a_crash_is_posted_once_after_the_restart(
    system: System, mongo_client: MongoClient[Any]
) -> None:
    admin = system.auth("subdistrict_admin", T)
    base = f"{system.gateway}/api/v1/tenants/{T}"
    name = {"name_zh": f"台账恢复社区{unique()[-5:]}"}
    made = requests.post(f"{base}/org/communities", json=name, headers=admin, timeout=10)
    assert made.status_code == 201, made.text
    community = made.json()["id"]
    first = {"community_id": community, "fund": "running", "amount_fen": 50_000, "source": "区财政"}
    ok = requests.post(f"{base}/alliance/fund-allocations", json=first, headers=admin, timeout=10)
    assert ok.status_code == 201, ok.text
    wait_for(lambda: (b := balance(system, community)) is not None and int(b["balance_fen"]) == 50_000)

    system.kill("alliance")  # the process that was writing the second allocation died after its step 1
    try:
        now = datetime.now(UTC)
        eid = f"fe-stranded-{unique()}"
        entry = FundEntryDoc(
            id=eid,
            community_id=community,
            fund="running",
            kind=domain.ALLOCATION,
            amount_fen=20_000,
            by="test:crash",
            status="pending",
            source="党费",
            postings=[
                PostingDoc(account=x.account, debit_fen=x.debit_fen, credit_fen=x.credit_fen)
                for x in domain.postings(domain.ALLOCATION, community, "running", 20_000, "党费")
            ],
            at=now,
            created_at=now,
            updated_at=now,
        )
        db = mongo_client[mongo.database_name("alliance", T)]
        db[FundEntryDoc._get_collection_name()].insert_one(entry.to_mongo().to_dict())
        _group, _due, fields = clocks._prepare(
            f"ledger-finish:{eid}", FINISH_KIND, now, {"kind": "fund", "entry_id": eid}, None
        )
        db[clocks.collection_name(clocks.DEFAULT_GROUP)].insert_one({"_id": f"ledger-finish:{eid}", **fields})
    finally:
        system.start("alliance")

    # Finished by the timer: the fund's balance counts the entry, once, and the entry is posted with its event.
    row = wait_for(
        lambda: (b := balance(system, community)) is not None and int(b["balance_fen"]) == 70_000 and b,
        timeout=120,
    )
    assert int(row["entries"]) == 2 and int(row["allocated_fen"]) == 70_000
    stored = db[FundEntryDoc._get_collection_name()].find_one({"_id": eid})
    assert stored is not None and stored["status"] == "posted" and int(stored["balance_fen"]) == 70_000
    assert db[clocks.collection_name(clocks.DEFAULT_GROUP)].find_one({"_id": f"ledger-finish:{eid}"}) is None
