"""Joint meetings' rules without infrastructure: attendance from times, decisions, closure, hot topics, minutes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from docx import Document

from services.alliance.meetings import domain, minutes
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.vocabulary import ISSUE_STATUS_ZH
from services.intake import domain as intake_domain

START = datetime(2026, 5, 6, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai


def new(**kw: object) -> domain.NewMeeting:
    base: dict[str, object] = {
        "community_id": "c1",
        "title": "五月联席会议",
        "starts_at": START,
        "ends_at": None,
        "station_id": "st-1",
        "online": False,
        "online_link": "",
        "invitees": [("member_unit", "mu-1"), ("person", "p-1")],
        "agenda": [domain.AgendaIn("楼道照明", "hot_topic")],
        "now": START - timedelta(days=1),
    }
    base.update(kw)
    return domain.check_new_meeting(**base)  # type: ignore[arg-type]


def test_a_check_in_is_on_time_until_the_start_plus_the_grace_and_late_after() -> None:
    assert domain.check_in_status(START - timedelta(minutes=30), START, 10) == domain.ON_TIME
    assert domain.check_in_status(START + timedelta(minutes=10), START, 10) == domain.ON_TIME
    assert domain.check_in_status(START + timedelta(minutes=10, seconds=1), START, 10) == domain.LATE
    assert domain.check_in_status(START + timedelta(minutes=1), START, 0) == domain.LATE


def test_check_in_opens_an_hour_before_and_closes_when_the_meeting_ended() -> None:
    with pytest.raises(FailedPrecondition):
        domain.check_check_in(domain.SCHEDULED, START - timedelta(minutes=61), START)
    domain.check_check_in(domain.SCHEDULED, START - timedelta(minutes=59), START)
    with pytest.raises(FailedPrecondition):
        domain.check_check_in(domain.ENDED, START, START)
    with pytest.raises(FailedPrecondition):
        domain.check_check_in(domain.CANCELLED, START, START)


def test_everyone_invited_without_a_record_is_absent() -> None:
    invited = [domain.Invitee("member_unit", "a"), domain.Invitee("person", "b"), domain.Invitee("person", "c")]
    assert domain.absentees(invited, ["person:b"]) == [invited[0], invited[2]]
    counts = domain.attendance_counts(3, [domain.ON_TIME, domain.EXCUSED])
    assert counts == {"invited": 3, "on_time": 1, "late": 0, "excused": 1, "absent": 0, "unrecorded": 1}


@pytest.mark.parametrize(
    ("decision", "field"),
    [
        (domain.DecisionIn("passed", False), "outcome"),
        (domain.DecisionIn(domain.AGREED, True, 2, 2, 0), "outcome"),  # a tie does not pass
        (domain.DecisionIn(domain.REJECTED, True, 3, 1, 0), "outcome"),
        (domain.DecisionIn(domain.AGREED, True, 0, 0, 0), "votes_for"),
        (domain.DecisionIn(domain.AGREED, True, 4, 1, 1), "votes_for"),  # 6 votes, 5 invited
        (domain.DecisionIn(domain.AGREED, False, -1, 0, 0), "votes_for"),
    ],
)
def test_a_decision_that_breaks_a_rule_is_refused_naming_the_field(decision: domain.DecisionIn, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        domain.check_decision(decision, 5)
    assert err.value.field == field


def test_decisions_with_and_without_votes() -> None:
    assert domain.check_decision(domain.DecisionIn(domain.AGREED, False), 5).voted is False
    voted = domain.check_decision(domain.DecisionIn(domain.AGREED, False, 3, 1, 1), 5)
    assert voted.voted and voted.votes_for == 3  # votes given: voted
    assert domain.check_decision(domain.DecisionIn(domain.DEFERRED, True, 1, 3, 0), 5).outcome == domain.DEFERRED
    with pytest.raises(FailedPrecondition):
        domain.check_decidable(domain.SCHEDULED, decided=True, now=START, starts_at=START)


def test_an_item_is_decided_only_once_the_meeting_started() -> None:
    with pytest.raises(FailedPrecondition) as err:
        domain.check_decidable(domain.SCHEDULED, False, now=START - timedelta(seconds=1), starts_at=START)
    assert err.value.reason == "meeting_not_started" and "会议尚未开始" in err.value.message
    assert "has not started" in err.value.message
    domain.check_decidable(domain.SCHEDULED, False, now=START, starts_at=START)
    domain.check_decidable(domain.ENDED, False, now=START + timedelta(hours=5), starts_at=START)


def test_a_meeting_is_minuted_only_when_it_ended_and_every_item_is_decided() -> None:
    assert domain.status_after(False, [True, True]) == domain.SCHEDULED
    assert domain.status_after(True, [True, False]) == domain.ENDED
    assert domain.status_after(True, [True, True]) == domain.MINUTED
    assert domain.status_after(True, []) == domain.MINUTED


def test_action_items_follow_agreed_decisions_only() -> None:
    domain.check_action(domain.AGREED, 0)
    for outcome in (domain.REJECTED, domain.DEFERRED, None):
        with pytest.raises(FailedPrecondition):
            domain.check_action(outcome, 0)
    key = domain.action_id_for("m", "i", "修路灯")
    assert key == domain.action_id_for("m", "i", "修路灯") != domain.action_id_for("m", "j", "修路灯")


def test_hot_topics_rank_by_count_then_growth() -> None:
    ranked = domain.rank_topics({"light": 12, "water": 12, "noise": 3, "none": 0}, {"light": 7, "water": 10}, 3)
    assert [(t.code, t.count, t.delta) for t in ranked] == [("light", 12, 5), ("water", 12, 2), ("noise", 3, 3)]
    assert domain.topic_summary("楼道照明", ranked[0], 30) == "楼道照明 12 件，比上月 +5"
    assert domain.topic_summary("噪音", domain.Topic("n", 1, 4), 7) == "噪音 1 件，比前7天 -3"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"title": " "}, "title"),
        ({"ends_at": START}, "ends_at"),
        ({"starts_at": START - timedelta(days=3)}, "starts_at"),
        ({"station_id": ""}, "station_id"),
        ({"online": True}, "station_id"),
        ({"online": True, "station_id": "", "online_link": "http://x"}, "online_link"),
        ({"invitees": []}, "invitees"),
        ({"invitees": [("team", "t-1")]}, "invitees[0].kind"),
        ({"invitees": [("person", "p"), ("person", "p")]}, "invitees[1].id"),
        ({"agenda": [domain.AgendaIn("", "other")]}, "agenda[0].title"),
        ({"agenda": [domain.AgendaIn("x", "issue")]}, "agenda[0].issue_id"),
    ],
)
def test_a_bad_meeting_is_refused_naming_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        new(**kw)
    assert err.value.field == field
    assert "(" in err.value.message  # Chinese first, English beside


def test_a_good_meeting_closes_three_hours_after_its_start_without_an_end() -> None:
    m = new()
    assert m.invitees[0].key == "member_unit:mu-1"
    assert domain.closes_at(m.starts_at, m.ends_at) == START + timedelta(hours=3)
    online = new(online=True, station_id="", online_link="https://meet.example/x")
    assert online.online and online.station_id == ""


def test_a_meeting_is_cancelled_only_before_it_starts_and_with_a_reason() -> None:
    with pytest.raises(InvalidArgument):
        domain.check_cancel(domain.SCHEDULED, START, START - timedelta(hours=1), " ")
    with pytest.raises(FailedPrecondition):
        domain.check_cancel(domain.SCHEDULED, START, START, "天气")
    assert domain.check_cancel(domain.SCHEDULED, START, START - timedelta(hours=1), "天气") == "天气"


def test_the_minutes_hold_the_meeting_in_chinese_with_signature_lines() -> None:
    m = minutes.MinutesIn(
        title="五月联席会议",
        community="嘉德社区",
        starts_at=START,
        ends_at=START + timedelta(hours=2),
        place="嘉德一网格驿站",
        status=domain.MINUTED,
        attendance=[
            minutes.Row("嘉德物业", domain.UNIT, domain.ON_TIME, "李四"),
            minutes.Row("张三", domain.PERSON, domain.ABSENT),
        ],
        items=[
            minutes.Item(
                "楼道照明",
                "hot_topic",
                domain.AGREED,
                True,
                (5, 1, 0),
                actions=[minutes.Action("更换3号楼灯具", "iss-1", "task-1", "whistle_blown")],
            )
        ],
    )
    doc = Document(io.BytesIO(minutes.render(m)))
    text = "\n".join(p.text for p in doc.paragraphs)
    cells = "\n".join(c.text for t in doc.tables for r in t.rows for c in r.cells)
    assert "五月联席会议 会议纪要" in text and "2026年05月06日 09:30" in text and "嘉德一网格驿站" in text
    assert "决议：通过（表决：赞成5票，反对1票，弃权0票）" in text
    assert "更换3号楼灯具（事项编号 iss-1，任务编号 task-1，当前状态 已吹号）" in text
    assert "社区：嘉德社区" in text and "whistle_blown" not in text
    for line in ("主持人", "记录人", "参会代表签字"):
        assert line in text
    assert "嘉德物业" in cells and "按时参会" in cells and "缺席" in cells and "李四" in cells


def test_the_minutes_name_issue_statuses_as_intake_does() -> None:
    assert ISSUE_STATUS_ZH is intake_domain.STATUS_ZH  # one table (services/common/vocabulary.py)
    assert set(intake_domain.STATUSES) == set(intake_domain.STATUS_ZH)  # every status named
