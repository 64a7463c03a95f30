"""Horizontal scale on the running stack: a second process of every service with a Kafka consumer group
(intake, dispatch, evaluation, publication, alliance and the projector), started as an operator would, with
`deploy/local/services.sh start NAME@2` (its own gRPC and metrics ports), joins the first one's groups.

- Kafka shares every group's partitions between the two processes: the groups' descriptions (the broker's own
  answer, AdminClient.describe_groups) show partitions assigned to members of both, each partition to one.
- Under a load filed through the gateway (issues; and unit ratings, fund allocations and publication drafts, so
  that every group's topics carry records), both processes of every group handle records: their counters,
  scraped from each process's own metrics port, grow in both.
- Nothing is processed twice: every issue got exactly one task and one call (write side, the events on Kafka, the
  read side through the gateway), and the dispatch processes together handled each IssueClassified once.
- A second process killed (-9) during a load: the first takes its partitions within the session timeout, and every
  issue filed around the kill still gets exactly one task and one call.
- Stopping the second processes leaves every group to the first processes, as the stack was.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import requests
from google.protobuf.message import Message
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import intake_events_pb2 as iev
from kafka import KafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from services.alliance.ledger import consumer as alliance_ledger
from services.common.events import CloudEvent, PoisonEvent, topic_for
from services.dispatch import consumer as dispatch_consumer
from services.dispatch import matching_consumer, webhooks
from services.evaluation.measures import consumer as measures
from services.evaluation.ratings import consumer as ratings
from services.intake import consumer as intake_consumer
from services.org.seed import Rect
from services.projector.__main__ import PROJECTIONS
from services.publication.boards import consumer as boards
from tests.conftest import SERVICES_SH, System, read_topic, unique, wait_for

M = TypeVar("M", bound=Message)

# Six more processes start and stop in this module: on a busy 2-core machine that alone can take minutes.
pytestmark = pytest.mark.timeout(900)

T = "caiyuan"
# A place of its own, far from the other tests' grids: the load's issues are placed in this module's community.
CENTRE = (36.2600, 117.2600)
SPACING = 0.0025  # about 280 m by 225 m between two issues: never within the duplicate distance (100 m) of another
# Every process with a Kafka consumer group, and its groups.
GROUPS: dict[str, tuple[str, ...]] = {
    "intake": (intake_consumer.GROUP,),
    "dispatch": (dispatch_consumer.GROUP, matching_consumer.GROUP, webhooks.GROUP),
    "evaluation": (measures.GROUP, ratings.GROUP),
    "publication": (boards.GROUP,),
    "alliance": (alliance_ledger.GROUP,),
    "projector": tuple(p.group for p in PROJECTIONS),
}
SECOND = tuple(f"{service}@2" for service in GROUPS)
CLASSIFIED = "hongling.events.v1.IssueClassified"
# Every issue this module filed in its community (the read side's lists of the community hold exactly these).
FILED: list[str] = []


# ---------------------------------------------------------------- processes, groups, metrics


def pid_of(system: System, name: str) -> int | None:
    path = Path(system.settings_state_dir) / "run" / f"{name}.pid"
    return int(path.read_text()) if path.exists() else None


def metrics_port(name: str) -> int:
    """The process's metrics port, as services.sh computes it (`services.sh ports NAME`: "grpc metrics")."""
    out = subprocess.run(["bash", str(SERVICES_SH), "ports", name], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[1])


def assignment(admin: KafkaAdminClient, group: str) -> dict[int, set[tuple[str, int]]]:
    """The group's members' partitions by process id (the consumers' client ids end with it:
    services/common/consumer.py member_client_id)."""
    found: dict[int, set[tuple[str, int]]] = {}
    for member in admin.describe_groups([group])[group]["members"]:
        pid = int(member["client_id"].rsplit("-", 1)[1])
        held = found.setdefault(pid, set())
        given = member["member_assignment"]  # empty (not decoded) while the group rebalances
        for part in given["assigned_partitions"] if isinstance(given, dict) else ():
            held.update((part["topic"], p) for p in part["partitions"])
    return found


def subscribed(admin: KafkaAdminClient, group: str) -> set[tuple[str, int]]:
    """Every partition of the topics the group's members subscribe to."""
    members = admin.describe_groups([group])[group]["members"]
    topics = {t for m in members if isinstance(m["member_metadata"], dict) for t in m["member_metadata"]["topics"]}
    return {(t["name"], p["partition_index"]) for t in admin.describe_topics(sorted(topics)) for p in t["partitions"]}


def held_by(admin: KafkaAdminClient, group: str, pids: set[int]) -> dict[int, set[tuple[str, int]]] | None:
    """The assignment when exactly these processes hold the group's partitions, each process some, every
    partition of its topics assigned once; else None (a rebalance under way, a member missing)."""
    found = assignment(admin, group)
    if set(found) != pids or not all(found.values()):
        return None
    every = [tp for held in found.values() for tp in held]
    if len(every) != len(set(every)) or set(every) != subscribed(admin, group):
        return None
    return found


def settled(
    admin: KafkaAdminClient, group: str, pids: set[int], timeout: float = 300
) -> dict[int, set[tuple[str, int]]]:
    """held_by, waited for (a rebalance takes a few seconds, a member's start on a busy machine longer); on the
    deadline the test fails naming the group and what its members held."""
    until = time.monotonic() + timeout
    while (found := held_by(admin, group, pids)) is None:
        if time.monotonic() > until:
            pytest.fail(f"{group}: not held by exactly {sorted(pids)} in {timeout} s: {assignment(admin, group)}")
        time.sleep(1)
    return found


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def records_seen(samples: list[tuple[str, dict[str, str], float]], group: str) -> float:
    """Records a process's consumer of the group took in (every outcome): the services' consumers count them in
    hongling_events_consumed_total, the measures' consumer in hongling_measures_events_total, the projections in
    hongling_projection_states_total."""
    projections = {p.group: p.name for p in PROJECTIONS}
    if group in projections:
        return sum(
            v
            for n, labels, v in samples
            if n == "hongling_projection_states_total" and labels.get("projection") == projections[group]
        )
    if group == measures.GROUP:
        return sum(v for n, _labels, v in samples if n == "hongling_measures_events_total")
    return sum(v for n, labels, v in samples if n == "hongling_events_consumed_total" and labels.get("group") == group)


def classified_handled(samples: list[tuple[str, dict[str, str], float]]) -> float:
    return sum(
        v
        for n, labels, v in samples
        if n == "hongling_events_consumed_total"
        and labels.get("group") == dispatch_consumer.GROUP
        and labels.get("tenant") == T
        and labels.get("type") == CLASSIFIED
        and labels.get("outcome") == "handled"
    )


# ---------------------------------------------------------------- the load, through the gateway


def url(system: System, path: str) -> str:
    return f"{system.gateway}/api/v1/tenants/{T}/{path}"


def created(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture(scope="module")
def community(system: System) -> str:
    """This module's community, with one large grid around CENTRE."""
    admin = system.auth("subdistrict_admin", T)
    cid = str(
        created(
            requests.post(
                url(system, "org/communities"), json={"name_zh": f"扩容社区{unique()[-6:]}"}, headers=admin, timeout=15
            )
        )["id"]
    )
    lat, lon = CENTRE
    boundary = Rect(lon - 0.02, lat - 0.02, lon + 0.02, lat + 0.02).geojson()
    grid = {"community_id": cid, "name_zh": "扩容网格", "boundary_geojson": boundary}
    created(requests.post(url(system, "org/grids"), json=grid, headers=admin, timeout=15))
    return cid


class Load:
    """Issues filed through the gateway, each at its own spot of the module's grid (never a duplicate)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.spot = 0
        self.lock = threading.Lock()

    def file(self) -> str:
        with self.lock:
            i, self.spot = self.spot, self.spot + 1
        lat, lon = CENTRE[0] - 0.019 + SPACING * (i // 16), CENTRE[1] - 0.019 + SPACING * (i % 16)  # 16 x 16 spots
        body = {
            "title": f"路灯不亮 {i}",
            "description": "小区路灯坏了，晚上看不见路。",
            "channel": "resident_report",
            "category": "road_facility",
            "location": {"lat": lat, "lon": lon, "address": f"扩容社区{i}号楼"},
            "idempotency_key": unique("scale"),
        }
        for _attempt in range(5):  # a 503 with Retry-After is the gateway's answer while a service restarts
            resp = requests.post(url(self.system, "issues"), json=body, timeout=30)
            if resp.status_code != 503:
                break
        issue = str(created(resp)["issue"]["id"])
        FILED.append(issue)
        return issue

    def many(self, n: int) -> list[str]:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda _i: self.file(), range(n)))


def other_records(system: System, community: str, n: int) -> None:
    """Records for the groups issues do not reach: unit ratings (the evaluation topic: evaluation's ratings,
    publication's boards), fund allocations (alliance's state topic) and publication drafts (publication's)."""
    admin = system.auth("subdistrict_admin", T)
    worker = system.worker_auth(T, community)
    unit = {
        "community_id": community,
        "name_zh": f"扩容物业{unique()}",
        "kind": "property_company",
        "joined_on": "2024-05-01",
    }
    unit_id = created(requests.post(url(system, "org/member-units"), json=unit, headers=admin, timeout=15))["id"]

    def rate(i: int) -> None:
        rep = {"community_id": community, "name_zh": f"居民代表{i}", "roles": ["resident_representative"]}
        person = created(requests.post(url(system, "org/people"), json=rep, headers=admin, timeout=15))["id"]
        body = {"unit_id": unit_id, "score": 4, "rater_person_id": person, "comment": "好"}
        created(requests.post(url(system, "evaluation/unit-ratings"), json=body, headers=worker, timeout=15))

    def allocate(i: int) -> None:
        body = {"community_id": community, "fund": "resident_service", "amount_fen": 100 + i, "source": "街道拨款"}
        created(requests.post(url(system, "alliance/fund-allocations"), json=body, headers=worker, timeout=15))

    def draft(i: int) -> None:
        body = {"kind": "monthly", "scope": community, "period": f"{2024 + i // 12}-{i % 12 + 1:02d}"}
        created(requests.post(url(system, "publications"), json=body, headers=admin, timeout=60))

    with ThreadPoolExecutor(4) as pool:
        for f in (rate, allocate, draft):
            list(pool.map(f, range(n)))


# ---------------------------------------------------------------- checks of the effects


def events_on(system: System, service: str, message: type[M]) -> Iterator[tuple[CloudEvent, M]]:
    """This module's tenant's events of one type on a service's topic, from its start, each with its payload.
    Records that are no such event (the poison other tests put there on purpose: no envelope, a corrupt payload;
    the consumers dead-letter them) are passed over."""
    wanted = message.DESCRIPTOR.full_name
    for record in read_topic(system.settings.kafka_bootstrap, topic_for(service)):
        try:
            event = CloudEvent.from_record(record.headers, record.value)
            if event.type == wanted and event.tenant == T:
                yield event, cast(M, event.decode(message))
        except PoisonEvent:
            continue


def one_task_and_call_each(system: System, mongo_client: MongoClient[Any], issues: list[str]) -> None:
    """Every issue has exactly one task and is in exactly one call, on the write side and in the events."""
    db = mongo_client[f"hl_dispatch_{T}"]

    def all_there() -> bool:
        return db["tasks"].count_documents({"issue_id": {"$in": issues}}) == len(issues)

    wait_for(all_there, timeout=300, interval=1)
    tasks = list(db["tasks"].find({"issue_id": {"$in": issues}}, {"issue_id": 1}))
    assert sorted(t["issue_id"] for t in tasks) == sorted(issues)
    calls: dict[str, list[str]] = {}
    for w in db["whistles"].find({"issue_ids": {"$in": issues}}, {"issue_ids": 1}):
        for issue in w["issue_ids"]:
            calls.setdefault(issue, []).append(w["_id"])
    assert {i: len(calls.get(i, [])) for i in issues} == dict.fromkeys(issues, 1)
    # On Kafka: one WhistleBlown naming each issue. A relay may send an event twice (two relays of dispatch read
    # the same outbox markers: at least once), always with its one id; consumers drop the repeat by that id.
    wanted = set(issues)

    def blown() -> dict[str, set[str]] | None:
        found: dict[str, set[str]] = {}
        for event, msg in events_on(system, "dispatch", dev.WhistleBlown):
            for issue in wanted.intersection(msg.issue_ids):
                found.setdefault(issue, set()).add(event.id)
        return found if set(found) == wanted else None

    ids = wait_for(blown, timeout=180, interval=2)
    assert {i: len(e) for i, e in ids.items()} == dict.fromkeys(issues, 1)


def listed(system: System, community: str, what: str) -> int:
    """How many of the community's issues or tasks the read side lists (through the gateway, every page)."""
    admin = system.auth("subdistrict_admin", T)
    count, token = 0, ""
    while True:
        params = {"community_id": community, "page_size": 100 if what == "issues" else 200, "page_token": token}
        resp = requests.get(url(system, what), params=params, headers=admin, timeout=15)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        count += len(body[what])
        token = body.get("next_page_token") or ""
        if not token:
            return count


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def admin_client(system: System) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=system.settings.kafka_bootstrap, client_id="test-scale-out")
    yield client
    client.close()


@pytest.fixture(scope="module")
def second(system: System, admin_client: KafkaAdminClient) -> Iterator[dict[str, set[int]]]:
    """The second processes, running beside the first; stopped at the end whatever happened (their pid files
    gone: the stack as it was). Yields each service's two process ids."""
    system.start(*SECOND)
    pids = {s: {pid_of(system, s), pid_of(system, f"{s}@2")} for s in GROUPS}
    assert all(None not in p for p in pids.values())
    yield pids  # type: ignore[misc]
    system.services_sh("stop", *SECOND)


def test_a_second_process_of_every_consumer_service_shares_its_groups_partitions(
    system: System, second: dict[str, set[int]], admin_client: KafkaAdminClient
) -> None:
    for service, groups in GROUPS.items():
        for group in groups:
            found = settled(admin_client, group, second[service])
            sizes = sorted(len(held) for held in found.values())
            # 6 partitions a topic (services/common/topics.py): split 3 + 3 (dispatch's group: 3 members a process)
            assert sizes[0] >= 1 and sum(sizes) == len(subscribed(admin_client, group)), (group, found)
    # No consumer group of these processes is left out of the list above.
    ours = set().union(*second.values())
    active = {g["group_id"] for g in admin_client.list_groups()}
    run_by_ours = {g for g in active if set(assignment(admin_client, g)) & ours}
    assert run_by_ours == {g for gs in GROUPS.values() for g in gs}


def test_both_processes_handle_the_load_and_nothing_is_handled_twice(
    system: System,
    second: dict[str, set[int]],
    community: str,
    admin_client: KafkaAdminClient,
    mongo_client: MongoClient[Any],
) -> None:
    for service, groups in GROUPS.items():
        for group in groups:
            settled(admin_client, group, second[service])
    members = {g: assignment(admin_client, g) for gs in GROUPS.values() for g in gs}
    processes = [name for s in GROUPS for name in (s, f"{s}@2")]
    ports = {name: metrics_port(name) for name in processes}
    before = {name: scrape(port) for name, port in ports.items()}

    issues = Load(system).many(48)
    other_records(system, community, 12)
    one_task_and_call_each(system, mongo_client, issues)

    # Both processes of every group took records in (their own counters, from their own metrics ports).
    def grown() -> dict[str, list[float]] | None:
        after = {name: scrape(port) for name, port in ports.items()}
        seen = {
            group: [records_seen(after[n], group) - records_seen(before[n], group) for n in (s, f"{s}@2")]
            for s, groups in GROUPS.items()
            for group in groups
        }
        return seen if all(min(v) > 0 for v in seen.values()) else None

    seen = wait_for(grown, timeout=180, interval=2)
    assert all(min(v) > 0 for v in seen.values()), seen
    # Every IssueClassified handled once by the group: the two dispatch processes' counts add up to the issues
    # (a rebalance during the load would redeliver what was not committed yet; none happened if the members
    # are the same ones).
    # Records, not events: with two intake relays an event may be on the topic twice (same id), and IssueClassified
    # is handled without a processed mark (idempotent by the task's _id), so each record counts once.
    records: dict[str, int] = {}
    for event, classified in events_on(system, "intake", iev.IssueClassified):
        if classified.issue_id in issues:
            records[event.id] = records.get(event.id, 0) + 1
    assert len(records) == len(issues)  # one IssueClassified per issue
    handled = [classified_handled(scrape(ports[n])) - classified_handled(before[n]) for n in ("dispatch", "dispatch@2")]
    assert min(handled) > 0, handled
    if assignment(admin_client, dispatch_consumer.GROUP) == members[dispatch_consumer.GROUP]:
        assert sum(handled) == sum(records.values()), (handled, len(records), sum(records.values()))
    # The read side (both projector processes) lists each issue and task once.
    wait_for(lambda: listed(system, community, "tasks") == len(FILED), timeout=180, interval=1)
    assert listed(system, community, "issues") == len(FILED)


def test_a_killed_process_leaves_its_partitions_to_the_other_and_nothing_is_lost_or_doubled(
    system: System,
    second: dict[str, set[int]],
    community: str,
    admin_client: KafkaAdminClient,
    mongo_client: MongoClient[Any],
) -> None:
    pid = pid_of(system, "dispatch")
    assert pid is not None
    first = {pid}
    settled(admin_client, dispatch_consumer.GROUP, second["dispatch"])
    load = Load(system)
    load.spot = 100  # spots of their own
    filed: list[str] = []
    done = threading.Event()

    failed: list[BaseException] = []

    def steady() -> None:
        try:
            while not done.is_set() and len(filed) < 120:
                filed.append(load.file())
        except BaseException as exc:  # the test fails on it below
            failed.append(exc)

    thread = threading.Thread(target=steady, name="scale-load")
    thread.start()
    try:
        wait_for(lambda: len(filed) >= 15, timeout=120)
        system.kill("dispatch@2")
        killed_at = len(filed)
        # The first process takes every partition of the group once the broker gave up on the killed members.
        for group in GROUPS["dispatch"]:
            settled(admin_client, group, first)
        wait_for(lambda: len(filed) >= killed_at + 15, timeout=120)
    finally:
        done.set()
        thread.join(timeout=120)
    assert not failed, failed
    assert len(filed) > killed_at
    one_task_and_call_each(system, mongo_client, filed)
    wait_for(lambda: listed(system, community, "tasks") == len(FILED), timeout=180, interval=1)
    assert listed(system, community, "issues") == len(FILED)


def test_stopping_the_second_processes_leaves_every_group_to_the_first(
    system: System, second: dict[str, set[int]], admin_client: KafkaAdminClient
) -> None:
    system.services_sh("stop", *SECOND)
    assert all(pid_of(system, name) is None for name in SECOND)
    for service, groups in GROUPS.items():
        first = {pid_of(system, service)}
        for group in groups:
            settled(admin_client, group, first)  # type: ignore[arg-type]
