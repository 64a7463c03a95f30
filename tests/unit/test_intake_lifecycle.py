"""The lifecycle the resident sees: forward-only statuses, reopening, Open311's open/closed, notes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.intake import domain

T0 = datetime(2025, 6, 1, 8, tzinfo=UTC)


def step(
    current: str,
    target: str,
    *,
    reopen: bool = False,
    at: datetime = T0,
    last: datetime | None = None,
    reopened: datetime | None = None,
) -> str | None:
    return domain.next_status(current, target, reopen=reopen, event_at=at, last_change_at=last, reopened_at=reopened)


def test_the_order_of_the_lifecycle() -> None:
    order = [
        "received",
        "classified",
        "whistle_blown",
        "assigned",
        "in_progress",
        "done",
        "verified",
        "published",
        "rated",
    ]
    assert sorted(order, key=domain.RANK.__getitem__) == order
    assert domain.RANK["duplicate"] == domain.RANK["classified"]


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("classified", "whistle_blown", "whistle_blown"),
        ("classified", "done", "done"),  # steps may be skipped
        ("duplicate", "whistle_blown", "whistle_blown"),  # a duplicate follows its original
        ("assigned", "whistle_blown", None),  # late, older: adds nothing
        ("done", "done", None),  # replayed
        ("rated", "published", None),
        ("in_progress", "cancelled", "cancelled"),
        ("verified", "cancelled", None),
        ("cancelled", "rated", None),
    ],
)
def test_forward_only(current: str, target: str, expected: str | None) -> None:
    assert step(current, target) == expected


def test_reopening_sends_done_work_back_and_ignores_what_came_before_it() -> None:
    assert step("done", "in_progress", reopen=True, last=T0 - timedelta(minutes=1)) == "in_progress"
    assert step("verified", "in_progress", reopen=True) == "in_progress"
    assert step("assigned", "in_progress", reopen=True) is None  # nothing done to reopen
    assert step("published", "in_progress", reopen=True) is None
    # A reopening older than the issue's last change (delivered late) changes nothing.
    assert step("done", "in_progress", reopen=True, at=T0, last=T0 + timedelta(minutes=5)) is None
    # After a reopening, the first "done" delivered late adds nothing; a new one does.
    reopened = T0 + timedelta(hours=1)
    assert step("in_progress", "done", at=T0, reopened=reopened) is None
    assert step("in_progress", "done", at=reopened + timedelta(hours=1), reopened=reopened) == "done"


@pytest.mark.parametrize(
    ("status", "open311"),
    [
        ("received", "open"),
        ("classified", "open"),
        ("duplicate", "open"),
        ("whistle_blown", "open"),
        ("assigned", "open"),
        ("in_progress", "open"),
        ("done", "open"),
        ("verified", "closed"),
        ("published", "closed"),
        ("rated", "closed"),
        ("cancelled", "closed"),
    ],
)
def test_open311_status(status: str, open311: str) -> None:
    assert domain.open311_status(status) == open311
    assert domain.is_open_original(status) == (open311 == "open" and status != "duplicate")


def test_task_statuses_map_onto_the_issue() -> None:
    m = domain.TASK_STATUS_MAP
    assert m["accepted"] == m["in_progress"] == ("in_progress", "in_progress")
    assert m["done"] == ("done", "done") and m["verified"] == ("verified", "verified")
    assert m["rejected"] == m["reopened"] == ("in_progress", "reopened")
    assert m["cancelled"] == ("cancelled", "cancelled")
    assert "open" not in m


def test_history_notes_are_bilingual() -> None:
    assert domain.history_note("received", channel="grid_patrol") == ("已受理（网格巡查）", "received (grid_patrol)")
    assert domain.history_note("classified", urgency="urgent") == ("已分类为紧急事项", "classified as urgent")
    zh, en = domain.history_note("whistle_blown", call_type="emergency")
    assert "紧急集结号" in zh and "emergency" in en
    zh, en = domain.mirrored_note(*domain.history_note("done"), "abc")
    assert zh.startswith("随原事项 abc：") and en.endswith("(follows the original abc)")
    for kind in ("assigned", "in_progress", "verified", "reopened", "cancelled", "published", "rated"):
        zh, en = domain.history_note(kind)
        assert zh and en and zh != en
