"""Webhook signatures as a receiver checks them (Standard Webhooks, and the deprecated X-Hongling-Signature),
the JSON body, and what a registration accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
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
    # The Standard Webhooks form: whsec_ + standard base64 of 32 random bytes, which is the key.
    key = base64.b64decode(a.removeprefix("whsec_"), validate=True)
    assert len(key) == 32 and webhooks.standard_key(a) == key and webhooks.standard_secret(a) == a


# ---------------------------------------------------------------- Standard Webhooks

# An independent known answer: the example of the Standard Webhooks reference libraries' tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# A secret as issued before the Standard Webhooks headers: whsec_ + secrets.token_urlsafe(32).
LEGACY_SECRET = "whsec_Xy-3kP_q9ZrT0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123"


def headers_for(secret: str, msg_id: str, timestamp: int, body: bytes = BODY) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks.sign_standard(secret, msg_id, timestamp, body),
    }


def test_the_signature_matches_the_standard_webhooks_known_answer() -> None:
    assert webhooks.sign_standard(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    spec_headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert webhooks.verify_standard_webhook(SPEC_SECRET, spec_headers, SPEC_BODY, now=SPEC_TIMESTAMP + 60)
    # The key given as bytes is the same key.
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    assert webhooks.verify_standard_webhook(key, spec_headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_the_reference_library_verifies_what_a_delivery_carries() -> None:
    secret = webhooks.new_secret()
    event = CloudEvent(
        id="ev-7",
        source="/hongling/dispatch/caiyuan",
        type="hongling.events.v1.Escalated",
        time=datetime(2025, 3, 1, 8, 0, 5, tzinfo=UTC),
        subject="tasks/t1",
        tenant="caiyuan",
        data=b"",
    )
    headers = webhooks.signed_request(secret, "wh_0123456789abcdef:ev-7", 1, BODY, event)
    # standardwebhooks' stock Webhook checks the time against the real clock (5 minutes either way).
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(webhooks.new_secret()).verify(BODY, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(BODY + b" ", headers)
    # And ours agrees with it on what it signs.
    ref = standardwebhooks.Webhook(secret).sign(
        "wh_0123456789abcdef:ev-7", datetime.fromtimestamp(T, UTC), BODY.decode("utf-8")
    )
    assert webhooks.sign_standard(secret, "wh_0123456789abcdef:ev-7", T, BODY) == ref


def test_a_secret_issued_before_keeps_working_through_its_whsec_form() -> None:
    # Its key is the UTF-8 bytes of the secret as it was shown; its Standard Webhooks form carries them.
    assert webhooks.standard_key(LEGACY_SECRET) == LEGACY_SECRET.encode("utf-8")
    standard = webhooks.standard_secret(LEGACY_SECRET)
    assert standard == "whsec_" + base64.b64encode(LEGACY_SECRET.encode("utf-8")).decode()
    now = int(time.time())
    headers = headers_for(LEGACY_SECRET, "wh_1:ev-1", now)
    assert standardwebhooks.Webhook(standard).verify(BODY, headers, json_parse=False) is None
    assert webhooks.verify_standard_webhook(LEGACY_SECRET, headers, BODY, now=now)
    assert webhooks.verify_standard_webhook(standard, headers, BODY, now=now)
    # The deprecated header keeps its key: the secret's UTF-8 bytes, as before.
    assert webhooks.verify_signature(LEGACY_SECRET, webhooks.sign(LEGACY_SECRET, BODY, now), BODY, now=now)


@pytest.mark.parametrize(
    ("secret", "body", "now", "tolerance"),
    [
        (SPEC_SECRET, SPEC_BODY + b" ", SPEC_TIMESTAMP, 300),  # body changed by one byte
        (SPEC_SECRET, SPEC_BODY.replace(b"2432", b"2433"), SPEC_TIMESTAMP, 300),
        ("whsec_" + base64.b64encode(b"another key, not the one that signed").decode(), SPEC_BODY, SPEC_TIMESTAMP, 300),
        (LEGACY_SECRET, SPEC_BODY, SPEC_TIMESTAMP, 300),  # wrong secret
        (SPEC_SECRET, SPEC_BODY, SPEC_TIMESTAMP + 301, 300),  # too old: a replay
        (SPEC_SECRET, SPEC_BODY, SPEC_TIMESTAMP - 301, 300),  # from the future
        (SPEC_SECRET, SPEC_BODY, SPEC_TIMESTAMP + 11, 10),
        ("", SPEC_BODY, SPEC_TIMESTAMP, 300),
    ],
)
def test_a_standard_signature_fails_on_any_change(secret: str, body: bytes, now: int, tolerance: float) -> None:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
    assert webhooks.verify_standard_webhook(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 299)
    assert webhooks.verify_standard_webhook(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP - 299)
    assert not webhooks.verify_standard_webhook(secret, headers, body, now=now, tolerance=tolerance)


def test_the_default_tolerance_is_five_minutes_and_the_id_and_time_are_signed() -> None:
    secret = webhooks.new_secret()
    headers = headers_for(secret, "wh_1:ev-1", T)
    assert webhooks.verify_standard_webhook(secret, headers, BODY, now=T + 300)
    assert not webhooks.verify_standard_webhook(secret, headers, BODY, now=T + 301)
    assert not webhooks.verify_standard_webhook(secret, headers, BODY, now=T - 301)
    # Moving the timestamp (to dodge the tolerance) or the id (to pass a dedupe) breaks the signature.
    assert not webhooks.verify_standard_webhook(secret, {**headers, "webhook-timestamp": str(T + 100)}, BODY, now=T)
    assert not webhooks.verify_standard_webhook(secret, {**headers, "webhook-id": "wh_1:ev-2"}, BODY, now=T)
    # Header names in any case, as HTTP has them.
    assert webhooks.verify_standard_webhook(secret, {k.title(): v for k, v in headers.items()}, BODY, now=T)


def test_an_old_or_future_timestamp_is_refused_by_the_reference_library_too() -> None:
    secret = webhooks.new_secret()
    now = int(time.time())
    for stamp in (now - 600, now + 600):
        headers = headers_for(secret, "wh_1:ev-1", stamp)
        assert webhooks.verify_standard_webhook(secret, headers, BODY, now=stamp)
        assert not webhooks.verify_standard_webhook(secret, headers, BODY)
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(BODY, headers)


def test_during_a_rotation_two_signatures_travel_and_either_key_verifies() -> None:
    old, new = webhooks.new_secret(), webhooks.new_secret()
    headers = headers_for(old, "wh_1:ev-1", T)
    headers["webhook-signature"] = webhooks.sign_standard([old, new], "wh_1:ev-1", T, BODY)
    first, second = headers["webhook-signature"].split(" ")
    assert first == webhooks.sign_standard(old, "wh_1:ev-1", T, BODY)
    assert second == webhooks.sign_standard(new, "wh_1:ev-1", T, BODY)
    assert webhooks.verify_standard_webhook(old, headers, BODY, now=T)
    assert webhooks.verify_standard_webhook(new, headers, BODY, now=T)
    assert not webhooks.verify_standard_webhook(webhooks.new_secret(), headers, BODY, now=T)
    # A receiver holding both keys while it rotates accepts either one signature.
    for one in (first, second):
        assert webhooks.verify_standard_webhook([old, new], {**headers, "webhook-signature": one}, BODY, now=T)
    # The reference library, at the real time, reads the two signatures the same way.
    now = int(time.time())
    live = {**headers_for(old, "wh_1:ev-1", now)}
    live["webhook-signature"] = webhooks.sign_standard([old, new], "wh_1:ev-1", now, BODY)
    standardwebhooks.Webhook(old).verify(BODY, live)
    standardwebhooks.Webhook(new).verify(BODY, live)


@pytest.mark.parametrize(
    "changed",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": ""},
        {"webhook-timestamp": "soon"},
        {"webhook-timestamp": f"{T}.5"},
        {"webhook-timestamp": f"-{T}"},
        {"webhook-signature": ""},
        {"webhook-signature": "v2,AAAA"},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-signature": "v1"},
        {"webhook-signature": "garbage"},
    ],
)
def test_malformed_standard_headers_never_verify(changed: dict[str, str]) -> None:
    secret = webhooks.new_secret()
    headers = {**headers_for(secret, "wh_1:ev-1", T), **changed}
    assert not webhooks.verify_standard_webhook(secret, headers, BODY, now=T)


def test_every_attempt_carries_the_three_headers_and_the_deprecated_one_with_a_stable_id() -> None:
    secret = webhooks.new_secret()
    event = CloudEvent(
        id="ev-9",
        source="/hongling/dispatch/caiyuan",
        type="hongling.events.v1.DeadlineReminder",
        time=datetime(2025, 3, 1, 8, 0, 5, tzinfo=UTC),
        subject="tasks/t9",
        tenant="caiyuan",
        data=b"",
    )
    delivery = webhooks.delivery_id("wh_0123456789abcdef", event.id)
    attempts = [webhooks.signed_request(secret, delivery, n, BODY, event, now=T + 2**n) for n in (1, 2, 3)]
    for n, headers in enumerate(attempts, start=1):
        assert headers["webhook-id"] == delivery == headers["X-Hongling-Delivery"]  # the same on every retry
        assert headers["webhook-timestamp"] == str(T + 2**n)  # the attempt's own time
        assert headers["X-Hongling-Attempt"] == str(n)
        assert webhooks.verify_standard_webhook(secret, headers, BODY, now=T + 2**n)
        assert webhooks.verify_signature(secret, headers[webhooks.SIGNATURE_HEADER], BODY, now=T + 2**n)
        assert headers[webhooks.SIGNATURE_HEADER].startswith(f"t={T + 2**n},v1=")  # deprecated, still sent
    assert len({h["webhook-signature"] for h in attempts}) == 3  # each attempt signed at its own time
