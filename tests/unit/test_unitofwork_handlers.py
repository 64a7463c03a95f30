"""Handlers against the in-memory unit of work (tests/unit/fake_unitofwork.py): the one write path's
behaviour — a lost race decided again on a fresh read, a stale or raced expected_version ABORTED with the
service's own message, events written with the state and marked for the relay — without a database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from services.common import context
from services.common.errors import Aborted
from services.common.principal import Principal
from services.dispatch import domain as dispatch_domain
from services.dispatch import handlers as dispatch
from services.dispatch.documents import DispatchRulesDoc, TaskDoc
from services.intake import domain as intake_domain
from services.intake import handlers as intake
from services.intake.documents import IssueDoc, LocationDoc, RulesDoc
from tests.unit.fake_unitofwork import FakeUnitOfWork

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
ADMIN = Principal(sub="admin-1", role="subdistrict_admin", tenants=("taiqian",))
WORKER = Principal(sub="worker-1", role="community_worker", tenants=("taiqian",))


@pytest.fixture(autouse=True)
def tenant() -> Iterator[None]:
    intake._rules_cache.clear()
    dispatch._rules_cache.clear()
    with context.bound(tenant="taiqian"):
        yield


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def issue(uow: FakeUnitOfWork, issue_id: str = "is-1", **fields: object) -> IssueDoc:
    values: dict[str, object] = {
        "id": issue_id,
        "title": "楼道灯不亮",
        "description": "3号楼2单元楼道灯坏了",
        "channel": "online",
        "category": "lighting",
        "location": LocationDoc(lat=36.2, lon=117.1),
        "status": intake_domain.STATUS_CLASSIFIED,
        "created_by": "resident-1",
        "created_at": T0,
        "urgency": "routine",
        "version": 1,
        **fields,
    }
    return uow.add(IssueDoc(**values))


def task(uow: FakeUnitOfWork, task_id: str = "tk-1") -> TaskDoc:
    return uow.add(TaskDoc(id=task_id, issue_id="is-1", status="open", created_at=T0, source_event_id="ev-1"))


def events_of(uow: FakeUnitOfWork, cls: type, doc_id: str) -> list[str]:
    son = uow.son(cls, doc_id) or {}
    return [e["type"] for e in son.get("outbox") or []]


# ---------------------------------------------------------------- intake


def test_a_reclassification_is_written_with_its_event_and_marked_for_the_relay(uow: FakeUnitOfWork) -> None:
    issue(uow)
    doc, _rules = intake.reclassify_issue("is-1", "major", "", "两户受影响", 1, WORKER, uow=uow)
    son = uow.son(IssueDoc, "is-1")
    assert son is not None and son["version"] == doc.version == 2
    assert son["urgency"] == "major"
    assert son["history"][-1]["kind"] == "reclassified"
    assert events_of(uow, IssueDoc, "is-1") == ["hongling.events.v1.IssueReclassified"]
    assert uow.markers == [("issues", "is-1")]
    assert "issue:is-1:2" in uow.claims


def test_a_stale_expected_version_is_aborted_and_nothing_is_written(uow: FakeUnitOfWork) -> None:
    issue(uow, version=3)
    with pytest.raises(Aborted) as err:
        intake.reclassify_issue("is-1", "major", "", "两户受影响", 2, WORKER, uow=uow)
    assert err.value.message == "issue is-1 is at version 3, not 2: reload and retry"
    assert err.value.field == "version"
    assert uow.writes == 0 and uow.claims == set()


def test_a_conditional_change_that_loses_the_race_is_aborted(uow: FakeUnitOfWork) -> None:
    issue(uow)
    uow.interfere(lambda u: u.bump(IssueDoc, "is-1", "issue:is-1", title="另一位工作人员改了标题"))
    with pytest.raises(Aborted) as err:
        intake.reclassify_issue("is-1", "major", "", "两户受影响", 1, WORKER, uow=uow)
    assert err.value.message == "issue is-1 was changed by someone else at the same moment: reload and retry"
    son = uow.son(IssueDoc, "is-1")
    assert son is not None and son["urgency"] == "routine" and son["version"] == 2  # the winner's version only
    assert uow.markers == []


def test_an_event_driven_change_that_loses_the_race_is_decided_again_on_a_fresh_read(uow: FakeUnitOfWork) -> None:
    issue(uow)
    uow.interfere(lambda u: u.bump(IssueDoc, "is-1", "issue:is-1", title="另一位工作人员改了标题"))
    doc = intake.advance("is-1", intake_domain.STATUS_ASSIGNED, "assigned", T0, "dispatch", uow=uow)
    assert doc is not None and doc.version == 3
    son = uow.son(IssueDoc, "is-1")
    assert son is not None
    assert son["status"] == intake_domain.STATUS_ASSIGNED
    assert son["title"] == "另一位工作人员改了标题"  # the other writer's change is kept, not overwritten
    assert {"issue:is-1:2", "issue:is-1:3"} <= uow.claims


def test_an_event_driven_change_that_keeps_losing_gives_up_after_its_deadline(uow: FakeUnitOfWork) -> None:
    issue(uow)

    def another_writer(u: FakeUnitOfWork) -> None:
        u.bump(IssueDoc, "is-1", "issue:is-1")
        u.interfere(another_writer)

    uow.interfere(another_writer)
    with pytest.raises(RuntimeError, match="kept changing under this update"):
        intake.advance("is-1", intake_domain.STATUS_ASSIGNED, "assigned", T0, "dispatch", uow=uow)
    assert uow.now > intake.CHANGE_DEADLINE_SECONDS  # on the fake clock: nothing slept


def test_a_duplicate_is_pushed_onto_its_original_once_without_rewriting_it(uow: FakeUnitOfWork) -> None:
    issue(uow, "is-orig", status=intake_domain.STATUS_RECEIVED)
    uow.interfere(lambda u: u.bump(IssueDoc, "is-orig", "issue:is-orig"))  # a racing change of the original
    assert intake.link_duplicate("is-orig", "is-dup", uow=uow) is None  # nothing to mirror while received
    assert intake.link_duplicate("is-orig", "is-dup", uow=uow) is None  # idempotent
    son = uow.son(IssueDoc, "is-orig")
    assert son is not None
    assert son["duplicates"] == ["is-dup"]
    assert [h["kind"] for h in son["history"]] == ["duplicate_linked"]
    assert son["version"] == 3  # after the racing writer's version 2


def test_intake_rules_start_from_the_defaults_and_refuse_a_stale_or_racing_writer(uow: FakeUnitOfWork) -> None:
    data = intake.current_rules(uow).to_dict()
    assert intake.put_rules(data, 0, ADMIN, uow=uow).version == 1
    son = uow.son(RulesDoc, "rules")
    assert son is not None and son["version"] == 1 and son["updated_by"] == "admin-1"
    with pytest.raises(Aborted, match=r"^the rules are at version 1, not 0: reload and retry$"):
        intake.put_rules(data, 0, ADMIN, uow=uow)
    uow.interfere(lambda u: u.claims.add("rules:2"))
    with pytest.raises(Aborted, match="changed by someone else at the same moment"):
        intake.put_rules(data, 1, ADMIN, uow=uow)


# ---------------------------------------------------------------- dispatch


def test_a_task_change_runs_its_effects_once_after_the_winning_write(uow: FakeUnitOfWork) -> None:
    task(uow)
    uow.interfere(lambda u: u.bump(TaskDoc, "tk-1", "task:tk-1", title="改过"))
    ran: list[int] = []

    def mutate(t: TaskDoc, now: datetime, fx: dispatch.Effects) -> bool:
        t.escalation_level = "subdistrict"
        fx.append(lambda: ran.append(t.version))
        return True

    done = dispatch.change_task("tk-1", mutate, uow=uow)
    assert done.version == 3 and ran == [3]  # the lost attempt's effect was dropped
    son = uow.son(TaskDoc, "tk-1")
    assert son is not None and son["escalation_level"] == "subdistrict" and son["title"] == "改过"


def test_a_stale_task_version_is_aborted_with_dispatch_s_message(uow: FakeUnitOfWork) -> None:
    task(uow)
    with pytest.raises(Aborted) as err:
        dispatch.change_task("tk-1", lambda t, now, fx: True, expected_version=2, uow=uow)
    assert err.value.message == "task tk-1 is at version 1, not 2: reload and retry (已被他人修改，请刷新后重试)"
    assert err.value.field == "expected_version"
    uow.interfere(lambda u: u.bump(TaskDoc, "tk-1", "task:tk-1"))
    with pytest.raises(Aborted, match=r"^task tk-1 was changed by someone else at the same moment"):
        dispatch.change_task("tk-1", lambda t, now, fx: True, expected_version=1, uow=uow)


def test_a_missing_task_is_not_found_and_nothing_changed_writes_nothing(uow: FakeUnitOfWork) -> None:
    with pytest.raises(Exception, match="not found"):
        dispatch.change_task("tk-none", lambda t, now, fx: True, uow=uow)
    task(uow)
    assert dispatch.change_task("tk-1", lambda t, now, fx: False, uow=uow).version == 1
    assert uow.writes == 0 and uow.claims == set()


def test_dispatch_rules_are_created_then_replaced_by_version(uow: FakeUnitOfWork) -> None:
    calls = dispatch_domain.rules_to_dict(dispatch_domain.DEFAULT_RULES)["call_types"]
    first = dispatch.put_rules(calls, 3, 0, ADMIN, uow=uow)
    assert first.version == 1 and dispatch.current_rules(uow).version == 1
    with pytest.raises(Aborted, match=r"at version 1, not 0: reload and retry \(规则已被修改\)"):
        dispatch.put_rules(calls, 3, 0, ADMIN, uow=uow)
    assert dispatch.put_rules(calls, 3, 1, ADMIN, uow=uow).version == 2
    son = uow.son(DispatchRulesDoc, "rules")
    assert son is not None and son["version"] == 2 and son["updated_by"] == "admin-1"
