"""Webhook signatures as a receiver checks them, the JSON body, and what a registration accepts."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from hongling.events.v1 import dispatch_events_pb2 as dev

from services.common.errors import InvalidArgument, PermissionDenied
from services.common.events import CloudEvent
from services.common.principal import Principal
from services.dispatch import webhooks

SECRET = "whsec_test-secret"
BODY = '{"id":"e1","data":{"reason":"无人报到"}}'.encode()
T = 1_700_000_000


def test_a_signature_verifies_with_the_secret_the_body_and_a_fresh_time() -> None:
    header = webhooks.sign(SECRET, BODY, T)
    assert header.startswith(f"t={T},v1=")
    # What a receiver in any language computes: HMAC-SHA256(secret, "<t>.<body>") in hex.
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"
    assert webhooks.verify_signature(SECRET, header, BODY, now=T + 10)
    assert webhooks.verify_signature(SECRET, header, BODY, 300, now=T - 299)


@pytest.mark.parametrize(
    ("secret", "body", "now", "tolerance"),
    [
        ("whsec_other", BODY, T, 300),  # wrong secret
        (SECRET, BODY + b" ", T, 300),  # body changed by one byte
        (SECRET, BODY.replace("无人".encode(), "有人".encode()), T, 300),
        (SECRET, BODY, T + 301, 300),  # too old: a replay
        (SECRET, BODY, T - 301, 300),  # from the future
        (SECRET, BODY, T + 11, 10),
        ("", BODY, T, 300),
    ],
)
def test_a_signature_fails_on_any_change(secret: str, body: bytes, now: int, tolerance: float) -> None:
    header = webhooks.sign(SECRET, BODY, T)
    assert not webhooks.verify_signature(secret, header, body, tolerance, now=now)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"t={T}",
        "v1=abc",
        f"t=notanumber,v1={'0' * 64}",
        f"t={T},v1=",
        f"t={T},v0={'0' * 64}",
    ],
)
def test_malformed_headers_never_verify(header: str) -> None:
    assert not webhooks.verify_signature(SECRET, header, BODY, now=T)


def test_any_of_several_signatures_may_match_and_the_time_is_part_of_what_is_signed() -> None:
    good = webhooks.sign(SECRET, BODY, T).split("v1=")[1]
    assert webhooks.verify_signature(SECRET, f"t={T},v1={'0' * 64},v1={good}", BODY, now=T)
    # The same MAC with another time does not pass: t cannot be moved to dodge the tolerance.
    assert not webhooks.verify_signature(SECRET, f"t={T + 100},v1={good}", BODY, now=T + 100)


def test_the_body_is_a_structured_cloudevent_with_the_data_as_json_and_chinese_as_utf8() -> None:
    msg = dev.DeadlineMissed(tenant="caiyuan", deadline="report_in", whistle_id="w1", silent_ids=["u1", "u2"])
    msg.due_at.FromDatetime(datetime(2025, 3, 1, 8, 0, tzinfo=UTC))
    event = CloudEvent(
        id="ev-1",
        source="/hongling/dispatch/caiyuan",
        type="hongling.events.v1.DeadlineMissed",
        time=datetime(2025, 3, 1, 8, 0, 5, tzinfo=UTC),
        subject="whistles/w1",
        tenant="caiyuan",
        data=msg.SerializeToString(),
    )
    body = webhooks.cloudevent_json(event, msg)
    doc = json.loads(body.decode("utf-8"))
    assert {k: doc[k] for k in ("specversion", "id", "type", "source", "subject", "tenant", "datacontenttype")} == {
        "specversion": "1.0",
        "id": "ev-1",
        "type": "hongling.events.v1.DeadlineMissed",
        "source": "/hongling/dispatch/caiyuan",
        "subject": "whistles/w1",
        "tenant": "caiyuan",
        "datacontenttype": "application/json",
    }
    assert doc["time"] == "2025-03-01T08:00:05Z"
    data = doc["data"]
    assert data["whistle_id"] == "w1" and data["silent_ids"] == ["u1", "u2"]
    assert data["due_at"] == "2025-03-01T08:00:00Z"
    assert data["task_id"] == ""  # every field present, so receivers see a stable shape
    reason = dev.Escalated(reason="逾期未办结，上报街道")
    body2 = webhooks.cloudevent_json(event, reason)
    assert "逾期未办结".encode() in body2  # UTF-8, not \\u escapes


def test_event_types_are_named_short_or_in_full_and_unknown_ones_are_refused() -> None:
    assert webhooks.check_event_types(["WhistleBlown", "hongling.events.v1.Escalated", "WhistleBlown"]) == [
        "WhistleBlown",
        "Escalated",
    ]
    assert set(webhooks.EVENT_TYPES) == {
        "WhistleBlown",
        "UnitReportedIn",
        "TaskClaimed",
        "TaskAssigned",
        "TaskStatusChanged",
        "DeadlineMissed",
        "DeadlineReminder",
        "Escalated",
    }
    with pytest.raises(InvalidArgument) as exc:
        webhooks.check_event_types(["IssueReceived"])
    assert exc.value.field == "event_types"
    with pytest.raises(InvalidArgument):
        webhooks.check_event_types([])
    assert webhooks.short_type("hongling.events.v1.TaskCreated") is None


@pytest.mark.parametrize(
    "url",
    ["", "ftp://x.example/hook", "http:///nohost", "https://exa mple.com/", "notaurl", "http://x:99999/", "x" * 3000],
)
def test_urls_must_be_http_or_https_with_a_host(url: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        webhooks.check_url(url)
    assert exc.value.field == "url"


def test_good_urls_pass() -> None:
    assert webhooks.check_url(" https://sms.example.cn/hongling?k=1 ") == "https://sms.example.cn/hongling?k=1"
    assert webhooks.check_url("http://127.0.0.1:8080/h") == "http://127.0.0.1:8080/h"


@pytest.mark.parametrize("role", ["resident", "community_worker", "district_department", "public"])
def test_only_admins_ops_and_services_manage_webhooks(role: str) -> None:
    with pytest.raises(PermissionDenied):
        webhooks.list_webhooks(Principal(sub="x", role=role, tenants=("caiyuan",)))
    with pytest.raises(PermissionDenied):
        webhooks.list_webhooks(None)


def test_secrets_are_long_random_and_never_repeat() -> None:
    a, b = webhooks.new_secret(), webhooks.new_secret()
    assert a != b and a.startswith("whsec_") and len(a) >= 40
