"""The lifecycle's pure rules: publication ids, review input, and the readable diff a correction states."""

from __future__ import annotations

import copy

import pytest

from services.publication import samples
from services.publication.lifecycle import domain


def test_ids_are_read_from_both_ends() -> None:
    assert domain.parse_id("monthly:c-001:2026-11:v2") == domain.PubId("monthly", "c-001", "2026-11", 2)
    assert domain.parse_id("monthly:c-001:2026-11") == domain.PubId("monthly", "c-001", "2026-11", 0)
    assert domain.parse_id("boards:*:2026Q4:v1") == domain.PubId("boards", "*", "2026Q4", 1)
    # a community id may hold ':'
    assert domain.parse_id("monthly:tq:c:7:2026-11:v3").scope == "tq:c:7"
    assert domain.parse_id("report:*:2026-11:v1").of(4) == "report:*:2026-11:v4"


@pytest.mark.parametrize(
    "bad", ["", "monthly", "monthly:c-001", "weekly:c-001:2026-11:v1", "monthly:c-001:2026-13:v1", "monthly::2026-11"]
)
def test_bad_ids_name_the_field(bad: str) -> None:
    with pytest.raises(domain.Invalid) as caught:
        domain.parse_id(bad)
    assert caught.value.field == "id"


def test_returning_needs_a_note() -> None:
    assert domain.check_review(True, "") == ""
    assert domain.check_review(False, "  数字有误 ") == "数字有误"
    with pytest.raises(domain.Invalid) as caught:
        domain.check_review(False, "  ")
    assert caught.value.field == "note"


def test_periods_sort_by_their_first_month() -> None:
    assert domain.period_start("2026-11") == (2026, 11)
    assert domain.period_start("2026Q4") == (2026, 10)


def test_the_same_content_has_no_changes() -> None:
    m = samples.monthly(6)
    assert domain.changes(m, copy.deepcopy(m)) == []


def test_changes_name_items_by_ref_and_codes_by_their_labels() -> None:
    old = samples.monthly(6)
    new = copy.deepcopy(old)
    line = next(i for i in new["issues"] if i["status"] == "in_progress")
    line["status"], line["status_zh"] = "verified", "已验收"
    sat = next(r for r in new["measures"] if r["key"] == "satisfaction")
    old_sat = next(r for r in old["measures"] if r["key"] == "satisfaction")
    old_sat["rate"], sat["rate"], sat["numerator"] = 0.85, 0.9, 36
    added = dict(new["issues"][0], ref="iss-new-1")
    new["issues"].append(added)
    gone = new["issues"].pop(0)
    new["summary"]["issues_received"] += 1

    lines = domain.changes(old, new)

    assert f"事项 {line['ref']} 状态：办理中 → 已验收" in lines
    assert "满意率：85.0% → 90.0%" in lines
    assert "新增事项 iss-new-1" in lines
    assert f"删除事项 {gone['ref']}" in lines
    received = old["summary"]["issues_received"]
    assert f"概况 受理事项：{received} → {received + 1}" in lines
    # the status code itself is shown once, by its label, and nothing says the same twice
    assert not any("status_zh" in x for x in lines)
    assert len(lines) == len(set(lines))
    assert domain.changes(old, new) == lines  # deterministic


def test_changes_ignore_the_bookkeeping_but_see_the_scalars() -> None:
    old = samples.monthly(3)
    new = copy.deepcopy(old)
    new["as_of"] = "2027-01-01T00:00:00+08:00"
    assert domain.changes(old, new) == []
    new["funds"][0]["spent_fen"] += 1050
    lines = domain.changes(old, new)
    assert len(lines) == 1 and "支出" in lines[0] and "元" in lines[0]


def test_boards_entries_by_rank_and_report_lines_by_community() -> None:
    old = samples.report()
    new = copy.deepcopy(old)
    new["ledger"][0]["refused"] += 2
    lines = domain.changes(old, new)
    assert len(lines) == 1 and lines[0].startswith("减负台账 ") and "拒绝：" in lines[0]
    b_old = samples.boards()
    b_new = copy.deepcopy(b_old)
    b_new["boards"][0]["entries"][0]["score"] = 99.5
    assert any("榜单" in x and "得分" in x and "99.5" in x for x in domain.changes(b_old, b_new))


# ---------------------------------------------------------------- the monthly builder's pure parts


def test_a_month_is_its_shanghai_bounds_and_only_a_month() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from services.common.errors import InvalidArgument
    from services.publication.monthly import build

    sh = ZoneInfo("Asia/Shanghai")
    assert build.month_bounds("2026-12") == (datetime(2026, 12, 1, tzinfo=sh), datetime(2027, 1, 1, tzinfo=sh))
    assert build.period_zh("2026-03") == "2026年3月"
    with pytest.raises(InvalidArgument) as caught:
        build.month_bounds("2026Q4")
    assert caught.value.field == "period"


def test_the_problem_of_the_month_is_the_most_recurring_category_and_grid() -> None:
    from services.publication.monthly import build

    lines = [samples.issue(n) for n in range(12)]
    counts: dict[tuple[str, str], int] = {}
    for i in lines:
        counts[(i["category"], i["grid_zh"])] = counts.get((i["category"], i["grid_zh"]), 0) + 1
    top = max(counts.values())
    assert build.problem_of_month(lines) == min(k for k, v in counts.items() if v == top)
    assert build.problem_of_month([]) is None
    assert build.problem_of_month(list(reversed(lines))) == build.problem_of_month(lines)  # order-free


def test_verification_follows_the_task() -> None:
    from services.publication.monthly import build

    assert build._verification(None, None) == ""
    assert build._verification({"status": "verified"}, None) == "passed"
    assert build._verification({"status": "done"}, None) == "pending"
    assert build._verification({"status": "in_progress", "history": [{"action": "reopened"}]}, None) == "failed"
    assert build._verification({"status": "in_progress"}, False) == "failed"
    assert build._verification(None, None, "rated") == "passed"  # intake's status: past verification
