from datetime import UTC, datetime

import pytest
from hongling.events.v1 import intake_events_pb2 as ev

from services.common.events import CloudEvent, PoisonEvent, record_key
from services.dispatch.domain import task_id_for_issue


def make_event(**kw: object) -> CloudEvent:
    msg = ev.IssueReceived(issue_id="i1", tenant="taiqian", title="楼道灯不亮")
    args: dict[str, object] = {
        "id": "e1",
        "source": "/hongling/intake/taiqian",
        "type": msg.DESCRIPTOR.full_name,
        "time": datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
        "subject": "issues/i1",
        "tenant": "taiqian",
        "data": msg.SerializeToString(),
    }
    args.update(kw)
    return CloudEvent(**args)  # type: ignore[arg-type]


def test_binary_mode_headers_round_trip() -> None:
    ce = make_event()
    headers = dict(ce.headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"hongling.events.v1.IssueReceived"
    assert headers["ce_tenant"] == b"taiqian"
    assert headers["ce_time"] == b"2026-11-27T03:00:00Z"
    assert headers["content-type"] == b"application/protobuf"
    back = CloudEvent.from_record(ce.headers(), ce.data)
    assert back == ce
    assert back.decode(ev.IssueReceived).title == "楼道灯不亮"  # type: ignore[attr-defined]


def test_key_is_tenant_and_aggregate() -> None:
    assert record_key("taiqian", "i1") == b"taiqian:i1"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("ce_specversion", b"1.0"), ("ce_id", b"x")],
        [(k, v) if k != "ce_tenant" else (k, b"atlantis") for k, v in make_event().headers()],
        [(k, v) if k != "ce_specversion" else (k, b"0.3") for k, v in make_event().headers()],
    ],
)
def test_bad_envelopes_are_poison(headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(PoisonEvent):
        CloudEvent.from_record(headers, b"")


def test_undecodable_payload_is_poison() -> None:
    with pytest.raises(PoisonEvent, match="not a valid"):
        make_event(data=b"\xff\xff\xff\xff").decode(ev.IssueReceived)


def test_task_id_is_derived_from_the_issue() -> None:
    assert task_id_for_issue("i1") == task_id_for_issue("i1") != task_id_for_issue("i2")
