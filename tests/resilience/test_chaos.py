"""Resilience under a steady load (issue 20): while reports go through the gateway at a modest, steady rate,
every process is killed (-9) in turn and restarted, then the Kafka broker, then the database (FerretDB and
the PostgreSQL under it). Afterwards, polling to generous deadlines: every accepted report exists exactly once,
every issue got exactly one task and one whistle (集结号), no task was double-assigned (two members racing
for its lead place, retrying through the outages), every deadline that passed during the chaos was missed
and escalated exactly once, the audit chain verifies and holds every reveal that was answered, and the
gateway answered 503 with Retry-After, never another 5xx, while a dependency was down.

A second test kills dispatch with report-in and completion timers pending (and once more while they fire)
and shows that each fires exactly once after the restart.

Loopback only: the test stack's own processes (deploy/local/services.sh, deploy/local/stack.sh). Each test
restores what it stopped in `finally` and waits until every service is SERVING again, so the modules after
this one find the stack as it was. The figures (accepted, 503s, recovery per kill) go to the test's output
and to $HONGLING_STATE_DIR/logs/chaos-figures.json.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError
from pymongo import MongoClient

from services.common.audit import shared_log
from services.common.events import CloudEvent, topic_for
from services.dispatch.domain import task_id_for_issue, whistle_id_for_issue
from services.org.seed import Rect
from tests.conftest import REPO, System, read_topic, unique, wait_for

T = "qiujiadian"
# A place of its own, away from every other test's (a new one each run: an earlier run's issues on the same
# stack are never duplicates of this run's), large enough for a few thousand reports 110 m apart (the
# duplicate distance is 100 m).
CENTER = (round(random.uniform(36.22, 36.28), 4), round(random.uniform(117.20, 117.30), 4))
HALF = 0.03
SPOT_ROWS, SPOT_COLS, SPOT_STEP_M = 58, 46, 110
STACK_SH = REPO / "deploy" / "local" / "stack.sh"
GRPC_PROCESSES = ("org", "intake", "dispatch", "evaluation", "publication", "alliance", "projector", "frontdoor")
# Killed in turn: every process of the local deployment (the gateway last: while it is down the load only
# meets refused connections).
KILLED = (*GRPC_PROCESSES, "gateway")
# How many reports get deadlines that pass during the chaos, and how far apart they fall due.
DEADLINE_ISSUES = 10
DEADLINE_SPACING_S = 6.0
FIGURES: dict[str, Any] = {}


# ---------------------------------------------------------------- the place and the people


@dataclass(frozen=True)
class Area:
    community_id: str
    grid_id: str
    unit_id: str  # a member unit serving the grid: targeted by every call there
    racers: tuple[str, str]  # two volunteers who race for lead places
    revealed: str  # a person with a phone, revealed again and again (each reveal is an audit entry)
    worker: dict[str, str]  # the community worker's Authorization header


def _created(resp: requests.Response) -> str:
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    lat, lon = CENTER
    admin = system.auth("subdistrict_admin", T)
    base = f"{system.gateway}/api/v1/tenants/{T}/org"

    def org(collection: str, body: dict[str, Any]) -> str:
        return _created(requests.post(f"{base}/{collection}", json=body, headers=admin, timeout=30))

    community = org("communities", {"id": unique("chaos"), "name_zh": f"韧性测试社区{unique()[-4:]}"})
    boundary = Rect(lon - HALF, lat - HALF, lon + HALF, lat + HALF).geojson()
    grid = org("grids", {"community_id": community, "name_zh": "韧性测试网格", "boundary_geojson": boundary})
    unit = org(
        "member-units",
        {
            "community_id": community,
            "name_zh": f"物业公司{unique()[-4:]}",
            "kind": "property_company",
            "serves_grid_ids": [grid],
            "joined_on": "2024-05-01",
        },
    )
    people = [
        org("people", {"community_id": community, "grid_id": grid, "name_zh": f"志愿者{n}", "roles": ["volunteer"]})
        for n in range(2)
    ]
    revealed = org(
        "people",
        {
            "community_id": community,
            "grid_id": grid,
            "name_zh": "留痕居民",
            "roles": ["volunteer"],
            "phone": f"139{random.randrange(10**8):08d}",
        },
    )
    return Area(community, grid, unit, (people[0], people[1]), revealed, system.worker_auth(T, community))


_spots = itertools.count()


def next_spot() -> tuple[float, float] | None:
    """A point of the area 150 m from every other report's (None once the lattice is used up)."""
    n = next(_spots)
    if n >= SPOT_ROWS * SPOT_COLS:
        return None
    lat, lon = CENTER
    north = (n % SPOT_ROWS) * SPOT_STEP_M - (SPOT_ROWS - 1) * SPOT_STEP_M / 2
    east = (n // SPOT_ROWS) * SPOT_STEP_M - (SPOT_COLS - 1) * SPOT_STEP_M / 2
    return round(lat + north / 111_320, 6), round(lon + east / (111_320 * math.cos(math.radians(lat))), 6)


# ---------------------------------------------------------------- the load


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange of the load (status None: no answer — refused connection, reset or timeout)."""

    what: str  # report | claim | reveal
    sent: float  # time.monotonic() when sent
    took: float
    status: int | None
    retry_after: str | None
    error: str = ""


@dataclass
class Load:
    """Background threads driving the gateway as its users would, recording every answer.

    - reporters file issues (a few a second in all), each with its own idempotency key, and retry a report
      after a 503 (waiting its Retry-After) or a lost connection with the same key until it is accepted;
    - a claimer lets two members race for the lead place of every third accepted issue's task, each
      retrying through outages;
    - an auditor reveals a person's phone about once a second (each answered reveal is an audit entry).
    """

    system: System
    area: Area
    reporters: int = 2
    pause_s: float = 3.0  # between one lane's reports: a report every two seconds or so in all
    answers: list[Answer] = field(default_factory=list)
    # idempotency key -> title, and the issue id of each key accepted (every 201 for the key must agree)
    titles: dict[str, str] = field(default_factory=dict)
    accepted: dict[str, str] = field(default_factory=dict)
    accepted_at: dict[str, float] = field(default_factory=dict)
    disagreements: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    claim_wins: dict[str, set[str]] = field(default_factory=dict)  # task id -> racers answered 201
    reveals: list[str] = field(default_factory=list)  # X-Request-Id of every reveal answered 200
    unclaimed_first: int = DEADLINE_ISSUES  # the first reports accepted are never claimed (their deadlines pass)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._claim_queue: list[str] = []
        self._threads: list[threading.Thread] = []

    # ---- bookkeeping

    def _record(self, what: str, sent: float, resp: requests.Response | None, error: str = "") -> None:
        answer = Answer(
            what,
            sent,
            time.monotonic() - sent,
            resp.status_code if resp is not None else None,
            resp.headers.get("Retry-After") if resp is not None else None,
            error,
        )
        with self._lock:
            self.answers.append(answer)

    def _call(self, what: str, method: str, url: str, **kw: Any) -> requests.Response | None:
        sent = time.monotonic()
        try:
            resp = requests.request(method, url, timeout=60, **kw)
        except requests.RequestException as exc:
            self._record(what, sent, None, type(exc).__name__)
            return None
        self._record(what, sent, resp)
        return resp

    def answered(self, what: str | None = None, after: float = 0.0) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.sent >= after and (what is None or a.what == what)]

    def accepted_after(self, t: float) -> bool:
        with self._lock:
            return any(at >= t for at in self.accepted_at.values())

    @staticmethod
    def _wait(resp: requests.Response | None) -> float:
        """How long to wait before a retry: the Retry-After asked for (within reason), else a moment."""
        if resp is not None and resp.status_code == 503:
            try:
                return min(max(float(resp.headers.get("Retry-After") or 1), 0.2), 5.0)
            except ValueError:
                return 1.0
        return 0.5

    # ---- reporters

    def _report(self, lane: int) -> None:
        url = f"{self.system.gateway}/api/v1/tenants/{T}/issues"
        while not self._stop.is_set():
            spot = next_spot()
            if spot is None:
                return
            key = unique("chaos")
            title = f"楼道灯不亮 {key}"
            with self._lock:
                self.titles[key] = title
            body = {
                "title": title,
                "description": "韧性测试：楼道灯不亮 (resilience test report)",
                "channel": "grid_patrol",
                "category": "property_repair",
                "location": {"lat": spot[0], "lon": spot[1], "address": "韧性测试社区"},
                "idempotency_key": key,
            }
            # Retry until accepted; a report under way when the load stops still gets a minute to get through.
            give_up = float("inf")
            while True:
                resp = self._call("report", "POST", url, json=body, headers=self.area.worker)
                if resp is not None and resp.status_code == 201:
                    issue_id = resp.json()["issue"]["id"]
                    with self._lock:
                        first = self.accepted.setdefault(key, issue_id)
                        if first != issue_id:
                            self.disagreements.append(f"{key}: {first} then {issue_id}")
                        self.accepted_at.setdefault(key, time.monotonic())
                        if len(self.accepted) > self.unclaimed_first and len(self.accepted) % 3 == 0:
                            self._claim_queue.append(issue_id)
                    break
                if resp is not None and resp.status_code != 503:
                    with self._lock:
                        self.unexpected.append(f"report {key}: {resp.status_code} {resp.text[:300]}")
                    break
                if self._stop.is_set():
                    give_up = min(give_up, time.monotonic() + 60)
                if time.monotonic() > give_up:
                    with self._lock:
                        self.gave_up.append(key)
                    break
                time.sleep(self._wait(resp))
            time.sleep(self.pause_s)

    # ---- claims: two members race for the lead place

    def _claim_as(self, task_id: str, racer: str, headers: dict[str, str], start: threading.Barrier) -> None:
        url = f"{self.system.gateway}/api/v1/tenants/{T}/tasks/{task_id}/claims"
        start.wait()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            resp = self._call("claim", "POST", url, json={"role": "lead"}, headers=headers)
            if resp is not None and resp.status_code == 201:
                with self._lock:
                    self.claim_wins.setdefault(task_id, set()).add(racer)
                return
            if resp is not None and resp.status_code == 409:
                return  # the other one has it
            if resp is not None and resp.status_code not in (404, 503):  # 404: dispatch has not opened it yet
                with self._lock:
                    self.unexpected.append(f"claim {task_id}: {resp.status_code} {resp.text[:300]}")
                return
            time.sleep(self._wait(resp))

    def _claims(self) -> None:
        racers = [(r, self.system.member_auth(T, "person", r)) for r in self.area.racers]
        while True:
            with self._lock:
                issue_id = self._claim_queue.pop(0) if self._claim_queue else None
            if issue_id is None:
                if self._stop.is_set() and not any(t.is_alive() for t in self._threads[: self.reporters]):
                    return
                time.sleep(0.2)
                continue
            task_id = task_id_for_issue(issue_id)
            with self._lock:
                self.claim_wins.setdefault(task_id, set())
            start = threading.Barrier(len(racers))
            pair = [threading.Thread(target=self._claim_as, args=(task_id, r, h, start)) for r, h in racers]
            for th in pair:
                th.start()
            for th in pair:
                th.join()

    # ---- reveals (audit entries)

    def _reveal(self) -> None:
        url = f"{self.system.gateway}/api/v1/tenants/{T}/org/people/{self.area.revealed}?reveal=true"
        while not self._stop.is_set():
            resp = self._call("reveal", "GET", url, headers=self.area.worker)
            if resp is not None and resp.status_code == 200:
                with self._lock:
                    self.reveals.append(resp.headers["X-Request-Id"])
            elif resp is not None and resp.status_code != 503:
                with self._lock:
                    self.unexpected.append(f"reveal: {resp.status_code} {resp.text[:300]}")
            time.sleep(1.0)

    # ---- running

    def start(self) -> None:
        self._threads = [
            *(threading.Thread(target=self._report, args=(n,), daemon=True) for n in range(self.reporters)),
            threading.Thread(target=self._claims, daemon=True),
            threading.Thread(target=self._reveal, daemon=True),
        ]
        for th in self._threads:
            th.start()

    def stop(self) -> None:
        """Stop filing new reports; reports and claims under way finish (or give up after their deadline)."""
        self._stop.set()
        for th in self._threads:
            th.join(timeout=240)
        assert not any(th.is_alive() for th in self._threads), "the load did not stop within 4 minutes"


# ---------------------------------------------------------------- the stack


def stack_sh(*args: str) -> None:
    """deploy/local/stack.sh, with start-up deadlines for a busy shared machine (Kafka took 77 s to start on
    one with 30 processes wanting its two cores; the script's default gives up at 90 s)."""
    env = dict(os.environ)
    for name, seconds in (("KAFKA", 300), ("POSTGRES", 300), ("FERRETDB", 120)):
        var = f"HONGLING_{name}_START_TIMEOUT"
        env[var] = str(max(seconds, int(env.get(var) or 0)))
    subprocess.run(["bash", str(STACK_SH), *args], check=True, cwd=REPO, stdout=subprocess.DEVNULL, env=env)


def serving(system: System) -> bool:
    """Is every gRPC process SERVING and the gateway ready?"""
    for name in GRPC_PROCESSES:
        port = system.settings.frontdoor_port if name == "frontdoor" else None
        target = f"127.0.0.1:{port}" if port else system.settings.address(name)
        try:
            with grpc.insecure_channel(target) as ch:
                got = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        if got.status != health_pb2.HealthCheckResponse.SERVING:
            return False
    try:
        return requests.get(f"{system.gateway}/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def consumers_caught_up(bootstrap: str) -> bool:
    """Has every consumer group with members (the services', the projector's) consumed every topic it reads
    to its end? Groups left without members (by earlier tests) are not waited for."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-chaos")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        found = admin.list_groups(states_filter=["Stable"])
        groups = [g["group_id"] if isinstance(g, dict) else g[0] for g in found]
        if not groups:
            return False  # the services' groups are always there: not rebalanced yet
        for offsets in admin.list_group_offsets({g: None for g in groups}).values():
            committed = {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}
            for topic in {tp.topic for tp in committed}:
                consumer.partitions_for_topic(topic)  # the partitions' leaders, before asking them for offsets
            ends = consumer.end_offsets(list(committed))
            if any(ends[tp] > at for tp, at in committed.items()):
                return False
        return True
    except (KafkaError, KeyError):
        # KeyError: kafka-python leaves out of end_offsets' answer a partition whose leader it does not know
        # yet (seen after the broker's restart): not known to be caught up, asked again.
        return False
    finally:
        consumer.close()
        admin.close()


def restore(system: System) -> None:
    """Whatever a test stopped runs again (both scripts start only what is not running) and serves, and the
    services have consumed what the test left them, so the next module finds a quiet stack."""
    stack_sh("start")
    system.start()
    wait_for(lambda: serving(system), timeout=180, interval=0.5)
    wait_for(lambda: consumers_caught_up(system.settings.kafka_bootstrap), timeout=300, interval=2.0)


def progress(message: str) -> None:
    """A line in the test's output (pytest -s) with the time: what the chaos is doing."""
    print(f"[chaos {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------- reading the outcome


def dispatch_db(mongo: MongoClient[Any]) -> Any:
    return mongo[f"hl_dispatch_{T}"]


def travel(mongo: MongoClient[Any], issue_id: str, due: datetime) -> None:
    """Move the report-in deadline of the issue's call and the completion deadline of its task (and their
    timers) to `due`, as the tests of dispatch do to see a deadline pass (services/dispatch/deadlines.py: the
    handlers act only once the deadline stored on the document has passed)."""
    db = dispatch_db(mongo)
    task_id, whistle_id = task_id_for_issue(issue_id), whistle_id_for_issue(issue_id)
    db["whistles"].update_one({"_id": whistle_id}, {"$set": {"report_in_by": due}})
    db["tasks"].update_one({"_id": task_id}, {"$set": {"complete_by": due}})
    for key in (f"w:{whistle_id}", f"t:{task_id}"):
        db["timers"].update_one({"_id": key}, {"$set": {"due_at": due, "next_at": due}})


def timers_exist(mongo: MongoClient[Any], issue_ids: list[str]) -> bool:
    keys = [k for i in issue_ids for k in (f"w:{whistle_id_for_issue(i)}", f"t:{task_id_for_issue(i)}")]
    return dispatch_db(mongo)["timers"].count_documents({"_id": {"$in": keys}}) == len(keys)


def deadlines_passed(mongo: MongoClient[Any], issue_ids: list[str]) -> bool:
    """Has every call closed its report-in and every task gone up to the subdistrict?"""
    db = dispatch_db(mongo)
    whistles = db["whistles"].find(
        {"_id": {"$in": [whistle_id_for_issue(i) for i in issue_ids]}}, {"report_in_closed": 1}
    )
    tasks = db["tasks"].find({"_id": {"$in": [task_id_for_issue(i) for i in issue_ids]}}, {"escalation_level": 1})
    closed = sum(1 for w in whistles if w.get("report_in_closed"))
    escalated = sum(1 for t in tasks if t.get("escalation_level"))
    return closed == len(issue_ids) and escalated == len(issue_ids)


def deadline_events(system: System, issue_ids: list[str]) -> dict[str, Counter[str]]:
    """Per issue, how many distinct events (by CloudEvent id: a record relayed twice by the outbox is one
    event) of each deadline kind its call and task published."""
    keys = {}
    for i in issue_ids:
        keys[f"{T}:{whistle_id_for_issue(i)}".encode()] = i
        keys[f"{T}:{task_id_for_issue(i)}".encode()] = i
    seen: dict[str, dict[str, set[str]]] = {i: {} for i in issue_ids}
    for r in read_topic(system.settings.kafka_bootstrap, topic_for("dispatch")):
        issue_id = keys.get(r.key)
        if issue_id is None:
            continue
        ce = CloudEvent.from_record(r.headers, r.value)
        kind = ce.type.rsplit(".", 1)[-1]
        if kind == "DeadlineMissed":
            from hongling.events.v1 import dispatch_events_pb2 as dev

            kind = f"DeadlineMissed:{ce.decode(dev.DeadlineMissed).deadline}"
        elif kind == "Escalated":
            from hongling.events.v1 import dispatch_events_pb2 as dev

            kind = f"Escalated:{ce.decode(dev.Escalated).level}"
        else:
            continue
        seen[issue_id].setdefault(kind, set()).add(ce.id)
    return {i: Counter({k: len(ids) for k, ids in kinds.items()}) for i, kinds in seen.items()}


ONCE_EACH = {"DeadlineMissed:report_in": 1, "DeadlineMissed:completion": 1, "Escalated:subdistrict": 1}


def each_fired_once(system: System, mongo: MongoClient[Any], issue_ids: list[str]) -> dict[str, Counter[str]]:
    """Wait until every deadline of these issues fired (on the documents, and its events reached Kafka), then
    return the event counts. Their timers have moved on (the call's is gone, the task's waits for the district
    escalation days away): nothing of these deadlines is left to fire again."""
    wait_for(lambda: deadlines_passed(mongo, issue_ids), timeout=240, interval=1.0)

    def moved_on() -> bool:
        db = dispatch_db(mongo)
        whistle_keys = [f"w:{whistle_id_for_issue(i)}" for i in issue_ids]
        task_keys = [f"t:{task_id_for_issue(i)}" for i in issue_ids]
        left = db["timers"].count_documents({"_id": {"$in": whistle_keys}})
        later = db["timers"].count_documents({"_id": {"$in": task_keys}, "kind": "dispatch.district_escalation"})
        return left == 0 and later == len(issue_ids)

    wait_for(moved_on, timeout=120, interval=1.0)
    return wait_for(
        lambda: (
            (counts := deadline_events(system, issue_ids))
            and all(all(c[k] >= 1 for k in ONCE_EACH) for c in counts.values())
            and counts
        ),
        timeout=180,
        interval=2.0,
    )


def histories(mongo: MongoClient[Any], issue_ids: list[str]) -> dict[str, Counter[str]]:
    tasks = dispatch_db(mongo)["tasks"].find(
        {"_id": {"$in": [task_id_for_issue(i) for i in issue_ids]}}, {"issue_id": 1, "history": 1}
    )
    return {t["issue_id"]: Counter(h["action"] for h in t.get("history") or []) for t in tasks}


def save_figures(name: str, figures: dict[str, Any]) -> None:
    FIGURES[name] = figures
    print(f"\n[chaos] {name}: {json.dumps(figures, ensure_ascii=False)}")


@dataclass
class Recovery:
    what: str
    down_s: float  # from the kill (or stop) until the restart script returned
    serving_s: float  # from then until every service was SERVING and /readyz 200
    accepting_s: float  # from then until the next report was accepted


def _figures_file(system: System) -> Path:
    return Path(system.settings_state_dir) / "logs" / "chaos-figures.json"


def _write_figures(system: System) -> None:
    _figures_file(system).write_text(json.dumps(FIGURES, ensure_ascii=False, indent=2), encoding="utf-8")


@pytest.fixture
def restored(system: System) -> Iterator[None]:
    """Whatever the test stopped is started again, and every service serves, before the next test."""
    try:
        yield
    finally:
        restore(system)


# ---------------------------------------------------------------- the tests


# The whole sequence (nine kills, the broker, the database, the checks) takes minutes on a busy machine.
@pytest.mark.timeout(1500)
def test_a_steady_load_survives_every_process_the_broker_and_the_database_restarting(
    system: System, area: Area, mongo_client: MongoClient[Any], restored: None
) -> None:
    wait_for(lambda: serving(system), timeout=120, interval=0.5)
    audit = shared_log()
    audit_from = audit.last_seq() + 1
    load = Load(system, area)
    # The first reports: their deadlines are made to pass one after another during the chaos (nobody claims
    # them: a claimed task would still miss its completion deadline, but keep them plain).
    load.start()
    found = wait_for(lambda: len(load.accepted) >= DEADLINE_ISSUES and list(load.accepted.values()), timeout=120)
    first: list[str] = found[:DEADLINE_ISSUES]
    wait_for(lambda: timers_exist(mongo_client, first), timeout=120, interval=0.5)
    now = datetime.now(UTC)
    for n, issue_id in enumerate(first):
        travel(mongo_client, issue_id, now + timedelta(seconds=5 + n * DEADLINE_SPACING_S))

    recoveries: list[Recovery] = []

    def outage(what: str, stop: Callable[[], None], start: Callable[[], None], answers: int) -> tuple[float, float]:
        """Stop something under the load, keep it down until the load has had `answers` more answers (or
        refusals), start it; record how long until everything serves and reports are accepted again.
        Returns the (monotonic) times the outage began and ended."""
        progress(what)
        began = time.monotonic()
        stop()
        wait_for(lambda: len(load.answered(after=began)) >= answers, timeout=120)
        restart = time.monotonic()
        start()
        back = time.monotonic()
        wait_for(lambda: serving(system), timeout=180, interval=0.2)
        ready = time.monotonic()
        wait_for(lambda: load.accepted_after(back), timeout=180, interval=0.2)
        accepting = time.monotonic()
        recoveries.append(Recovery(what, round(back - began, 1), round(ready - back, 1), round(accepting - back, 1)))
        progress(f"{recoveries[-1]}; {len(load.accepted)} reports accepted so far")
        return began, restart

    for name in KILLED:
        outage(f"kill -9 {name}", lambda n=name: system.kill(n), lambda n=name: system.start(n), 3)  # type: ignore[misc]
    kafka_down = outage(
        "Kafka broker restart", lambda: stack_sh("stop", "kafka"), lambda: stack_sh("start", "kafka"), 6
    )
    db_down = outage(
        "database restart (FerretDB and PostgreSQL)",
        lambda: stack_sh("stop", "postgres"),
        lambda: stack_sh("start", "ferretdb"),
        6,
    )
    progress("load stopping")
    load.stop()
    progress("load stopped; checking")

    answers = load.answered()
    fives = [a for a in answers if a.status is not None and a.status >= 500]
    figures = {
        "reports_accepted": len(load.accepted),
        "reports_given_up": len(load.gave_up),
        "answers": len(answers),
        "by_status": dict(Counter(str(a.status) for a in answers)),
        "503_with_retry_after": sum(1 for a in fives if a.status == 503 and a.retry_after),
        "other_5xx": [(a.what, a.status, a.retry_after) for a in fives if a.status != 503 or not a.retry_after][:20],
        "claims_raced": len(load.claim_wins),
        "claims_won": sum(1 for w in load.claim_wins.values() if w),
        "reveals_answered": len(load.reveals),
        "recoveries": [asdict(r) for r in recoveries],
    }
    save_figures("load", figures)
    _write_figures(system)

    # The load itself: nothing but acceptances, 503s with Retry-After and refused connections (gateway down).
    assert not load.unexpected, load.unexpected[:10]
    assert not load.disagreements, load.disagreements
    assert not load.gave_up, f"reports never accepted: {load.gave_up}"
    # With Kafka stopped, reports are still accepted (the outbox keeps their events until it is back).
    during_kafka = [a for a in answers if a.what == "report" and kafka_down[0] <= a.sent <= kafka_down[1]]
    assert any(a.status == 201 for a in during_kafka), Counter(a.status for a in during_kafka)
    # While the database was down the gateway said so: 503 with Retry-After.
    during_db = [a for a in answers if db_down[0] <= a.sent <= db_down[1] and a.status is not None]
    assert any(a.status == 503 and a.retry_after for a in during_db), Counter(a.status for a in during_db)
    # And never another 5xx, whatever was down.
    assert not figures["other_5xx"], figures["by_status"]

    progress("every report exactly once")
    # Every report accepted exists exactly once (and none exists twice that was not).
    issues = mongo_client[f"hl_intake_{T}"]["issues"].find(
        {"location.address": "韧性测试社区"}, {"title": 1, "status": 1, "duplicate_of": 1}
    )
    by_title: dict[str, list[dict[str, Any]]] = {}
    for doc in issues:
        by_title.setdefault(doc["title"], []).append(doc)
    for key, issue_id in load.accepted.items():
        found = by_title.get(load.titles[key], [])
        assert [d["_id"] for d in found] == [issue_id], (key, found)
    assert all(len(docs) == 1 for docs in by_title.values())
    assert not any(d[0].get("duplicate_of") for d in by_title.values())
    issue_ids = sorted(d[0]["_id"] for d in by_title.values())

    # Every issue got exactly one task and one call (集结号), and no task was double-assigned.
    db = dispatch_db(mongo_client)

    def tasks_and_calls() -> tuple[dict[str, dict[str, Any]], Counter[str]] | None:
        tasks = {
            t["issue_id"]: t
            for t in db["tasks"].find(
                {"_id": {"$in": [task_id_for_issue(i) for i in issue_ids]}}, {"issue_id": 1, "crew": 1, "history": 1}
            )
        }
        calls: Counter[str] = Counter()
        for w in db["whistles"].find({"community_id": area.community_id}, {"issue_ids": 1}):
            calls.update(w.get("issue_ids") or [])
        if len(tasks) < len(issue_ids) or any(calls[i] < 1 for i in issue_ids):
            return None
        return tasks, calls

    progress("a task and a call for each")
    tasks, calls = wait_for(tasks_and_calls, timeout=240, interval=2.0)
    assert {i: n for i, n in calls.items() if n != 1} == {}
    # A race either has one winner, the task's one lead, or (both racers gave up on a busy machine before
    # dispatch opened the task) none — or a lead whose 201 was lost with a killed process. Never two.
    decided = 0
    for task_id, winners in load.claim_wins.items():
        task = next(t for t in tasks.values() if t["_id"] == task_id)
        leads = [c["id"] for c in task.get("crew") or [] if c["role"] == "lead"]
        claimed = Counter(h["action"] for h in task["history"])["claimed"]
        assert len(winners) <= 1 and len(leads) <= 1 and claimed == len(leads), (task_id, winners, leads, claimed)
        assert set(leads) <= set(area.racers) and (not winners or set(leads) == winners), (task_id, leads, winners)
        decided += len(leads)
    assert decided >= len(load.claim_wins) // 2, f"only {decided} of {len(load.claim_wins)} races were decided"

    # Every deadline that passed during the chaos was missed and escalated, each exactly once.
    progress("deadlines")
    counts = each_fired_once(system, mongo_client, first)
    assert {i: dict(c) for i, c in counts.items() if dict(c) != ONCE_EACH} == {}
    for issue_id, actions in histories(mongo_client, first).items():
        assert (actions["deadline_missed"], actions["escalated"]) == (1, 1), (issue_id, actions)

    progress("audit chain")
    # The audit chain verifies, and holds every reveal that was answered.
    result = audit.verify()
    assert result.ok, result.summary()
    logged = {e.request_id for e in audit.iter_entries(from_seq=audit_from) if e.action == "personal_data.reveal"}
    assert set(load.reveals) <= logged, sorted(set(load.reveals) - logged)[:10]


@pytest.mark.timeout(600)
def test_timers_pending_when_dispatch_is_killed_fire_once_after_the_restart(
    system: System, area: Area, mongo_client: MongoClient[Any], restored: None
) -> None:
    wait_for(lambda: serving(system), timeout=120, interval=0.5)
    url = f"{system.gateway}/api/v1/tenants/{T}/issues"
    issue_ids = []
    for _ in range(8):
        spot = next_spot()
        assert spot is not None
        body = {
            "title": f"井盖松动 {unique('timer')}",
            "description": "韧性测试：井盖松动 (timers across a kill)",
            "channel": "grid_patrol",
            "category": "property_repair",
            "location": {"lat": spot[0], "lon": spot[1], "address": "韧性测试社区"},
        }
        resp = requests.post(url, json=body, headers=area.worker, timeout=30)
        assert resp.status_code == 201, resp.text
        issue_ids.append(resp.json()["issue"]["id"])
    wait_for(lambda: timers_exist(mongo_client, issue_ids), timeout=300, interval=0.5)

    # Dispatch dies with every timer pending; half come due while it is down, half after it is back.
    progress("timers: dispatch killed with its timers pending")
    system.kill("dispatch")
    now = datetime.now(UTC)
    for n, issue_id in enumerate(issue_ids):
        travel(mongo_client, issue_id, now - timedelta(seconds=1) if n % 2 == 0 else now + timedelta(seconds=20))
    killed_at = time.monotonic()
    system.start("dispatch")
    # Killed once more while it fires them: as soon as the first of them has gone up to the subdistrict.
    db = dispatch_db(mongo_client)
    task_ids = [task_id_for_issue(i) for i in issue_ids]
    wait_for(
        lambda: db["tasks"].count_documents({"_id": {"$in": task_ids}, "escalation_level": {"$ne": ""}}) >= 1,
        timeout=120,
        interval=0.2,
    )
    progress("timers: dispatch killed again while firing them")
    system.kill("dispatch")
    system.start("dispatch")
    counts = each_fired_once(system, mongo_client, issue_ids)
    fired_s = time.monotonic() - killed_at
    assert {i: dict(c) for i, c in counts.items() if dict(c) != ONCE_EACH} == {}
    for issue_id, actions in histories(mongo_client, issue_ids).items():
        assert (actions["deadline_missed"], actions["escalated"]) == (1, 1), (issue_id, actions)
    whistles = db["whistles"].find({"_id": {"$in": [whistle_id_for_issue(i) for i in issue_ids]}}, {"targets": 1})
    for w in whistles:  # nobody answered: the serving unit is recorded silent once
        assert [t["id"] for t in w["targets"] if t.get("silent")].count(area.unit_id) == 1, w
    save_figures("timers", {"timers": 2 * len(issue_ids), "all_fired_after_s": round(fired_s, 1)})
    _write_figures(system)
