"""The alliance ledger through the gateway, on the running system: a member unit pledges an item of its
resource list and the community confirms delivery; a community's funds are allocated and spent as balanced
entries, never beyond the balance (also under concurrent spends); hours are credited from verified facts
produced to Kafka as the posts/activities area and dispatch produce them, once per source and person, and
corrected by new entries; the year's export is a spreadsheet of names and hours."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import alliance_events_pb2 as aev
from hongling.events.v1 import dispatch_events_pb2 as dev
from kafka import KafkaProducer
from openpyxl import load_workbook
from sqlalchemy import select

from services.common import readside
from services.common.events import CloudEvent, record_key, topic_for
from services.evaluation.measures.domain import quarter_of
from services.evaluation.measures.readmodel import PROCESSED
from tests.conftest import System, read_topic, unique, wait_for

T = "xujialou"


def url(system: System, path: str, tenant: str = T) -> str:
    return f"{system.gateway}/api/v1/tenants/{tenant}/{path}"


def admin(system: System) -> dict[str, str]:
    return system.auth("subdistrict_admin", T)


def created(resp: requests.Response, status: int = 201) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def org(system: System, collection: str, body: dict[str, Any]) -> str:
    return str(
        created(requests.post(url(system, f"org/{collection}"), json=body, headers=admin(system), timeout=10))["id"]
    )


def new_community(system: System) -> str:
    return org(system, "communities", {"name_zh": f"台账社区{unique()[-6:]}"})


def activity_in(system: System, community: str) -> str:
    """A co-building activity of the community next week: what a pledge or a spending is for."""
    start = datetime.now(UTC) + timedelta(days=7)
    body = {
        "community_id": community,
        "title": "共建活动",
        "kind": "cleanup",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "capacity": 10,
    }
    return str(
        created(requests.post(url(system, "alliance/activities"), json=body, headers=admin(system), timeout=10))["id"]
    )


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


def produce(producer: KafkaProducer, service: str, key: str, msg: Message, event_id: str = "") -> str:
    ce = CloudEvent(
        id=event_id or uuid.uuid4().hex,
        source=f"/hongling/{service}/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=datetime.now(UTC),
        subject=key,
        tenant=T,
        data=msg.SerializeToString(),
    )
    producer.send(topic_for(service), key=record_key(T, key), value=ce.data, headers=ce.headers()).get(timeout=15)
    return ce.id


def now_ts() -> Timestamp:
    out = Timestamp()
    out.FromDatetime(datetime.now(UTC))
    return out


# ---------------------------------------------------------------- pledges (提供资源)


@pytest.fixture(scope="module")
def unit(system: System) -> dict[str, str]:
    community = new_community(system)
    unit_id = org(
        system,
        "member-units",
        {
            "community_id": community,
            "name_zh": f"驻地单位{unique()[-4:]}",
            "kind": "resident_unit",
            "joined_on": "2024-05-01",
        },
    )
    entry = org(
        system,
        "unit-resource-entries",
        {"unit_id": unit_id, "resource": "货车", "category": "vehicle", "quantity": 3, "unit_of_measure": "台"},
    )
    other_unit = org(
        system,
        "member-units",
        {
            "community_id": community,
            "name_zh": f"双报到单位{unique()[-4:]}",
            "kind": "dual_report_unit",
            "joined_on": "2024-05-01",
        },
    )
    other_entry = org(
        system,
        "unit-resource-entries",
        {"unit_id": other_unit, "resource": "会议室", "category": "venue", "quantity": 1},
    )
    return {
        "community": community,
        "unit": unit_id,
        "entry": entry,
        "other_entry": other_entry,
        "activity": activity_in(system, community),
        "elsewhere": activity_in(system, new_community(system)),
    }


def pledge_body(unit: dict[str, str], **kw: Any) -> dict[str, Any]:
    return {"resource_entry_id": unit["entry"], "quantity": 2, "for_kind": "activity", "for_id": unit["activity"], **kw}


def test_a_member_unit_pledges_a_listed_item_and_the_worker_confirms_delivery(
    system: System, unit: dict[str, str]
) -> None:
    member = system.member_auth(T, "member_unit", unit["unit"])
    worker = system.worker_auth(T, unit["community"])
    pledge = created(requests.post(url(system, "alliance/pledges"), json=pledge_body(unit), headers=member, timeout=10))
    assert pledge["status"] == "pledged" and pledge["resource"] == "货车" and pledge["unit_of_measure"] == "台"
    assert pledge["unit_id"] == unit["unit"] and pledge["community_id"] == unit["community"]

    def waiting() -> list[dict[str, Any]] | None:
        resp = requests.get(url(system, "alliance/pledges?status=pledged"), headers=worker, timeout=10)
        found = resp.json()["pledges"]
        return found if any(p["id"] == pledge["id"] for p in found) else None

    listed = wait_for(waiting)
    mine = next(p for p in listed if p["id"] == pledge["id"])
    assert int(mine["age_seconds"]) >= 0
    assert [p["pledged_at"] for p in listed] == sorted(p["pledged_at"] for p in listed)  # oldest first

    refused = requests.post(url(system, f"alliance/pledges/{pledge['id']}/delivery"), headers=member, timeout=10)
    assert refused.status_code == 403  # the community confirms, not the unit
    elsewhere = system.worker_auth(T, new_community(system))
    hidden = requests.post(url(system, f"alliance/pledges/{pledge['id']}/delivery"), headers=elsewhere, timeout=10)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"

    done = requests.post(url(system, f"alliance/pledges/{pledge['id']}/delivery"), headers=worker, timeout=10)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "delivered" and done.json()["delivered_at"]
    again = requests.post(url(system, f"alliance/pledges/{pledge['id']}/delivery"), headers=worker, timeout=10)
    assert again.status_code == 409


def test_the_resource_list_to_pledge_from_is_the_units_own(system: System, unit: dict[str, str]) -> None:
    """A member unit reads its own list (what the portal's pledge form offers); staff name the unit; a worker of
    another community sees none of it; a member naming another unit, or a person's credential, is refused."""
    listed = url(system, "alliance/resource-entries")
    member = system.member_auth(T, "member_unit", unit["unit"])
    resp = requests.get(listed, headers=member, timeout=10)
    assert resp.status_code == 200, resp.text
    [entry] = resp.json()["entries"]
    assert entry["id"] == unit["entry"] and entry["resource"] == "货车"
    assert entry["quantity"] == 3 and entry["unit_of_measure"] == "台"
    worker = system.worker_auth(T, unit["community"])
    staff = requests.get(f"{listed}?unit_id={unit['unit']}", headers=worker, timeout=10).json()["entries"]
    assert [e["id"] for e in staff] == [unit["entry"]]
    elsewhere = system.worker_auth(T, new_community(system))
    assert requests.get(f"{listed}?unit_id={unit['unit']}", headers=elsewhere, timeout=10).json()["entries"] == []
    nameless = requests.get(listed, headers=worker, timeout=10)
    assert nameless.status_code == 400 and nameless.json()["error"]["field"] == "unit_id"
    other = requests.get(f"{listed}?unit_id=someone-else", headers=member, timeout=10)
    assert other.status_code == 403 and other.json()["error"]["field"] == "unit_id"
    person = system.member_auth(T, "person", "p-someone")
    assert requests.get(listed, headers=person, timeout=10).status_code == 403


def test_a_pledge_is_refused_beyond_the_list_or_off_it_or_for_another_unit(
    system: System, unit: dict[str, str]
) -> None:
    member = system.member_auth(T, "member_unit", unit["unit"])
    cases = [
        (pledge_body(unit, quantity=4), 400, "quantity"),
        (pledge_body(unit, resource_entry_id=unit["other_entry"]), 400, "resource_entry_id"),
        (pledge_body(unit, for_kind="party"), 400, "for_kind"),
        (pledge_body(unit, for_kind="decision"), 400, "item_id"),
        (pledge_body(unit, for_id="act-none"), 400, "for_id"),  # no such activity
        (pledge_body(unit, for_id=unit["elsewhere"]), 400, "for_id"),  # another community's
        (pledge_body(unit, for_kind="task", for_id="t-none"), 400, "for_id"),  # no such task
        (pledge_body(unit, unit_id="someone-else"), 403, "unit_id"),
    ]
    for body, status, field in cases:
        resp = requests.post(url(system, "alliance/pledges"), json=body, headers=member, timeout=10)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["error"]["field"] == field


def test_a_pledge_withdrawn_before_delivery_cannot_be_delivered(system: System, unit: dict[str, str]) -> None:
    member = system.member_auth(T, "member_unit", unit["unit"])
    body = pledge_body(unit, idempotency_key=unique())
    pledge = created(requests.post(url(system, "alliance/pledges"), json=body, headers=member, timeout=10))
    retry = created(requests.post(url(system, "alliance/pledges"), json=body, headers=member, timeout=10))
    assert retry["id"] == pledge["id"]
    no_reason = requests.post(
        url(system, f"alliance/pledges/{pledge['id']}/withdrawal"), json={}, headers=member, timeout=10
    )
    assert no_reason.status_code == 400 and no_reason.json()["error"]["field"] == "reason"
    out = requests.post(
        url(system, f"alliance/pledges/{pledge['id']}/withdrawal"),
        json={"reason": "车辆检修"},
        headers=member,
        timeout=10,
    )
    assert (
        out.status_code == 200 and out.json()["status"] == "withdrawn" and out.json()["withdraw_reason"] == "车辆检修"
    )
    worker = system.worker_auth(T, unit["community"])
    late = requests.post(url(system, f"alliance/pledges/{pledge['id']}/delivery"), headers=worker, timeout=10)
    assert late.status_code == 409

    def withdrawn() -> list[aev.ResourcePledgeWithdrawn]:
        found = []
        for r in read_topic(system.settings.kafka_bootstrap, topic_for("alliance")):
            if dict(r.headers).get("ce_type", b"") == b"hongling.events.v1.ResourcePledgeWithdrawn":
                msg = aev.ResourcePledgeWithdrawn.FromString(r.value)
                if msg.pledge_id == pledge["id"]:
                    found.append(msg)
        return found

    event = wait_for(withdrawn)  # the withdrawal is a fact on the topic, written with the change
    assert [(e.unit_id, e.community_id, e.quantity) for e in event] == [(unit["unit"], unit["community"], 2)]


def test_a_unit_that_withdraws_in_time_is_not_expected_to_deliver_or_attend(system: System) -> None:
    """The whole way: the alliance writes the withdrawals with the changes, evaluation's measures read them, and
    the unit's five-duty figures count only what it still owes (a delivered pledge: met)."""
    community = new_community(system)
    unit_id = org(
        system,
        "member-units",
        {
            "community_id": community,
            "name_zh": f"撤回单位{unique()[-4:]}",
            "kind": "resident_unit",
            "joined_on": "2024-05-01",
        },
    )
    entry = org(
        system,
        "unit-resource-entries",
        {"unit_id": unit_id, "resource": "帐篷", "category": "equipment", "quantity": 5, "unit_of_measure": "顶"},
    )
    activity = activity_in(system, community)
    member = system.member_auth(T, "member_unit", unit_id)
    worker = system.worker_auth(T, community)
    body = {"resource_entry_id": entry, "quantity": 1, "for_kind": "activity", "for_id": activity}
    kept = created(requests.post(url(system, "alliance/pledges"), json=body, headers=member, timeout=10))
    dropped = created(requests.post(url(system, "alliance/pledges"), json=body, headers=member, timeout=10))
    out = requests.post(
        url(system, f"alliance/pledges/{dropped['id']}/withdrawal"),
        json={"reason": "临时调用"},
        headers=member,
        timeout=10,
    )
    assert out.status_code == 200, out.text
    out = requests.post(url(system, f"alliance/pledges/{kept['id']}/delivery"), headers=worker, timeout=10)
    assert out.status_code == 200, out.text
    person = org(  # the person who would attend for the unit: one of its own
        system,
        "people",
        {"community_id": community, "name_zh": "撤回单位联络员", "roles": ["volunteer"], "member_unit_id": unit_id},
    )
    attendee = {"person_id": person}
    signed = requests.post(
        url(system, f"alliance/activities/{activity}/signups"), json=attendee, headers=member, timeout=10
    )
    assert signed.status_code == 201, signed.text
    out = requests.post(
        url(system, f"alliance/activities/{activity}/withdrawals"), json=attendee, headers=member, timeout=10
    )
    assert out.status_code == 200, out.text

    wanted = {
        ("hongling.events.v1.ResourcePledgeWithdrawn", dropped["id"]),
        ("hongling.events.v1.ResourceDelivered", kept["id"]),
        ("hongling.events.v1.ActivitySignupWithdrawn", activity),
    }

    def written() -> list[str]:
        ids = []
        for r in read_topic(system.settings.kafka_bootstrap, topic_for("alliance")):
            h = dict(r.headers)
            type_ = h.get("ce_type", b"").decode()
            if (type_, h.get("ce_subject", b"").decode()) in wanted:
                ids.append(h["ce_id"].decode())
        return ids if len(ids) == len(wanted) else []

    ids = wait_for(written, timeout=120)

    def applied() -> bool:
        with readside.connect(T) as conn:
            done = conn.execute(select(PROCESSED.c.event_id).where(PROCESSED.c.event_id.in_(ids))).all()
        return len(done) == len(ids)

    wait_for(applied, timeout=180)  # evaluation has read them (the counters change in the same transaction)
    quarter = quarter_of(datetime.fromisoformat(kept["pledged_at"]))
    resp = requests.get(
        url(system, "evaluation/measures"),
        params={"subject": f"member_unit:{unit_id}", "period": quarter, "community_id": community},
        headers=admin(system),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    found = {m["key"]: m for m in resp.json()["measures"]}
    figures = {k: (found[k].get("numerator", 0), found[k].get("denominator", 0)) for k in found}
    assert figures["duty_resources"] == (1, 1)  # the delivered pledge; the withdrawn one is not expected
    assert figures["duty_cobuilding"] == (0, 0)  # the place given back is not expected
    assert figures["duties"] == (1, 1)


# ---------------------------------------------------------------- funds (社区经费)


def test_a_worker_allocates_and_spends_and_the_balance_and_month_come_from_the_read_side(system: System) -> None:
    community = new_community(system)
    worker = system.worker_auth(T, community)
    alloc = {"community_id": community, "fund": "resident_service", "amount_fen": 100_000, "source": "街道拨款"}
    entry = created(requests.post(url(system, "alliance/fund-allocations"), json=alloc, headers=worker, timeout=10))
    assert int(entry["balance_fen"]) == 100_000 and entry["kind"] == "allocation"
    debit = sum(int(p["debit_fen"]) for p in entry["postings"])
    assert debit == sum(int(p["credit_fen"]) for p in entry["postings"]) == 100_000
    spend = {
        "community_id": community,
        "fund": "resident_service",
        "amount_fen": 30_000,
        "for_kind": "activity",
        "for_id": activity_in(system, community),
    }
    spent = created(requests.post(url(system, "alliance/fund-spendings"), json=spend, headers=worker, timeout=10))
    assert int(spent["balance_fen"]) == 70_000
    over = requests.post(
        url(system, "alliance/fund-spendings"), json={**spend, "amount_fen": 70_001}, headers=worker, timeout=10
    )
    assert over.status_code == 409 and over.json()["error"]["code"] == "insufficient_funds"
    assert "余额不足" in over.json()["error"]["message"]

    def balance() -> dict[str, Any] | None:
        resp = requests.get(url(system, f"alliance/funds?community_id={community}"), headers=worker, timeout=10)
        rows = [b for b in resp.json()["balances"] if b["fund"] == "resident_service"]
        return rows[0] if rows and int(rows[0]["entries"]) == 2 else None

    row = wait_for(balance)
    assert (int(row["balance_fen"]), int(row["allocated_fen"]), int(row["spent_fen"])) == (70_000, 100_000, 30_000)
    entries = requests.get(url(system, f"alliance/fund-entries?community_id={community}"), headers=worker, timeout=10)
    assert [e["kind"] for e in entries.json()["entries"]] == ["spending", "allocation"]
    months = requests.get(url(system, f"alliance/fund-months?community_id={community}"), headers=worker, timeout=10)
    [month] = months.json()["months"]
    assert (int(month["allocated_fen"]), int(month["spent_fen"]), int(month["closing_fen"])) == (
        100_000,
        30_000,
        70_000,
    )


def test_funds_are_refused_elsewhere_and_for_bad_input(system: System) -> None:
    community = new_community(system)
    worker = system.worker_auth(T, community)
    other = new_community(system)
    alloc = {"community_id": other, "fund": "running", "amount_fen": 100, "source": "党费"}
    resp = requests.post(url(system, "alliance/fund-allocations"), json=alloc, headers=worker, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "community_out_of_scope"
    listed = requests.get(url(system, f"alliance/funds?community_id={other}"), headers=worker, timeout=10)
    assert listed.status_code == 403
    for body, field in (
        ({**alloc, "community_id": community, "fund": "party"}, "fund"),
        ({**alloc, "community_id": community, "amount_fen": 0}, "amount_fen"),
        ({**alloc, "community_id": community, "source": ""}, "source"),
        ({**alloc, "community_id": community, "amount_fen": 1.5}, "amount_fen"),
    ):
        bad = requests.post(url(system, "alliance/fund-allocations"), json=body, headers=worker, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == field, bad.text
    member = system.auth("member", T)
    assert requests.get(url(system, "alliance/funds"), headers=member, timeout=10).status_code == 403


def test_concurrent_spends_of_one_fund_never_overdraw_it(system: System) -> None:
    community = new_community(system)
    headers = admin(system)
    alloc = {"community_id": community, "fund": "running", "amount_fen": 1000, "source": "区财政"}
    created(requests.post(url(system, "alliance/fund-allocations"), json=alloc, headers=headers, timeout=10))
    spend = {
        "community_id": community,
        "fund": "running",
        "amount_fen": 300,
        "for_kind": "activity",
        "for_id": activity_in(system, community),
    }
    answers: list[requests.Response] = []
    start = threading.Barrier(8)

    def one() -> None:
        start.wait()
        answers.append(requests.post(url(system, "alliance/fund-spendings"), json=spend, headers=headers, timeout=60))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [201] * 3 + [409] * 5, [r.text for r in answers]
    assert sorted(int(r.json()["balance_fen"]) for r in answers if r.status_code == 201) == [100, 400, 700]

    def settled() -> dict[str, Any] | None:
        resp = requests.get(url(system, f"alliance/funds?community_id={community}"), headers=headers, timeout=10)
        rows = resp.json()["balances"]
        return rows[0] if rows and int(rows[0]["entries"]) == 4 else None

    assert int(wait_for(settled)["balance_fen"]) == 100


# ---------------------------------------------------------------- the time bank (志愿服务时长)


def test_hours_come_only_from_verified_facts_once_per_source_and_corrections_are_new_entries(
    system: System, producer: KafkaProducer
) -> None:
    community = new_community(system)
    person = org(
        system,
        "people",
        {"community_id": community, "name_zh": "时长志愿者", "roles": ["volunteer"], "phone": "13900001111"},
    )
    worker = system.worker_auth(T, community)
    me = system.member_auth(T, "person", person)
    shift = aev.ShiftServed(
        post_id="post-1",
        tenant=T,
        community_id=community,
        shift_id=f"s-{unique()}",
        person_id=person,
        hours=2.5,
        at=now_ts(),
    )
    first = produce(producer, "alliance", "post-1", shift)
    produce(producer, "alliance", "post-1", shift, event_id=first)  # delivered twice
    produce(producer, "alliance", "post-1", shift)  # the same fact again under a new event id
    task = dev.TaskStatusChanged(
        task_id=f"t-{unique()}",
        tenant=T,
        from_status="done",
        to_status="verified",
        community_id=community,
        call_type="tackling",
        crew_ids=[f"person:{person}", "member_unit:mu-x"],
        changed_at=now_ts(),
    )
    produce(producer, "dispatch", task.task_id, task)
    activity = aev.ActivityAttended(
        activity_id=f"a-{unique()}", tenant=T, community_id=community, person_id=person, hours=1.5, at=now_ts()
    )
    produce(producer, "alliance", activity.activity_id, activity)
    produce(
        producer,
        "alliance",
        "post-1",
        aev.ShiftMissed(post_id="post-1", tenant=T, shift_id="s-missed", person_id=person),
    )

    def balance() -> dict[str, Any] | None:
        resp = requests.get(url(system, f"alliance/hours/{person}"), headers=me, timeout=10)
        body = resp.json()
        return body if resp.status_code == 200 and int(body.get("entries", 0)) >= 3 else None

    found = wait_for(balance)
    assert found["hours"] == 8.0 and int(found["entries"]) == 3 and found["name_zh"] == "时长志愿者"
    entries = requests.get(url(system, f"alliance/hours/{person}/entries"), headers=worker, timeout=10).json()[
        "entries"
    ]
    assert sorted(e["source_kind"] for e in entries) == ["activity", "shift", "task"]
    shift_entry = next(e for e in entries if e["source_kind"] == "shift")

    by_member = requests.post(
        url(system, f"alliance/hours-entries/{shift_entry['id']}/corrections"),
        json={"hours": -1, "reason": "多记"},
        headers=me,
        timeout=10,
    )
    assert by_member.status_code == 403
    no_reason = requests.post(
        url(system, f"alliance/hours-entries/{shift_entry['id']}/corrections"),
        json={"hours": -1, "reason": ""},
        headers=worker,
        timeout=10,
    )
    assert no_reason.status_code == 400 and no_reason.json()["error"]["field"] == "reason"
    fix = created(
        requests.post(
            url(system, f"alliance/hours-entries/{shift_entry['id']}/corrections"),
            json={"hours": -1, "reason": "签到时间有误，多记1小时"},
            headers=worker,
            timeout=10,
        )
    )
    assert (
        fix["corrects_entry_id"] == shift_entry["id"] and fix["balance"] == 7.0 and fix["source_kind"] == "correction"
    )
    wait_for(lambda: (b := balance()) is not None and b["hours"] == 7.0)

    elsewhere = system.worker_auth(T, new_community(system))
    assert requests.get(url(system, f"alliance/hours/{person}"), headers=elsewhere, timeout=10).status_code == 404
    someone = requests.get(url(system, "alliance/hours/another-person"), headers=me, timeout=10)
    assert someone.status_code == 404

    export = requests.get(url(system, f"alliance/hours-export?community_id={community}"), headers=worker, timeout=30)
    assert export.status_code == 200 and "attachment" in export.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(export.content))
    totals = list(book.worksheets[0].iter_rows(values_only=True))
    assert totals[1][:3] == (person, "时长志愿者", 7.0)
    text = "".join(str(c) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for c in row)
    assert "13900001111" not in text and len(list(book.worksheets[1].iter_rows())) == 1 + 4


def test_the_time_bank_rules_set_the_hours_of_a_verified_task(system: System) -> None:
    rules = requests.get(url(system, "alliance/timebank-rules"), headers=admin(system), timeout=10).json()
    assert {r["call_type"]: r["hours"] for r in rules["task_hours"]}["emergency"] == 3.0
    worker = system.auth("community_worker", T)
    refused = requests.put(url(system, "alliance/timebank-rules"), json={"task_hours": []}, headers=worker, timeout=10)
    assert refused.status_code == 403
    bad = requests.put(
        url(system, "alliance/timebank-rules"),
        json={"task_hours": [{"call_type": "x", "hours": 1}]},
        headers=admin(system),
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "task_hours"
