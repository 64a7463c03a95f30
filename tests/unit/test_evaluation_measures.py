"""The measures' and boards' definitions (services/evaluation/measures/domain.py and consumer.facts_of): no
infrastructure."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

import pytest
from hongling.events.v1 import alliance_events_pb2 as aev
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import evaluation_events_pb2 as eev

from services.evaluation.measures import domain
from services.evaluation.measures.consumer import facts_of

AT = datetime(2026, 9, 30, 17, 0, tzinfo=UTC)  # 2026-10-01 01:00 in Shanghai


def fold(kind: str, partials: list[dict]) -> dict:
    row = None
    for p in partials:
        row = domain.merge(kind, row, p)
    assert row is not None
    return row


def tally(kind: str, row: dict) -> Counter:
    out: Counter = Counter()
    for scope, period, subject, counter, n in domain.contributions(kind, row):
        out[(scope, period, subject, counter)] += n
    return out


def test_periods_are_named_in_shanghai() -> None:
    assert domain.month_of(AT) == "2026-10"
    assert domain.quarter_of(AT) == "2026Q4"
    assert domain.quarter_months("2026Q4") == ["2026-10", "2026-11", "2026-12"]
    assert domain.quarter_end("2026Q3") == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert domain.is_period("2026-12") and domain.is_period("2026Q1") and not domain.is_period("2026-13")


def test_a_target_answering_in_time_counts_as_called_and_responded_for_itself_its_community_and_the_tenant() -> None:
    row = fold(
        "target",
        [
            {"whistle_id": "w1", "target": "member_unit:u1", "community_id": "c1", "called": True, "blown_at": AT},
            {"whistle_id": "w1", "target": "member_unit:u1", "reported": True, "in_time": True, "reported_at": AT},
        ],
    )
    t = tally("target", row)
    for scope, subject in (("c1", "member_unit:u1"), ("*", "member_unit:u1"), ("c1", "community:c1"), ("*", "tenant")):
        for period in ("2026-10", "2026Q4"):
            assert t[(scope, period, subject, "called")] == 1
            assert t[(scope, period, subject, "responded")] == 1


def test_a_late_answer_is_called_but_not_responded() -> None:
    row = fold(
        "target", [{"whistle_id": "w", "target": "person:p", "reported": True, "in_time": False, "reported_at": AT}]
    )
    t = tally("target", row)
    assert t[("*", "2026Q4", "person:p", "called")] == 1
    assert t[("*", "2026Q4", "person:p", "responded")] == 0


def test_a_fact_row_is_the_same_whatever_order_its_events_arrive_in() -> None:
    parts = [
        {
            "task_id": "t",
            "community_id": "c",
            "crew": ["person:a"],
            "verdicts": 1,
            "failures": 1,
            "first_fail": True,
            "anchor_at": AT,
        },
        {
            "task_id": "t",
            "community_id": "c",
            "crew": ["person:b"],
            "verdicts": 1,
            "first_pass": False,
            "anchor_at": datetime(2026, 10, 9, tzinfo=UTC),
        },
        {"task_id": "t", "community_id": "c", "missed": True},
    ]
    rows = {repr(sorted(fold("task", list(p)).items())) for p in itertools.permutations(parts)}
    assert len(rows) == 1


def test_resolution_counts_only_a_pass_on_the_first_verification_and_reopen_counts_a_residents_rejection() -> None:
    verified = facts_of(
        "hongling.events.v1.TaskVerified",
        eev.TaskVerified(task_id="t1", community_id="c", attempt=1, crew_ids=["person:a"], verified_at=None),
        AT,
    )
    resident = facts_of(
        "hongling.events.v1.TaskVerificationFailed",
        eev.TaskVerificationFailed(task_id="t1", community_id="c", attempt=1, method="resident", crew_ids=["person:a"]),
        AT,
    )
    row = fold("task", [verified[0][1], resident[0][1]])
    t = tally("task", row)
    assert t[("c", "2026Q4", "person:a", "closed")] == 1
    assert t[("c", "2026Q4", "person:a", "resolved")] == 1  # the verification passed first time
    assert t[("c", "2026Q4", "person:a", "reopened")] == 1  # and the resident sent it back
    second = facts_of(
        "hongling.events.v1.TaskVerified",
        eev.TaskVerified(task_id="t2", community_id="c", attempt=2, crew_ids=["person:a"]),
        AT,
    )
    assert tally("task", fold("task", [second[0][1]]))[("c", "2026Q4", "person:a", "resolved")] == 0


def test_a_missed_deadline_alone_anchors_nothing_until_the_task_is_decided() -> None:
    missed = facts_of("hongling.events.v1.DeadlineMissed", dev.DeadlineMissed(deadline="completion", task_id="t"), AT)
    assert domain.contributions("task", fold("task", [missed[0][1]])) == []


def test_satisfaction_counts_ratings_of_four_or_five_for_every_helper_on_the_crew() -> None:
    rated = facts_of(
        "hongling.events.v1.IssueRated",
        eev.IssueRated(issue_id="i", rating_id="r", community_id="c", score=4, crew_ids=["person:a", "member_unit:u"]),
        AT,
    )
    t = tally("rating", fold("rating", [rated[0][1]]))
    assert t[("c", "2026-10", "person:a", "satisfied")] == 1
    assert t[("c", "2026-10", "member_unit:u", "ratings")] == 1


def test_a_units_quarterly_rating_counts_in_its_quarter_only() -> None:
    rated = facts_of(
        "hongling.events.v1.UnitRated",
        eev.UnitRated(rating_id="r", unit_id="u", community_id="c", quarter="2026Q3", score=5),
        AT,
    )
    t = tally("rating", fold("rating", [rated[0][1]]))
    assert {k[1] for k in t} == {"2026Q3"}


def test_rates_and_the_composite() -> None:
    counts = {"called": 4, "responded": 3, "closed": 2, "resolved": 1, "reopened": 1, "ratings": 0}
    values = {v.measure: v for v in domain.measures_of(counts, "2026Q4")}
    assert values["response"].rate == 0.75
    assert values["resolution"].rate == 0.5
    assert values["satisfaction"].rate is None
    assert values["whistle"].rate == pytest.approx(4 / 3)
    assert values["reopen"].rate == 0.5
    # response .75·.2, resolution .5·.25, on_time 1·.1, no-reopen .5·.1, duties (whistles) .75·.1; over .75
    assert domain.composite(counts, domain.DEFAULT_WEIGHTS) == pytest.approx(
        100 * (0.15 + 0.125 + 0.1 + 0.05 + 0.075) / 0.75, abs=1e-3
    )


def good(n: int, of: int) -> dict[str, int]:
    return {"closed": of, "resolved": n, "ratings": of, "satisfied": n, "called": of, "responded": of}


def test_one_perfect_task_does_not_beat_a_hundred_good_ones() -> None:
    others = [domain.Candidate(f"person:o{i}", f"丙{i}", good(70, 100)) for i in range(5)]
    board = domain.rank(
        [
            domain.Candidate("person:one", "甲", good(1, 1)),
            domain.Candidate("person:many", "乙", good(95, 100)),
            *others,
        ],
        domain.Settings(),
    )
    order = [e.subject for e in board]
    assert order.index("person:many") < order.index("person:one")
    # without the shrinkage (k = 0) the single perfect task would lead
    assert (
        domain.rank(
            board
            and [
                domain.Candidate("person:one", "甲", good(1, 1)),
                domain.Candidate("person:many", "乙", good(95, 100)),
            ],
            domain.Settings(prior=0),
        )[0].subject
        == "person:one"
    )


def test_ties_break_by_workload_then_by_id() -> None:
    same = good(5, 5)
    board = domain.rank(
        [
            domain.Candidate("person:b", "乙", same),
            domain.Candidate("person:a", "甲", same),
            domain.Candidate("person:c", "丙", good(10, 10)),
        ],
        domain.Settings(prior=0),
    )
    assert [(e.rank, e.subject) for e in board] == [(1, "person:c"), (2, "person:a"), (3, "person:b")]


def test_every_entrant_has_its_explanation_which_facts_and_which_weights() -> None:
    (entry,) = domain.rank([domain.Candidate("member_unit:u", "红叶物业", good(3, 4))], domain.Settings())
    assert sum(p.points for p in entry.parts) == pytest.approx(entry.score, abs=1e-3)
    resolution = next(p for p in entry.parts if p.component == "resolution")
    assert (resolution.numerator, resolution.denominator, resolution.weight) == (3, 4, 0.25)
    text = entry.explanation()
    assert "解决率 3/4" in text and "权重 0.25" in text


def test_boards_take_property_companies_social_organisations_party_members_and_volunteers() -> None:
    assert domain.boards_for("member_unit", "property_company", ()) == ["red_property"]
    assert domain.boards_for("member_unit", "grassroots_association", ()) == ["social_org"]
    assert domain.boards_for("member_unit", "owners_committee", ()) == []
    assert domain.boards_for("person", "", ["volunteer", "party_member"]) == ["party_member", "volunteer"]


def test_settings_are_checked_naming_the_field() -> None:
    with pytest.raises(domain.Invalid) as bad:
        domain.check_settings({"speed": 1}, 5, 1, 72)
    assert bad.value.field == "weights"
    with pytest.raises(domain.Invalid) as neg:
        domain.check_settings({}, -1, 1, 72)
    assert neg.value.field == "prior"
    assert domain.check_settings({"response": 1}, 5, 1, 0).weights["response"] == 1


def test_a_correction_states_its_difference() -> None:
    a = domain.rank([domain.Candidate("person:a", "甲", good(5, 5))], domain.Settings())
    b = domain.rank(
        [domain.Candidate("person:a", "甲", good(5, 5)), domain.Candidate("person:b", "乙", good(9, 9))],
        domain.Settings(),
    )
    text = domain.changes({"volunteer": a}, {"volunteer": b})
    assert "乙 新上榜" in text and "志愿者明星榜" in text
    assert domain.same_boards({"volunteer": a}, {"volunteer": a})
    assert domain.changes({"volunteer": a}, {"volunteer": a}) == ""


def test_a_batchs_columns_travel_as_one_parameter_each_with_empty_values_kept() -> None:
    from services.evaluation.measures import readmodel

    assert readmodel._joined(readmodel.COUNTS, "scope", [""]) == "\x1f."  # one empty value, not none
    assert readmodel._joined(readmodel.COUNTS, "n", [3, -1]) == "3\x1f-1\x1f."
    assert readmodel._joined(readmodel.COUNTS, "scope", ["a\x00\x1fb"]) == "ab\x1f."  # NUL and SEP dropped
    assert readmodel._array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'


def duty_tally(events: list[tuple[str, object]]) -> dict[str, Counter]:
    """Each duty fact row folded from its events (in the order given) and what it adds, by fact id."""
    parts: dict[str, list[dict]] = {}
    for type_, msg in events:
        for kind, row in facts_of(f"hongling.events.v1.{type_}", msg, AT):
            assert kind == "duty"
            parts.setdefault(row["fact_id"], []).append(row)
    return {fid: tally("duty", fold("duty", p)) for fid, p in parts.items()}


def unit_duty(t: dict[str, Counter], duty: str) -> tuple[int, int]:
    total: Counter = Counter()
    for c in t.values():
        total += c
    key = ("*", "2026Q4", "member_unit:u")
    return total[(*key, f"duty_{duty}_met")], total[(*key, f"duty_{duty}_expected")]


def test_a_pledge_withdrawn_before_delivery_is_not_expected_and_a_delivered_one_is_met() -> None:
    pledged = aev.ResourcePledged(pledge_id="pl1", community_id="c", unit_id="u")
    withdrawn = aev.ResourcePledgeWithdrawn(pledge_id="pl1", community_id="c", unit_id="u")
    for order in itertools.permutations([("ResourcePledged", pledged), ("ResourcePledgeWithdrawn", withdrawn)]):
        assert unit_duty(duty_tally(list(order)), "resources") == (0, 0)
    delivered = aev.ResourceDelivered(pledge_id="pl2", community_id="c", unit_id="u")
    events = [("ResourcePledged", aev.ResourcePledged(pledge_id="pl2", community_id="c", unit_id="u"))]
    assert unit_duty(duty_tally(events), "resources") == (0, 1)  # pledged, not yet delivered: expected, not met
    assert unit_duty(duty_tally([*events, ("ResourceDelivered", delivered)]), "resources") == (1, 1)
    # a withdrawal cannot follow a delivery (the alliance refuses it); should both arrive, met wins
    late = aev.ResourcePledgeWithdrawn(pledge_id="pl2", community_id="c", unit_id="u")
    both = [*events, ("ResourceDelivered", delivered), ("ResourcePledgeWithdrawn", late)]
    assert {unit_duty(duty_tally(list(o)), "resources") for o in itertools.permutations(both)} == {(1, 1)}


def test_a_place_given_back_is_not_expected_a_new_sign_up_is_and_a_waiting_one_never_was() -> None:
    def ev(cls: type, **kw: object) -> object:
        return cls(activity_id="a1", community_id="c", unit_id="u", **kw)

    withdrawn = [
        ("ActivitySignedUp", ev(aev.ActivitySignedUp, signup=1)),
        ("ActivitySignupWithdrawn", ev(aev.ActivitySignupWithdrawn, signup=1)),
    ]
    for order in itertools.permutations(withdrawn):
        assert unit_duty(duty_tally(list(order)), "cobuilding") == (0, 0)
    again = [*withdrawn, ("ActivitySignedUp", ev(aev.ActivitySignedUp, signup=2))]
    assert unit_duty(duty_tally(again), "cobuilding") == (0, 1)  # signed up again: expected again
    attended = [*again, ("ActivityAttended", ev(aev.ActivityAttended, signup=2))]
    for order in itertools.permutations(attended):
        assert unit_duty(duty_tally(list(order)), "cobuilding") == (1, 1)
    waiting = [
        ("ActivitySignedUp", ev(aev.ActivitySignedUp, waiting=True, position=1, signup=1)),
        ("ActivitySignupWithdrawn", ev(aev.ActivitySignupWithdrawn, waiting=True, signup=1)),
    ]
    assert unit_duty(duty_tally(waiting), "cobuilding") == (0, 0)
    # events from before sign-ups were numbered (signup 0) are the participant's first sign-up
    old = [("ActivitySignedUp", ev(aev.ActivitySignedUp)), ("ActivityAttended", ev(aev.ActivityAttended, signup=1))]
    assert list(duty_tally(old)) == ["activity:a1:member_unit:u"] and unit_duty(duty_tally(old), "cobuilding") == (1, 1)
