"""A classified issue's task and call are written as plain dicts (handlers.created_task / created_whistle),
without building mongoengine documents: they must be exactly what TaskDoc / WhistleDoc would store, and
their first clocks those of an open task and call. No infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import dispatch_events_pb2 as dev
from hongling.events.v1 import intake_events_pb2 as iev

from services.common import context
from services.dispatch import deadlines, domain, handlers, matching
from services.dispatch.documents import TaskDoc, WhistleDoc

AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
RULES = domain.DEFAULT_RULES


def classified() -> iev.IssueClassified:
    stamp = Timestamp()
    stamp.FromDatetime(AT)
    return iev.IssueClassified(
        issue_id="i-7",
        tenant="shengzhuang",
        urgency="major",
        category="property_repair",
        community_id="c-1",
        grid_id="g-1",
        classified_at=stamp,
        title="楼道灯不亮 / stairwell light out",
        hazards=["electrical"],
        affected_households=6,
    )


TARGETS = [
    domain.TargetIn(domain.MEMBER_UNIT, "u-1", "红领物业", "serves_area", ("服务本社区/网格的成员单位 / serving",)),
    domain.TargetIn("person", "p-9", "王师傅", "matching", ("技能匹配 / skill: electrician", "同网格 / same grid")),
]


def canonical(cls: type[TaskDoc] | type[WhistleDoc], son: dict[str, Any]) -> dict[str, Any]:
    """The document as mongoengine would store it after loading `son` (its fields, defaults and types)."""
    doc = cls._from_son(son)
    doc.validate()  # every required field is there, every value of its field's type
    return dict(doc.to_mongo().to_dict())


def plain(son: dict[str, Any]) -> dict[str, Any]:
    """Embedded documents and Binary values as the plain dicts and bytes pymongo writes the same way."""
    out: dict[str, Any] = {}
    for k, v in son.items():
        if isinstance(v, list):
            v = [plain(dict(x)) if hasattr(x, "items") else x for x in v]
        elif isinstance(v, bytes):
            v = bytes(v)
        out[k] = v
    return out


def test_a_created_task_is_stored_as_taskdoc_stores_it() -> None:
    msg = classified()
    need = matching.need_for(msg.category, list(msg.hazards), msg.community_id, msg.grid_id)
    dl = domain.deadlines_for(RULES.rule(domain.TACKLING), AT)
    with context.bound(tenant="shengzhuang"):
        son = handlers.created_task("t-7", "w-7", msg, "ev-1", AT, domain.TACKLING, need, 2, dl)
    assert plain(son) == plain(canonical(TaskDoc, son))
    assert son["status"] == domain.OPEN and son["report_in_by"] == dl.report_in_by
    assert son["skills"] == list(need.skills) and son["hazards"] == ["electrical"]
    [step] = son["history"]
    assert (step["action"], step["to_status"], step["by"]) == ("created", domain.OPEN, handlers.DISPATCH)
    assert (step["note_zh"], step["note_en"]) == domain.note("created", call_type=domain.TACKLING)
    [event] = son["outbox"]
    created = dev.TaskCreated.FromString(event["data"])
    assert (event["type"], event["subject"]) == ("hongling.events.v1.TaskCreated", "tasks/t-7")
    assert (created.task_id, created.issue_id, created.tenant, created.status) == ("t-7", "i-7", "shengzhuang", "open")


def test_a_created_call_is_stored_as_whistledoc_stores_it_and_announces_its_targets() -> None:
    msg = classified()
    dl = domain.deadlines_for(RULES.rule(domain.TACKLING), AT)
    with context.bound(tenant="shengzhuang"):
        son = handlers.created_whistle("w-7", "t-7", msg, "ev-1", AT, domain.TACKLING, TARGETS, dl)
    assert plain(son) == plain(canonical(WhistleDoc, son))
    assert [t["id"] for t in son["targets"]] == son["target_ids"] == ["u-1", "p-9"]
    assert son["targets"][1]["reasons"] == ["技能匹配 / skill: electrician", "同网格 / same grid"]
    [event] = son["outbox"]
    blown = dev.WhistleBlown.FromString(event["data"])
    assert (event["type"], event["subject"]) == ("hongling.events.v1.WhistleBlown", "whistles/w-7")
    assert list(blown.issue_ids) == ["i-7"] and list(blown.task_ids) == ["t-7"]
    assert list(blown.target_kinds) == [domain.MEMBER_UNIT, "person"] and list(blown.target_ids) == ["u-1", "p-9"]
    assert blown.call_type == domain.TACKLING and blown.report_in_by.ToDatetime(UTC) == dl.report_in_by


def test_the_first_clocks_of_a_created_call_and_task_are_those_of_the_stored_documents() -> None:
    """schedule_created works from the values it is given; they must give what the documents would."""
    msg = classified()
    need = matching.need_for(msg.category, list(msg.hazards), msg.community_id, msg.grid_id)
    for call_type in (domain.SERVICE, domain.TACKLING, domain.EMERGENCY):
        dl = domain.deadlines_for(RULES.rule(call_type), AT)
        with context.bound(tenant="shengzhuang"):
            task = TaskDoc._from_son(handlers.created_task("t", "w", msg, "e", AT, call_type, need, 1, dl))
            call = WhistleDoc._from_son(handlers.created_whistle("w", "t", msg, "e", AT, call_type, TARGETS, dl))
        for now in (AT, AT + timedelta(minutes=25), dl.complete_by + timedelta(minutes=1)):
            assert deadlines._whistle_clock(call_type, dl.report_in_by, False, False, RULES, now) == (
                deadlines.next_whistle_clock(call, RULES, now)
            )
            assert deadlines._task_clock(call_type, dl.complete_by, domain.OPEN, "", (), RULES, now) == (
                deadlines.next_task_clock(task, RULES, now)
            )
