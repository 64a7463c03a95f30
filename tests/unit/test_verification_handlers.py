"""验单's writes against the in-memory unit of work (tests/unit/fake_unitofwork.py): dispatch applying a verdict
once (a re-sent or late one changes nothing), and the tenant's verification rules replaced by version."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from services.common import context
from services.common.errors import Aborted, InvalidArgument, PermissionDenied
from services.common.principal import Principal
from services.dispatch import domain as dispatch_domain
from services.dispatch import handlers as dispatch
from services.dispatch.documents import TaskDoc, TaskEventDoc
from services.evaluation.verification import domain
from services.evaluation.verification import handlers as verification
from services.evaluation.verification.documents import VerificationRulesDoc
from tests.unit.fake_unitofwork import FakeUnitOfWork

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ADMIN = Principal(sub="admin-1", role="subdistrict_admin", tenants=("taiqian",))
WORKER = Principal(sub="worker-1", role="community_worker", tenants=("taiqian",), community="c1")


@pytest.fixture(autouse=True)
def tenant(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    dispatch._rules_cache.clear()
    clocks: list[str] = []
    monkeypatch.setattr(dispatch.deadlines, "cancel_task", lambda t: clocks.append(f"cancel:{t.id}"))
    monkeypatch.setattr(dispatch.deadlines, "schedule_task", lambda t, rules: clocks.append(f"schedule:{t.id}"))
    with context.bound(tenant="taiqian"):
        yield clocks


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def done_task(uow: FakeUnitOfWork, times_done: int = 1) -> TaskDoc:
    history = [TaskEventDoc(at=T0, action="done", from_status="in_progress", to_status="done")] * times_done
    return uow.add(
        TaskDoc(
            id="tk-1",
            issue_id="is-1",
            status="done",
            created_at=T0,
            source_event_id="ev-1",
            history=history,
            finished_at=T0,
            community_id="c1",
            call_type="service",
        )
    )


def stored(uow: FakeUnitOfWork) -> dict[str, object]:
    son = uow.son(TaskDoc, "tk-1")
    assert son is not None
    return son


def verdict(passed: bool, attempt: int = 1, method: str = "review") -> dispatch_domain.Verdict:
    return dispatch_domain.Verdict(passed, method, attempt, f"tk-1:{attempt}")


def test_a_passed_verdict_verifies_the_task_once(uow: FakeUnitOfWork, tenant: list[str]) -> None:
    done_task(uow)
    dispatch.apply_verdict(verdict(True), "tk-1", "inspector-1", "", T0, uow=uow)
    son = stored(uow)
    assert son["status"] == "verified" and son["verification_ids"] == ["tk-1:1"] and son["version"] == 2
    assert tenant == ["cancel:tk-1"]
    dispatch.apply_verdict(verdict(True), "tk-1", "inspector-1", "", T0, uow=uow)  # re-sent
    assert stored(uow)["version"] == 2 and uow.writes == 1


def test_a_failed_verdict_sends_the_task_back_to_work_with_its_clock(uow: FakeUnitOfWork, tenant: list[str]) -> None:
    done_task(uow)
    dispatch.apply_verdict(verdict(False, method="onsite"), "tk-1", "inspector-1", "阀门未换", T0, uow=uow)
    son = stored(uow)
    history = son["history"]
    assert isinstance(history, list)
    assert son["status"] == "reopened" and son.get("finished_at") is None and tenant == ["schedule:tk-1"]
    assert [(h["action"], h["to_status"], h["reason"]) for h in history[-2:]] == [
        ("reject", "rejected", "阀门未换"),
        ("reopen", "reopened", "阀门未换"),
    ]
    assert "现场核验" in history[-2]["note_zh"]
    changed = [e for e in son["outbox"] if e["type"].endswith("TaskStatusChanged")]  # type: ignore[union-attr]
    assert len(changed) == 2


def test_a_late_verdict_of_an_earlier_attempt_changes_nothing(uow: FakeUnitOfWork) -> None:
    done_task(uow, times_done=2)  # failed once, done again: this is the second verification
    dispatch.apply_verdict(verdict(True, attempt=1), "tk-1", "x", "", T0, uow=uow)
    assert stored(uow)["status"] == "done" and uow.writes == 0
    dispatch.apply_verdict(verdict(True, attempt=2), "tk-1", "x", "", T0, uow=uow)
    assert stored(uow)["status"] == "verified"


def test_a_residents_rejection_reopens_a_verified_task(uow: FakeUnitOfWork) -> None:
    done_task(uow)
    dispatch.apply_verdict(verdict(True), "tk-1", "x", "", T0, uow=uow)
    resident = dispatch_domain.Verdict(False, "resident", 1, "rating-1")
    dispatch.apply_verdict(resident, "tk-1", "resident-1", "灯又坏了", T0, uow=uow)
    assert stored(uow)["status"] == "reopened" and stored(uow)["verification_ids"] == ["tk-1:1", "rating-1"]


# ---------------------------------------------------------------- the tenant's rules


def test_the_rules_are_the_defaults_then_replaced_by_version(uow: FakeUnitOfWork) -> None:
    raw = domain.rules_to_list(domain.DEFAULT_RULES)
    raw[1]["method"] = "either"
    with context.bound(principal=ADMIN):
        rules, doc = verification.current_rules(uow)
        assert doc is None and rules == domain.DEFAULT_RULES
        first, saved = verification.put_rules(raw, 0, uow=uow)
        assert saved is not None and saved.version == 1 and first["tackling"].method == "either"
        with pytest.raises(Aborted, match="验单规则已被修改"):
            verification.put_rules(raw, 0, uow=uow)
        assert verification.put_rules(raw, 1, uow=uow)[1].version == 2  # type: ignore[union-attr]
        with pytest.raises(InvalidArgument):
            verification.put_rules([{**raw[0], "quorum": 0}, *raw[1:]], 2, uow=uow)
    son = uow.son(VerificationRulesDoc, "rules")
    assert son is not None and son["updated_by"] == "admin-1"


def test_only_a_subdistrict_admin_changes_the_rules(uow: FakeUnitOfWork) -> None:
    with context.bound(principal=WORKER), pytest.raises(PermissionDenied):
        verification.put_rules(domain.rules_to_list(domain.DEFAULT_RULES), 0, uow=uow)
