"""验单's rules without infrastructure (services/evaluation/verification/domain.py)."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.evaluation.verification import domain
from services.evaluation.verification.domain import ReviewerIn

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def rules_raw(**over: dict[str, object]) -> list[dict[str, object]]:
    out = []
    for ct in domain.CALL_TYPES:
        r: dict[str, object] = {"call_type": ct, "method": "review", "quorum": 3, "decision": "majority"}
        r["distance_m"] = 200
        r.update(over.get(ct, {}))
        out.append(r)
    return out


# ---------------------------------------------------------------- rules


def test_the_default_rules_check_emergencies_on_site_and_review_the_rest() -> None:
    assert domain.DEFAULT_RULES["emergency"].method == "onsite"
    assert domain.DEFAULT_RULES["service"].method == "review"
    assert domain.DEFAULT_RULES["tackling"].method == "review"
    for r in domain.DEFAULT_RULES.values():
        assert (r.quorum, r.decision, r.distance_m) == (3, "majority", 200)


def test_rules_round_trip_through_their_stored_form() -> None:
    checked = domain.check_rules(rules_raw(emergency={"method": "either", "distance_m": 500}))
    assert domain.rules_from_list(domain.rules_to_list(checked)) == checked
    assert checked["emergency"].accepts("review") and checked["emergency"].accepts("onsite")


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"service": {"method": "vote"}}, "rules[0].method"),
        ({"service": {"quorum": 0}}, "rules[0].quorum"),
        ({"tackling": {"quorum": True}}, "rules[1].quorum"),
        ({"tackling": {"decision": "most"}}, "rules[1].decision"),
        ({"emergency": {"distance_m": 5}}, "rules[2].distance_m"),
        ({"emergency": {"distance_m": "200"}}, "rules[2].distance_m"),
        ({"emergency": {"call_type": "service"}}, "rules[2].call_type"),
    ],
)
def test_a_bad_rule_names_its_field(over: dict[str, dict[str, object]], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_rules(rules_raw(**over))
    assert exc.value.field == field


def test_rules_need_all_three_call_types() -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_rules(rules_raw()[:2])
    assert exc.value.field == "rules" and "emergency" in exc.value.message


def test_a_method_the_rule_does_not_name_is_refused_in_chinese_and_english() -> None:
    with pytest.raises(FailedPrecondition) as exc:
        domain.require_method(domain.DEFAULT_RULES["emergency"], "review")
    assert exc.value.reason == "method_not_allowed" and "紧急集结号" in exc.value.message
    domain.require_method(domain.Rule("service", "either"), "onsite")


def test_only_a_done_task_is_verified() -> None:
    domain.require_done("done")
    with pytest.raises(FailedPrecondition) as exc:
        domain.require_done("in_progress")
    assert exc.value.reason == "task_not_done"


# ---------------------------------------------------------------- attempts and ids


def test_the_attempt_counts_the_done_steps() -> None:
    assert domain.attempt_of(["assigned", "in_progress", "done"]) == 1
    assert domain.attempt_of(["done", "rejected", "reopened", "in_progress", "done"]) == 2
    assert domain.attempt_of([]) == 1
    assert domain.verification_id("t", 2) == "t:2"
    assert domain.vote_id("r", "t", "p") == "r:t:p"


def test_an_idempotency_key_gives_the_same_id_per_caller() -> None:
    assert domain.new_id("k", "w1", "round") == domain.new_id("k", "w1", "round")
    assert domain.new_id("k", "w1", "round") != domain.new_id("k", "w2", "round")
    assert domain.new_id("k", "w1", "round") != domain.new_id("k", "w1", "check")


# ---------------------------------------------------------------- rounds


def new_round(**over: object) -> domain.NewRound:
    args: dict[str, object] = {
        "community_id": "c1",
        "title": "十二月集中评议",
        "task_ids": ["t1", "t2"],
        "reviewers": [
            ReviewerIn("p1", "party_committee", "党委书记"),
            ReviewerIn("p2", "resident_representative"),
            ReviewerIn("u1", "alliance_member"),
        ],
        "quorum": 0,
    }
    args.update(over)
    return domain.check_new_round(**args)  # type: ignore[arg-type]


def test_a_round_names_its_reviewers_by_kind() -> None:
    r = new_round()
    assert [x.kind for x in r.reviewers] == ["party_committee", "resident_representative", "alliance_member"]
    assert r.task_ids == ("t1", "t2")


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"title": " "}, "title"),
        ({"task_ids": []}, "task_ids"),
        ({"task_ids": ["t1", "t1"]}, "task_ids[1]"),
        ({"reviewers": []}, "reviewers"),
        ({"reviewers": [ReviewerIn("p1", "mayor")]}, "reviewers[0].kind"),
        ({"reviewers": [ReviewerIn("p1", "party_committee"), ReviewerIn("p1", "alliance_member")]}, "reviewers[1].id"),
        ({"quorum": 4}, "quorum"),
        ({"community_id": ""}, "community_id"),
    ],
)
def test_a_bad_round_names_its_field(over: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        new_round(**over)
    assert exc.value.field == field


def test_the_quorum_is_the_asked_one_or_the_strictest_rule_and_never_more_than_the_reviewers() -> None:
    rules = [domain.Rule("service", quorum=2), domain.Rule("tackling", quorum=3)]
    assert domain.round_quorum(0, rules, 5) == 3
    assert domain.round_quorum(1, rules, 5) == 1
    with pytest.raises(InvalidArgument) as exc:
        domain.round_quorum(0, rules, 2)
    assert exc.value.field == "quorum"


def test_a_round_decides_by_its_strictest_rule() -> None:
    assert domain.round_decision([domain.Rule("service"), domain.Rule("tackling", decision="unanimous")]) == "unanimous"
    assert domain.round_decision([]) == "majority"


@pytest.mark.parametrize(
    ("yes", "no", "quorum", "decision", "verdict"),
    [
        (2, 1, 3, "majority", "passed"),
        (1, 1, 2, "majority", "failed"),  # a tie is no majority
        (1, 2, 3, "majority", "failed"),
        (2, 0, 3, "majority", "no_quorum"),  # below the quorum: no verdict, the task stays in the queue
        (0, 0, 1, "majority", "no_quorum"),
        (2, 1, 3, "two_thirds", "passed"),
        (3, 2, 3, "two_thirds", "failed"),
        (3, 1, 3, "unanimous", "failed"),
        (4, 0, 3, "unanimous", "passed"),
    ],
)
def test_the_tenants_rule_decides_a_task_with_a_quorum(
    yes: int, no: int, quorum: int, decision: str, verdict: str
) -> None:
    assert domain.decide(yes, no, quorum, decision) == verdict


def test_a_fail_vote_needs_a_reason() -> None:
    assert domain.check_vote(True, "") == ""
    with pytest.raises(InvalidArgument) as exc:
        domain.check_vote(False, "  ")
    assert exc.value.field == "reason"


def test_no_vote_after_the_round_closes() -> None:
    domain.require_open("open")
    for status in ("closing", "closed"):
        with pytest.raises(FailedPrecondition) as exc:
            domain.require_open(status)
        assert exc.value.reason == "round_closed"


# ---------------------------------------------------------------- on-site checks


def test_a_check_far_from_the_issue_is_flagged() -> None:
    issue = (36.2000, 117.1000)
    near = domain.place_flag((36.2010, 117.1000), issue, 200)  # about 111 m north
    assert not near.flagged and 100 < near.distance_m < 120
    far = domain.place_flag((36.2030, 117.1000), issue, 200)  # about 333 m
    assert far.flagged and "超过200米" in far.note_zh
    assert not domain.place_flag((36.2030, 117.1000), issue, 500).flagged


def test_an_issue_without_a_point_cannot_flag_a_check() -> None:
    found = domain.place_flag((36.2, 117.1), None, 200)
    assert (found.distance_m, found.flagged) == (-1.0, False)


def test_a_check_needs_its_place() -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_point(0.0, 0.0)
    assert exc.value.field == "lat"
    with pytest.raises(InvalidArgument):
        domain.check_point(91.0, 117.0)
    with pytest.raises(InvalidArgument) as exc:
        domain.check_point(36.0, 190.0)
    assert exc.value.field == "lon"


def test_photos_are_checked_by_their_content() -> None:
    ok = domain.check_photos([domain.PhotoIn("a.jpg", "image/jpeg", JPEG), domain.PhotoIn("", "", PNG)])
    assert [(p.content_type, p.filename) for p in ok] == [("image/jpeg", "a.jpg"), ("image/png", "photo-2.png")]
    with pytest.raises(InvalidArgument) as exc:
        domain.check_photos([domain.PhotoIn("a.pdf", "application/pdf", b"%PDF-1.4 ...")])
    assert exc.value.field == "photos[0]"
    with pytest.raises(InvalidArgument) as exc:
        domain.check_photos([domain.PhotoIn("a.png", "image/png", JPEG)])
    assert exc.value.field == "photos[0]"
    with pytest.raises(InvalidArgument) as exc:
        domain.check_photos([domain.PhotoIn("a.jpg", "image/jpeg", JPEG)] * 6)
    assert exc.value.field == "photos"


def test_a_failed_check_needs_a_reason() -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_outcome(False, "")
    assert exc.value.field == "reason"
    assert domain.check_outcome(True, "") == ""
