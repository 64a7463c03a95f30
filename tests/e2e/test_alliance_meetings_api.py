"""Joint meetings through the gateway: schedule, scope, check-in, decisions, action items into intake, minutes."""

from __future__ import annotations

import io
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from docx import Document

from services.common.vocabulary import ISSUE_STATUS_ZH
from services.org.seed import Rect
from tests.conftest import System, unique, wait_for

T = "xujialou"
HALF = 0.004


@dataclass(frozen=True)
class Place:
    community: str
    grid: str
    station: str
    units: tuple[str, str]
    people: tuple[str, str]
    issue: str
    center: tuple[float, float]


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def ok(resp: requests.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    return resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else resp.content


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


@pytest.fixture(scope="module")
def place(system: System) -> Place:
    admin = system.auth("subdistrict_admin", T)
    # A place no other test of the tenant draws its grids in (a report there must resolve to this community).
    lat, lon = round(random.uniform(36.62, 36.70), 4), round(random.uniform(117.62, 117.70), 4)

    def org(collection: str, body: dict[str, Any]) -> str:
        return str(ok(requests.post(url(system, f"org/{collection}"), json=body, headers=admin, timeout=10), 201)["id"])

    community = org("communities", {"name_zh": f"会议社区{unique()[-4:]}"})
    boundary = Rect(lon - HALF, lat - HALF, lon + HALF, lat + HALF).geojson()
    grid = org("grids", {"community_id": community, "name_zh": "会议一网格", "boundary_geojson": boundary})
    station = org("grid-stations", {"grid_id": grid, "name_zh": "会议网格驿站", "point": {"lat": lat, "lon": lon}})
    units = tuple(
        org(
            "member-units",
            {"community_id": community, "name_zh": f"物业{n}", "kind": "property_company", "joined_on": "2024-05-01"},
        )
        for n in range(2)
    )
    people = tuple(  # the second attends for the first unit (org's member_unit_id)
        org(
            "people",
            {
                "community_id": community,
                "grid_id": grid,
                "name_zh": f"党员{n}",
                "roles": ["party_member"],
                "member_unit_id": units[0] if n else "",
            },
        )
        for n in range(2)
    )
    report = {
        "title": "楼道灯不亮",
        "description": "3号楼楼道灯坏了",
        "channel": "online",
        "location": {"lat": lat, "lon": lon, "address": "会议测试"},
    }
    issue = ok(requests.post(url(system, "issues"), json=report, timeout=10), 201)["issue"]["id"]
    return Place(community, grid, station, units, people, issue, (lat, lon))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def worker(system: System, place: Place) -> dict[str, str]:
    return system.worker_auth(T, place.community)


def schedule(system: System, place: Place, worker: dict[str, str], **kw: Any) -> dict[str, Any]:
    body = {
        "community_id": place.community,
        "title": "五月联席会议",
        "starts_at": at(timedelta(minutes=-5)),
        "ends_at": at(timedelta(hours=2)),
        "station_id": place.station,
        "invitees": [
            {"kind": "member_unit", "id": place.units[0]},
            {"kind": "member_unit", "id": place.units[1]},
            {"kind": "person", "id": place.people[0]},
        ],
        "agenda": [
            {"source": "issue", "issue_id": place.issue},
            {"source": "hot_topic", "title": "楼道照明", "note": "楼道照明 3 件"},
        ],
        **kw,
    }
    return schedule_body(system, worker, body)


def schedule_body(system: System, worker: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(url(system, "alliance/meetings"), json=body, headers=worker, timeout=15)
    return dict(ok(resp, 201))


def test_a_worker_schedules_a_meeting_that_the_list_then_shows(
    system: System, place: Place, worker: dict[str, str]
) -> None:
    m = schedule(system, place, worker)
    assert m["status"] == "scheduled" and m["place"] == "会议网格驿站"
    assert m["agenda"][0]["title"] == "楼道灯不亮"  # the issue's title, kept
    assert {i["name_zh"] for i in m["invitees"]} == {"物业0", "物业1", "党员0"}
    assert m["counts"]["invited"] == 3 and m["counts"]["unrecorded"] == 3

    def listed() -> Any:
        got = ok(
            requests.get(url(system, f"alliance/meetings?community_id={place.community}"), headers=worker, timeout=10)
        )
        return [r for r in got["meetings"] if r["id"] == m["id"]]

    [row] = wait_for(listed)
    assert row["agenda_items"] == 2 and row["counts"]["invited"] == 3
    past = ok(requests.get(url(system, "alliance/meetings?when=upcoming"), headers=worker, timeout=10))
    assert m["id"] not in {r["id"] for r in past["meetings"]}  # it started five minutes ago


def test_a_worker_of_another_community_can_neither_schedule_nor_see_it(
    system: System, place: Place, worker: dict[str, str]
) -> None:
    m = schedule(system, place, worker)
    other = system.auth("community_worker", T)  # works for test-place
    body = {"community_id": place.community, "title": "越权", "starts_at": at(timedelta(hours=1)), "online": True}
    resp = requests.post(
        url(system, "alliance/meetings"), json=body | {"online_link": "https://x.example"}, headers=other, timeout=10
    )
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "community_out_of_scope"
    resp = requests.get(url(system, f"alliance/meetings/{m['id']}"), headers=other, timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = requests.post(url(system, f"alliance/meetings/{m['id']}/close"), headers=other, timeout=10)
    assert resp.status_code == 404
    resp = requests.get(url(system, f"alliance/meetings?community_id={place.community}"), headers=other, timeout=10)
    assert resp.status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": ""}, "title"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"ends_at": at(timedelta(hours=-2))}, "ends_at"),
        ({"invitees": [{"kind": "member_unit", "id": "no-such-unit"}]}, "invitees[0].id"),
        ({"invitees": [{"kind": "team", "id": "x"}]}, "invitees.0.kind"),
        ({"station_id": "no-such-station"}, "station_id"),
        ({"agenda": [{"source": "issue", "issue_id": "no-such-issue"}]}, "agenda[0].issue_id"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_scheduled(
    system: System, place: Place, worker: dict[str, str], change: dict[str, Any], field: str
) -> None:
    key = unique()
    good = {
        "community_id": place.community,
        "title": f"补排会议{key[-6:]}",
        "starts_at": at(timedelta(hours=1)),
        "station_id": place.station,
        "invitees": [{"kind": "person", "id": place.people[0]}],
        "idempotency_key": key,
    }
    bad_title = f"坏会议{key[-6:]}"
    before = listed_meetings(system, place, worker)
    resp = requests.post(
        url(system, "alliance/meetings"), json=good | {"title": bad_title, **change}, headers=worker, timeout=10
    )
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["field"] == field and err["message"]
    assert_nothing_scheduled(system, place, worker, good, bad_title, before)


def listed_meetings(system: System, place: Place, worker: dict[str, str]) -> dict[str, str]:
    """The community's meetings in the list (id -> title)."""
    got = ok(
        requests.get(
            url(system, f"alliance/meetings?community_id={place.community}&page_size=100"), headers=worker, timeout=10
        )
    )
    assert not got.get("next_page_token"), "more meetings than a page: the check would not see them all"
    return {r["id"]: r["title"] for r in got["meetings"]}


def assert_nothing_scheduled(
    system: System,
    place: Place,
    worker: dict[str, str],
    good: dict[str, Any],
    bad_title: str,
    before: dict[str, str],
) -> None:
    """A refused meeting left nothing: the good meeting with the same idempotency key is a new one (the key
    found no meeting: a refused one would have been returned), and once it is in the list (the read side has
    caught up with it), the list holds what it held before, the good one, and nothing of the refused one."""
    made = schedule_body(system, worker, good)
    assert made["title"] == good["title"] and made["id"] not in before

    def with_it() -> Any:
        found = listed_meetings(system, place, worker)
        return found if made["id"] in found else None

    after = wait_for(with_it)
    assert after[made["id"]] == good["title"] and bad_title not in after.values()
    assert {i: after.get(i) for i in before} == before  # nothing there before changed or went


def test_members_check_in_as_themselves_and_propose_items(system: System, place: Place, worker: dict[str, str]) -> None:
    m = schedule(system, place, worker)
    person = system.member_auth(T, "person", place.people[0])
    unit = system.member_auth(T, "member_unit", place.units[0])
    other_unit = system.member_auth(T, "member_unit", place.units[1])
    stranger = system.member_auth(T, "person", place.people[1])
    got = ok(requests.post(url(system, f"alliance/meetings/{m['id']}/check-in"), json={}, headers=person, timeout=10))
    [rec] = [a for a in got["attendance"] if a["person_id"] == place.people[0]]
    assert rec["status"] == "on_time" and rec["recorded_by"] == "self"
    for someone, unit_headers in ((place.people[0], unit), (place.people[1], other_unit)):  # not the unit's person
        resp = requests.post(
            url(system, f"alliance/meetings/{m['id']}/check-in"),
            json={"person_id": someone},
            headers=unit_headers,
            timeout=10,
        )
        assert resp.status_code == 400 and resp.json()["error"]["field"] == "person_id", resp.text
    got = ok(requests.get(url(system, f"alliance/meetings/{m['id']}"), headers=worker, timeout=10))
    assert [a["person_id"] for a in got["attendance"]] == [place.people[0]]  # nothing written for the units
    refused = requests.post(
        url(system, f"alliance/meetings/{m['id']}/attendance"),
        json={"unit_id": place.units[1], "person_id": place.people[1], "status": "on_time"},
        headers=worker,
        timeout=10,
    )
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "person_id", refused.text
    body = {"person_id": place.people[1]}
    got = ok(requests.post(url(system, f"alliance/meetings/{m['id']}/check-in"), json=body, headers=unit, timeout=10))
    [rec] = [a for a in got["attendance"] if a["unit_id"] == place.units[0]]
    assert rec["person_id"] == place.people[1] and rec["status"] == "on_time"
    again = requests.post(url(system, f"alliance/meetings/{m['id']}/check-in"), json={}, headers=person, timeout=10)
    assert again.status_code == 200 and len(again.json()["attendance"]) == 2  # a retry records nothing new
    resp = requests.post(url(system, f"alliance/meetings/{m['id']}/check-in"), json={}, headers=stranger, timeout=10)
    assert resp.status_code == 404  # not invited: as a missing meeting
    resp = requests.post(url(system, f"alliance/meetings/{m['id']}/check-in"), json={}, headers=worker, timeout=10)
    assert resp.status_code == 403  # staff record attendance instead

    upcoming = schedule(system, place, worker, starts_at=at(timedelta(days=2)), ends_at="")
    got = ok(
        requests.post(
            url(system, f"alliance/meetings/{upcoming['id']}/proposals"),
            json={"title": "增设电动车充电桩", "note": "居民多次反映"},
            headers=stranger,
            timeout=10,
        ),
        201,
    )
    [proposal] = got["proposals"]
    assert proposal["proposed_by"] == f"person:{place.people[1]}"
    got = ok(
        requests.post(
            url(system, f"alliance/meetings/{upcoming['id']}/proposals/{proposal['id']}/accept"),
            headers=worker,
            timeout=10,
        )
    )
    assert got["proposals"] == [] and got["agenda"][-1]["title"] == "增设电动车充电桩"
    resp = requests.post(
        url(system, f"alliance/meetings/{upcoming['id']}/cancel"), json={"reason": ""}, headers=worker, timeout=10
    )
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "reason"
    got = ok(
        requests.post(
            url(system, f"alliance/meetings/{upcoming['id']}/cancel"),
            json={"reason": "台风"},
            headers=worker,
            timeout=10,
        )
    )
    assert got["status"] == "cancelled" and got["cancel_reason"] == "台风"


def test_decisions_action_items_closure_and_minutes(system: System, place: Place, worker: dict[str, str]) -> None:
    m = schedule(system, place, worker)
    base = f"alliance/meetings/{m['id']}"
    first, second = (i["id"] for i in m["agenda"])
    ok(
        requests.post(
            url(system, f"{base}/attendance"),
            json={"person_id": place.people[0], "status": "excused"},
            headers=worker,
            timeout=10,
        )
    )
    ok(
        requests.post(
            url(system, f"{base}/attendance"),
            json={"unit_id": place.units[0], "person_id": place.people[1], "status": "on_time"},
            headers=worker,
            timeout=10,
        )
    )
    bad = requests.post(
        url(system, f"{base}/agenda/{first}/decision"),
        json={"outcome": "agreed", "votes_for": 1, "votes_against": 2},
        headers=worker,
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "outcome"
    got = ok(
        requests.post(
            url(system, f"{base}/agenda/{first}/decision"),
            json={"outcome": "agreed", "voted": True, "votes_for": 2, "votes_against": 0, "votes_abstain": 1},
            headers=worker,
            timeout=10,
        )
    )
    assert got["agenda"][0]["decision"]["outcome"] == "agreed" and got["status"] == "scheduled"
    refused = requests.post(
        url(system, f"{base}/agenda/{second}/actions"), json={"title": "x"}, headers=worker, timeout=10
    )
    assert refused.status_code == 409  # not decided: no action item
    action = {"title": "更换3号楼楼道灯", "description": "物业负责更换", "idempotency_key": "lamp"}
    got = ok(requests.post(url(system, f"{base}/agenda/{first}/actions"), json=action, headers=worker, timeout=15), 201)
    [act] = got["agenda"][0]["actions"]
    again = ok(
        requests.post(url(system, f"{base}/agenda/{first}/actions"), json=action, headers=worker, timeout=15), 201
    )
    assert [a["target_id"] for a in again["agenda"][0]["actions"]] == [act["target_id"]]  # one issue, not two
    issue = ok(requests.get(url(system, f"issues/{act['target_id']}"), headers=worker, timeout=10))["issue"]
    assert issue["origin"] == f"meeting:{m['id']}" and issue["title"] == "更换3号楼楼道灯"
    assert issue["place"]["community_id"] == place.community

    def followed() -> Any:
        one = ok(requests.get(url(system, base), headers=worker, timeout=10))
        found = one["agenda"][0]["actions"][0]
        return found if found["task_id"] and found["status"] else None

    assert wait_for(followed)["task_status"]

    closed = ok(requests.post(url(system, f"{base}/close"), headers=worker, timeout=10))
    assert closed["status"] == "ended"  # the second item has no decision yet
    statuses = {(a["unit_id"], a["person_id"]): a["status"] for a in closed["attendance"]}
    assert statuses == {
        ("", place.people[0]): "excused",
        (place.units[0], place.people[1]): "on_time",
        (place.units[1], ""): "absent",
    }
    done = ok(
        requests.post(
            url(system, f"{base}/agenda/{second}/decision"), json={"outcome": "deferred"}, headers=worker, timeout=10
        )
    )
    assert done["status"] == "minuted"

    resp = requests.get(url(system, f"{base}/minutes.docx"), headers=worker, timeout=15)
    assert resp.status_code == 200 and "wordprocessingml" in resp.headers["Content-Type"]
    doc = Document(io.BytesIO(resp.content))
    text = "\n".join(p.text for p in doc.paragraphs)
    cells = "\n".join(c.text for t in doc.tables for r in t.rows for c in r.cells)
    assert "五月联席会议 会议纪要" in text and "会议网格驿站" in text
    assert "决议：通过（表决：赞成2票，反对0票，弃权1票）" in text and "决议：暂缓" in text
    assert act["target_id"] in text and "主持人" in text and "参会代表签字" in text
    assert "物业0" in cells and "请假" in cells and "缺席" in cells
    # Names, never codes: the community's name, who attended for the unit by name, the issue's status in Chinese.
    admin = system.auth("subdistrict_admin", T)
    community_name = ok(requests.get(url(system, f"org/communities/{place.community}"), headers=admin, timeout=10))
    assert f"社区：{community_name['name_zh']}" in text and place.community not in text
    assert "党员1" in cells and place.people[1] not in cells
    [follow_line] = [p for p in text.splitlines() if act["target_id"] in p]
    status_zh = follow_line.rsplit("当前状态 ", 1)[-1].rstrip("）")
    assert status_zh in set(ISSUE_STATUS_ZH.values()), follow_line
    assert re.search(r"1\d{10}", text + cells) is None  # no phone number

    def history() -> Any:
        got = ok(
            requests.get(
                url(system, f"alliance/meetings/attendance?unit_id={place.units[1]}"), headers=worker, timeout=10
            )
        )
        return [r for r in got["records"] if r["meeting_id"] == m["id"]]

    assert wait_for(history)[0]["status"] == "absent"


def test_hot_topics_count_the_community_s_issues_of_the_last_30_days(
    system: System, place: Place, worker: dict[str, str]
) -> None:
    rules = ok(requests.get(url(system, "classification-rules"), headers=worker, timeout=10))
    code = rules["categories"][0]["code"]
    lat, lon = place.center
    for n in range(3):
        report = {
            "title": f"热点{n}",
            "description": "热点测试",
            "channel": "online",
            "category": code,
            "location": {"lat": lat + 0.001 * n, "lon": lon, "address": "热点"},
        }
        ok(requests.post(url(system, "issues"), json=report, timeout=10), 201)

    def hot() -> Any:
        got = ok(
            requests.get(
                url(system, f"alliance/meetings/hot-topics?community_id={place.community}"), headers=worker, timeout=10
            )
        )
        found = [c for c in got["categories"] if c["code"] == code and c["count"] >= 3]
        return (got, found[0]) if found else None

    got, topic = wait_for(hot)
    assert got["days"] == 30 and topic["summary_zh"].startswith(f"{topic['name_zh']} {topic['count']} 件，比上月 +")
    assert got["grids"][0]["code"] == place.grid and got["grids"][0]["name_zh"] == "会议一网格"
    resp = requests.get(url(system, "alliance/meetings/hot-topics?days=400"), headers=worker, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "days"


def test_concurrent_check_ins_of_one_meeting_lose_none(system: System, place: Place, worker: dict[str, str]) -> None:
    admin = system.auth("subdistrict_admin", T)
    people = [
        ok(
            requests.post(
                url(system, "org/people"),
                json={"community_id": place.community, "name_zh": f"并发{n}", "roles": ["volunteer"]},
                headers=admin,
                timeout=10,
            ),
            201,
        )["id"]
        for n in range(6)
    ]
    m = schedule(system, place, worker, invitees=[{"kind": "person", "id": p} for p in people])
    tokens = [system.member_auth(T, "person", p) for p in people]
    barrier = threading.Barrier(len(tokens))

    def check_in(headers: dict[str, str]) -> int:
        barrier.wait()
        path = url(system, f"alliance/meetings/{m['id']}/check-in")
        return requests.post(path, json={}, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(len(tokens)) as pool:
        assert list(pool.map(check_in, tokens)) == [200] * len(tokens)
    got = ok(requests.get(url(system, f"alliance/meetings/{m['id']}"), headers=worker, timeout=10))
    assert sorted(a["person_id"] for a in got["attendance"]) == sorted(people)


def test_an_online_meeting_needs_an_https_link(system: System, place: Place, worker: dict[str, str]) -> None:
    online = {"station_id": "", "online": True, "online_link": "https://meet.example.cn/may"}
    m = schedule(system, place, worker, **online)
    assert (m["place_kind"], m["place"], m["online_link"]) == ("online", "online", "https://meet.example.cn/may")
    assert m["station_id"] == "" and m["status"] == "scheduled"
    got = ok(requests.get(url(system, f"alliance/meetings/{m['id']}"), headers=worker, timeout=10))
    assert got["online_link"] == "https://meet.example.cn/may"

    key = unique()
    good = {
        "community_id": place.community,
        "title": f"线上会议{key[-6:]}",
        "starts_at": at(timedelta(hours=1)),
        "online": True,
        "online_link": "https://meet.example.cn/june",
        "invitees": [{"kind": "person", "id": place.people[0]}],
        "idempotency_key": key,
    }
    bad_title = f"明文链接{key[-6:]}"
    before = listed_meetings(system, place, worker)
    resp = requests.post(
        url(system, "alliance/meetings"),
        json=good | {"title": bad_title, "online_link": "http://meet.example.cn/june"},
        headers=worker,
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["field"] == "online_link" and "https" in err["message"]
    assert_nothing_scheduled(system, place, worker, good, bad_title, before)


def test_a_check_in_after_the_grace_is_late(system: System, place: Place, worker: dict[str, str]) -> None:
    m = schedule(
        system,
        place,
        worker,
        starts_at=at(timedelta(minutes=-30)),
        invitees=[{"kind": "person", "id": place.people[0]}],
    )
    assert m["grace_minutes"] < 29  # the tenant's grace (default 10 min) is over
    person = system.member_auth(T, "person", place.people[0])
    got = ok(requests.post(url(system, f"alliance/meetings/{m['id']}/check-in"), json={}, headers=person, timeout=10))
    [rec] = got["attendance"]
    assert (rec["person_id"], rec["status"], rec["recorded_by"]) == (place.people[0], "late", "self")
    assert got["counts"]["late"] == 1 and got["counts"]["on_time"] == 0

    def history() -> Any:
        found = ok(
            requests.get(
                url(system, f"alliance/meetings/attendance?person_id={place.people[0]}"), headers=person, timeout=10
            )
        )
        return [r for r in found["records"] if r["meeting_id"] == m["id"]]

    assert wait_for(history)[0]["status"] == "late"


def test_nothing_is_decided_before_the_meeting_starts(system: System, place: Place, worker: dict[str, str]) -> None:
    m = schedule(system, place, worker, starts_at=at(timedelta(hours=3)), ends_at="")
    item = m["agenda"][1]["id"]
    resp = requests.post(
        url(system, f"alliance/meetings/{m['id']}/agenda/{item}/decision"),
        json={"outcome": "agreed"},
        headers=worker,
        timeout=10,
    )
    assert resp.status_code == 409, resp.text
    err = resp.json()["error"]
    assert err["code"] == "meeting_not_started" and "会议尚未开始" in err["message"] and "not started" in err["message"]
    got = ok(requests.get(url(system, f"alliance/meetings/{m['id']}"), headers=worker, timeout=10))
    assert [i.get("decision") for i in got["agenda"]] == [None, None] and got["version"] == m["version"]
