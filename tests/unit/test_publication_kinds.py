"""The report upward's and the boards' pure parts: months and quarters in Asia/Shanghai, the ranking of
communities, the burden ledger folded from audit entries, the stored form of a BoardsFrozen event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev

from services.common.errors import InvalidArgument
from services.common.events import CloudEvent, PoisonEvent
from services.publication import content
from services.publication.boards import builder as boards_builder
from services.publication.boards.consumer import document_of
from services.publication.reports import builder as report_builder
from services.publication.reports import domain
from services.publication.reports.domain import CommunityMonth, ledger, rank

COMMUNITIES = {"c-1": "东风社区", "c-2": "红旗社区", "c-3": "向阳社区"}


def test_a_month_and_a_quarter_are_bounded_in_shanghai() -> None:
    start, end = domain.month_bounds("2026-12")
    assert start.astimezone(UTC) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert domain.as_of(end) == "2027-01-01T00:00:00+08:00"
    assert domain.month_zh("2026-02") == "2026年2月"
    q_start, q_end = domain.quarter_bounds("2026Q4")
    assert (q_start.month, q_end.year, q_end.month) == (10, 2027, 1)
    assert domain.quarter_zh("2026Q3") == "2026年第三季度"
    assert domain.day(datetime(2026, 11, 30, 16, 30, tzinfo=UTC)) == "2026-12-01"
    for bad in ("2026-13", "2026-1", "26-01", ""):
        with pytest.raises(ValueError):
            domain.month_bounds(bad)


def test_the_report_is_of_the_whole_subdistrict_and_a_closed_month() -> None:
    with pytest.raises(InvalidArgument) as scope:
        report_builder.check("c-1", "2026-10")
    assert getattr(scope.value, "field", "") == "scope"
    with pytest.raises(InvalidArgument) as malformed:
        report_builder.closed_month("2026/10")
    assert getattr(malformed.value, "field", "") == "period" and "YYYY-MM" in str(malformed.value)
    with pytest.raises(InvalidArgument) as open_month:
        report_builder.closed_month("2026-12", now=datetime(2026, 12, 20, tzinfo=UTC))
    assert getattr(open_month.value, "field", "") == "period" and "尚未结束" in str(open_month.value)
    start, end = report_builder.closed_month("2026-11", now=datetime(2026, 12, 1, tzinfo=UTC))
    assert end - start == datetime(2026, 12, 1) - datetime(2026, 11, 1)


def test_communities_rank_by_composite_then_issues_handled_then_id() -> None:
    months = [
        CommunityMonth("c-3", "向阳社区", 80.0, 5),
        CommunityMonth("c-1", "东风社区", 80.0, 9),
        CommunityMonth("c-4", "新村社区", None, 20),
        CommunityMonth("c-2", "红旗社区", 91.5, 1),
        CommunityMonth("c-0", "老街社区", 80.0, 5),
    ]
    ranked = rank(months)
    assert [(r["rank"], r["community_id"]) for r in ranked] == [
        (1, "c-2"),
        (2, "c-1"),
        (3, "c-0"),
        (4, "c-3"),
        (5, "c-4"),
    ]
    assert ranked[-1]["composite"] is None
    assert rank(list(reversed(months))) == ranked  # the input's order does not matter


def test_only_the_published_rates_in_their_order() -> None:
    rates = [domain.rate(k, k, k, 1, 2, 0.5, False) for k in ("duty_meetings", "reopen", "response", "whistle")]
    assert [r["key"] for r in domain.only_published(rates)] == ["response", "reopen", "whistle"]
    assert domain.rate("x", "x", "x", 0, 0, None, True)["rate"] is None


def entry(seq: int, action: str, outcome: str, target: str = "", grant_id: str = "", **detail: object) -> dict:
    return {"seq": seq, "action": action, "outcome": outcome, "target": target, "grant_id": grant_id, "detail": detail}


def test_the_burden_ledger_counts_each_communitys_requests_decisions_refusals_and_quota_used() -> None:
    entries = [
        entry(1, "request.file", "done", "dr-a", kind="data_access", community_id="c-1", quota=10),
        entry(2, "request.file", "done", "dr-b", kind="assistance_task", community_id="c-1", quota=3),
        entry(3, "request.file", "done", "dr-c", kind="data_access", community_id="c-2", quota=5),
        entry(
            4, "request.refuse", "refused", reason="assessment_task_refused", kind="assistance_task", community_id="c-2"
        ),
        entry(5, "request.refuse", "refused", reason="tenant_out_of_scope", kind="data_access", community_id="c-1"),
        entry(6, "request.refuse", "refused", reason="assessment_task_refused", kind="assistance_task"),
        entry(7, "request.approve", "allowed", "dr-a", "gr-a", quota=4, narrowed=True),
        entry(8, "request.approve", "allowed", "dr-b", "gr-b", quota=3, narrowed=False),
        entry(9, "request.reject", "refused", "dr-c", kind="data_access", community_id="c-2"),
        entry(10, "department.call", "allowed", "org/people", "gr-a", community_id="c-1", use=1),
        entry(11, "department.call", "allowed", "org/people", "gr-a", community_id="c-1", use=2),
        entry(12, "department.call", "refused", "org/people", "gr-a", community_id="c-1", missing="quota"),
        entry(13, "department.call", "allowed", "assistance-tasks", "gr-old", use=1),  # its community: its request's
        entry(14, "request.approve", "allowed", "dr-old2", "gr-old2", quota=2, narrowed=False),  # filed last month
    ]
    filed = {"dr-a": "c-1", "dr-b": "c-1", "dr-c": "c-2", "dr-old": "c-3", "dr-old2": "c-3"}
    assert domain.requests_to_look_up(entries) == {"dr-a", "dr-b", "dr-c", "dr-old", "dr-old2"}
    lines = {line["community_id"]: line for line in ledger(entries, filed, COMMUNITIES)}
    assert list(lines) == ["", "c-1", "c-2", "c-3"]
    c1, c2, c3, nowhere = lines["c-1"], lines["c-2"], lines["c-3"], lines[""]
    assert (c1["data_requests"], c1["assistance_tasks"], c1["approved"], c1["narrowed"]) == (1, 1, 2, 1)
    assert (c1["refused"], c1["assessment_refused"], c1["quota_granted"], c1["quota_used"]) == (1, 0, 7, 2)
    assert c1["reasons"] == [
        {"reason": "narrowed", "reason_zh": "审核收窄范围或配额", "count": 1},
        {"reason": "tenant_out_of_scope", "reason_zh": "超出部门权限范围，拒绝受理", "count": 1},
    ]
    assert (c2["data_requests"], c2["rejected"], c2["refused"], c2["assessment_refused"]) == (1, 1, 1, 1)
    assert {r["reason"]: r["reason_zh"] for r in c2["reasons"]} == {
        "assessment_task_refused": "考核任务，拒绝受理",
        "rejected": "区级审核驳回",
    }
    assert (c3["approved"], c3["quota_granted"], c3["quota_used"], c3["community_name_zh"]) == (1, 2, 1, "向阳社区")
    assert (nowhere["community_name_zh"], nowhere["refused"], nowhere["assessment_refused"]) == ("未指明社区", 1, 1)


def test_a_quiet_month_still_shows_every_community_with_zeros() -> None:
    lines = ledger([], {}, COMMUNITIES)
    assert [line["community_id"] for line in lines] == ["c-1", "c-2", "c-3"]
    assert all(line["refused"] == 0 and line["reasons"] == [] for line in lines)


def test_the_ledger_is_the_same_whatever_the_entries_order() -> None:
    entries = [
        entry(2, "request.refuse", "refused", reason="something_new", community_id="c-1"),
        entry(1, "request.file", "done", "dr-a", kind="data_access", community_id="c-1"),
    ]
    assert ledger(entries, {}, COMMUNITIES) == ledger(list(reversed(entries)), {}, COMMUNITIES)
    assert ledger(entries, {}, COMMUNITIES)[0]["reasons"] == [
        {"reason": "other", "reason_zh": "其他原因拒绝受理", "count": 1}
    ]
    assert content.canonical({"ledger": ledger(entries, {}, COMMUNITIES)})  # JSON-able


def test_a_boards_frozen_event_is_stored_as_it_came_and_one_without_a_set_is_poison() -> None:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 1, 3, 16, 0, 0, 123456, tzinfo=UTC))
    msg = eev.BoardsFrozen(
        board_set_id="2025Q4:c-1:v2",
        tenant="shanggao",
        community_id="c-1",
        quarter="2025Q4",
        version=2,
        corrects_version=1,
        changes="红色物业光荣榜: 青松物业 新上榜 (entered) 第2名 71.00",
        formula="2026-1",
        frozen_at=stamp,
        boards=[
            eev.Board(
                kind="red_property",
                entries=[
                    eev.BoardEntry(rank=2, subject_kind="member_unit", subject_id="u-2", name_zh="青松物业", score=71),
                    eev.BoardEntry(rank=1, subject_kind="member_unit", subject_id="u-1", name_zh="红叶物业", score=80),
                ],
            )
        ],
    )
    event = CloudEvent(
        id="e-1",
        source="/hongling/evaluation/shanggao",
        type=msg.DESCRIPTOR.full_name,
        time=datetime(2026, 1, 3, tzinfo=UTC),
        subject="boards/2025Q4:c-1:v2",
        tenant="shanggao",
        data=msg.SerializeToString(),
    )
    doc = document_of(event, msg)
    assert (doc.id, doc.version, doc.corrects_version, doc.community_id) == ("2025Q4:c-1:v2", 2, 1, "c-1")
    assert [e["subject_id"] for e in doc.boards["red_property"]] == ["u-1", "u-2"]
    assert doc.frozen_at.microsecond == 123000
    with pytest.raises(PoisonEvent):
        document_of(event, eev.BoardsFrozen(tenant="shanggao", quarter="2025Q4", version=1))
    with pytest.raises(PoisonEvent):
        document_of(event, eev.BoardsFrozen(board_set_id="x", community_id="*", quarter="2025-12", version=1))


def test_the_formula_text_splits_into_chinese_and_english() -> None:
    zh, en = boards_builder.split_formula("得分 = 100 × Σ 权重·s ÷ Σ 权重。 (score = 100 · Σ w·s / Σ w)")
    assert zh == "得分 = 100 × Σ 权重·s ÷ Σ 权重。" and en == "score = 100 · Σ w·s / Σ w"
    assert boards_builder.split_formula("只有中文") == ("只有中文", "只有中文")


def test_both_kinds_are_registered_with_their_channels() -> None:
    kinds = content.registered()
    assert kinds["report"].anchored and "xlsx" in kinds["report"].channels
    assert not kinds["boards"].anchored and "wechat" in kinds["boards"].channels
