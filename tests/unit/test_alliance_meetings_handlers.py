"""Meeting commands against the in-memory unit of work (tests/unit/fake_unitofwork.py), org and intake answered
by stand-ins for services/alliance/meetings/peers.py and the durable timers by a dict: the agenda takes open
issues only, a saved meeting always has its close timer, and nothing is decided before the meeting starts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from services.alliance.meetings import domain, handlers, peers
from services.alliance.meetings.documents import MeetingDoc
from services.common import clocks, context
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.principal import Principal
from services.intake import domain as intake_domain
from tests.unit.fake_unitofwork import FakeUnitOfWork

WORKER = Principal(sub="worker-1", role="community_worker", tenants=("taiqian",), community="c1")
Timers = dict[str, tuple[str, datetime, dict[str, str]]]


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Timers]:
    """The close timers set (key -> kind, due, payload); org and intake answer for community c1."""
    held: Timers = {}

    def schedule(key: str, kind: str, due_at: datetime, payload: Mapping[str, str], **_: object) -> None:
        held[key] = (kind, due_at, dict(payload))

    def get(key: str, **_: object) -> clocks.Timer | None:
        found = held.get(key)
        return None if found is None else clocks.Timer(key, found[0], found[1], found[2], "taiqian")

    monkeypatch.setattr(handlers.clocks, "schedule", schedule)
    monkeypatch.setattr(handlers.clocks, "get", get)
    monkeypatch.setattr(handlers.clocks, "cancel", lambda key, **_: held.pop(key, None))
    monkeypatch.setattr(peers, "station", lambda sid: peers.Station(sid, "一网格驿站", "c1", 36.2, 117.1))
    monkeypatch.setattr(peers, "invitee", lambda kind, iid, field: ("物业", "c1"))
    monkeypatch.setattr(
        peers, "issue", lambda iid, field: peers.IssueInfo(iid, "楼道灯不亮", "c1", "whistle_blown", "open")
    )
    with context.bound(tenant="taiqian", principal=WORKER):
        yield held


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def new_meeting(starts_at: datetime, *agenda: domain.AgendaIn) -> domain.NewMeeting:
    return domain.check_new_meeting(
        community_id="c1",
        title="联席会议",
        starts_at=starts_at,
        ends_at=None,
        station_id="st-1",
        online=False,
        online_link="",
        invitees=[("member_unit", "mu-1"), ("person", "p-1")],
        agenda=agenda or [domain.AgendaIn("楼道照明", "hot_topic")],
        now=datetime.now(UTC),
    )


class FailingOnce(FakeUnitOfWork):
    """The database goes away once, at the meeting's write."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def write(self, doc: object, old_version: int) -> bool:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database went away")
        return super().write(doc, old_version)


@pytest.mark.parametrize("status", intake_domain.STATUSES)
def test_only_an_issue_intake_holds_open_goes_on_the_agenda(
    monkeypatch: pytest.MonkeyPatch, timers: Timers, uow: FakeUnitOfWork, status: str
) -> None:
    found = peers.IssueInfo("is-1", "楼道灯不亮", "c1", status, intake_domain.open311_status(status))
    monkeypatch.setattr(peers, "issue", lambda iid, field: found)
    meeting = new_meeting(datetime.now(UTC) + timedelta(days=1), domain.AgendaIn("", "issue", "is-1"))
    if status in intake_domain.CLOSED or status == intake_domain.STATUS_DUPLICATE:
        with pytest.raises(InvalidArgument) as err:
            handlers.schedule(meeting, "k1", uow=uow)
        assert err.value.field == "agenda[0].issue_id"
        assert "不能列入议程" in err.value.message and "only open issues" in err.value.message
        assert uow.stored == {} and timers == {}  # nothing scheduled, no timer
    else:
        doc = handlers.schedule(meeting, "k1", uow=uow)
        assert doc.agenda[0].title == "楼道灯不亮" and uow.son(MeetingDoc, doc.id) is not None


def test_a_meeting_whose_write_failed_gets_its_close_timer_with_the_retry(timers: Timers) -> None:
    failing = FailingOnce()
    meeting = new_meeting(datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(ConnectionError):
        handlers.schedule(meeting, "k2", uow=failing)
    # The timer came first: had the caller never retried, it would find no meeting and let it be.
    assert failing.stored == {} and list(timers) == [f"meeting:{domain.new_meeting_id('k2', WORKER.sub)}"]
    doc = handlers.schedule(meeting, "k2", uow=failing)  # the caller's retry with the same key
    assert failing.son(MeetingDoc, doc.id) is not None
    kind, due, payload = timers[f"meeting:{doc.id}"]
    assert (kind, payload) == (handlers.CLOSE_KIND, {"meeting_id": doc.id})
    assert due == meeting.starts_at + timedelta(hours=3)


def test_a_retry_that_finds_its_meeting_without_a_close_timer_sets_it(timers: Timers, uow: FakeUnitOfWork) -> None:
    meeting = new_meeting(datetime.now(UTC) + timedelta(days=1))
    doc = handlers.schedule(meeting, "k3", uow=uow)
    key = f"meeting:{doc.id}"
    assert key in timers
    timers.clear()  # lost: e.g. a meeting saved before its timer by an earlier version
    again = handlers.schedule(meeting, "k3", uow=uow)
    assert again.id == doc.id and uow.writes == 1  # the same meeting, not a second
    assert timers[key][1] == meeting.starts_at + timedelta(hours=3)


def test_a_close_timer_that_comes_before_its_meeting_waits_for_it(timers: Timers, uow: FakeUnitOfWork) -> None:
    meeting = new_meeting(datetime.now(UTC) - timedelta(hours=5))  # entered after it ended: its timer is due
    doc = handlers.schedule(meeting, "k4", uow=FakeUnitOfWork())  # written elsewhere: not in `uow` yet
    key = f"meeting:{doc.id}"
    kind, due, payload = timers[key]
    handlers.on_close_timer(clocks.Timer(key, kind, due, payload, "taiqian"), uow=uow)
    kind, due, payload = timers[key]
    assert payload == {"meeting_id": doc.id, "waits": "1"} and due > datetime.now(UTC)  # looks again later
    uow.add(doc)  # the meeting's write lands
    handlers.on_close_timer(clocks.Timer(key, kind, due, payload, "taiqian"), uow=uow)
    son = uow.son(MeetingDoc, doc.id)
    assert son is not None and son["ended"] is True
    assert sorted((a["key"], a["status"], a["recorded_by"]) for a in son["attendance"]) == [
        ("member_unit:mu-1", "absent", "system"),
        ("person:p-1", "absent", "system"),
    ]


def test_a_close_timer_whose_meeting_never_came_stops_looking(timers: Timers, uow: FakeUnitOfWork) -> None:
    payload = {"meeting_id": "m-gone", "waits": str(handlers.CLOSE_WAITS)}
    handlers.on_close_timer(
        clocks.Timer("meeting:m-gone", handlers.CLOSE_KIND, datetime.now(UTC), payload, "t"), uow=uow
    )
    assert timers == {}


def test_nothing_is_decided_before_the_meeting_starts(timers: Timers, uow: FakeUnitOfWork) -> None:
    doc = handlers.schedule(new_meeting(datetime.now(UTC) + timedelta(hours=2)), "k5", uow=uow)
    item = doc.agenda[0].id
    with pytest.raises(FailedPrecondition) as err:
        handlers.take_decision(doc.id, item, domain.DecisionIn(domain.AGREED, False), uow=uow)
    assert err.value.reason == "meeting_not_started" and err.value.field == "meeting_id"
    son = uow.son(MeetingDoc, doc.id)
    assert son is not None and son["version"] == 1 and "decision" not in son["agenda"][0]
    started = handlers.schedule(new_meeting(datetime.now(UTC) - timedelta(minutes=1)), "k6", uow=uow)
    decided = handlers.take_decision(started.id, started.agenda[0].id, domain.DecisionIn(domain.AGREED, False), uow=uow)
    assert decided.agenda[0].decision is not None and decided.agenda[0].decision.outcome == domain.AGREED
