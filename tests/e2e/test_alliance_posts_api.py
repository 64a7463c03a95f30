"""Standing posts and co-building activities through the gateway, against the running alliance service: posts with
shifts, race-safe claims (threads racing for the last place), release, check-in with ShiftServed on Kafka, the
shift-end timer's ShiftMissed, activities with a waiting list promoted in order, attendance, community scope."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from hongling.events.v1 import alliance_events_pb2 as ev

from services.common.events import topic_for
from tests.conftest import System, read_topic, unique, wait_for

T = "daimiao"
COMMUNITY = "test-place"
SHIFT_FIELDS = ("starts_at", "ends_at", "capacity")


def base(system: System) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/alliance"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def worker(system: System) -> dict[str, str]:
    return system.auth("community_worker", T)


def member(system: System) -> tuple[str, dict[str, str]]:
    pid = unique("p")
    return pid, system.member_auth(T, "person", pid)


def new_post(system: System, starts_in: timedelta, length: timedelta, capacity: int, **extra: Any) -> dict[str, Any]:
    start = datetime.now(UTC) + starts_in
    body = {
        "name": "文明劝导岗",
        "description": "早高峰路口劝导",
        "place": {"kind": "grid", "id": f"{COMMUNITY}-g", "name": "测试网格"},
        "shifts": [{"starts_at": iso(start), "ends_at": iso(start + length), "capacity": capacity}],
        **extra,
    }
    resp = requests.post(f"{base(system)}/posts", json=body, headers=worker(system), timeout=10)
    assert resp.status_code == 201, resp.text
    post: dict[str, Any] = resp.json()
    assert post["community_id"] == COMMUNITY  # a worker's post is in its own community
    return post


def org_unit_with_person(system: System) -> tuple[str, str, str]:
    """A member unit of the test community at org, a person who attends for it and a person who does not."""
    admin = system.auth("subdistrict_admin", T)

    def made(collection: str, body: dict[str, Any]) -> str:
        resp = requests.post(
            f"{system.gateway}/api/v1/tenants/{T}/org/{collection}", json=body, headers=admin, timeout=15
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    unit = made(
        "member-units",
        {
            "community_id": COMMUNITY,
            "name_zh": f"物业{unique()[-4:]}",
            "kind": "property_company",
            "joined_on": "2024-05-01",
        },
    )
    other = made(
        "member-units",
        {
            "community_id": COMMUNITY,
            "name_zh": f"商户{unique()[-4:]}",
            "kind": "individual_business",
            "joined_on": "2024-05-01",
        },
    )
    person = {"community_id": COMMUNITY, "name_zh": "保安甲", "roles": ["volunteer"]}
    own = made("people", {**person, "member_unit_id": unit})
    foreign = made("people", {**person, "name_zh": "店员乙", "member_unit_id": other})
    return unit, own, foreign


def claim(system: System, shift_id: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    return requests.post(f"{base(system)}/shifts/{shift_id}/claims", json=body or {}, headers=headers, timeout=30)


def roster(system: System, shift_id: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{base(system)}/shifts/{shift_id}/roster", headers=worker(system), timeout=10)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["claims"])


def events_of(system: System, cls: type[Any], **match: str) -> list[Any]:
    found = []
    for r in read_topic(system.settings.kafka_bootstrap, topic_for("alliance")):
        if dict(r.headers).get("ce_type", b"").decode() != cls.DESCRIPTOR.full_name:
            continue
        msg = cls.FromString(r.value)
        if all(getattr(msg, k) == v for k, v in match.items()):
            found.append(msg)
    return found


# ---------------------------------------------------------------- posts


def test_a_weekly_pattern_makes_shifts_and_the_list_shows_open_places(system: System) -> None:
    post = new_post(
        system,
        timedelta(hours=2),
        timedelta(hours=1),
        2,
        pattern={
            "weekdays": [1, 2, 3, 4, 5, 6, 7],
            "start_time": "08:00",
            "end_time": "09:30",
            "capacity": 3,
            "weeks": 1,
        },
    )
    assert 7 <= len(post["shifts"]) <= 8  # today's 08:00 may be over already
    assert all(s["open"] == s["capacity"] for s in post["shifts"])

    def listed() -> Any:
        resp = requests.get(f"{base(system)}/posts?page_size=200", headers=worker(system), timeout=10)
        assert resp.status_code == 200, resp.text
        return next((p for p in resp.json()["posts"] if p["id"] == post["id"]), None)

    found = wait_for(listed)
    assert found["name"] == "文明劝导岗" and found["shifts"][0]["open"] == found["shifts"][0]["capacity"]


def test_a_bad_shift_is_400_naming_the_field(system: System) -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    body = {
        "name": "楼栋长",
        "shifts": [{"starts_at": iso(start), "ends_at": iso(start - timedelta(minutes=5)), "capacity": 1}],
    }
    resp = requests.post(f"{base(system)}/posts", json=body, headers=worker(system), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "shifts[0].ends_at"
    assert "结束时间" in resp.json()["error"]["message"]


def test_racing_for_the_last_place_exactly_one_wins_and_a_release_frees_it(system: System) -> None:
    post = new_post(system, timedelta(hours=3), timedelta(hours=2), 1)
    shift_id = post["shifts"][0]["id"]
    claimants = [member(system) for _ in range(6)]
    with ThreadPoolExecutor(len(claimants)) as pool:
        answers = list(pool.map(lambda c: claim(system, shift_id, c[1]), claimants))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: 5}, [a.text for a in answers]
    assert all(
        a.json()["error"]["code"] == "full" and "已满" in a.json()["error"]["message"]
        for a in answers
        if a.status_code == 409
    )
    won = next(a.json() for a in answers if a.status_code == 201)
    winner = next(c for c in claimants if c[0] == won["person_id"])
    assert won["status"] == "claimed"
    got = requests.get(f"{base(system)}/posts/{post['id']}", headers=worker(system), timeout=10).json()
    assert got["shifts"][0]["taken"] == 1 and got["shifts"][0]["open"] == 0

    again = claim(system, shift_id, winner[1])
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_claimed"

    released = requests.post(f"{base(system)}/post-claims/{won['id']}/release", headers=winner[1], timeout=10)
    assert released.status_code == 200 and released.json()["status"] == "released"
    later = claimants[0] if claimants[0] is not winner else claimants[1]
    assert claim(system, shift_id, later[1]).status_code == 201
    assert wait_for(lambda: len(roster(system, shift_id)) == 2)  # the released claim stays on the record
    assert len(events_of(system, ev.PostClaimed, shift_id=shift_id)) == 2 or wait_for(
        lambda: len(events_of(system, ev.PostClaimed, shift_id=shift_id)) == 2
    )
    gone = wait_for(lambda: events_of(system, ev.PostClaimReleased, claim_id=won["id"]))
    assert [(e.person_id, e.shift_id, e.community_id) for e in gone] == [(winner[0], shift_id, COMMUNITY)]
    assert won["id"] in {e.claim_id for e in events_of(system, ev.PostClaimed, shift_id=shift_id)}


def test_a_member_checks_in_and_shift_served_carries_the_hours(system: System) -> None:
    post = new_post(system, timedelta(minutes=10), timedelta(hours=2), 1)
    shift_id = post["shifts"][0]["id"]
    unit, pid, foreign = org_unit_with_person(system)
    headers = system.member_auth(T, "member_unit", unit)
    no_person = claim(system, shift_id, headers)
    assert no_person.status_code == 400 and no_person.json()["error"]["field"] == "person_id"
    for stranger in (foreign, unique("p")):  # another unit's person, or nobody org knows: not credited to this unit
        refused = claim(system, shift_id, headers, {"person_id": stranger})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "person_id", refused.text
        assert "person_id" in refused.json()["error"]["message"]
    assert roster(system, shift_id) == []  # nothing written: the place is still free for the unit's own person
    claimed = claim(system, shift_id, headers, {"person_id": pid})
    assert claimed.status_code == 201, claimed.text
    c = claimed.json()
    assert (c["unit_id"], c["person_id"]) == (unit, pid)
    other = member(system)
    assert (
        requests.post(f"{base(system)}/post-claims/{c['id']}/check-in", headers=other[1], timeout=10).status_code == 404
    )
    done = requests.post(f"{base(system)}/post-claims/{c['id']}/check-in", headers=headers, timeout=10)
    assert done.status_code == 200, done.text
    served = done.json()
    assert served["status"] == "served" and served["hours"] == 2.0 and served["late"] is False
    assert served["checked_in_by"] == "self"
    [event] = wait_for(lambda: events_of(system, ev.ShiftServed, shift_id=shift_id))
    assert (event.unit_id, event.person_id, event.community_id, event.tenant) == (unit, pid, COMMUNITY, T)
    assert event.hours == 2.0 and event.at.seconds > 0

    def mine() -> Any:
        resp = requests.get(f"{base(system)}/post-claims?person_id=someone-else", headers=headers, timeout=10)
        assert resp.status_code == 200
        return [x for x in resp.json()["claims"] if x["id"] == c["id"] and x["status"] == "served"]

    assert wait_for(mine)  # a member lists its own claims, whatever it names


def test_a_claimed_shift_nobody_checked_in_for_is_recorded_missed_at_its_end(system: System) -> None:
    post = new_post(system, timedelta(seconds=4), timedelta(seconds=2), 2)
    shift_id = post["shifts"][0]["id"]
    pid, headers = member(system)
    assert claim(system, shift_id, headers).status_code == 201
    wait_for(lambda: [r for r in roster(system, shift_id) if r["status"] == "missed"], timeout=90)
    [event] = wait_for(lambda: events_of(system, ev.ShiftMissed, shift_id=shift_id))
    assert event.person_id == pid and event.community_id == COMMUNITY


def test_another_communitys_worker_gets_404_and_403(system: System) -> None:
    post = new_post(system, timedelta(hours=5), timedelta(hours=1), 1)
    stranger = system.worker_auth(T, "some-other-community")
    resp = requests.get(f"{base(system)}/posts/{post['id']}", headers=stranger, timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    listed = requests.get(f"{base(system)}/posts?community_id={COMMUNITY}", headers=stranger, timeout=10)
    assert listed.status_code == 403 and listed.json()["error"]["code"] == "community_out_of_scope"
    made = requests.post(
        f"{base(system)}/posts",
        json={"community_id": COMMUNITY, "name": "x", "shifts": [{k: post["shifts"][0][k] for k in SHIFT_FIELDS}]},
        headers=stranger,
        timeout=10,
    )
    assert made.status_code == 403


# ---------------------------------------------------------------- activities


def new_activity(system: System, capacity: int, starts_in: timedelta = timedelta(days=1)) -> dict[str, Any]:
    start = datetime.now(UTC) + starts_in
    body = {
        "title": "小区环境清洁日",
        "kind": "cleanup",
        "place": {"kind": "other", "name": "中心广场"},
        "starts_at": iso(start),
        "ends_at": iso(start + timedelta(hours=3)),
        "capacity": capacity,
    }
    resp = requests.post(f"{base(system)}/activities", json=body, headers=worker(system), timeout=10)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def sign_up(system: System, activity_id: str, headers: dict[str, str]) -> Any:
    return requests.post(f"{base(system)}/activities/{activity_id}/signups", json={}, headers=headers, timeout=30)


def test_a_full_activity_keeps_a_waiting_list_and_promotes_the_first_on_withdrawal(system: System) -> None:
    act = new_activity(system, 1)
    (a, ha), (b, hb), (c, hc) = member(system), member(system), member(system)
    first = sign_up(system, act["id"], ha)
    assert first.status_code == 201 and first.json()["mine"]["status"] == "placed"
    second = sign_up(system, act["id"], hb).json()["mine"]
    third = sign_up(system, act["id"], hc).json()["mine"]
    assert (second["status"], second["position"], third["position"]) == ("waiting", 1, 2)
    twice = sign_up(system, act["id"], hb)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_signed_up"
    out = requests.post(f"{base(system)}/activities/{act['id']}/withdrawals", json={}, headers=ha, timeout=10)
    assert out.status_code == 200, out.text
    seen = requests.get(f"{base(system)}/activities/{act['id']}", headers=worker(system), timeout=10).json()
    by_person = {p["person_id"]: p for p in seen["participants"]}
    assert by_person[a]["status"] == "withdrawn" and by_person[b]["status"] == "placed"
    assert by_person[c]["status"] == "waiting" and by_person[c]["position"] == 1
    assert (seen["taken"], seen["waiting"]) == (1, 1)
    promoted = wait_for(
        lambda: (
            [e for e in events_of(system, ev.ActivitySignedUp, activity_id=act["id"], person_id=b)]
            if len(events_of(system, ev.ActivitySignedUp, activity_id=act["id"], person_id=b)) == 2
            else None
        )
    )
    assert [(e.waiting, e.position, e.signup) for e in promoted] == [(True, 1, 1), (False, 0, 1)]
    left = wait_for(lambda: events_of(system, ev.ActivitySignupWithdrawn, activity_id=act["id"], person_id=a))
    assert [(e.waiting, e.signup) for e in left] == [(False, 1)]
    back = sign_up(system, act["id"], ha)  # a new sign-up after the withdrawal is the person's second
    assert back.status_code == 201 and back.json()["mine"]["status"] == "waiting"
    again = wait_for(
        lambda: [e for e in events_of(system, ev.ActivitySignedUp, activity_id=act["id"], person_id=a) if e.signup == 2]
    )
    assert again[0].waiting


def test_concurrent_sign_ups_never_exceed_capacity_and_queue_in_order(system: System) -> None:
    act = new_activity(system, 2)
    people = [member(system) for _ in range(6)]
    with ThreadPoolExecutor(len(people)) as pool:
        answers = list(pool.map(lambda m: sign_up(system, act["id"], m[1]), people))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    seen = requests.get(f"{base(system)}/activities/{act['id']}", headers=worker(system), timeout=10).json()
    assert (seen["taken"], seen["waiting"]) == (2, 4)
    assert sorted(p["position"] for p in seen["participants"] if p["status"] == "waiting") == [1, 2, 3, 4]

    def listed() -> Any:
        resp = requests.get(
            f"{base(system)}/activities?community_id={COMMUNITY}&page_size=200", headers=worker(system), timeout=10
        )
        return next((x for x in resp.json()["activities"] if x["id"] == act["id"] and x["waiting"] == 4), None)

    assert wait_for(listed)["taken"] == 2


def test_attendance_credits_hours_up_to_the_activity_length(system: System) -> None:
    act = new_activity(system, 2, starts_in=timedelta(minutes=5))
    pid, headers = member(system)
    assert sign_up(system, act["id"], headers).status_code == 201
    url = f"{base(system)}/activities/{act['id']}/attendance"
    who = {"participant": {"kind": "person", "id": pid}}
    too_long = requests.post(url, json={**who, "hours": 5}, headers=worker(system), timeout=10)
    assert too_long.status_code == 400 and too_long.json()["error"]["field"] == "hours"
    ok = requests.post(url, json={**who, "hours": 2.5}, headers=worker(system), timeout=10)
    assert ok.status_code == 200, ok.text
    [event] = wait_for(lambda: events_of(system, ev.ActivityAttended, activity_id=act["id"]))
    assert (event.person_id, event.hours, event.community_id) == (pid, 2.5, COMMUNITY)

    def mine() -> Any:
        resp = requests.get(f"{base(system)}/activity-signups", headers=headers, timeout=10)
        assert resp.status_code == 200, resp.text
        return [s for s in resp.json()["signups"] if s["activity_id"] == act["id"] and s["participant"]["attended"]]

    assert wait_for(mine)[0]["participant"]["hours"] == 2.5


def test_a_unit_signs_up_only_its_own_people_and_staff_record_them(system: System) -> None:
    act = new_activity(system, 3, starts_in=timedelta(minutes=5))
    unit, pid, foreign = org_unit_with_person(system)
    headers = system.member_auth(T, "member_unit", unit)
    url = f"{base(system)}/activities/{act['id']}/signups"
    refused = requests.post(url, json={"person_id": foreign}, headers=headers, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "person_id", refused.text
    staff = {"participant": {"kind": "member_unit", "id": unit}, "person_id": foreign}
    by_worker = requests.post(url, json=staff, headers=worker(system), timeout=30)
    assert by_worker.status_code == 400 and by_worker.json()["error"]["field"] == "person_id", by_worker.text
    seen = requests.get(f"{base(system)}/activities/{act['id']}", headers=worker(system), timeout=10).json()
    assert seen.get("participants", []) == []  # nothing written
    placed = requests.post(url, json={"person_id": pid}, headers=headers, timeout=30)
    assert placed.status_code == 201, placed.text
    assert (placed.json()["mine"]["unit_id"], placed.json()["mine"]["person_id"]) == (unit, pid)


def test_publishing_checks_kind_and_staff_only(system: System) -> None:
    start = datetime.now(UTC) + timedelta(days=1)
    body = {
        "title": "联欢",
        "kind": "party",
        "starts_at": iso(start),
        "ends_at": iso(start + timedelta(hours=1)),
        "capacity": 5,
    }
    resp = requests.post(f"{base(system)}/activities", json=body, headers=worker(system), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "kind"
    _, headers = member(system)
    assert requests.post(f"{base(system)}/activities", json=body, headers=headers, timeout=10).status_code == 403
