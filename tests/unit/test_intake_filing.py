"""Verification before filing (核实立案), the pure parts: which filing rule an issue gets, the statuses, what a
decision must carry, and the words the reporter reads. No infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.intake import domain
from services.intake.classify import (
    DEFAULT_VERIFY_MINUTES,
    FILING_DIRECT,
    FILING_VERIFY,
    default_rules,
    filing_for,
    rules_from_dict,
)


def rules_with(filing: list[dict[str, Any]]) -> Any:
    return rules_from_dict({**default_rules().to_dict(), "filing": filing}, 1)


# ---------------------------------------------------------------- the rule


def test_the_shipped_default_verifies_routine_and_major_and_files_urgent_directly() -> None:
    rules = default_rules()
    assert rules.filing == ()
    routine, major = filing_for(rules, "property_repair", "routine"), filing_for(rules, "property_repair", "major")
    assert (routine.mode, routine.deadline_minutes) == (FILING_VERIFY, 4 * 60)
    assert (major.mode, major.deadline_minutes) == (FILING_VERIFY, 24 * 60)
    assert "默认" in routine.reason and "default for routine" in routine.reason
    assert filing_for(rules, "property_repair", "urgent").mode == FILING_DIRECT


def test_a_deployment_may_file_every_class_directly_by_default() -> None:
    rules = default_rules()
    for urgency in ("routine", "major", "urgent"):
        assert filing_for(rules, "property_repair", urgency, "direct").mode == FILING_DIRECT
    # A tenant's own rule still wins over either default.
    own = rules_with([{"mode": "verify", "urgency": "routine"}])
    assert filing_for(own, "property_repair", "routine", "direct").mode == FILING_VERIFY


def test_verify_without_a_deadline_takes_the_class_default() -> None:
    rules = rules_with([{"mode": "verify", "urgency": "routine"}, {"mode": "verify", "urgency": "major"}])
    routine = filing_for(rules, "sanitation", "routine")
    assert (
        (routine.mode, routine.deadline_minutes)
        == (FILING_VERIFY, 240)
        == (FILING_VERIFY, DEFAULT_VERIFY_MINUTES["routine"])
    )
    assert "4 小时" in routine.reason and "4 h" in routine.reason
    assert filing_for(rules, "sanitation", "major").deadline_minutes == 24 * 60
    assert filing_for(rules, "sanitation", "urgent").mode == FILING_DIRECT  # urgent: the default, direct


def test_the_most_specific_rule_wins() -> None:
    rules = rules_with(
        [
            {"mode": "verify", "deadline_minutes": 600},  # everything
            {"mode": "direct", "urgency": "major"},
            {"mode": "verify", "category": "sanitation", "deadline_minutes": 30},
            {"mode": "direct", "category": "sanitation", "urgency": "routine"},
        ]
    )
    assert filing_for(rules, "sanitation", "routine").mode == FILING_DIRECT  # category + urgency
    assert filing_for(rules, "sanitation", "major").deadline_minutes == 30  # category beats urgency
    assert filing_for(rules, "property_repair", "major").mode == FILING_DIRECT  # urgency beats the catch-all
    assert filing_for(rules, "property_repair", "urgent").deadline_minutes == 600  # the rule naming neither
    assert "30 分钟" in filing_for(rules, "sanitation", "major").reason


def test_rules_round_trip_through_their_stored_form() -> None:
    rules = rules_with([{"mode": "verify", "category": "sanitation", "urgency": "major", "deadline_minutes": 90}])
    again = rules_from_dict(rules.to_dict(), 2)
    assert again.filing == rules.filing


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"mode": "later"}, "filing[0].mode"),
        ({"mode": "verify", "category": "nope"}, "filing[0].category"),
        ({"mode": "verify", "urgency": "soon"}, "filing[0].urgency"),
        ({"mode": "verify", "deadline_minutes": 50_000}, "filing[0].deadline_minutes"),
        ({"mode": "verify", "deadline_minutes": "4h"}, "filing[0].deadline_minutes"),
        ({"mode": "direct", "deadline_minutes": 30}, "filing[0].deadline_minutes"),
    ],
)
def test_a_bad_filing_rule_is_refused_naming_its_field(rule: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        rules_with([rule])
    assert err.value.field == field


def test_the_same_rule_twice_is_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        rules_with([{"mode": "verify", "urgency": "major"}, {"mode": "direct", "urgency": "major"}])
    assert err.value.field == "filing[1]"


# ---------------------------------------------------------------- statuses


def test_pending_comes_before_classified_and_declined_is_closed_and_final() -> None:
    assert domain.RANK["received"] < domain.RANK["pending_verification"] < domain.RANK["classified"]
    assert "declined" in domain.CLOSED and "pending_verification" not in domain.CLOSED
    assert domain.STATUS_ZH["pending_verification"] == "待核实"
    assert domain.STATUS_ZH["declined"] == "不予立案"
    assert domain.open311_status("declined") == "closed"
    assert domain.open311_status("pending_verification") == "open"
    at = datetime(2026, 12, 6, tzinfo=UTC)
    kw: dict[str, Any] = {"reopen": False, "event_at": at, "last_change_at": None, "reopened_at": None}
    assert domain.next_status("declined", "whistle_blown", **kw) is None
    assert domain.next_status("declined", "cancelled", **kw) is None
    assert domain.next_status("pending_verification", "classified", **kw) == "classified"
    assert domain.next_status("pending_verification", "declined", **kw) == "declined"
    assert not domain.is_open_original("declined") and domain.is_open_original("pending_verification")


def test_only_a_pending_issue_can_be_decided() -> None:
    domain.check_can_decide("pending_verification", "accept", "i1")
    for status in ("classified", "whistle_blown", "declined", "duplicate"):
        with pytest.raises(FailedPrecondition) as err:
            domain.check_can_decide(status, "decline", "i1")
        assert err.value.reason == "already_decided" and status in err.value.message


def test_the_overdue_flag_holds_only_while_pending() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    assert domain.is_verification_overdue("pending_verification", at)
    assert not domain.is_verification_overdue("pending_verification", None)
    assert not domain.is_verification_overdue("classified", at)


# ---------------------------------------------------------------- decisions


def decide(decision: str = "decline", **kw: str) -> domain.FilingDecision:
    return domain.check_filing_decision("i1", decision, **kw)


def test_decline_texts_name_the_reason_and_where_to_turn_in_both_languages() -> None:
    assert domain.decline_text(decide(reason="out_of_scope", referred_to="12345")) == (
        "不予立案：不属于社区职责，已转12345热线",
        "declined: out of scope, referred to 12345",
    )
    dept = decide(reason="out_of_scope", referred_to="department", referred_name="区住建局")
    assert domain.decline_text(dept) == (
        "不予立案：不属于社区职责，已转区住建局",
        "declined: out of scope, referred to 区住建局",
    )
    court = domain.decline_text(decide(reason="out_of_scope", referred_to="court"))
    assert court == ("不予立案：不属于社区职责，请向人民法院寻求解决", "declined: out of scope, referred to a court")
    other = decide(reason="out_of_scope", referred_to="泰山区消费者协会")
    assert (other.referred_to, other.referred_name) == ("other", "泰山区消费者协会")
    assert domain.decline_text(other)[0] == "不予立案：不属于社区职责，已转泰山区消费者协会"
    assert domain.decline_text(decide(reason="duplicate", duplicate_of="abc123")) == (
        "不予立案：重复反映，已并入事项 abc123",
        "declined: duplicate of issue abc123",
    )
    ask = domain.decline_text(decide(reason="insufficient_info", ask="具体楼号和单元"))
    assert ask == (
        "不予立案：信息不足，请补充：具体楼号和单元",
        "declined: not enough information; please add: 具体楼号和单元",
    )
    assert domain.decline_text(decide(reason="abusive"))[1] == "declined: abusive"


def test_the_worker_note_is_kept_but_not_in_what_the_reporter_reads() -> None:
    d = decide(reason="abusive", note="多次重复辱骂")
    assert d.note == "多次重复辱骂" and "辱骂" not in "".join(domain.decline_text(d))


@pytest.mark.parametrize(
    ("decision", "kw", "field"),
    [
        ("maybe", {}, "decision"),
        ("decline", {}, "reason"),
        ("decline", {"reason": "lazy"}, "reason"),
        ("decline", {"reason": "out_of_scope"}, "referred_to"),
        ("decline", {"reason": "out_of_scope", "referred_to": "department"}, "referred_name"),
        ("decline", {"reason": "duplicate"}, "duplicate_of"),
        ("decline", {"reason": "duplicate", "duplicate_of": "i1"}, "duplicate_of"),
        ("decline", {"reason": "duplicate", "duplicate_of": "../x"}, "duplicate_of"),
        ("decline", {"reason": "insufficient_info"}, "ask"),
        ("decline", {"reason": "abusive", "referred_to": "12345"}, "referred_to"),
        ("decline", {"reason": "abusive", "ask": "x"}, "ask"),
        ("accept", {"reason": "abusive"}, "reason"),
        ("decline", {"reason": "abusive", "note": "x" * 501}, "note"),
        # Personal data never goes where the reporter and Open311 read it.
        ("decline", {"reason": "insufficient_info", "ask": "请拨打13812345678联系"}, "ask"),
        (
            "decline",
            {"reason": "out_of_scope", "referred_to": "department", "referred_name": "电话 0538-1234567"},
            "referred_name",
        ),
        ("accept", {"note": "身份证370902199001011234"}, "note"),
    ],
)
def test_a_bad_decision_is_refused_naming_its_field(decision: str, kw: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.check_filing_decision("i1", decision, **kw)
    assert err.value.field == field
    assert "13812345678" not in err.value.message and "1234567" not in err.value.message


def test_an_accept_takes_a_note_only() -> None:
    assert decide("accept", note="已电话核实") == domain.FilingDecision("accept", note="已电话核实")


def test_pending_text_gives_the_deadline_in_shanghai_time() -> None:
    zh, en = domain.pending_text("routine", datetime(2026, 12, 6, 1, 30, tzinfo=UTC))
    assert zh == "已分类为日常事项，待社区核实立案（2026-12-06 09:30 前）"
    assert en == "classified as routine; awaiting verification by the community (by 2026-12-06 09:30 +08:00)"
