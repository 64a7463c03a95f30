"""Standing posts' and activities' rules, without infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.alliance.activities import domain as act
from services.alliance.posts import domain
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai


def test_a_weekly_pattern_makes_shifts_on_its_weekdays_in_shanghai_time() -> None:
    shifts = domain.weekly(domain.Pattern([1, 3], "08:00", "10:00", 2, 2, "2026-12-07"), NOW - timedelta(days=1))
    assert [s.starts_at for s in shifts] == [
        datetime(2026, 12, 7, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 9, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 14, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 16, 0, 0, tzinfo=UTC),
    ]
    assert all(s.capacity == 2 and s.ends_at - s.starts_at == timedelta(hours=2) for s in shifts)


def test_a_pattern_leaves_out_shifts_already_over() -> None:
    shifts = domain.weekly(domain.Pattern([1], "06:00", "08:00", 1, 1, "2026-12-07"), NOW)
    assert shifts == []


@pytest.mark.parametrize(
    ("pattern", "field"),
    [
        (domain.Pattern([8], "08:00", "10:00", 1, 1), "pattern.weekdays"),
        (domain.Pattern([1], "8h", "10:00", 1, 1), "pattern.start_time"),
        (domain.Pattern([1], "10:00", "08:00", 1, 1), "pattern.end_time"),
        (domain.Pattern([1], "08:00", "10:00", 1, 13), "pattern.weeks"),
        (domain.Pattern([1], "08:00", "10:00", 0, 1, "2026-12-08"), "pattern.capacity"),
    ],
)
def test_a_bad_pattern_names_its_field(pattern: domain.Pattern, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.weekly(pattern, NOW)
    assert err.value.field == field


def test_a_unit_attends_through_a_person_and_a_person_as_themselves() -> None:
    assert domain.who("member_unit", "mu-1", "p-9") == domain.Who("person:p-9", "mu-1", "p-9")
    assert domain.who("person", "p-2", "") == domain.Who("person:p-2", "", "p-2")
    with pytest.raises(InvalidArgument) as err:
        domain.who("member_unit", "mu-1", "")
    assert err.value.field == "person_id"
    with pytest.raises(InvalidArgument):
        domain.who("team", "t-1", "")


def test_check_in_is_late_after_the_grace_and_refused_outside_the_window() -> None:
    start, end = NOW, NOW + timedelta(hours=2)
    assert domain.check_in("claimed", start, end, NOW - timedelta(minutes=20), by_worker=False) is False
    assert domain.check_in("claimed", start, end, NOW + timedelta(minutes=9), by_worker=False) is False
    assert domain.check_in("claimed", start, end, NOW + timedelta(minutes=11), by_worker=False) is True
    with pytest.raises(FailedPrecondition):
        domain.check_in("claimed", start, end, NOW - timedelta(minutes=31), by_worker=False)
    with pytest.raises(FailedPrecondition):
        domain.check_in("claimed", start, end, end + timedelta(minutes=1), by_worker=False)
    assert domain.check_in("claimed", start, end, end + timedelta(minutes=1), by_worker=True) is False
    with pytest.raises(FailedPrecondition):
        domain.check_in("missed", start, end, NOW, by_worker=True)
    assert domain.hours(start, end) == 2.0


def test_a_claim_is_released_only_before_its_shift() -> None:
    domain.check_release("claimed", NOW, NOW - timedelta(seconds=1))
    with pytest.raises(FailedPrecondition):
        domain.check_release("claimed", NOW, NOW)
    with pytest.raises(FailedPrecondition):
        domain.check_release("released", NOW, NOW - timedelta(hours=1))


def test_weeks_start_on_monday_in_shanghai() -> None:
    sunday_night_utc = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)  # Monday 01:00 in Shanghai
    assert domain.week_of(sunday_night_utc).isoformat() == "2026-12-07"


# ---------------------------------------------------------------- activities


def person(i: str) -> domain.Who:
    return domain.Who(f"person:{i}", "", i)


def test_beyond_capacity_sign_ups_wait_in_arrival_order() -> None:
    entries: list[act.Entry] = []
    deadline = NOW + timedelta(days=1)
    outcomes = [act.sign_up(entries, person(p), 1, deadline, NOW, "w") for p in ("a", "b", "c")]
    assert [o.entry.status for o in outcomes] == ["placed", "waiting", "waiting"]
    assert [act.position(entries, o.entry) for o in outcomes] == [0, 1, 2]
    with pytest.raises(AlreadyExists):
        act.sign_up(entries, person("b"), 1, deadline, NOW, "w")


def test_withdrawing_a_place_promotes_the_first_waiting_once() -> None:
    entries: list[act.Entry] = []
    deadline = NOW + timedelta(days=1)
    for p in ("a", "b", "c"):
        act.sign_up(entries, person(p), 1, deadline, NOW, "w")
    out = act.withdraw(entries, person("a"), 1, deadline, NOW)
    assert [e.person_id for e in out.promoted] == ["b"]
    assert act.placed(entries) == 1 and [e.person_id for e in act.waiting(entries)] == ["c"]
    out = act.withdraw(entries, person("c"), 1, deadline, NOW)  # a waiting one leaves: nobody promoted
    assert out.promoted == [] and act.placed(entries) == 1
    again = act.sign_up(entries, person("a"), 1, deadline, NOW, "w")  # back, at the end of the list
    assert again.entry.status == "waiting" and act.position(entries, again.entry) == 1


def test_a_sign_up_after_a_withdrawal_is_the_participants_next_one_and_an_attended_one_cannot_be_withdrawn() -> None:
    entries: list[act.Entry] = []
    start = NOW + timedelta(minutes=20)  # check-in opens 30 minutes before the start
    first = act.sign_up(entries, person("a"), 2, start, NOW, "w").entry
    out = act.withdraw(entries, person("a"), 2, start, NOW)
    assert out.was == "placed" and act.signup_number(entries, first) == 1
    second = act.sign_up(entries, person("a"), 2, start, NOW, "w").entry
    other = act.sign_up(entries, person("b"), 2, start, NOW, "w").entry
    assert (act.signup_number(entries, second), act.signup_number(entries, other)) == (2, 1)
    act.attend(entries, person("a"), start, start + timedelta(hours=1), NOW, by_worker=True, asked_hours=0, by="w")
    with pytest.raises(FailedPrecondition) as err:
        act.withdraw(entries, person("a"), 2, start, NOW)
    assert err.value.field == "participant" and second.status == "placed"


def test_sign_up_closes_at_the_deadline() -> None:
    with pytest.raises(FailedPrecondition):
        act.sign_up([], person("a"), 1, NOW - timedelta(seconds=1), NOW, "w")


def test_attendance_needs_a_place_and_credits_at_most_the_activity_length() -> None:
    entries: list[act.Entry] = []
    start, end = NOW, NOW + timedelta(hours=3)
    act.sign_up(entries, person("a"), 1, start, NOW - timedelta(hours=1), "w")
    act.sign_up(entries, person("b"), 1, start, NOW - timedelta(hours=1), "w")
    with pytest.raises(FailedPrecondition):
        act.attend(entries, person("b"), start, end, NOW, by_worker=True, asked_hours=0, by="w")
    with pytest.raises(InvalidArgument) as err:
        act.attend(entries, person("a"), start, end, NOW, by_worker=True, asked_hours=3.5, by="w")
    assert err.value.field == "hours"
    e = act.attend(entries, person("a"), start, end, NOW, by_worker=True, asked_hours=1.5, by="w")
    assert e.hours == 1.5 and e.recorded_by == "w"
    with pytest.raises(AlreadyExists):
        act.attend(entries, person("a"), start, end, NOW, by_worker=True, asked_hours=0, by="w")


def test_a_member_checks_in_only_while_the_activity_runs() -> None:
    entries: list[act.Entry] = []
    start, end = NOW, NOW + timedelta(hours=2)
    act.sign_up(entries, person("a"), 2, start, NOW - timedelta(hours=1), "self")
    with pytest.raises(FailedPrecondition):
        act.attend(entries, person("a"), start, end, end + timedelta(minutes=1), by_worker=False, asked_hours=0, by="")
    e = act.attend(entries, person("a"), start, end, NOW, by_worker=False, asked_hours=0, by="")
    assert e.hours == 2.0 and e.recorded_by == "self"


def test_an_activity_kind_and_times_are_checked() -> None:
    with pytest.raises(InvalidArgument) as err:
        act.check_kind("party")
    assert err.value.field == "kind"
    with pytest.raises(InvalidArgument) as err:
        act.check_times(NOW + timedelta(hours=2), NOW + timedelta(hours=1), None, NOW)
    assert err.value.field == "ends_at"
    with pytest.raises(InvalidArgument) as err:
        act.check_times(NOW + timedelta(hours=1), NOW + timedelta(hours=2), NOW + timedelta(hours=3), NOW)
    assert err.value.field == "signup_deadline"
