"""The webhook notifier end to end: a real local HTTP receiver, dispatch events produced on Kafka as the
outbox relay produces them (CloudEvents binary mode), the dispatch service's consumer group
dispatch-webhooks and its delivery worker; signatures verified as a receiver would. The give-up and
timeout paths run the same fan-out and delivery code in this process, with short settings.

Nothing here bounds how long a delivery takes (a speed, on a shared machine anything): "nothing more was
sent" is shown once the delivery's timer is gone (no attempt can follow), "nothing was sent" by a later
event on the same key that was delivered (the consumer handles a key's events in order)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
import requests
import standardwebhooks
from google.protobuf.message import Message
from hongling.dispatch.v1 import webhooks_pb2 as wpb
from hongling.dispatch.v1 import webhooks_pb2_grpc as wpb_grpc
from hongling.events.v1 import dispatch_events_pb2 as dev
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from services.common import clocks, context, mongo
from services.common.errors import InvalidArgument
from services.common.events import CloudEvent, record_key, topic_for
from services.common.principal import Principal
from services.common.protect import protector
from services.common.settings import Settings
from services.dispatch import webhook_delivery, webhooks
from tests.conftest import System, call_metadata, wait_for

T = "caiyuan"


# ---------------------------------------------------------------- the receiver


class Receiver:
    """A real HTTP server on a free port. Each path answers with its script of status codes (the last
    one repeats), after an optional delay; every request is kept (path, headers, raw body)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.scripts: dict[str, list[int]] = defaultdict(lambda: [200])
        self.delays: dict[str, float] = {}
        self.answered: dict[str, list[datetime]] = defaultdict(list)  # when each answer went out, by path
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    script = receiver.scripts[self.path]
                    code = script.pop(0) if len(script) > 1 else script[0]
                delay = receiver.delays.get(self.path, 0.0)
                if delay:
                    time.sleep(delay)
                with receiver.lock:
                    receiver.answered[self.path].append(datetime.now(UTC))
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting (a timeout) and closed the connection

            def log_message(self, format: str, *args: Any) -> None:
                pass

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, h, b in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


def stub(system: System) -> wpb_grpc.WebhookServiceStub:
    return wpb_grpc.WebhookServiceStub(system.channel("dispatch"))


def md(system: System, role: str = "subdistrict_admin") -> list[tuple[str, str]]:
    return call_metadata(system.settings, T, role=role)


def make_event(msg: Message, key: str) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/dispatch/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=datetime.now(UTC),
        subject=key,
        tenant=T,
        data=msg.SerializeToString(),
    )


def publish(producer: KafkaProducer, ce: CloudEvent) -> None:
    """As the dispatch outbox relay sends it: binary mode, key <tenant>:<aggregate>."""
    producer.send(topic_for("dispatch"), key=record_key(T, ce.subject), value=ce.data, headers=ce.headers()).get(
        timeout=15
    )


def register(system: System, url: str, types: list[str], description: str = "短信网关") -> wpb.RegisterWebhookResponse:
    resp: wpb.RegisterWebhookResponse = stub(system).RegisterWebhook(
        wpb.RegisterWebhookRequest(url=url, event_types=types, description=description), metadata=md(system)
    )
    return resp


def delivery_timer_gone(mongo_client: MongoClient[Any], webhook_id: str, event_id: str) -> bool:
    """No timer left for this delivery in the dispatch service's database: no attempt of it can follow."""
    key = webhooks.timer_key(webhooks.delivery_id(webhook_id, event_id))
    return mongo_client[f"hl_dispatch_{T}"][clocks.collection_name(webhooks.TIMER_GROUP)].find_one({"_id": key}) is None


def assert_signed(secret: str, delivery: str, headers: dict[str, str], body: bytes) -> None:
    """The Standard Webhooks headers (webhook-id = the delivery id) verify, with ours and with the reference
    library as a receiver would run it, and the deprecated X-Hongling-Signature is still there and verifies."""
    assert headers["webhook-id"] == delivery == headers["x-hongling-delivery"]
    assert headers["webhook-timestamp"].isdigit() and headers["webhook-signature"].startswith("v1,")
    assert webhooks.verify_standard_webhook(secret, headers, body)
    standardwebhooks.Webhook(secret).verify(body, headers)
    assert webhooks.verify_signature(secret, headers["x-hongling-signature"], body)


def deliveries(system: System, webhook_id: str) -> list[wpb.WebhookDelivery]:
    resp = stub(system).ListWebhookDeliveries(
        wpb.ListWebhookDeliveriesRequest(webhook_id=webhook_id), metadata=md(system)
    )
    return list(resp.deliveries)


# ---------------------------------------------------------------- through the dispatch service


def test_an_event_on_kafka_arrives_signed_and_verifiable(
    system: System, receiver: Receiver, producer: KafkaProducer
) -> None:
    path = f"/sms-{uuid.uuid4().hex[:6]}"
    reg = register(system, receiver.url(path), ["Escalated", "hongling.events.v1.DeadlineReminder"])
    assert reg.secret.startswith("whsec_")
    assert reg.webhook.active and list(reg.webhook.event_types) == ["Escalated", "DeadlineReminder"]
    assert reg.webhook.secret_hint == reg.secret[:10]
    # The secret is shown once: reading the registration again never returns it.
    got = stub(system).GetWebhook(wpb.GetWebhookRequest(id=reg.webhook.id), metadata=md(system))
    assert reg.secret not in str(got) and got.url == receiver.url(path)

    task = uuid.uuid4().hex
    msg = dev.Escalated(tenant=T, task_id=task, level="subdistrict", reason="逾期未办结，上报街道")
    msg.escalated_at.GetCurrentTime()
    ce = make_event(msg, f"tasks/{task}")
    publish(producer, ce)

    (headers, body), *_ = wait_for(lambda: receiver.at(path))
    assert_signed(reg.secret, f"{reg.webhook.id}:{ce.id}", headers, body)
    assert not webhooks.verify_standard_webhook(webhooks.new_secret(), headers, body)
    assert not webhooks.verify_signature("whsec_wrong", headers["x-hongling-signature"], body)
    assert headers["ce-id"] == ce.id
    assert headers["ce-type"] == "hongling.events.v1.Escalated"
    assert headers["content-type"].startswith("application/cloudevents+json")
    assert headers["x-hongling-attempt"] == "1"
    assert "逾期未办结".encode() in body  # UTF-8 as it is
    doc = json.loads(body.decode("utf-8"))
    assert (doc["specversion"], doc["id"], doc["type"], doc["tenant"]) == ("1.0", ce.id, ce.type, T)
    assert doc["data"]["task_id"] == task and doc["data"]["level"] == "subdistrict"
    assert doc["data"]["reason"] == "逾期未办结，上报街道"

    (d,) = wait_for(lambda: [x for x in deliveries(system, reg.webhook.id) if x.status == "delivered"])
    assert (d.event_id, d.event_type, d.attempts, d.id) == (ce.id, "Escalated", 1, f"{reg.webhook.id}:{ce.id}")
    assert [a.status_code for a in d.attempt_log] == [200]
    assert d.finished_at.seconds > 0


def test_a_receiver_failing_twice_gets_it_on_the_third_attempt(
    system: System, receiver: Receiver, producer: KafkaProducer, mongo_client: MongoClient[Any]
) -> None:
    path = f"/flaky-{uuid.uuid4().hex[:6]}"
    receiver.scripts[path] = [500, 500, 200]
    reg = register(system, receiver.url(path), ["DeadlineReminder"])
    task = uuid.uuid4().hex
    ce = make_event(dev.DeadlineReminder(tenant=T, deadline="completion", task_id=task), f"tasks/{task}")
    publish(producer, ce)
    (d,) = wait_for(lambda: [x for x in deliveries(system, reg.webhook.id) if x.status == "delivered"])
    wait_for(lambda: delivery_timer_gone(mongo_client, reg.webhook.id, ce.id))  # no attempt can follow
    got = receiver.at(path)
    assert [h["x-hongling-attempt"] for h, _ in got] == ["1", "2", "3"]
    assert {h["ce-id"] for h, _ in got} == {ce.id}  # the same event each time: receivers dedupe by ce-id
    # ... and by webhook-id: the delivery id, the same on every attempt; each attempt signed at its time.
    assert {h["webhook-id"] for h, _ in got} == {f"{reg.webhook.id}:{ce.id}"}
    for h, b in got:
        assert_signed(reg.secret, f"{reg.webhook.id}:{ce.id}", h, b)
    assert [int(h["webhook-timestamp"]) for h, _ in got] == sorted(int(h["webhook-timestamp"]) for h, _ in got)
    assert d.attempts == 3
    assert [a.status_code for a in d.attempt_log] == [500, 500, 200]
    assert [a.error for a in d.attempt_log] == ["HTTP 500", "HTTP 500", ""]
    # Backoff: the retries were spaced (the default base is 2 s, less up to 10 % jitter).
    at = [a.at.ToDatetime() for a in d.attempt_log]
    assert (at[1] - at[0]).total_seconds() >= 1.5
    assert (at[2] - at[1]).total_seconds() >= 3.0


def test_only_the_chosen_event_types_are_delivered_and_a_replay_delivers_nothing_more(
    system: System, receiver: Receiver, producer: KafkaProducer, mongo_client: MongoClient[Any]
) -> None:
    path = f"/wechat-{uuid.uuid4().hex[:6]}"
    reg = register(system, receiver.url(path), ["Escalated"])
    task = uuid.uuid4().hex
    not_wanted = make_event(
        dev.UnitReportedIn(tenant=T, whistle_id=task, responder_id="u1", answer="accept"), f"whistles/{task}"
    )
    wanted = make_event(dev.Escalated(tenant=T, task_id=task, level="district"), f"whistles/{task}")
    publish(producer, not_wanted)  # same key: the consumer sees it before the next one
    publish(producer, wanted)
    wait_for(lambda: receiver.at(path))

    def then_a_marker(n: int) -> str:
        """A new wanted event on the same key, delivered: the consumer handled what came before it."""
        marker = make_event(dev.Escalated(tenant=T, task_id=task, level="district", reason=f"标记{n}"), wanted.subject)
        publish(producer, marker)
        wait_for(lambda: marker.id in [h["ce-id"] for h, _ in receiver.at(path)])
        return marker.id

    # The same event again: once as Kafka redelivers it, once more after its processed mark is gone
    # (as after a crash between the delivery write and the mark); neither adds a delivery.
    publish(producer, wanted)
    first = then_a_marker(1)
    mongo_client[f"hl_dispatch_{T}"]["processed_events"].delete_one({"_id": wanted.id})
    publish(producer, wanted)
    second = then_a_marker(2)
    wait_for(lambda: delivery_timer_gone(mongo_client, reg.webhook.id, wanted.id))  # had a replay scheduled one
    got = receiver.at(path)
    assert [h["ce-id"] for h, _ in got] == [wanted.id, first, second]
    assert sorted(d.event_id for d in deliveries(system, reg.webhook.id)) == sorted([wanted.id, first, second])


def test_a_paused_or_deleted_registration_gets_nothing_and_management_needs_an_admin(
    system: System, receiver: Receiver, producer: KafkaProducer, mongo_client: MongoClient[Any]
) -> None:
    path = f"/paused-{uuid.uuid4().hex[:6]}"
    reg = register(system, receiver.url(path), ["Escalated"])
    s = stub(system)
    paused = s.SetWebhookActive(wpb.SetWebhookActiveRequest(id=reg.webhook.id, active=False), metadata=md(system))
    assert not paused.active
    listed = s.ListWebhooks(wpb.ListWebhooksRequest(), metadata=md(system))
    assert reg.webhook.id in [w.id for w in listed.webhooks]
    # An active registration wants the same event (so the consumer does not skip it as wanted by nobody): once
    # the event is marked processed its fan-out is over, and once that one has it, deliveries were sent.
    witness_path = f"/witness-{uuid.uuid4().hex[:6]}"
    witness = register(system, receiver.url(witness_path), ["Escalated"])
    task = uuid.uuid4().hex
    ce = make_event(dev.Escalated(tenant=T, task_id=task, level="district"), f"tasks/{task}")
    publish(producer, ce)
    processed = mongo_client[f"hl_dispatch_{T}"]["processed_events"]
    wait_for(lambda: processed.find_one({"_id": ce.id}) is not None)
    wait_for(lambda: ce.id in [h["ce-id"] for h, _ in receiver.at(witness_path)])
    wait_for(lambda: all(d.status != "pending" for d in deliveries(system, reg.webhook.id)))
    wait_for(lambda: delivery_timer_gone(mongo_client, reg.webhook.id, ce.id))
    assert receiver.at(path) == []
    s.DeleteWebhook(wpb.DeleteWebhookRequest(id=witness.webhook.id), metadata=md(system))
    s.DeleteWebhook(wpb.DeleteWebhookRequest(id=reg.webhook.id), metadata=md(system))
    with pytest.raises(grpc.RpcError) as exc:
        s.GetWebhook(wpb.GetWebhookRequest(id=reg.webhook.id), metadata=md(system))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert reg.webhook.id not in [w.id for w in s.ListWebhooks(wpb.ListWebhooksRequest(), metadata=md(system)).webhooks]
    # Refusals name the field or the role.
    with pytest.raises(grpc.RpcError) as exc:
        s.RegisterWebhook(wpb.RegisterWebhookRequest(url="ftp://x/", event_types=["Escalated"]), metadata=md(system))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as exc:
        s.RegisterWebhook(
            wpb.RegisterWebhookRequest(url=receiver.url("/x"), event_types=["IssueReceived"]), metadata=md(system)
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as exc:
        s.ListWebhooks(wpb.ListWebhooksRequest(), metadata=md(system, role="community_worker"))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- the same code in this process


@pytest.fixture
def local_delivery(infra: Settings) -> Iterator[clocks.TimerWorker]:
    """Fan-out and delivery against this process's own databases (hl_itest_*), short settings."""
    mongo.init("itest", infra.mongo_uri)
    webhook_delivery.configure(
        webhook_delivery.DeliveryConfig(
            timeout=0.5, max_attempts=3, backoff_base=0.2, backoff_cap=1.0, data_key=infra.data_key
        )
    )
    worker = clocks.TimerWorker(group=webhooks.TIMER_GROUP, concurrency=2, tenants=[T])
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    yield worker
    stop.set()
    thread.join(timeout=10)


def local_register(infra: Settings, url: str) -> tuple[webhooks.WebhookDoc, str]:
    admin = Principal(sub="test-admin", role="subdistrict_admin", tenants=(T,))
    with context.bound(tenant=T, principal=admin):
        return webhooks.register(url, ["Escalated"], "", admin, protector(infra.data_key))


def local_status(webhook_id: str) -> list[webhooks.WebhookDeliveryDoc]:
    admin = Principal(sub="test-admin", role="subdistrict_admin", tenants=(T,))
    with context.bound(tenant=T):
        docs, _ = webhooks.list_deliveries(webhook_id, "", 50, "", admin)
    return docs


def failed_deliveries(settings: Settings) -> float:
    """Failed deliveries of T's Escalated counted by this process's timer worker and, when the stack runs, by
    the dispatch process's: whichever of the two fires the last attempt counts it (both share the timers)."""
    n = webhooks.WEBHOOK_DELIVERIES.labels(T, "Escalated", "failed")._value.get()
    try:
        text = requests.get(f"http://127.0.0.1:{settings.metrics_port('dispatch')}/metrics", timeout=5).text
    except requests.RequestException:
        return n  # no dispatch process in this session: only ours delivers
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            wanted = {"tenant": T, "event_type": "Escalated", "outcome": "failed"}
            if sample.name == "hongling_webhook_deliveries_total" and sample.labels == wanted:
                n += sample.value
    return n


def test_a_delivery_gives_up_after_the_last_attempt_and_shows_failed(
    infra: Settings, receiver: Receiver, local_delivery: clocks.TimerWorker
) -> None:
    path = f"/down-{uuid.uuid4().hex[:6]}"
    receiver.scripts[path] = [503]
    hook, secret = local_register(infra, receiver.url(path))
    task = uuid.uuid4().hex
    msg = dev.Escalated(tenant=T, task_id=task, level="district")
    failed_before = failed_deliveries(infra)
    with context.bound(tenant=T):
        webhooks.on_event(make_event(msg, f"tasks/{task}"), msg)
    (d,) = wait_for(lambda: [x for x in local_status(hook.id) if x.status == "failed"])
    assert d.attempts == 3 and [a["status_code"] for a in d.attempt_log] == [503, 503, 503]
    assert d.last_error == "HTTP 503"
    assert wait_for(lambda: failed_deliveries(infra) - failed_before == 1)

    def timer_gone() -> bool:  # nothing left to fire: no attempt can follow
        with context.bound(tenant=T):
            return clocks.get(webhooks.timer_key(d.id), group=webhooks.TIMER_GROUP) is None

    wait_for(timer_gone)
    got = receiver.at(path)
    assert len(got) == 3
    for h, b in got:  # every attempt, the last one too, carries the same webhook-id and verifies
        assert_signed(secret, d.id, h, b)


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    infra: Settings, receiver: Receiver, local_delivery: clocks.TimerWorker
) -> None:
    path = f"/slow-{uuid.uuid4().hex[:6]}"
    receiver.delays[path] = 1.5
    receiver.scripts[path] = [200]
    hook, _ = local_register(infra, receiver.url(path))
    task = uuid.uuid4().hex
    msg = dev.Escalated(tenant=T, task_id=task, level="district")
    with context.bound(tenant=T):
        webhooks.on_event(make_event(msg, f"tasks/{task}"), msg)
    d = wait_for(lambda: [x for x in local_status(hook.id) if x.attempts >= 1])[0]
    assert d.attempt_log[0]["status_code"] == 0
    assert d.attempt_log[0]["error"] == "timeout after 0.5 s"
    # It gave up before the receiver answered (how long it took is no test's business on a busy machine).
    (answered, *_) = wait_for(lambda: receiver.answered.get(path))
    gave_up = d.attempt_log[0]["at"]
    assert (gave_up if gave_up.tzinfo else gave_up.replace(tzinfo=UTC)) < answered


def test_deliveries_are_listed_newest_first_in_pages(
    infra: Settings, receiver: Receiver, local_delivery: clocks.TimerWorker
) -> None:
    path = f"/paged-{uuid.uuid4().hex[:6]}"
    hook, _ = local_register(infra, receiver.url(path))
    events = []
    for _ in range(5):
        task = uuid.uuid4().hex
        msg = dev.Escalated(tenant=T, task_id=task, level="district")
        ce = make_event(msg, f"tasks/{task}")
        with context.bound(tenant=T):
            webhooks.on_event(ce, msg)
        events.append(ce.id)
        time.sleep(0.01)
    wait_for(lambda: len(receiver.at(path)) == 5)
    # The receiver has them; each is listed as delivered once its worker has recorded the answer.
    wait_for(lambda: len([d for d in local_status(hook.id) if d.status == "delivered"]) == 5)
    admin = Principal(sub="test-admin", role="subdistrict_admin", tenants=(T,))
    seen: list[str] = []
    token = ""
    with context.bound(tenant=T):
        for _ in range(3):
            docs, token = webhooks.list_deliveries(hook.id, "delivered", 2, token, admin)
            seen.extend(d.event_id for d in docs)
            if not token:
                break
        with pytest.raises(InvalidArgument):
            webhooks.list_deliveries(hook.id, "failed", 2, token or "bm90LWEtdG9rZW4=", admin)
    assert seen == list(reversed(events))
