"""Precise assignment over real FerretDB and the real org service: the helpers' read model (load, finished
tasks, ratings; every change once, whatever is replayed) and rank_candidates (org's FindCandidates over gRPC,
re-ranked by load and performance). Runs in-process in the test database hl_itest_<tenant>."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hongling.org.v1 import org_pb2 as pb
from pymongo import MongoClient, ReturnDocument

from services.common import context, mongo
from services.common.errors import InvalidArgument
from services.common.settings import Settings, get_settings
from services.dispatch import helpers_model as model
from services.dispatch.matching import HelperRecord, Need, rank_candidates, record_key
from tests.conftest import System, unique, wait_for
from tests.integration.test_org_service import Org, rect

T = "shengzhuang"
DB = f"hl_itest_{T}"


@pytest.fixture(scope="module")
def env(infra: Settings) -> Iterator[Settings]:
    mongo.init("itest", infra.mongo_uri)
    with context.bound(tenant=T):
        yield infra
    model.CACHE.clear()


def tid() -> str:
    return uuid.uuid4().hex


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0)

    def next(self) -> datetime:
        self.at += timedelta(minutes=1)
        return self.at


def rec(kind: str, hid: str) -> HelperRecord:
    return model.record_of(kind, hid)


def test_assignment_claim_finish_and_rating_count_once(env: Settings) -> None:
    clock, task, lead, helper = Clock(), tid(), unique("p"), unique("p")
    model.deadline_set(task, clock.at + timedelta(hours=2))
    assigned = clock.next()
    for _ in range(2):  # a redelivery changes nothing
        model.task_taken(task, "i1", "person", lead, assigned, replaces=True)
    model.task_taken(task, "i1", "person", helper, clock.next(), replaces=False)
    assert rec("person", lead) == rec("person", helper) == HelperRecord(load=1)
    done = clock.next()
    for status in ("in_progress", "done", "done", "verified"):
        model.status_changed(task, "i1", "", status, done)
    finished = HelperRecord(load=0, done=1, on_time=1)
    assert rec("person", lead) == rec("person", helper) == finished
    for _ in range(2):
        model.rated(task, "i1", "r1", 5)
    model.rated(task, "i1", "r2", 3)
    rated = HelperRecord(load=0, done=1, on_time=1, rating_sum=8, rating_n=2)
    assert rec("person", lead) == rec("person", helper) == rated


def test_a_decline_releases_the_assignee_and_an_old_redelivery_does_not_bring_it_back(env: Settings) -> None:
    clock, task, first, second, third = Clock(), tid(), unique("p"), unique("p"), unique("p")
    first_at = clock.next()
    model.task_taken(task, "i2", "person", first, first_at, replaces=True)
    model.status_changed(task, "i2", "assigned", "open", clock.next())  # declined
    model.task_taken(task, "i2", "person", first, first_at, replaces=True)  # late redelivery
    assert rec("person", first) == HelperRecord()
    model.task_taken(task, "i2", "person", second, clock.next(), replaces=True)
    model.task_taken(task, "i2", "member_unit", third, clock.next(), replaces=True)  # reassigned
    assert rec("person", second) == HelperRecord()
    assert rec("unit", third) == HelperRecord(load=1)
    model.status_changed(task, "i2", "accepted", "cancelled", clock.next())
    assert rec("unit", third) == HelperRecord()  # cancelled: off the list, not counted as finished


def test_late_or_missed_completion_is_not_on_time(env: Settings) -> None:
    clock = Clock()
    late_task, missed_task, who = tid(), tid(), unique("team")
    model.deadline_set(late_task, clock.at + timedelta(seconds=30))
    model.deadline_set(missed_task, clock.at + timedelta(days=1))
    model.task_taken(late_task, "i3", "team", who, clock.next(), replaces=True)
    model.task_taken(missed_task, "i4", "team", who, clock.next(), replaces=True)
    assert rec("team", who).load == 2
    model.deadline_missed(missed_task)
    model.status_changed(late_task, "i3", "in_progress", "done", clock.next())
    model.status_changed(missed_task, "i4", "in_progress", "done", clock.next())
    assert rec("team", who) == HelperRecord(load=0, done=2, on_time=0)


def test_the_task_own_deadline_decides_on_time(env: Settings, mongo_client: MongoClient[Any]) -> None:
    clock, late, early, who = Clock(), tid(), tid(), unique("p")
    tasks = mongo_client[DB]["tasks"]  # the dispatch core's tasks (services.dispatch.documents.TaskDoc)
    tasks.insert_many(
        [{"_id": late, "complete_by": clock.at}, {"_id": early, "complete_by": clock.at + timedelta(days=1)}]
    )
    model.task_taken(late, "i9", "person", who, clock.next(), replaces=True)
    model.task_taken(early, "i10", "person", who, clock.next(), replaces=True)
    model.status_changed(late, "i9", "in_progress", "done", clock.next())
    model.status_changed(early, "i10", "in_progress", "done", clock.next())
    assert rec("person", who) == HelperRecord(load=0, done=2, on_time=1)


def test_rejected_work_is_open_again_and_finished_only_once(env: Settings) -> None:
    clock, task, who = Clock(), tid(), unique("p")
    model.task_taken(task, "i5", "person", who, clock.next(), replaces=True)
    model.status_changed(task, "i5", "in_progress", "done", clock.next())
    model.status_changed(task, "i5", "done", "rejected", clock.next())
    model.status_changed(task, "i5", "rejected", "reopened", clock.next())
    assert rec("person", who) == HelperRecord(load=1, done=1, on_time=1)
    model.status_changed(task, "i5", "in_progress", "done", clock.next())
    assert rec("person", who) == HelperRecord(load=0, done=1, on_time=1)


def test_concurrent_changes_of_one_helper_lose_no_count(env: Settings, mongo_client: MongoClient[Any]) -> None:
    """Eight consumers taking eight tasks for one helper at the same moment (FerretDB isolates no conditional
    update nor $inc: each change is the record's next version, claimed by insert), then finishing them: every
    task is counted once, and every change is in the log under a generation of its own."""
    clock, helper = Clock(), unique("p")
    tasks = [tid() for _ in range(8)]
    at = clock.next()
    before = int((mongo_client[DB]["matching_state"].find_one({"_id": "generation"}) or {}).get("n") or 0)

    def take(task: str) -> None:
        with context.bound(tenant=T):
            model.task_taken(task, "i9", "person", helper, at, replaces=True)

    def finish(task: str) -> None:
        with context.bound(tenant=T):
            model.status_changed(task, "i9", "", "done", clock.at + timedelta(minutes=5))

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        list(pool.map(take, tasks))
    assert rec("person", helper) == HelperRecord(load=len(tasks))
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        list(pool.map(finish, tasks))
    assert rec("person", helper) == HelperRecord(load=0, done=len(tasks), on_time=len(tasks))
    key = record_key("person", helper)
    logged = [c["v"] for c in mongo_client[DB]["matching_changes"].find({"key": key})]
    assert sorted(logged) == list(range(1, 2 * len(tasks) + 1))  # each version once, none lost
    after = int((mongo_client[DB]["matching_state"].find_one({"_id": "generation"}) or {}).get("n") or 0)
    assert after - before >= 2 * len(tasks)


def test_helper_documents_are_keyed_kind_and_id(env: Settings, mongo_client: MongoClient[Any]) -> None:
    who = unique("u")
    model.task_taken(tid(), "i6", "member_unit", who, datetime.now(UTC), replaces=True)
    doc = mongo_client[DB]["matching_helpers"].find_one({"_id": f"unit:{who}"})
    assert doc is not None and doc["load"] == 1


# ---------------------------------------------------------------- ranking against the real org service


@pytest.fixture(scope="module")
def helpers(system: System, env: Settings) -> dict[str, Any]:
    """A community with two grids and three people with a skill only they have."""
    org = Org(system, tenant=T)
    u = unique("m")
    org.CreateCommunity(pb.Community(id=u, name_zh=f"点将社区{u}"))
    g1 = org.CreateGrid(pb.Grid(id=f"{u}-g1", community_id=u, name_zh="一网格", boundary_geojson=rect(117.30, 36.50)))
    g2 = org.CreateGrid(pb.Grid(id=f"{u}-g2", community_id=u, name_zh="二网格", boundary_geojson=rect(117.31, 36.50)))
    skill = f"管道疏通{unique()}"
    people = {}
    for name, grid, level in (("a", g1.id, 3), ("b", g1.id, 3), ("c", g2.id, 5)):
        person = org.CreatePerson(pb.Person(community_id=u, grid_id=grid, name_zh=f"师傅{name}", roles=["volunteer"]))
        org.CreateTalentEntry(pb.TalentEntry(person_id=person.id, skill=skill, level=level))
        people[name] = person.id
    a, b = sorted([people["a"], people["b"]])  # equal scores: by id
    return {"community": u, "g1": g1.id, "skill": skill, "a": a, "b": b, "c": people["c"]}


def test_ranking_adds_load_and_performance_to_org_fit(helpers: dict[str, Any]) -> None:
    need = Need((helpers["skill"],), (), (), helpers["community"], helpers["g1"])
    a, b, c = helpers["a"], helpers["b"], helpers["c"]
    ranked, considered = rank_candidates(need)
    assert considered == 3
    # org: c has level 5 in the same community (22), a and b level 3 serving the grid (21 each)
    assert [(r.id, r.score) for r in ranked] == [(c, 22), (a, 21), (b, 21)]
    assert any("serves grid" in x for x in ranked[1].reasons)
    assert "当前无在办任务 +0 / no open tasks: +0" in ranked[0].reasons

    clock, task = Clock(), tid()
    model.task_taken(task, "i7", "person", c, clock.next(), replaces=True)  # c: one open task, -2
    for _ in range(2):
        rated_task = tid()
        model.task_taken(rated_task, "i8", "person", b, clock.next(), replaces=True)
        model.status_changed(rated_task, "i8", "in_progress", "done", clock.next())
        model.rated(rated_task, "i8", "r1", 5)
    ranked, _ = rank_candidates(need, limit=2)
    assert [r.id for r in ranked] == [b, a]
    top = ranked[0]
    assert any(x.startswith("居民评分 平均 5.0 星（2 次）") for x in top.reasons)
    assert any(x.startswith("按时完成 2/2 件") for x in top.reasons)
    assert rank_candidates(need, limit=3)[0][2].id == c


def test_changes_by_another_process_show_after_the_generation_moved(
    helpers: dict[str, Any], mongo_client: MongoClient[Any]
) -> None:
    need = Need((helpers["skill"],), (), (), helpers["community"], helpers["g1"])
    a = helpers["a"]

    def a_is_full() -> bool:
        ranked, _ = rank_candidates(need)
        return ranked[-1].id == a and any("已达上限" in x for x in ranked[-1].reasons)

    assert not a_is_full()  # the tenant's records are in memory now
    # Another dispatch process changes a's record: first the document alone, then it logs the change (as
    # helpers_model._change does: the new counters are logged under the next generation).
    key = record_key("person", a)
    coll = mongo_client[DB]["matching_helpers"]
    doc = coll.find_one_and_update(
        {"_id": key}, {"$inc": {"load": 3, "v": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    changed = time.monotonic()
    checks, max_age = model.CACHE.check_seconds, model.CACHE.max_age
    model.CACHE.check_seconds = 0.1
    model.CACHE.max_age = 3600.0  # no whole reload (which would see anything) during this test
    try:

        def caught_up_since_the_change() -> bool:
            a_is_full()  # a ranking has the cache catch up in the background, check_seconds after the last time
            return model.CACHE._snapshots[T].checked_at > changed

        wait_for(caught_up_since_the_change)
        assert not a_is_full()  # caught up since, yet not seen: nothing said it changed
        assert doc is not None
        model.log_change(key, doc)
        wait_for(a_is_full)
        doc = coll.find_one_and_update(
            {"_id": key}, {"$inc": {"load": -3, "v": 1}}, return_document=ReturnDocument.AFTER
        )
        assert doc is not None
        model.log_change(key, doc)
        wait_for(lambda: not a_is_full())
    finally:
        model.CACHE.check_seconds, model.CACHE.max_age = checks, max_age


def test_an_unknown_grid_is_refused_with_its_field(helpers: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument) as err:
        rank_candidates(Need((helpers["skill"],), (), (), helpers["community"], "no-such-grid"))
    assert err.value.field == "grid_id"


def test_ranking_without_org_is_unavailable(helpers: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from services.dispatch import matching

    # The org service's address points at a port nobody listens on.
    broken = matching.OrgCandidates(get_settings().model_copy(update={"org_addr": "127.0.0.1:1"}))
    monkeypatch.setattr(matching, "_org", broken)
    with pytest.raises(matching.Unavailable):
        rank_candidates(Need((helpers["skill"],), (), (), helpers["community"], helpers["g1"]))
