"""The next clock point of a call and of a task (one durable timer each), without infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.dispatch import deadlines as dl
from services.dispatch import domain
from services.dispatch.documents import TaskDoc, WhistleDoc

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
RULES = domain.DEFAULT_RULES


def whistle(**kw: object) -> WhistleDoc:
    fields: dict[str, object] = {
        "id": "w1",
        "call_type": "service",
        "report_in_by": NOW + timedelta(hours=72),
        "complete_by": NOW + timedelta(days=15),
        "blown_at": NOW,
    }
    fields.update(kw)
    return WhistleDoc(**fields)


def task(**kw: object) -> TaskDoc:
    fields: dict[str, object] = {
        "id": "t1",
        "issue_id": "i1",
        "status": "open",
        "created_at": NOW,
        "source_event_id": "e1",
        "call_type": "emergency",
        "complete_by": NOW + timedelta(hours=24),
    }
    fields.update(kw)
    return TaskDoc(**fields)


def test_a_call_reminds_then_closes_report_in() -> None:
    assert dl.next_whistle_clock(whistle(), RULES, NOW) == (dl.REPORT_IN_REMINDER, NOW + timedelta(hours=60))
    assert dl.next_whistle_clock(whistle(reminded=True), RULES, NOW) == (
        dl.REPORT_IN_DEADLINE,
        NOW + timedelta(hours=72),
    )
    # Too late for a reminder (an upgraded call): straight to the deadline; after it, nothing.
    late = NOW + timedelta(hours=71)
    assert dl.next_whistle_clock(whistle(), RULES, late) == (dl.REPORT_IN_DEADLINE, NOW + timedelta(hours=72))
    assert dl.next_whistle_clock(whistle(report_in_closed=True), RULES, NOW) is None


def test_a_task_reminds_misses_then_goes_to_the_district() -> None:
    due = NOW + timedelta(hours=24)
    assert dl.next_task_clock(task(), RULES, NOW) == (dl.COMPLETION_REMINDER, due - timedelta(hours=2))
    reminded = task(reminded=[f"completion@{int(due.timestamp())}"])
    assert dl.next_task_clock(reminded, RULES, NOW) == (dl.COMPLETION_DEADLINE, due)
    escalated = task(escalation_level="subdistrict")
    assert dl.next_task_clock(escalated, RULES, NOW) == (dl.DISTRICT_ESCALATION, due + timedelta(hours=2))
    assert dl.next_task_clock(task(escalation_level="district"), RULES, NOW) is None
    for status in ("done", "verified", "cancelled"):
        assert dl.next_task_clock(task(status=status), RULES, NOW) is None
    # A deadline brought forward (an upgrade) makes an old reminder count no more: a new one is due.
    assert dl.next_task_clock(reminded, RULES, NOW)[0] == dl.COMPLETION_DEADLINE  # type: ignore[index]
    earlier = task(reminded=reminded.reminded, complete_by=due - timedelta(hours=5))
    assert dl.next_task_clock(earlier, RULES, NOW) == (dl.COMPLETION_REMINDER, due - timedelta(hours=7))


def test_a_rejected_task_runs_against_its_deadline_again() -> None:
    t = task(status="rejected", reminded=[f"completion@{int((NOW + timedelta(hours=24)).timestamp())}"])
    assert dl.next_task_clock(t, RULES, NOW) == (dl.COMPLETION_DEADLINE, NOW + timedelta(hours=24))
