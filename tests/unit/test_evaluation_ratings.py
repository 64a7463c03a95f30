"""评单's rules without infrastructure (services/evaluation/ratings/domain.py) and the follow-up code's
(services/intake/domain.py)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from services.evaluation.ratings import domain
from services.intake import domain as intake_domain

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def verdict(attempt: int = 1, status: str = domain.VERIFIED, at: datetime = T0, **kw: str) -> domain.Verdict:
    return domain.Verdict(
        verification_id=kw.get("verification_id", f"v{attempt}"),
        attempt=attempt,
        status=status,
        task_id="t1",
        community_id="c1",
        call_type="service",
        crew_ids=("person:p1",),
        at=at,
        method=kw.get("method", "review"),
        verified_at=at if status == domain.VERIFIED else None,
    )


# ---------------------------------------------------------------- the follow-up code


def test_a_follow_code_has_100_random_bits_in_four_groups_of_five() -> None:
    code = intake_domain.new_follow_code(secrets.token_bytes(16))
    groups = code.split("-")
    assert [len(g) for g in groups] == [5, 5, 5, 5]
    assert all(c in intake_domain.FOLLOW_ALPHABET for c in "".join(groups))
    assert intake_domain.new_follow_code(secrets.token_bytes(16)) != code


def test_a_follow_code_needs_enough_randomness() -> None:
    with pytest.raises(ValueError):
        intake_domain.new_follow_code(b"short")


def test_a_typed_code_is_read_leniently_but_a_wrong_one_never_matches() -> None:
    code = intake_domain.new_follow_code(bytes(range(16)))
    stored = intake_domain.follow_code_hash("i1", code)
    typed = code.lower().replace("-", " ")
    assert intake_domain.follow_code_hash("i1", typed) == stored
    assert intake_domain.follow_code_hash("i2", code) != stored  # bound to its issue
    assert intake_domain.normalize_follow_code("not a code") == ""
    assert code not in stored  # only a hash is kept


# ---------------------------------------------------------------- verdicts


def test_the_first_verdict_is_taken_and_a_repeated_one_changes_nothing() -> None:
    first = verdict()
    assert domain.next_verdict(None, first) == first
    assert domain.next_verdict(first, first) is None


def test_a_later_attempt_wins_and_an_older_one_changes_nothing() -> None:
    second = verdict(2, at=T0 + timedelta(days=3))
    assert domain.next_verdict(verdict(1), second) == second
    assert domain.next_verdict(second, verdict(1)) is None


def test_a_residents_rejection_overrules_the_pass_of_its_attempt_and_keeps_what_it_rejected() -> None:
    passed = verdict(1)
    rejected = verdict(1, domain.FAILED, T0 + timedelta(days=2), verification_id="resident:v1", method="resident")
    after = domain.next_verdict(passed, rejected)
    assert after is not None and after.status == domain.FAILED and after.verified_at == T0
    assert domain.next_verdict(after, passed) is None  # the pass delivered late does not undo it


# ---------------------------------------------------------------- the reporter's decision


def test_nothing_can_be_rated_or_rejected_before_verification() -> None:
    s = domain.standing(None, T0, domain.Windows(), rated=False, decided_current=False)
    assert not s.can_rate and not s.can_reject
    with pytest.raises(FailedPrecondition) as exc:
        domain.require_may_rate(s, None)
    assert exc.value.reason == "not_verified"
    with pytest.raises(FailedPrecondition):
        domain.require_may_reject(s, verdict(1, domain.FAILED))


def test_within_seven_days_both_after_it_only_rating_after_thirty_neither() -> None:
    v, w = verdict(), domain.Windows()
    s = domain.standing(v, T0 + timedelta(days=6), w, rated=False, decided_current=False)
    assert s.can_rate and s.can_reject and s.why_not == ""
    assert s.rate_until == T0 + timedelta(days=30) and s.reject_until == T0 + timedelta(days=7)
    s = domain.standing(v, T0 + timedelta(days=8), w, rated=False, decided_current=False)
    assert s.can_rate and not s.can_reject
    with pytest.raises(FailedPrecondition) as exc:
        domain.require_may_reject(s, v)
    assert exc.value.reason == "window_closed"
    assert domain.require_may_rate(s, v) == v
    s = domain.standing(v, T0 + timedelta(days=31), w, rated=False, decided_current=False)
    with pytest.raises(FailedPrecondition) as exc:
        domain.require_may_rate(s, v)
    assert exc.value.reason == "window_closed"


def test_the_tenants_windows_apply() -> None:
    w = domain.check_windows(3, 1)
    s = domain.standing(verdict(), T0 + timedelta(days=2), w, rated=False, decided_current=False)
    assert s.can_rate and not s.can_reject


def test_a_second_rating_is_refused_and_a_rated_result_cannot_be_rejected() -> None:
    s = domain.standing(verdict(), T0, domain.Windows(), rated=True, decided_current=True)
    with pytest.raises(AlreadyExists) as exc:
        domain.require_may_rate(s, verdict())
    assert exc.value.reason == "already_rated"
    with pytest.raises(AlreadyExists):
        domain.require_may_reject(s, verdict())


def test_a_rejected_verification_is_neither_rated_nor_rejected_again() -> None:
    s = domain.standing(verdict(), T0, domain.Windows(), rated=False, decided_current=True)
    with pytest.raises(AlreadyExists) as exc:
        domain.require_may_reject(s, verdict())
    assert exc.value.reason == "already_rejected"
    with pytest.raises(AlreadyExists):
        domain.require_may_rate(s, verdict())


def test_after_a_rejection_the_reopened_task_can_be_rated_once_verified_again() -> None:
    rejected = verdict(1, domain.FAILED, verification_id="resident:v1", method="resident")
    s = domain.standing(rejected, T0, domain.Windows(), rated=False, decided_current=False)
    assert not s.can_rate and s.why_not == domain.REJECTED
    again = verdict(2, at=T0 + timedelta(days=5))
    s = domain.standing(again, T0 + timedelta(days=6), domain.Windows(), rated=False, decided_current=False)
    assert s.can_rate and s.can_reject


@pytest.mark.parametrize("score", [0, 6, -1])
def test_a_score_is_1_to_5(score: int) -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_score(score)
    assert exc.value.field == "score"


def test_texts_are_bounded_and_a_reason_is_required() -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.text("", "reason", "退回理由", 500, required=True)
    assert exc.value.field == "reason"
    with pytest.raises(InvalidArgument):
        domain.text("x" * 501, "comment", "评价内容", 500)
    with pytest.raises(InvalidArgument):
        domain.text("a\x00b", "comment", "评价内容", 500)
    assert domain.text("  很好 ", "comment", "评价内容", 500) == "很好"


def test_a_reason_goes_into_the_event_without_phone_numbers() -> None:
    assert domain.redact("没修好，请打13812345678联系") == "没修好，请打***联系"
    assert domain.redact("灯还是不亮") == "灯还是不亮"


def test_windows_are_bounded() -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_windows(0, 7)
    assert exc.value.field == "rating_window_days"
    with pytest.raises(InvalidArgument) as exc:
        domain.check_windows(30, 91)
    assert exc.value.field == "rejection_window_days"


# ---------------------------------------------------------------- quarters and unit ratings


def test_quarters_are_named_in_asia_shanghai() -> None:
    assert domain.quarter_of(datetime(2026, 12, 31, 16, 30, tzinfo=UTC)) == "2027Q1"  # 00:30 on 1 January
    assert domain.quarter_of(datetime(2026, 12, 31, 15, 59, tzinfo=UTC)) == "2026Q4"
    assert domain.previous_quarter("2027Q1") == "2026Q4"


def test_a_unit_is_rated_for_the_current_or_the_last_quarter() -> None:
    now = datetime(2026, 11, 5, tzinfo=UTC)
    assert domain.check_quarter("", now) == "2026Q4"
    assert domain.check_quarter("2026q3", now) == "2026Q3"
    for bad in ("2026Q2", "2027Q1", "2026-Q4", "Q4"):
        with pytest.raises(InvalidArgument) as exc:
            domain.check_quarter(bad, now)
        assert exc.value.field == "quarter"


def test_one_rating_per_rater_unit_and_quarter() -> None:
    a = domain.unit_rating_id("2026Q4", "mu-1", "person:p1")
    assert a == domain.unit_rating_id("2026Q4", "mu-1", "person:p1")
    assert a != domain.unit_rating_id("2026Q4", "mu-1", "person:p2")
    assert a != domain.unit_rating_id("2026Q3", "mu-1", "person:p1")


def test_a_rater_rates_units_of_its_own_community_and_a_unit_not_itself() -> None:
    rater = domain.Rater(domain.RATER_MEMBER, "member_unit:mu-1", "c1")
    with pytest.raises(PermissionDenied) as exc:
        domain.check_rater(rater, "mu-2", "c2")
    assert exc.value.reason == "community_out_of_scope"
    with pytest.raises(InvalidArgument):
        domain.check_rater(rater, "mu-1", "c1")
    domain.check_rater(rater, "mu-2", "c1")


def test_a_member_rates_as_its_unit_or_person_not_as_a_team() -> None:
    assert domain.rater_of_member(("member_unit", "mu-1")) == "member_unit:mu-1"
    assert domain.rater_of_member(("person", "p-1")) == "person:p-1"
    for bad in (("team", "t-1"), None):
        with pytest.raises(PermissionDenied):
            domain.rater_of_member(bad)
