"""Sending webhook deliveries: one durable timer per delivery, fired by a timer worker of its own.

Each firing makes one attempt: read the delivery and its registration by ``_id``, POST the signed
CloudEvent with a timeout, record the attempt in the delivery document. 2xx → delivered. Anything
else → the delivery's timer moves by ``backoff(attempt)`` (exponential, capped) and the next firing
tries again, until ``webhook_max_attempts`` → failed. A registration paused or deleted meanwhile →
cancelled. All state is in the delivery and timer documents, so a restart continues where it was.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import requests
from prometheus_client import Counter, Histogram

from services.common import clocks
from services.common.protect import Protector, protector
from services.common.settings import Settings, get_settings
from services.dispatch.webhooks import (
    EVENT_TYPES,
    TIMER_GROUP,
    TIMER_KIND,
    WEBHOOK_DELIVERIES,
    WebhookDeliveryDoc,
    WebhookDoc,
    cloudevent_json,
    event_of,
    signed_request,
)

log = logging.getLogger(__name__)

# A delivery's timer that finds no delivery document is early (the consumer writes the document just
# after the timer) and is retried; after this many tries it is dropped (the event's redelivery
# schedules it again if the document never came).
MISSING_DELIVERY_TRIES = 8

WEBHOOK_ATTEMPTS = Counter(
    "hongling_webhook_attempts_total",
    "Webhook POST attempts by result (ok, http_error, timeout, connection_error, error).",
    ["tenant", "result"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "hongling_webhook_attempt_seconds",
    "Duration of one webhook POST (until the answer, the timeout or the error).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@dataclass(frozen=True)
class DeliveryConfig:
    timeout: float
    max_attempts: int
    backoff_base: float
    backoff_cap: float
    data_key: str
    data_key_accepted: str = ""  # a rotation's other data key (services/common/protect.py)

    @classmethod
    def of(cls, settings: Settings) -> DeliveryConfig:
        return cls(
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            backoff_base=settings.webhook_backoff_base_seconds,
            backoff_cap=settings.webhook_backoff_max_seconds,
            data_key=settings.data_key,
            data_key_accepted=settings.data_key_accepted,
        )


_config: dict[str, DeliveryConfig] = {}
_local = threading.local()


def configure(config: DeliveryConfig) -> None:
    """Set how deliveries are sent in this process (the worker factory does it from the settings)."""
    _config["current"] = config


def config() -> DeliveryConfig:
    if "current" not in _config:
        configure(DeliveryConfig.of(get_settings()))
    return _config["current"]


@cache
def _protector(key: str, accepted: str = "") -> Protector:
    return protector(key, accepted)


def _session() -> requests.Session:
    """One HTTP session (connection pool) per worker thread: requests' Session is not thread-safe."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxies or netrc credentials from the environment
        _local.session = session
    return session


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """(status code or 0, error text or "", result label). Error texts name the failure's kind only:
    exception messages can carry the URL (and a token in its query) or the receiver's answer."""
    try:
        with _session().post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as resp:
            code = resp.status_code
        if 200 <= code < 300:
            return code, "", "ok"
        return code, f"HTTP {code}", "http_error"
    except requests.Timeout:
        return 0, f"timeout after {timeout:g} s", "timeout"
    except requests.ConnectionError:
        return 0, "connection failed (refused, reset or name not resolved)", "connection_error"
    except requests.RequestException as exc:
        return 0, f"request failed ({type(exc).__name__})", "error"


def _finish(doc: WebhookDeliveryDoc, status: str, error: str, tenant: str) -> None:
    WebhookDeliveryDoc.objects(id=doc.id).update_one(
        set__status=status, set__finished_at=datetime.now(UTC), set__last_error=error
    )
    WEBHOOK_DELIVERIES.labels(tenant, doc.event_type, status).inc()


@clocks.handler(TIMER_KIND, group=TIMER_GROUP)
def deliver(timer: clocks.Timer) -> None:
    """One attempt of one delivery (the handler of its timer, in the tenant's context)."""
    cfg = config()
    did = timer.payload.get("delivery_id", "")
    doc: WebhookDeliveryDoc | None = WebhookDeliveryDoc.objects(id=did).first()
    if doc is None:
        if timer.attempt >= MISSING_DELIVERY_TRIES:
            log.warning("webhook delivery %s: no delivery document after %d tries; dropped", did, timer.attempt)
            return
        raise LookupError(f"webhook delivery {did} not stored yet")  # the timer engine retries
    if doc.status != "pending":
        return  # finished already (a replayed event re-scheduled its timer)
    hook: WebhookDoc | None = WebhookDoc.objects(id=doc.webhook_id).first()
    if hook is None or hook.deleted or not hook.active or doc.event_type not in EVENT_TYPES:
        why = "webhook deleted" if hook is None or hook.deleted else "webhook paused"
        _finish(doc, "cancelled", why, timer.tenant)
        log.info("webhook delivery %s cancelled: %s", doc.id, why)
        return
    event = event_of(doc, timer.tenant)
    body = cloudevent_json(event, event.decode(EVENT_TYPES[doc.event_type]))
    secret = _protector(cfg.data_key, cfg.data_key_accepted).open(hook.secret_sealed)
    number = (doc.attempts or 0) + 1
    headers = signed_request(secret, doc.id, number, body, event)
    started = time.perf_counter()
    code, error, result = _post(hook.url, body, headers, cfg.timeout)
    elapsed = time.perf_counter() - started
    WEBHOOK_ATTEMPTS.labels(timer.tenant, result).inc()
    WEBHOOK_ATTEMPT_SECONDS.observe(elapsed)
    now = datetime.now(UTC)
    attempt: dict[str, Any] = {
        "number": number,
        "at": now,
        "status_code": code,
        "error": error,
        "duration_ms": round(elapsed * 1000),
    }
    if result == "ok":
        WebhookDeliveryDoc.objects(id=doc.id).update_one(
            set__status="delivered",
            set__attempts=number,
            push__attempt_log=attempt,
            set__finished_at=now,
            set__last_error="",
        )
        WEBHOOK_DELIVERIES.labels(timer.tenant, doc.event_type, "delivered").inc()
        log.info("webhook delivery %s (%s) delivered on attempt %d: HTTP %d", doc.id, doc.event_type, number, code)
        return
    if number >= cfg.max_attempts:
        WebhookDeliveryDoc.objects(id=doc.id).update_one(
            set__status="failed",
            set__attempts=number,
            push__attempt_log=attempt,
            set__finished_at=now,
            set__last_error=error,
        )
        WEBHOOK_DELIVERIES.labels(timer.tenant, doc.event_type, "failed").inc()
        log.warning("webhook delivery %s (%s) failed after %d attempts: %s", doc.id, doc.event_type, number, error)
        return
    delay = clocks.backoff_seconds(number, base=cfg.backoff_base, cap=cfg.backoff_cap, jitter=0.1)
    next_at = now + timedelta(seconds=delay)
    WebhookDeliveryDoc.objects(id=doc.id).update_one(
        set__attempts=number, push__attempt_log=attempt, set__next_attempt_at=next_at, set__last_error=error
    )
    # The same key again: the timer engine keeps it (a new generation) for the next attempt.
    clocks.schedule(timer.key, TIMER_KIND, next_at, dict(timer.payload), group=TIMER_GROUP)
    log.info("webhook delivery %s attempt %d: %s; next attempt in %.1f s", doc.id, number, error, delay)


def build_delivery_worker(settings: Settings) -> clocks.TimerWorker:
    """The timer worker that sends webhook deliveries (a worker for run_service)."""
    configure(DeliveryConfig.of(settings))
    return clocks.TimerWorker(
        group=TIMER_GROUP,
        rescan_seconds=settings.timer_rescan_seconds,
        lease_seconds=max(60.0, settings.webhook_timeout_seconds * 3),
        backoff_base=settings.webhook_backoff_base_seconds,
        backoff_cap=settings.webhook_backoff_max_seconds,
        concurrency=settings.webhook_concurrency,
        name="dispatch-webhook-delivery",
    )


__all__ = ["DeliveryConfig", "build_delivery_worker", "configure", "deliver"]
