"""Webhook notifier: a tenant's registered URLs receive chosen dispatch events, signed, with retries.

So SMS / WeChat gateways (or any other system) can be plugged in without touching dispatch.

- Registrations (``webhooks``, per tenant): url (http/https), the event types wanted (among
  :data:`EVENT_TYPES`), a description, an active flag and a signing secret — shown once, at
  registration, in the Standard Webhooks form ``whsec_<base64 of 32 random bytes>``, stored encrypted
  (HONGLING_DATA_KEY). Managed through the gRPC ``WebhookService``
  (:class:`WebhookServicer`) by subdistrict admins and ops.
- Fan-out: the consumer group ``dispatch-webhooks`` reads topic hongling.dispatch.v1; for every
  active registration wanting the event's type it writes one delivery document, ``_id`` =
  ``<webhook id>:<event id>`` (deterministic), holding the event itself. A replayed event finds its
  delivery already there and adds nothing, so a receiver gets each event once per registration (short
  of a crash between a successful POST and recording it: receivers drop repeats by ``webhook-id``, the
  delivery id, or by ``ce-id``).
  Registrations are read per tenant at most every REGISTRY_TTL_SECONDS (at once after a change made
  in this process), so one made through another dispatch process applies within that time.
- Sending (services/dispatch/webhook_delivery.py): each delivery is a durable timer of kind
  ``webhook_delivery`` in the timer group ``webhooks`` (services/common/clocks.py: collection
  ``timers_webhooks``), fired by a timer worker of its own so slow receivers never hold up deadlines.
  An attempt POSTs the CloudEvent in JSON structured mode, signed (below), with a timeout; a failure
  moves the timer by an exponential backoff; after ``webhook_max_attempts`` the delivery is ``failed``.
  The state lives in the delivery document (attempts with status codes, next attempt, outcome), shown
  by ``ListWebhookDeliveries``.
- Signature, Standard Webhooks (https://www.standardwebhooks.com/), so receivers can use its stock
  libraries: ``webhook-id`` = the delivery id ``<webhook id>:<event id>`` (the same on every retry:
  receivers drop repeats by it), ``webhook-timestamp`` = the attempt's unix seconds, ``webhook-signature``
  = ``v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`` over the exact body bytes;
  several space-separated signatures may come (key rotation: any one matching passes). Receivers verify
  with :func:`verify_standard_webhook`, ``standardwebhooks.Webhook(secret).verify(body, headers)`` or any
  Standard Webhooks library, refusing timestamps more than 5 minutes off.
- The key bytes (:func:`standard_key`): a secret issued now is ``whsec_`` + standard base64 of the key,
  as the specification has it. A secret issued before (``whsec_`` + 43 URL-safe characters, never valid
  padded base64) keeps working: its key is the UTF-8 bytes of the whole secret as shown, and its
  Standard Webhooks form is ``whsec_`` + base64 of those bytes (:func:`standard_secret` computes it;
  give that to a stock library).
- Deprecated: ``X-Hongling-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
  (keyed by the secret's UTF-8 bytes, whichever form) is still sent beside the three headers for this
  release only and goes in the next one (0.2.0); :func:`verify_signature` checks it.
- Nothing here logs a secret or an event's data (which can name people); logs carry ids, types,
  status codes and error classes only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import grpc
import mongoengine as me
import pymongo.errors
from google.protobuf import json_format
from google.protobuf.message import Message
from hongling.dispatch.v1 import webhooks_pb2 as pb
from hongling.dispatch.v1 import webhooks_pb2_grpc as pb_grpc
from hongling.events.v1 import dispatch_events_pb2 as dev
from prometheus_client import Counter

from services.common import clocks
from services.common.consumer import EventConsumer
from services.common.context import current_principal, require_tenant
from services.common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common.events import CloudEvent, topic_for
from services.common.mongo import TenantDocument
from services.common.principal import Principal
from services.common.protect import Protector, protector
from services.common.settings import Settings, get_settings

log = logging.getLogger(__name__)

GROUP = "dispatch-webhooks"
TIMER_KIND = "webhook_delivery"
TIMER_GROUP = "webhooks"
# Standard Webhooks (https://www.standardwebhooks.com/): sent on every attempt.
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Deprecated: the former signature, sent beside the Standard Webhooks headers for this release only
# (removed in 0.2.0). Receivers move to webhook-signature.
SIGNATURE_HEADER = "X-Hongling-Signature"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
DEFAULT_TOLERANCE_SECONDS = 300

# The events a webhook can ask for: short name -> message class (topic hongling.dispatch.v1).
EVENT_TYPES: dict[str, type[Message]] = {
    "WhistleBlown": dev.WhistleBlown,
    "UnitReportedIn": dev.UnitReportedIn,
    "TaskClaimed": dev.TaskClaimed,
    "TaskAssigned": dev.TaskAssigned,
    "TaskStatusChanged": dev.TaskStatusChanged,
    "DeadlineMissed": dev.DeadlineMissed,
    "DeadlineReminder": dev.DeadlineReminder,
    "Escalated": dev.Escalated,
}
_BY_FULL_NAME = {cls.DESCRIPTOR.full_name: short for short, cls in EVENT_TYPES.items()}

MANAGE_ROLES = frozenset({"subdistrict_admin", "ops", "service"})
URL_MAX = 2000
DESCRIPTION_MAX = 200
PAGE_DEFAULT = 50
PAGE_MAX = 200
STATUSES = ("pending", "delivered", "failed", "cancelled")
REGISTRY_TTL_SECONDS = 2.0

WEBHOOK_DELIVERIES = Counter(
    "hongling_webhook_deliveries_total",
    "Webhook deliveries finished, by outcome (delivered, failed after the last attempt, cancelled).",
    ["tenant", "event_type", "outcome"],
)
WEBHOOK_FANOUT = Counter(
    "hongling_webhook_fanout_total",
    "Deliveries created from events (one per event and registration wanting it).",
    ["tenant", "event_type"],
)


# ---------------------------------------------------------------- signing


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The deprecated X-Hongling-Signature value for this body at this time (removed in 0.2.0)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """True if ``header`` (X-Hongling-Signature, deprecated: use :func:`verify_standard_webhook`) signs
    exactly ``body`` with ``secret`` and its time is within ``tolerance`` seconds of ``now``; for
    receivers. Pass the raw body bytes as received (not re-serialised JSON). Several v1 values are
    accepted (any matching one passes)."""
    if not secret or not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, c) for c in candidates)


def new_secret() -> str:
    """A new signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _standard_key_bytes(secret: str) -> bytes | None:
    """The key of a secret in the Standard Webhooks form (``whsec_`` + padded standard base64), else None."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded or len(encoded) % 4:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error
        return None


def standard_key(secret: str | bytes) -> bytes:
    """The Standard Webhooks key bytes of a registration's secret (bytes are the key itself).

    ``whsec_`` + padded standard base64 (every secret issued now) -> the decoded bytes. Anything else, such
    as a secret issued before the Standard Webhooks headers (``whsec_`` + 43 URL-safe characters) -> the
    UTF-8 bytes of the whole secret as shown, the key its X-Hongling-Signature always used."""
    if isinstance(secret, bytes):
        return secret
    key = _standard_key_bytes(secret)
    return key if key is not None else secret.encode("utf-8")


def standard_secret(secret: str) -> str:
    """The ``whsec_`` form of a secret, for a Standard Webhooks library (``Webhook(standard_secret(s))``).

    A secret issued now is that form already and comes back unchanged; an older one becomes ``whsec_`` +
    base64 of its UTF-8 bytes."""
    if _standard_key_bytes(secret) is not None:
        return secret
    return SECRET_PREFIX + base64.b64encode(secret.encode("utf-8")).decode("ascii")


def sign_standard(secret: str | bytes | Sequence[str | bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value: ``v1,<base64 HMAC-SHA256(key, "<msg_id>.<timestamp>.<body>")>`` for each
    secret (several, space-separated, while a key is rotated)."""
    keys = [secret] if isinstance(secret, str | bytes) else list(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(standard_key(k), signed, hashlib.sha256).digest()).decode("ascii")
        for k in keys
    )


def verify_standard_webhook(
    secret: str | bytes | Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True if the Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature; any case)
    sign exactly ``body`` with ``secret`` and the timestamp is within ``tolerance`` seconds of ``now`` (too
    old: a replay; too new: refused as well); for receivers. ``secret``: the ``whsec_`` secret (an older
    one too, see :func:`standard_key`), the key bytes, or several of them while a key is rotated. Any of
    the header's space-separated ``v1,`` signatures matching any key passes. Pass the raw body bytes."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(WEBHOOK_ID_HEADER, "")
    stamp = lowered.get(WEBHOOK_TIMESTAMP_HEADER, "").strip()
    signature = lowered.get(WEBHOOK_SIGNATURE_HEADER, "")
    candidates = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not msg_id or not stamp.isascii() or not stamp.isdigit() or not signature or not any(candidates):
        return False
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    given: list[bytes] = []
    for part in signature.split(" "):
        version, sep, value = part.partition(",")
        if version != "v1" or not sep:
            continue
        try:
            given.append(base64.b64decode(value, validate=True))
        except ValueError:
            continue
    if not given:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for candidate in candidates:
        if not candidate:
            continue
        expected = hmac.new(standard_key(candidate), signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, g) for g in given):
            return True
    return False


# ---------------------------------------------------------------- the event as JSON


def cloudevent_json(event: CloudEvent, message: Message) -> bytes:
    """The CloudEvent in JSON structured mode: attributes + ``data`` (the protobuf as JSON, proto field
    names, every field present), UTF-8 with Chinese kept as it is."""
    doc = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "subject": event.subject,
        "tenant": event.tenant,
        "datacontenttype": "application/json",
        "data": json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def short_type(event_type: str) -> str | None:
    """ "hongling.events.v1.WhistleBlown" or "WhistleBlown" -> "WhistleBlown"; None if not a webhook event."""
    if event_type in EVENT_TYPES:
        return event_type
    return _BY_FULL_NAME.get(event_type)


# ---------------------------------------------------------------- storage


class WebhookDoc(TenantDocument):
    """A registration (per tenant). Few per tenant: read whole."""

    meta: ClassVar[dict[str, Any]] = {"collection": "webhooks", "auto_create_index": False}

    id = me.StringField(primary_key=True)
    url = me.StringField(required=True)
    event_types = me.ListField(me.StringField())
    description = me.StringField(default="")
    active = me.BooleanField(default=True)
    deleted = me.BooleanField(default=False)
    secret_sealed = me.StringField(default="")
    secret_hint = me.StringField(default="")
    created_at = me.DateTimeField(required=True)
    created_by = me.StringField(default="")
    updated_at = me.DateTimeField()


class WebhookDeliveryDoc(TenantDocument):
    """One event for one registration: ``_id`` = "<webhook id>:<event id>"; the event rides along so a
    retry needs nothing else."""

    meta: ClassVar[dict[str, Any]] = {"collection": "webhook_deliveries", "auto_create_index": False}

    id = me.StringField(primary_key=True)
    webhook_id = me.StringField(required=True)
    event_id = me.StringField(required=True)
    event_type = me.StringField(required=True)  # short name
    event_source = me.StringField(default="")
    event_time = me.DateTimeField()
    subject = me.StringField(default="")
    data = me.BinaryField()  # the protobuf payload as published
    status = me.StringField(required=True, default="pending")
    attempts = me.IntField(default=0)
    attempt_log = me.ListField(me.DictField())
    last_error = me.StringField(default="")
    created_at = me.DateTimeField(required=True)
    next_attempt_at = me.DateTimeField()
    finished_at = me.DateTimeField()


def delivery_id(webhook_id: str, event_id: str) -> str:
    return f"{webhook_id}:{event_id}"


def timer_key(delivery: str) -> str:
    return f"webhook:{delivery}"


# Active registrations per tenant, read again after REGISTRY_TTL_SECONDS or at once after a change here.
_registry_lock = threading.Lock()
_registry: dict[str, tuple[float, list[tuple[str, frozenset[str]]]]] = {}


def _forget_registry(tenant: str) -> None:
    with _registry_lock:
        _registry.pop(tenant, None)


def active_registrations() -> list[tuple[str, frozenset[str]]]:
    """(webhook id, event types) of the current tenant's active registrations."""
    tenant = require_tenant()
    now = time.monotonic()
    with _registry_lock:
        cached = _registry.get(tenant)
    if cached is not None and now - cached[0] < REGISTRY_TTL_SECONDS:
        return cached[1]
    rows = [
        (str(d["_id"]), frozenset(d.get("event_types") or ()))
        for d in WebhookDoc._get_collection().find({}, {"_id": 1, "event_types": 1, "active": 1, "deleted": 1})
        if d.get("active") and not d.get("deleted")
    ]
    with _registry_lock:
        _registry[tenant] = (now, rows)
    return rows


# ---------------------------------------------------------------- managing registrations


def _require_manager(principal: Principal | None) -> Principal:
    if principal is None or principal.role not in MANAGE_ROLES:
        role = principal.role if principal else "none"
        raise PermissionDenied(
            f"role {role!r} may not manage webhooks (仅街道管理员/运维可管理推送地址; allowed: "
            f"{', '.join(sorted(MANAGE_ROLES))})",
            reason="role_not_allowed",
        )
    return principal


def check_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise InvalidArgument("推送地址不能为空 (url is required)", field="url")
    if len(url) > URL_MAX or any(c.isspace() for c in url):
        raise InvalidArgument(f"推送地址无效 (url must be at most {URL_MAX} characters, no spaces)", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError:
        raise InvalidArgument("推送地址无效 (url is not a valid URL)", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument("推送地址须为 http/https (url must be http:// or https:// with a host)", field="url")
    del port
    return url


def check_event_types(types: Iterable[str]) -> list[str]:
    out: list[str] = []
    for t in types:
        short = short_type(t.strip())
        if short is None:
            raise InvalidArgument(
                f"未知事件类型 {t!r} (unknown event type; choose among {', '.join(EVENT_TYPES)})",
                field="event_types",
            )
        if short not in out:
            out.append(short)
    if not out:
        raise InvalidArgument(
            f"至少选择一种事件 (choose at least one event type: {', '.join(EVENT_TYPES)})", field="event_types"
        )
    return out


def register(
    url: str, event_types: Iterable[str], description: str, principal: Principal | None, seal: Protector
) -> tuple[WebhookDoc, str]:
    """A new registration and its secret (returned this once; stored sealed)."""
    who = _require_manager(principal)
    if len(description) > DESCRIPTION_MAX:
        raise InvalidArgument(f"说明过长 (description: at most {DESCRIPTION_MAX} characters)", field="description")
    secret = new_secret()
    doc = WebhookDoc(
        id=f"wh_{uuid.uuid4().hex[:16]}",
        url=check_url(url),
        event_types=check_event_types(event_types),
        description=description.strip(),
        active=True,
        secret_sealed=seal.seal(secret),
        secret_hint=secret[:10],
        created_at=datetime.now(UTC),
        created_by=who.sub,
    )
    doc.save(force_insert=True)
    _forget_registry(require_tenant())
    log.info("webhook %s registered for %s by %s", doc.id, ",".join(doc.event_types), who.sub)
    return doc, secret


def get_webhook(webhook_id: str, principal: Principal | None) -> WebhookDoc:
    _require_manager(principal)
    doc = WebhookDoc.objects(id=webhook_id).first() if webhook_id else None
    if doc is None or doc.deleted:
        raise NotFound(f"推送地址 {webhook_id!r} 不存在 (webhook not found)", field="id")
    return doc


def list_webhooks(principal: Principal | None) -> list[WebhookDoc]:
    _require_manager(principal)
    docs = [d for d in WebhookDoc.objects() if not d.deleted]
    return sorted(docs, key=lambda d: (d.created_at, d.id))


def set_active(webhook_id: str, active: bool, principal: Principal | None) -> WebhookDoc:
    doc = get_webhook(webhook_id, principal)
    WebhookDoc.objects(id=doc.id).update_one(set__active=active, set__updated_at=datetime.now(UTC))
    _forget_registry(require_tenant())
    doc.active = active
    return doc


def delete_webhook(webhook_id: str, principal: Principal | None) -> None:
    """Soft delete: the secret is wiped, pending deliveries stop; the delivery history stays."""
    doc = get_webhook(webhook_id, principal)
    WebhookDoc.objects(id=doc.id).update_one(
        set__deleted=True, set__active=False, set__secret_sealed="", set__updated_at=datetime.now(UTC)
    )
    _forget_registry(require_tenant())


def _page_token(webhook_id: str, status: str, at: datetime, last_id: str) -> str:
    raw = json.dumps({"w": webhook_id, "s": status, "at": at.astimezone(UTC).isoformat(), "id": last_id})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _untoken(token: str, webhook_id: str, status: str) -> tuple[datetime, str]:
    bad = InvalidArgument("page_token 无效 (page_token is not one issued for this list)", field="page_token")
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
        if raw["w"] != webhook_id or raw["s"] != status:
            raise bad
        return datetime.fromisoformat(raw["at"]), str(raw["id"])
    except (ValueError, KeyError, TypeError):
        raise bad from None


def list_deliveries(
    webhook_id: str, status: str, page_size: int, page_token: str, principal: Principal | None
) -> tuple[list[WebhookDeliveryDoc], str]:
    """Deliveries to one registration (deleted ones too: their history stays), newest first."""
    _require_manager(principal)
    if not webhook_id:
        raise InvalidArgument("webhook_id 必填 (webhook_id is required)", field="webhook_id")
    if WebhookDoc.objects(id=webhook_id).first() is None:
        raise NotFound(f"推送地址 {webhook_id!r} 不存在 (webhook not found)", field="webhook_id")
    if status and status not in STATUSES:
        raise InvalidArgument(f"status: one of {', '.join(STATUSES)}", field="status")
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    size = min(page_size or PAGE_DEFAULT, PAGE_MAX)
    query: dict[str, Any] = {"webhook_id": webhook_id}
    if status:
        query["status"] = status
    if page_token:
        at, last_id = _untoken(page_token, webhook_id, status)
        query["$or"] = [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": last_id}}]
    coll = WebhookDeliveryDoc._get_collection()
    raw = list(coll.find(query).sort([("created_at", -1), ("_id", -1)]).limit(size + 1))
    docs = [WebhookDeliveryDoc._from_son(r) for r in raw[:size]]
    token = ""
    if len(raw) > size:
        last = docs[-1]
        token = _page_token(webhook_id, status, last.created_at, last.id)
    return docs, token


# ---------------------------------------------------------------- fan-out (the consumer)


def wanted(event: CloudEvent) -> bool:
    """Does any active registration of the event's tenant want its type? (Others are skipped unmarked.)"""
    short = short_type(event.type)
    return short is not None and any(short in types for _, types in active_registrations())


def on_event(event: CloudEvent, payload: Message) -> None:
    """One delivery per active registration wanting this event type (idempotent by delivery _id)."""
    short = short_type(event.type)
    if short is None:
        return
    now = datetime.now(UTC)
    for webhook_id, types in active_registrations():
        if short not in types:
            continue
        did = delivery_id(webhook_id, event.id)
        if WebhookDeliveryDoc._get_collection().find_one({"_id": did}, {"_id": 1}) is not None:
            continue  # a replay: this event was already handed to this registration
        # The timer first: a crash between the two leaves a timer that waits for (or outlives) its
        # delivery, never a delivery nobody will send. The redelivered event writes the delivery.
        clocks.schedule(timer_key(did), TIMER_KIND, now, {"delivery_id": did}, group=TIMER_GROUP)
        try:
            WebhookDeliveryDoc(
                id=did,
                webhook_id=webhook_id,
                event_id=event.id,
                event_type=short,
                event_source=event.source,
                event_time=event.time,
                subject=event.subject,
                data=event.data,
                status="pending",
                attempts=0,
                attempt_log=[],
                created_at=now,
                next_attempt_at=now,
            ).save(force_insert=True)
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            continue
        WEBHOOK_FANOUT.labels(event.tenant, short).inc()


def build_webhook_consumer(settings: Settings) -> EventConsumer:
    """The consumer group dispatch-webhooks on hongling.dispatch.v1 (a worker for run_service)."""
    return EventConsumer(
        GROUP,
        [topic_for("dispatch")],
        dict.fromkeys(EVENT_TYPES.values(), on_event),
        settings.kafka_bootstrap,
        max_retries=settings.consumer_max_retries,
        gather_ms=settings.consumer_gather_ms,
        wants=wanted,
    )


# ---------------------------------------------------------------- gRPC


def _ts(dt: datetime | None, target: Any) -> None:
    if dt is not None:
        target.FromDatetime(dt if dt.tzinfo else dt.replace(tzinfo=UTC))


def webhook_to_pb(doc: WebhookDoc) -> pb.Webhook:
    out = pb.Webhook(
        id=doc.id,
        tenant=require_tenant(),
        url=doc.url,
        event_types=list(doc.event_types),
        description=doc.description or "",
        active=bool(doc.active),
        created_by=doc.created_by or "",
        secret_hint=doc.secret_hint or "",
    )
    _ts(doc.created_at, out.created_at)
    return out


def delivery_to_pb(doc: WebhookDeliveryDoc) -> pb.WebhookDelivery:
    out = pb.WebhookDelivery(
        id=doc.id,
        webhook_id=doc.webhook_id,
        event_id=doc.event_id,
        event_type=doc.event_type,
        subject=doc.subject or "",
        status=doc.status,
        attempts=doc.attempts or 0,
        last_error=doc.last_error or "",
    )
    _ts(doc.created_at, out.created_at)
    if doc.status == "pending":
        _ts(doc.next_attempt_at, out.next_attempt_at)
    _ts(doc.finished_at, out.finished_at)
    for a in doc.attempt_log or []:
        attempt = out.attempt_log.add(
            number=int(a.get("number", 0)),
            status_code=int(a.get("status_code", 0)),
            error=str(a.get("error", "")),
            duration_ms=int(a.get("duration_ms", 0)),
        )
        _ts(a.get("at"), attempt.at)
    return out


@dataclass
class WebhookServicer(pb_grpc.WebhookServiceServicer):
    seal: Protector

    def RegisterWebhook(
        self, request: pb.RegisterWebhookRequest, ctx: grpc.ServicerContext
    ) -> pb.RegisterWebhookResponse:
        doc, secret = register(
            request.url, request.event_types, request.description, current_principal.get(), self.seal
        )
        return pb.RegisterWebhookResponse(webhook=webhook_to_pb(doc), secret=secret)

    def ListWebhooks(self, request: pb.ListWebhooksRequest, ctx: grpc.ServicerContext) -> pb.ListWebhooksResponse:
        return pb.ListWebhooksResponse(webhooks=[webhook_to_pb(d) for d in list_webhooks(current_principal.get())])

    def GetWebhook(self, request: pb.GetWebhookRequest, ctx: grpc.ServicerContext) -> pb.Webhook:
        return webhook_to_pb(get_webhook(request.id, current_principal.get()))

    def SetWebhookActive(self, request: pb.SetWebhookActiveRequest, ctx: grpc.ServicerContext) -> pb.Webhook:
        return webhook_to_pb(set_active(request.id, request.active, current_principal.get()))

    def DeleteWebhook(self, request: pb.DeleteWebhookRequest, ctx: grpc.ServicerContext) -> pb.DeleteWebhookResponse:
        delete_webhook(request.id, current_principal.get())
        return pb.DeleteWebhookResponse()

    def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, ctx: grpc.ServicerContext
    ) -> pb.ListWebhookDeliveriesResponse:
        docs, token = list_deliveries(
            request.webhook_id, request.status, request.page_size, request.page_token, current_principal.get()
        )
        return pb.ListWebhookDeliveriesResponse(deliveries=[delivery_to_pb(d) for d in docs], next_page_token=token)


def register_service(server: grpc.Server, settings: Settings | None = None) -> list[str]:
    """Add WebhookService to the dispatch process's server; returns its full name (for health/reflection)."""
    s = settings or get_settings()
    pb_grpc.add_WebhookServiceServicer_to_server(WebhookServicer(protector(s.data_key, s.data_key_accepted)), server)
    return [pb.DESCRIPTOR.services_by_name["WebhookService"].full_name]


def event_of(doc: WebhookDeliveryDoc, tenant: str) -> CloudEvent:
    """The stored event of a delivery, as it was published."""
    cls = EVENT_TYPES[doc.event_type]
    event_time = doc.event_time or doc.created_at
    return CloudEvent(
        id=doc.event_id,
        source=doc.event_source or "",
        type=cls.DESCRIPTOR.full_name,
        time=event_time if event_time.tzinfo else event_time.replace(tzinfo=UTC),
        subject=doc.subject or "",
        tenant=tenant,
        data=bytes(doc.data or b""),
    )


def signed_request(
    secret: str, delivery: str, attempt: int, body: bytes, event: CloudEvent, *, now: float | None = None
) -> dict[str, str]:
    """The headers of one attempt: Standard Webhooks (webhook-id = the delivery id, the same on every retry;
    the timestamp is the attempt's) and, for this release only, the deprecated X-Hongling-Signature."""
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": "Hongling-Webhooks/1",
        "ce-specversion": "1.0",
        "ce-id": event.id,
        "ce-type": event.type,
        "X-Hongling-Delivery": delivery,
        "X-Hongling-Attempt": str(attempt),
        WEBHOOK_ID_HEADER: delivery,
        WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        WEBHOOK_SIGNATURE_HEADER: sign_standard(secret, delivery, timestamp, body),
        SIGNATURE_HEADER: sign(secret, body, timestamp),  # deprecated, removed in 0.2.0
    }


__all__ = [
    "EVENT_TYPES",
    "GROUP",
    "SIGNATURE_HEADER",
    "TIMER_KIND",
    "WEBHOOK_ID_HEADER",
    "WEBHOOK_SIGNATURE_HEADER",
    "WEBHOOK_TIMESTAMP_HEADER",
    "WebhookDeliveryDoc",
    "WebhookDoc",
    "WebhookServicer",
    "build_webhook_consumer",
    "cloudevent_json",
    "register_service",
    "sign",
    "sign_standard",
    "standard_key",
    "standard_secret",
    "verify_signature",
    "verify_standard_webhook",
]
