"""Dispatch rules without infrastructure: call types, deadline arithmetic, the task state machine, places."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.dispatch import domain
from services.dispatch.domain import (
    ACCEPTED,
    ASSIGNED,
    ASSISTANT,
    CANCELLED,
    DONE,
    IN_PROGRESS,
    LEAD,
    OPEN,
    REJECTED,
    REOPENED,
    VERIFIED,
    Member,
)

AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Tai'an


def test_the_class_picks_the_call() -> None:
    assert domain.call_type_for("routine") == "service"
    assert domain.call_type_for("major") == "tackling"
    assert domain.call_type_for("urgent") == "emergency"
    assert domain.call_type_for("") == "service"  # an unclassified issue gets the mildest call
    assert domain.CALL_NAMES["emergency"][0] == "紧急集结号"
    assert domain.more_urgent("emergency", "tackling") and domain.more_urgent("tackling", "service")
    assert not domain.more_urgent("service", "service") and not domain.more_urgent("service", "emergency")


@pytest.mark.parametrize(
    ("call", "report_in", "complete"),
    [
        ("emergency", timedelta(minutes=30), timedelta(hours=24)),
        ("tackling", timedelta(hours=24), timedelta(days=7)),
        ("service", timedelta(hours=72), timedelta(days=15)),
    ],
)
def test_default_deadlines_count_from_the_call(call: str, report_in: timedelta, complete: timedelta) -> None:
    dl = domain.deadlines_for(domain.DEFAULT_RULES.rule(call), AT)
    assert dl.report_in_by == AT + report_in
    assert dl.complete_by == AT + complete


def test_reminders_come_before_the_deadline_and_never_in_the_past() -> None:
    rule = domain.DEFAULT_RULES.rule("emergency")
    dl = domain.deadlines_for(rule, AT)
    assert dl.report_in_reminder(rule, AT) == AT + timedelta(minutes=20)
    assert dl.completion_reminder(rule, AT) == AT + timedelta(hours=22)
    # Past its moment (e.g. a call upgraded late): no reminder rather than one after the fact.
    assert dl.report_in_reminder(rule, AT + timedelta(minutes=25)) is None
    assert domain.reminder_at(AT, timedelta(0), AT - timedelta(days=1)) is None


def test_an_upgrade_brings_deadlines_forward_and_never_pushes_them_back() -> None:
    service = domain.DEFAULT_RULES.rule("service")
    emergency = domain.DEFAULT_RULES.rule("emergency")
    dl = domain.deadlines_for(service, AT)
    later = AT + timedelta(hours=5)
    up = domain.upgraded_deadlines(dl, emergency, later)
    assert up.report_in_by == later + timedelta(minutes=30)
    assert up.complete_by == later + timedelta(hours=24)
    # Upgraded near the end of a service call, the earlier promise stays.
    near_end = dl.complete_by - timedelta(hours=1)
    up = domain.upgraded_deadlines(dl, emergency, near_end)
    assert up.complete_by == dl.complete_by
    assert up.report_in_by == dl.report_in_by


def test_district_escalation_follows_the_missed_deadline() -> None:
    rule = domain.DEFAULT_RULES.rule("tackling")
    assert domain.district_escalation_at(AT, rule) == AT + timedelta(hours=24)
    assert domain.is_late(AT + timedelta(seconds=1), AT) and not domain.is_late(AT, AT)


def test_ids_are_deterministic() -> None:
    assert domain.task_id_for_issue("i1") == domain.task_id_for_issue("i1") != domain.task_id_for_issue("i2")
    assert domain.whistle_id_for_issue("i1") == domain.whistle_id_for_issue("i1")
    assert domain.whistle_id_for_issue("i1") != domain.task_id_for_issue("i1")
    assert domain.manual_whistle_id("w", "k") == domain.manual_whistle_id("w", "k")
    assert domain.manual_whistle_id("w", "k") != domain.manual_whistle_id("other", "k")
    assert domain.manual_whistle_id("w", "") != domain.manual_whistle_id("w", "")


# ---------------------------------------------------------------- state machine


@pytest.mark.parametrize(
    ("status", "action", "to"),
    [
        (ACCEPTED, "start", IN_PROGRESS),
        (REOPENED, "start", IN_PROGRESS),
        (IN_PROGRESS, "done", DONE),
        (REJECTED, "reopen", REOPENED),
        (OPEN, "cancel", CANCELLED),
        (ASSIGNED, "cancel", CANCELLED),
        (IN_PROGRESS, "cancel", CANCELLED),
    ],
)
def test_legal_transitions(status: str, action: str, to: str) -> None:
    assert domain.transition(status, action) == to


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (OPEN, "start"),
        (OPEN, "done"),
        (ASSIGNED, "start"),  # must be accepted first
        (ACCEPTED, "done"),
        (DONE, "start"),
        (VERIFIED, "reopen"),
        (VERIFIED, "cancel"),
        (DONE, "cancel"),  # done work is verified or rejected, not cancelled
        (CANCELLED, "start"),
        (CANCELLED, "cancel"),
    ],
)
def test_illegal_transitions_are_failed_preconditions_naming_the_state(status: str, action: str) -> None:
    with pytest.raises(FailedPrecondition) as exc:
        domain.transition(status, action)
    assert exc.value.reason == "illegal_transition"
    assert domain.status_zh(status) in exc.value.message and status in exc.value.message


@pytest.mark.parametrize("status", [DONE, IN_PROGRESS, VERIFIED])
@pytest.mark.parametrize("action", ["verify", "reject"])
def test_verify_and_reject_are_no_transitions_any_more_but_evaluations_verdict(status: str, action: str) -> None:
    with pytest.raises(FailedPrecondition) as exc:
        domain.transition(status, action)
    assert exc.value.reason == "verified_by_evaluation" and exc.value.field == "action"
    assert "验单" in exc.value.message and "verification-queue" in exc.value.message


def verdict(passed: bool, method: str = "review", attempt: int = 1, vid: str = "t1:1") -> domain.Verdict:
    return domain.Verdict(passed, method, attempt, vid)


def test_a_passed_verdict_verifies_a_done_task_of_its_attempt() -> None:
    assert domain.apply_verdict(DONE, 1, [], verdict(True)) == [("verify", VERIFIED)]


def test_a_failed_verdict_rejects_and_reopens_a_done_task_in_one_step() -> None:
    assert domain.apply_verdict(DONE, 1, [], verdict(False, "onsite")) == [("reject", REJECTED), ("reopen", REOPENED)]


def test_a_resident_rejection_reopens_a_verified_task() -> None:
    assert domain.apply_verdict(VERIFIED, 1, ["t1:1"], verdict(False, "resident", 1, "r1")) == [
        ("resident_rejected", REOPENED)
    ]
    assert domain.apply_verdict(DONE, 1, [], verdict(False, "resident", 1, "r1")) == []


def test_a_verdict_applies_once_and_only_to_its_attempt() -> None:
    assert domain.apply_verdict(DONE, 1, ["t1:1"], verdict(True)) == []  # re-sent
    assert domain.apply_verdict(VERIFIED, 1, [], verdict(True)) == []  # already verified
    assert domain.apply_verdict(DONE, 2, ["t1:1"], verdict(False, vid="t1:1")) == []  # the first attempt's, late
    assert domain.apply_verdict(DONE, 2, ["t1:1"], verdict(True, attempt=1, vid="x")) == []
    assert domain.apply_verdict(DONE, 2, ["t1:1"], verdict(True, attempt=2, vid="t1:2")) == [("verify", VERIFIED)]
    assert domain.apply_verdict(IN_PROGRESS, 1, [], verdict(True)) == []


def test_unknown_action_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.transition(OPEN, "teleport")
    assert exc.value.field == "action"


def test_allowed_actions_drive_the_buttons() -> None:
    assert domain.allowed_actions(OPEN, lead_free=True, places_left=2) == ["assign", "claim", "cancel"]
    assert domain.allowed_actions(ASSIGNED, lead_free=False, places_left=1) == [
        "assign",
        "accept",
        "decline",
        "claim",
        "cancel",
    ]
    assert domain.allowed_actions(DONE, lead_free=False, places_left=0) == []  # verification is 验单's
    assert domain.allowed_actions(VERIFIED, lead_free=False, places_left=0) == []


# ---------------------------------------------------------------- places and claims


def crew(*members: tuple[str, str]) -> list[Member]:
    return [Member("person", pid, role) for pid, role in members]


def test_the_first_claim_of_an_open_task_takes_the_lead_then_assistants() -> None:
    assert domain.claim_role(OPEN, "", ("person", "a"), [], 1, 2) == LEAD
    assert domain.claim_role(ACCEPTED, "", ("person", "b"), crew(("a", LEAD)), 1, 2) == ASSISTANT
    assert domain.claim_role(OPEN, ASSISTANT, ("person", "b"), [], 1, 2) == ASSISTANT


def test_claiming_again_the_place_one_holds_changes_nothing() -> None:
    assert domain.claim_role(ACCEPTED, "", ("person", "a"), crew(("a", LEAD)), 1, 2) is None
    assert domain.claim_role(ACCEPTED, LEAD, ("person", "a"), crew(("a", LEAD)), 1, 2) is None
    with pytest.raises(FailedPrecondition) as exc:
        domain.claim_role(ACCEPTED, ASSISTANT, ("person", "a"), crew(("a", LEAD)), 1, 2)
    assert exc.value.reason == "already_claimed"


def test_a_full_task_answers_clearly() -> None:
    full = crew(("a", LEAD), ("b", ASSISTANT))
    with pytest.raises(FailedPrecondition) as exc:
        domain.claim_role(IN_PROGRESS, "", ("person", "c"), full, 1, 1)
    assert exc.value.reason == "no_places_left"
    assert "名额已满" in exc.value.message and "no places left" in exc.value.message
    with pytest.raises(FailedPrecondition) as exc:
        domain.claim_role(ACCEPTED, LEAD, ("person", "c"), crew(("a", LEAD)), 1, 3)
    assert exc.value.reason == "lead_taken"
    with pytest.raises(FailedPrecondition) as exc:
        domain.claim_role(ASSIGNED, LEAD, ("person", "c"), crew(("a", LEAD)), 1, 3)
    assert "awaits its assignee" in exc.value.message


@pytest.mark.parametrize("status", [DONE, VERIFIED, CANCELLED, REJECTED])
def test_finished_tasks_take_no_claims(status: str) -> None:
    with pytest.raises(FailedPrecondition) as exc:
        domain.claim_role(status, "", ("person", "z"), [], 1, 3)
    assert exc.value.reason == "not_claimable"


def test_places_count_lead_and_assistants() -> None:
    p = domain.places(1, 2, crew(("a", ASSISTANT)))
    assert p.lead_free and p.assistants_free == 1 and p.left == 2
    p = domain.places(1, 2, crew(("a", LEAD), ("b", ASSISTANT), ("c", ASSISTANT)))
    assert p.left == 0


# ---------------------------------------------------------------- answers, targets, roles


def test_answers_need_reasons_except_accepting() -> None:
    assert domain.check_answer("accept", "", None) == ("accept", "")
    with pytest.raises(InvalidArgument) as exc:
        domain.check_answer("decline", " ", None)
    assert exc.value.field == "reason"
    with pytest.raises(InvalidArgument) as exc:
        domain.check_answer("propose", "更合适", None)
    assert exc.value.field == "proposed"
    assert domain.check_answer("propose", "更合适", ("member_unit", "u2")) == ("propose", "更合适")
    with pytest.raises(InvalidArgument):
        domain.check_answer("maybe", "", None)


def test_kinds_accept_orgs_unit_alias() -> None:
    assert domain.check_responder("unit", " u1 ", "x") == ("member_unit", "u1")
    with pytest.raises(InvalidArgument) as exc:
        domain.check_responder("robot", "r", "claimant")
    assert exc.value.field == "claimant.kind"
    with pytest.raises(InvalidArgument) as exc:
        domain.check_responder("person", "", "claimant")
    assert exc.value.field == "claimant.id"


def test_which_units_a_call_targets() -> None:
    assert domain.unit_serves((), "g1", "service")  # serves the whole community
    assert domain.unit_serves(("g1", "g2"), "g1", "service")
    assert not domain.unit_serves(("g2",), "g1", "service")
    assert domain.unit_serves(("g2",), "g1", "emergency")  # an emergency calls every unit of the community
    a = domain.TargetIn("member_unit", "u1", "甲", "serves_area")
    b = domain.TargetIn("member_unit", "u1", "甲", "matching")
    c = domain.TargetIn("person", "p1", "乙", "matching")
    assert domain.merge_targets([a], [b, c]) == [a, c]


def test_roles() -> None:
    domain.require_role("community_worker", domain.STAFF_ROLES, "assign")
    with pytest.raises(PermissionDenied):
        domain.require_role("resident", domain.STAFF_ROLES, "assign")
    with pytest.raises(PermissionDenied):
        domain.require_role("community_worker", domain.RULES_WRITERS, "change rules")


# ---------------------------------------------------------------- rules


def rule_dicts(**override: int) -> list[dict[str, object]]:
    out = domain.rules_to_dict(domain.DEFAULT_RULES)["call_types"]
    for d in out:
        if d["call_type"] == "emergency":
            d.update(override)
    return out


def test_default_rules_round_trip() -> None:
    data = domain.rules_to_dict(domain.DEFAULT_RULES)
    back = domain.rules_from_dict(data, 3, None, "admin")
    assert back.version == 3 and back.calls == domain.DEFAULT_RULES.calls
    assert [c["call_type"] for c in data["call_types"]] == ["service", "tackling", "emergency"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"report_in_minutes": 0}, "call_types[2].report_in_minutes"),
        ({"report_in_minutes": 2000}, "call_types[2].report_in_minutes"),  # longer than its completion
        ({"report_in_reminder_minutes": 30}, "call_types[2].report_in_reminder_minutes"),  # not before the deadline
        ({"assistant_places": 21}, "call_types[2].assistant_places"),
        ({"completion_minutes": 30 * 24 * 60}, "call_types"),  # an emergency longer than a service call
    ],
)
def test_bad_rules_name_the_field(override: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_rules(rule_dicts(**override), 5)
    assert exc.value.field == field


def test_rules_need_all_three_call_types_once() -> None:
    calls = rule_dicts()
    with pytest.raises(InvalidArgument) as exc:
        domain.check_rules(calls[:2], 5)
    assert "emergency" in exc.value.message
    with pytest.raises(InvalidArgument):
        domain.check_rules([*calls, calls[0]], 5)
    with pytest.raises(InvalidArgument) as exc:
        domain.check_rules(calls, 51)
    assert exc.value.field == "matching_targets"


def test_history_notes_are_chinese_first() -> None:
    zh, en = domain.note("escalated", level="district")
    assert zh == "已逾期，上报区督办" and "district" in en
    zh, en = domain.note("cancel", reason="居民已自行解决")
    assert zh == "取消：居民已自行解决" and en == "cancel: 居民已自行解决"


def test_a_member_acts_only_as_the_helper_it_is_bound_to() -> None:
    bound = ("member_unit", "u1")
    assert domain.acting_as("member", bound, ("", ""), "claimant") == bound  # omitted: itself
    assert domain.acting_as("member", bound, ("unit", "u1"), "claimant") == bound
    with pytest.raises(PermissionDenied) as exc:
        domain.acting_as("member", bound, ("member_unit", "u2"), "claimant")
    assert exc.value.reason == "not_your_responder" and exc.value.field == "claimant"
    with pytest.raises(PermissionDenied):
        domain.acting_as("member", None, ("", ""), "claimant")
    # Staff name the helper they record for.
    assert domain.acting_as("community_worker", None, ("person", "p1"), "claimant") == ("person", "p1")
    with pytest.raises(InvalidArgument):
        domain.acting_as("community_worker", None, ("", ""), "claimant")


def test_a_member_starts_and_finishes_only_the_task_it_leads() -> None:
    me = ("person", "p1")
    domain.member_may("member", me, "start", me)
    domain.member_may("member", me, "done", me)
    domain.member_may("community_worker", None, "verify", None)  # staff: not a member's rule
    for action, lead in (("verify", me), ("cancel", me), ("start", ("person", "p2")), ("done", None)):
        with pytest.raises(PermissionDenied):
            domain.member_may("member", me, action, lead)
