"""The ledger's rules without infrastructure: pledges, time-bank credits and the funds' balanced postings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.alliance.ledger import domain
from services.common.errors import FailedPrecondition, InvalidArgument


def test_a_pledge_is_for_a_task_an_activity_or_a_meetings_decision_item() -> None:
    assert domain.target("task", "t-1") == ("task", "t-1", "")
    assert domain.target("decision", "m-1", "i-2") == ("decision", "m-1", "i-2")
    with pytest.raises(InvalidArgument) as bad:
        domain.target("party", "x")
    assert bad.value.field == "for_kind"
    with pytest.raises(InvalidArgument) as missing:
        domain.target("decision", "m-1")
    assert missing.value.field == "item_id"
    with pytest.raises(InvalidArgument):
        domain.target("task", "t-1", "i-2")


def test_a_pledged_quantity_is_positive_and_at_most_what_the_list_offers() -> None:
    assert domain.quantity(2, 3) == 2.0
    assert domain.quantity(5, 0) == 5.0  # the list does not say how much
    for wrong in (0, -1, float("nan")):
        with pytest.raises(InvalidArgument):
            domain.quantity(wrong, 3)
    with pytest.raises(InvalidArgument) as over:
        domain.quantity(4, 3)
    assert "资源清单" in over.value.message


def test_only_a_pledged_pledge_is_delivered_or_withdrawn_and_its_age_is_computed_when_read() -> None:
    domain.can_deliver(domain.PLEDGED)
    domain.can_withdraw(domain.PLEDGED)
    for status in (domain.DELIVERED, domain.WITHDRAWN):
        with pytest.raises(FailedPrecondition):
            domain.can_deliver(status)
        with pytest.raises(FailedPrecondition):
            domain.can_withdraw(status)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert domain.age_seconds(at, at + timedelta(hours=3)) == 3 * 3600


def test_a_credit_is_derived_from_its_source_and_person_so_it_happens_once() -> None:
    one = domain.entry_id("shift", "post-1/s-1", "p-1")
    assert one == domain.entry_id("shift", "post-1/s-1", "p-1")
    assert one != domain.entry_id("shift", "post-1/s-1", "p-2")
    assert one != domain.entry_id("activity", "post-1/s-1", "p-1")


def test_facts_credit_positive_hours_capped_at_a_day_and_corrections_may_be_negative() -> None:
    assert domain.fact_hours(2.5) == 2.5
    assert domain.fact_hours(30) == 24.0
    assert domain.fact_hours(0) is None and domain.fact_hours(-1) is None
    assert domain.correction_hours(-1.5) == -1.5
    with pytest.raises(InvalidArgument):
        domain.correction_hours(0)


def test_verified_tasks_credit_the_persons_of_the_crew_by_call_type() -> None:
    assert domain.crew_people(["person:p-1", "member_unit:u-1", "team:t-1", "person:p-1", "person:p-2"]) == [
        "p-1",
        "p-2",
    ]
    assert domain.task_hours(domain.DEFAULT_TASK_HOURS, "tackling") == 4.0
    rules = domain.rules_hours([("service", 1.5)])
    assert rules == {"service": 1.5, "tackling": 4.0, "emergency": 3.0}
    with pytest.raises(InvalidArgument):
        domain.rules_hours([("picnic", 1)])


def test_every_fund_entry_is_balanced_and_moves_the_fund_account_by_its_amount() -> None:
    alloc = domain.postings(domain.ALLOCATION, "c-1", "running", 10_000, "街道拨款")
    spend = domain.postings(domain.SPENDING, "c-1", "running", 2_500, "task")
    account = domain.fund_account("c-1", "running")
    assert domain.balanced(alloc) and domain.balanced(spend)
    assert domain.fund_delta(alloc, account) + domain.fund_delta(spend, account) == 7_500
    assert {p.account for p in alloc} == {account, "source:街道拨款"}
    assert {p.account for p in spend} == {account, "expense:task"}


def test_spending_beyond_the_balance_is_refused_in_integer_fen() -> None:
    assert domain.spend(10_000, 10_000) == 0
    with pytest.raises(FailedPrecondition) as refused:
        domain.spend(100, 101)
    assert refused.value.reason == "insufficient_funds" and "余额不足" in refused.value.message
    for wrong in (0, -5, 1.5, True):
        with pytest.raises(InvalidArgument):
            domain.amount(wrong)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        domain.fund("party_fees")


def test_months_and_years_are_local_to_asia_shanghai() -> None:
    # 2026-01-31 17:00 UTC is 2026-02-01 01:00 in Shanghai.
    assert domain.local_month(datetime(2026, 1, 31, 17, tzinfo=UTC)) == date(2026, 2, 1)
    start, end = domain.year_bounds(2026)
    assert start == datetime(2025, 12, 31, 16, tzinfo=UTC) and end == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert domain.parse_month("2026-03", "from_month") == date(2026, 3, 1)
    with pytest.raises(InvalidArgument):
        domain.parse_month("March", "from_month")
