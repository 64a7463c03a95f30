"""The dashboard's rollups without infrastructure (services/common/rollups.py and the contributions of intake's
and dispatch's rows): buckets, quantile estimates, local days, and the delta technique: whatever order and
however often states arrive, the counts kept by adding each new row's contributions and taking away its old
row's equal a recount of the final rows, and each event is counted once."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.common import rollups
from services.common.errors import InvalidArgument
from services.common.rollups import ALL_COMMUNITIES, DAYS, DURATIONS, Tally
from services.dispatch import readmodel as dispatch
from services.intake import readmodel as intake

T0 = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
C = "c-1"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# ---------------------------------------------------------------- buckets, quantiles, days


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(-30, 0), (0, 0), (300, 0), (301, 1), (3600, 3), (3601, 4), (86400, 7), (604800, 9), (604801, 10), (1e9, 10)],
)
def test_a_span_falls_in_the_first_bucket_whose_bound_it_does_not_pass(seconds: float, bucket: int) -> None:
    assert rollups.bucket_of(seconds) == bucket


def test_buckets_are_the_fixed_eleven_with_an_open_last_one() -> None:
    assert [b.label_en for b in rollups.BUCKETS] == [
        "≤5 min",
        "≤15 min",
        "≤30 min",
        "≤1 h",
        "≤2 h",
        "≤4 h",
        "≤8 h",
        "≤1 d",
        "≤3 d",
        "≤7 d",
        ">7 d",
    ]
    assert rollups.BUCKETS[-1].le_seconds is None and len(rollups.UPPER_BOUNDS) == 10


def test_quantiles_are_estimated_inside_the_bucket_that_holds_them() -> None:
    empty = [0] * 11
    assert rollups.quantile(empty, 0.5) is None
    four_quick = [4] + [0] * 10
    assert rollups.quantile(four_quick, 0.5) == pytest.approx(150.0)  # half of ≤5 min, linearly from 0
    assert rollups.quantile(four_quick, 1.0) == pytest.approx(300.0)
    mixed = [0, 0, 0, 5, 5, 0, 0, 0, 0, 0, 0]  # five ≤1 h (above 30 min), five ≤2 h
    assert rollups.quantile(mixed, 0.5) == pytest.approx(3600.0)
    assert rollups.quantile(mixed, 0.9) == pytest.approx(3600 + 3600 * 4 / 5)
    slow = [1] + [0] * 9 + [9]  # nine spans beyond 7 days: at least 7 days
    assert rollups.quantile(slow, 0.9) == pytest.approx(604800.0)


def test_days_are_local_dates_in_shanghai() -> None:
    assert rollups.local_day(datetime(2026, 12, 5, 15, 59, tzinfo=UTC)) == date(2026, 12, 5)
    assert rollups.local_day(datetime(2026, 12, 5, 16, 0, tzinfo=UTC)) == date(2026, 12, 6)  # midnight +08:00
    assert rollups.local_day(datetime(2026, 12, 5, 16, 0)) == date(2026, 12, 6)  # naive = UTC


def test_a_window_is_checked_and_every_day_of_it_listed() -> None:
    assert rollups.check_window("2026-01-01", "2026-12-31") == (date(2026, 1, 1), date(2026, 12, 31))
    assert rollups.check_window("2024-01-01", "2024-12-31")[1] == date(2024, 12, 31)  # 366 days: a leap year
    for first, last, field in (
        ("2026-1-1x", "2026-01-02", "from_day"),
        ("2026-01-01", "", "to_day"),
        ("2026-01-02", "2026-01-01", "to_day"),
        ("2025-01-01", "2026-01-02", "from_day"),
    ):
        with pytest.raises(InvalidArgument) as exc:
            rollups.check_window(first, last)
        assert exc.value.field == field and "(" in exc.value.message  # bilingual
    found = {date(2026, 12, 2): {"x": 3}}
    days = rollups.series(found, date(2026, 12, 1), date(2026, 12, 3))
    assert days == [(date(2026, 12, 1), {}), (date(2026, 12, 2), {"x": 3}), (date(2026, 12, 3), {})]
    assert rollups.window(30, date(2026, 12, 31)) == (date(2026, 12, 2), date(2026, 12, 31))


def test_a_tally_counts_for_the_community_and_the_tenant_and_takes_away() -> None:
    t = Tally()
    t.day(C, "m", T0)
    t.span(C, "s", T0, T0 + minutes(20))
    assert t.of(DAYS) == {(C, "m", date(2026, 12, 5)): 1, (ALL_COMMUNITIES, "m", date(2026, 12, 5)): 1}
    assert t.of(DURATIONS) == {(C, "s", date(2026, 12, 5), 2): 1, (ALL_COMMUNITIES, "s", date(2026, 12, 5), 2): 1}
    t.update(t_copy := _copy(t), -1)
    assert t.changes() == [] and t_copy.changes()  # all cancelled out; nothing left to write


def _copy(t: Tally) -> Tally:
    out = Tally()
    out.update(t)
    return out


# ---------------------------------------------------------------- documents as the state topics carry them


def issue_doc(
    version: int,
    steps: list[tuple[str, datetime]],
    *,
    ident: str = "i-1",
    category: str = "property_repair",
    duplicate_of: str = "",
    community: str = C,
) -> dict[str, Any]:
    status = steps[-1][0] if steps[-1][0] not in ("reclassified", "duplicate_linked") else "whistle_blown"
    if duplicate_of and status == "received":
        status = "duplicate"
    return {
        "_id": ident,
        "version": version,
        "title": "楼道灯不亮",
        "description": "3号楼",
        "channel": "online",
        "category": category,
        "urgency": "routine",
        "status": status,
        "created_at": steps[0][1],
        "updated_at": steps[-1][1],
        "place": {"community_id": community, "grid_id": f"{community}-g"},
        "duplicate_of": duplicate_of,
        "history": [{"at": at, "kind": kind, "status": kind} for kind, at in steps],
    }


def task_doc(version: int, steps: list[tuple[str, datetime]], *, missed: datetime | None = None) -> dict[str, Any]:
    history = [{"at": at, "action": action, "to_status": to} for action, to, at in _task_steps(steps)]
    if missed is not None:
        history.append({"at": missed, "action": "deadline_missed", "to_status": steps[-1][0]})
    return {
        "_id": "t-1",
        "version": version,
        "status": steps[-1][0],
        "created_at": steps[0][1],
        "community_id": C,
        "grid_id": f"{C}-g",
        "call_type": "service",
        "complete_by": steps[0][1] + timedelta(days=15),
        "deadline_missed": missed is not None,
        "history": history,
    }


def _task_steps(steps: list[tuple[str, datetime]]) -> list[tuple[str, str, datetime]]:
    return [("create" if i == 0 else status, status, at) for i, (status, at) in enumerate(steps)]


def whistle_doc(version: int, reports: list[tuple[str, datetime, bool]], blown: datetime = T0) -> dict[str, Any]:
    return {
        "_id": "w-1",
        "version": version,
        "blown_at": blown,
        "community_id": C,
        "call_type": "service",
        "report_in_by": blown + timedelta(hours=72),
        "reports": [{"answer": a, "reported_at": at, "late": late} for a, at, late in reports],
    }


# ---------------------------------------------------------------- facts and contributions


def test_an_issues_facts_come_from_its_own_history() -> None:
    raw = issue_doc(
        4,
        [
            ("received", T0),
            ("classified", T0 + minutes(1)),
            ("whistle_blown", T0 + minutes(2)),
            ("done", T0 + minutes(90)),
            ("reopened", T0 + minutes(100)),
            ("done", T0 + minutes(200)),
        ],
    )
    facts = intake.issue_facts(raw)
    assert facts == {"duplicate": False, "whistled_at": T0 + minutes(2), "done_at": T0 + minutes(90)}
    assert intake.issue_facts(issue_doc(1, [("received", T0)])) == {
        "duplicate": False,
        "whistled_at": None,
        "done_at": None,
    }


def test_an_issue_contributes_its_receipt_its_class_and_its_spans() -> None:
    row = intake.row_of(
        issue_doc(3, [("received", T0), ("classified", T0 + minutes(1)), ("whistle_blown", T0 + minutes(7))])
    )
    t = intake.contributions(row)
    day = date(2026, 12, 5)
    assert t.of(intake.COUNTS) == {(C, "whistle_blown"): 1, (ALL_COMMUNITIES, "whistle_blown"): 1}
    assert t.of(intake.CATEGORY_COUNTS) == {
        (C, "property_repair", "whistle_blown"): 1,
        (ALL_COMMUNITIES, "property_repair", "whistle_blown"): 1,
    }
    assert t.of(DAYS) == {(C, intake.RECEIVED, day): 1, (ALL_COMMUNITIES, intake.RECEIVED, day): 1}
    month, grid = date(2026, 12, 1), row["grid_id"]
    assert grid and t.of(intake.GRID_MONTHS) == {(C, month, grid): 1, (ALL_COMMUNITIES, month, grid): 1}
    assert t.only(intake.GRID_MONTHS).of(DAYS) == {} and t.only(DAYS).of(DAYS) == t.of(DAYS)
    assert t.of(DURATIONS) == {
        (C, intake.RECEIVED_TO_WHISTLE, day, 1): 1,  # 7 minutes: ≤15 min
        (ALL_COMMUNITIES, intake.RECEIVED_TO_WHISTLE, day, 1): 1,
    }


def test_a_duplicate_counts_as_received_and_open_duplicate_but_has_no_spans() -> None:
    steps = [("received", T0), ("whistle_blown", T0 - minutes(30)), ("done", T0 + minutes(10))]  # mirrored
    row = intake.row_of(issue_doc(3, steps, duplicate_of="i-0"))
    t = intake.contributions(row)
    assert t.of(intake.CATEGORY_COUNTS)[(C, "property_repair", "duplicate")] == 1  # not its mirrored "done"
    assert t.of(intake.COUNTS)[(C, "done")] == 1  # CountIssues counts statuses as they are
    assert (C, intake.RECEIVED, date(2026, 12, 5)) in t.of(DAYS) and not t.of(DURATIONS)
    closed = intake.row_of(issue_doc(4, [*steps, ("verified", T0 + minutes(20))], duplicate_of="i-0"))
    assert (C, "property_repair", "verified") in intake.contributions(closed).of(intake.CATEGORY_COUNTS)


def test_a_tasks_facts_are_its_first_done_and_its_missed_deadline() -> None:
    steps = [("open", T0), ("accepted", T0 + minutes(5)), ("in_progress", T0 + minutes(6))]
    assert dispatch.task_facts(task_doc(3, steps)) == {"done_at": None, "overdue_at": None}
    done = [*steps, ("done", T0 + minutes(60)), ("rejected", T0 + minutes(70)), ("done", T0 + minutes(80))]
    missed = T0 + timedelta(days=15)
    assert dispatch.task_facts(task_doc(6, done, missed=missed)) == {"done_at": T0 + minutes(60), "overdue_at": missed}
    no_step = task_doc(3, steps)
    no_step["deadline_missed"] = True  # marked, but its history step is not there: the deadline itself
    assert dispatch.task_facts(no_step)["overdue_at"] == T0 + timedelta(days=15)


def test_a_task_counts_as_overdue_while_marked_and_its_done_and_missed_days() -> None:
    missed = T0 + timedelta(days=15)
    row = dispatch.task_row(task_doc(3, [("open", T0), ("in_progress", T0 + minutes(5))], missed=missed))
    t = dispatch.task_contributions(row)
    assert t.of(dispatch.TASK_COUNTS) == {(C, "in_progress", True): 1, (ALL_COMMUNITIES, "in_progress", True): 1}
    assert t.of(DAYS) == {
        (C, dispatch.TASKS_OVERDUE, date(2026, 12, 20)): 1,
        (ALL_COMMUNITIES, dispatch.TASKS_OVERDUE, date(2026, 12, 20)): 1,
    }


def test_a_calls_first_report_in_is_its_earliest_accept_and_says_if_it_was_in_time() -> None:
    raw = whistle_doc(
        4,
        [("decline", T0 + minutes(1), False), ("accept", T0 + minutes(40), False), ("accept", T0 + minutes(3), False)],
    )
    assert dispatch.whistle_facts(raw) == {"first_report_at": T0 + minutes(3), "first_report_in_time": True}
    late = whistle_doc(2, [("accept", T0 + timedelta(hours=80), True)])
    assert dispatch.whistle_facts(late)["first_report_in_time"] is False
    t = dispatch.whistle_contributions(dispatch.whistle_row(raw))
    day = date(2026, 12, 5)
    assert t.of(DAYS)[(C, dispatch.WHISTLES_BLOWN, day)] == 1
    assert t.of(DAYS)[(C, dispatch.ANSWERED_IN_TIME, day)] == 1
    assert t.of(DURATIONS) == {
        (C, dispatch.WHISTLE_TO_REPORT_IN, day, 0): 1,
        (ALL_COMMUNITIES, dispatch.WHISTLE_TO_REPORT_IN, day, 0): 1,
    }
    late_t = dispatch.whistle_contributions(dispatch.whistle_row(late))
    assert (C, dispatch.ANSWERED_IN_TIME, day) not in late_t.of(DAYS)
    assert late_t.of(DURATIONS) == {
        (C, dispatch.WHISTLE_TO_REPORT_IN, date(2026, 12, 8), 9): 1,  # 80 h: ≤7 d
        (ALL_COMMUNITIES, dispatch.WHISTLE_TO_REPORT_IN, date(2026, 12, 8), 9): 1,
    }


# ---------------------------------------------------------------- the delta technique


class Projected:
    """The refresh's rule without the database: a state replaces the row only when newer; the kept counts
    move by the new row's contributions minus the old row's."""

    def __init__(
        self,
        row: Callable[[Mapping[str, Any]], dict[str, Any]],
        contributions: Callable[[Mapping[Any, Any]], Tally],
    ) -> None:
        self.row, self.contributions = row, contributions
        self.rows: dict[str, dict[str, Any]] = {}
        self.kept = Tally()

    def receive(self, raw: Mapping[str, Any]) -> None:
        old = self.rows.get(raw["_id"])
        if old is not None and old["version"] >= int(raw["version"]):
            return
        new = self.row(raw)
        self.kept.update(self.contributions(new))
        if old is not None:
            self.kept.update(self.contributions(old), -1)
        self.rows[raw["_id"]] = new

    def recount(self) -> Tally:
        t = Tally()
        for row in self.rows.values():
            t.update(self.contributions(row))
        return t


def _states_of_an_issue() -> list[dict[str, Any]]:
    steps = [
        ("received", T0),
        ("classified", T0 + minutes(1)),
        ("whistle_blown", T0 + minutes(3)),
        ("assigned", T0 + minutes(50)),
        ("in_progress", T0 + minutes(60)),
        ("done", T0 + timedelta(hours=20)),
        ("verified", T0 + timedelta(days=2)),
    ]
    states = [issue_doc(n, steps[:n]) for n in range(1, len(steps) + 1)]
    states[3]["category"] = "sanitation"  # reclassified on the way: its counts move, its receipt stays
    for s in states[3:]:
        s["category"] = "sanitation"
    return states


def test_states_in_any_order_and_seen_twice_count_each_event_once() -> None:
    states = _states_of_an_issue()
    rng = random.Random(7)
    for _ in range(200):
        order = [rng.choice(states) for _ in range(rng.randint(1, 12))]  # re-delivered, older, out of order
        p = Projected(intake.row_of, intake.contributions)
        for raw in order:
            p.receive(raw)
        assert p.kept.changes() == p.recount().changes()
        newest = max(order, key=lambda r: r["version"])
        assert p.kept.changes() == intake.contributions(intake.row_of(newest)).changes()
    # The final state: received once, whistled once, done once (its first time), under its last category.
    p = Projected(intake.row_of, intake.contributions)
    for raw in [*states, *states, states[2], states[0]]:
        p.receive(raw)
    day = date(2026, 12, 5)
    assert p.kept.of(DAYS) == {(C, intake.RECEIVED, day): 1, (ALL_COMMUNITIES, intake.RECEIVED, day): 1}
    spans = p.kept.of(DURATIONS)
    assert spans[(C, intake.RECEIVED_TO_WHISTLE, day, 0)] == 1
    assert spans[(C, intake.RECEIVED_TO_DONE, date(2026, 12, 6), 7)] == 1  # 20 h: ≤1 d, on its local day
    assert p.kept.of(intake.CATEGORY_COUNTS) == {
        (C, "sanitation", "verified"): 1,
        (ALL_COMMUNITIES, "sanitation", "verified"): 1,
    }


def test_a_declined_report_leaves_the_hot_topics_however_its_states_arrive() -> None:
    pending = [("received", T0), ("pending_verification", T0)]
    states = [issue_doc(1, pending[:1]), issue_doc(2, pending), issue_doc(3, [*pending, ("declined", T0 + minutes(9))])]
    day, grid = date(2026, 12, 5), f"{C}-g"
    waiting = intake.contributions(intake.row_of(states[1])).of(intake.TOPIC_DAYS)
    assert waiting[(C, day, "category", "property_repair")] == 1 and waiting[(C, day, "grid", grid)] == 1
    rng = random.Random(17)
    for _ in range(100):
        order = [rng.choice(states) for _ in range(rng.randint(1, 8))]  # twice, late, out of order
        p = Projected(intake.row_of, intake.contributions)
        for raw in order:
            p.receive(raw)
        assert p.kept.changes() == p.recount().changes()
        declined = max(r["version"] for r in order) == 3
        assert (p.kept.of(intake.TOPIC_DAYS) == {}) == declined
    p = Projected(intake.row_of, intake.contributions)
    for raw in [*states, states[1], states[0]]:
        p.receive(raw)
    assert p.kept.of(intake.TOPIC_DAYS) == {}  # gone from the hot topics
    assert p.kept.of(DAYS)[(C, intake.RECEIVED, day)] == 1  # still a report received that day
    assert p.kept.of(intake.COUNTS)[(C, "declined")] == 1


def test_task_and_call_states_count_once_too() -> None:
    steps = [("open", T0), ("accepted", T0 + minutes(5)), ("in_progress", T0 + minutes(6)), ("done", T0 + minutes(99))]
    missed = T0 + minutes(98)
    tasks = [task_doc(n, steps[:n], missed=missed if n >= 3 else None) for n in range(1, len(steps) + 1)]
    calls = [
        whistle_doc(1, []),
        whistle_doc(2, [("decline", T0 + minutes(2), False)]),
        whistle_doc(3, [("decline", T0 + minutes(2), False), ("accept", T0 + minutes(4), False)]),
        whistle_doc(
            4,
            [
                ("decline", T0 + minutes(2), False),
                ("accept", T0 + minutes(4), False),
                ("accept", T0 + minutes(9), False),
            ],
        ),
    ]
    rng = random.Random(11)
    for states, row, contributions in (
        (tasks, dispatch.task_row, dispatch.task_contributions),
        (calls, dispatch.whistle_row, dispatch.whistle_contributions),
    ):
        for _ in range(100):
            p = Projected(row, contributions)
            order = [rng.choice(states) for _ in range(rng.randint(1, 10))]
            for raw in order:
                p.receive(raw)
            assert p.kept.changes() == p.recount().changes()
    p = Projected(dispatch.task_row, dispatch.task_contributions)
    for raw in [*tasks, *reversed(tasks), *tasks]:
        p.receive(raw)
    day = date(2026, 12, 5)
    assert p.kept.of(DAYS) == {
        (C, dispatch.TASKS_DONE, day): 1,
        (ALL_COMMUNITIES, dispatch.TASKS_DONE, day): 1,
        (C, dispatch.TASKS_OVERDUE, day): 1,
        (ALL_COMMUNITIES, dispatch.TASKS_OVERDUE, day): 1,
    }
    assert p.kept.of(dispatch.TASK_COUNTS) == {(C, "done", True): 1, (ALL_COMMUNITIES, "done", True): 1}
