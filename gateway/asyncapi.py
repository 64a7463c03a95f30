"""The AsyncAPI 3.0 document of the event bus and the webhooks, built at run time from the code (served by
gateway/docs.py at /api/v1/asyncapi.json, beside the OpenAPI document).

Nothing here lists the events by hand:
- the Kafka topics are services/common/topics.py's wanted_topics(): one channel each (address = the topic),
  with its partitions and settings (event topics kept for ever, state topics compacted, dead-letter topics);
- the events are the messages of the compiled hongling.events.v1 protos (build/gen, the *_events_pb2 modules):
  each `<service>_events.proto` is what service <service> publishes on hongling.<service>.v1; its .proto
  comments become titles and descriptions (gateway/openapi.py's proto_comments);
- the envelope is services/common/events.py's CloudEvent: CloudEvents 1.0 in Kafka binary mode, the record
  value the protobuf binary encoding of the event message (content-type application/protobuf), the attributes
  in `ce_*` headers, the key "<tenant>:<aggregate id>";
- the webhooks are services/dispatch/webhooks.py: its EVENT_TYPES, its CloudEvents JSON structured body, its
  Standard Webhooks headers and the deprecated X-Hongling-Signature, retried as services/common/settings.py's
  defaults say.
Each payload's JSON Schema is derived from the message descriptor as the proto3 JSON mapping that
webhooks.cloudevent_json writes (json_format.MessageToDict with proto field names, every field without
presence present): snake_case names, 64-bit integers as decimal strings, enums by name, Timestamp as an RFC 3339
string in UTC, bytes as base64, repeated fields as arrays, maps as objects, nested messages as $ref to
components/schemas (keyed by the full name). tests/unit/test_asyncapi.py validates the document with
@asyncapi/parser (tools/asyncapi-validate) and checks what webhooks really send against these schemas.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, fields
from functools import cache
from types import ModuleType
from typing import Any

import hongling.events.v1 as events_pkg
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from gateway.openapi import PROTO_ROOT, _comment, _is_map, _version
from gateway.protojson import TIMESTAMP, FieldDesc, MessageDesc
from services.common.events import CONTENT_TYPE, SPECVERSION, dead_letter_topic, state_topic_for, topic_for
from services.common.settings import SERVICES, Settings
from services.common.topics import (
    COMPACTED,
    EXTRA_GROUPS,
    KEPT,
    PARTITIONS,
    STATE_SERVICES,
    topic_configs,
    wanted_topics,
)
from services.dispatch import webhooks

Schema = dict[str, Any]

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
HTTP_BINDING = "0.3.0"
DURATION = "google.protobuf.Duration"
WEBHOOK_CONTENT_TYPE = webhooks.CONTENT_TYPE
_EVENTS_FILE = re.compile(r"^hongling/events/v1/(\w+)_events\.proto$")
F = FieldDescriptor

# proto3 JSON (json_format.MessageToDict): 64-bit integers are decimal strings, floats numbers or the three names.
_INT64 = {"type": "string", "pattern": "^-?[0-9]+$", "description": "64-bit integer as a decimal string (proto3 JSON)"}
_UINT64 = {"type": "string", "pattern": "^[0-9]+$", "description": "unsigned 64-bit integer as a decimal string"}
_FLOAT = {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
_SCALARS: dict[int, Schema] = {
    F.TYPE_DOUBLE: _FLOAT,
    F.TYPE_FLOAT: _FLOAT,
    F.TYPE_INT64: _INT64,
    F.TYPE_SINT64: _INT64,
    F.TYPE_SFIXED64: _INT64,
    F.TYPE_UINT64: _UINT64,
    F.TYPE_FIXED64: _UINT64,
    F.TYPE_INT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    F.TYPE_SINT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    F.TYPE_SFIXED32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    F.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    F.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# The well-known types' own proto3 JSON forms (https://protobuf.dev/programming-guides/json/), not their fields.
_WRAPPED = {
    "DoubleValue": F.TYPE_DOUBLE,
    "FloatValue": F.TYPE_FLOAT,
    "Int64Value": F.TYPE_INT64,
    "UInt64Value": F.TYPE_UINT64,
    "Int32Value": F.TYPE_INT32,
    "UInt32Value": F.TYPE_UINT32,
    "BoolValue": F.TYPE_BOOL,
    "StringValue": F.TYPE_STRING,
    "BytesValue": F.TYPE_BYTES,
}
_WELL_KNOWN: dict[str, Schema] = {
    TIMESTAMP: {"type": "string", "format": "date-time", "description": "RFC 3339, UTC (…Z)"},
    DURATION: {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "field paths, comma-separated, lowerCamelCase"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "maxProperties": 0},
    "google.protobuf.Any": {"type": "object", "required": ["@type"], "properties": {"@type": {"type": "string"}}},
    **{f"google.protobuf.{name}": _SCALARS[kind] for name, kind in _WRAPPED.items()},
}

SERVICE_ZH = {
    "org": "组织",
    "intake": "社区接单",
    "dispatch": "派单",
    "evaluation": "评价",
    "publication": "公示",
    "alliance": "联盟共建",
}

DELIVERY = """\
**Delivery: at least once, ordered per key.** A service records an event in the same single-document write as \
the change it is about (a transactional outbox, services/common/outbox.py); a relay publishes it with Kafka's \
idempotent producer (acks=all, in order per aggregate). A crash between publishing and recording the \
publication publishes the event again, so **an event can arrive more than once: drop repeats by the CloudEvent \
`id`** (header `ce_id`; on a webhook also `webhook-id`). Nothing is lost. The record key is \
`<tenant>:<aggregate id>`, so one aggregate's events share a partition and arrive in the order they were \
recorded; there is no order between different keys or topics. The services' own consumers commit offsets only \
after handling a record and drop duplicates by event id (services/common/consumer.py)."""

RETRIES = """\
**Retries and dead letters (the services' own consumer groups).** A record that is not a valid CloudEvent \
(a missing `ce_*` header, another specversion or content-type, an unknown tenant, an unreadable payload) goes \
straight to the group's dead-letter topic `hongling.<group>.dlq.v1`; a record whose handler keeps failing goes \
there after {retries} retries (backoff 0.2 s doubling; HONGLING_CONSUMER_MAX_RETRIES). While the database is \
down nothing is dead-lettered: the record stays uncommitted and comes again. A dead letter is the original \
record (key, value and headers) with `hl_dlq_*` / `hl_original_*` headers added."""


@dataclass(frozen=True)
class Figures:
    """The retry figures the document states: the deployment's settings, or their defaults."""

    consumer_max_retries: int
    webhook_timeout_seconds: float
    webhook_max_attempts: int
    webhook_backoff_base_seconds: float
    webhook_backoff_max_seconds: float

    @classmethod
    def of(cls, settings: Settings | None = None) -> Figures:
        names = [f.name for f in fields(cls)]
        if settings is None:
            return cls(**{n: Settings.model_fields[n].default for n in names})
        return cls(**{n: getattr(settings, n) for n in names})


def _description(settings: Figures) -> str:
    return f"""\
红领益家的事件总线与 Webhook。The events Hongling's services publish on Kafka, and the dispatch events a \
tenant's registered webhooks receive, generated from the protobuf definitions (protos/hongling/events/v1).

**Envelope.** Every record is a CloudEvents {SPECVERSION} event in the Kafka protocol binding's *binary mode*: \
the record value is the event message's **protobuf binary encoding** (content-type `{CONTENT_TYPE}`, the \
message named by `ce_type`, e.g. `hongling.events.v1.WhistleBlown`), and the attributes are record headers \
`ce_specversion`, `ce_id`, `ce_source` (`/hongling/<service>/<tenant>`), `ce_type`, `ce_time` (RFC 3339, UTC), \
`ce_subject` (the aggregate, `<collection>/<id>`) and the extension `ce_tenant`, plus `content-type`. Each \
message's `payload` below is the JSON Schema of the message's proto3 JSON rendering (the `data` of a webhook's \
body; decode the Kafka value with the .proto and protobuf's JSON printer to get the same). Fields are added \
within v1, never renumbered: ignore fields you do not know. No event carries a resident's contact data.

{DELIVERY}

{RETRIES.format(retries=settings.consumer_max_retries)}

**Webhooks.** {_webhook_text(settings)}

Topics: {len(SERVICES)} event topics `hongling.<service>.v1` (kept for ever: retention.ms=-1), \
{PARTITIONS} partitions each by default; the compacted state topics and the dead-letter topics are internal \
to the services and listed for completeness. The OpenAPI document of the HTTP API: /api/v1/openapi.json."""


def _webhook_text(settings: Figures) -> str:
    return (
        "A tenant's subdistrict admin registers a URL and the dispatch event types it wants "
        "(POST /api/v1/tenants/{tenant}/webhooks; a signing secret `whsec_…` is shown once). Each event is POSTed "
        f"as a CloudEvent in JSON structured mode (`{WEBHOOK_CONTENT_TYPE}`), once per registration wanting it "
        "(fan-out by the consumer group dispatch-webhooks; delivery id `<webhook id>:<event id>`). "
        f"A 2xx answer within {settings.webhook_timeout_seconds:g} s delivers it (redirects are not followed); "
        "anything else is retried after an exponential backoff "
        f"({settings.webhook_backoff_base_seconds:g} s doubling, at most {settings.webhook_backoff_max_seconds:g} s, "
        f"up to 10 % jitter) until {settings.webhook_max_attempts} attempts, then the delivery is `failed` "
        "(HONGLING_WEBHOOK_TIMEOUT_SECONDS, _MAX_ATTEMPTS, _BACKOFF_BASE_SECONDS, _BACKOFF_MAX_SECONDS; the "
        "attempts are listed by GET …/webhooks/{webhook_id}/deliveries). At least once: drop repeats by "
        "`webhook-id` (the same on every retry) or the body's `id`. **Signatures: Standard Webhooks** "
        "(https://www.standardwebhooks.com/): `webhook-signature` = `v1,<base64 HMAC-SHA256(key, "
        '"<webhook-id>.<webhook-timestamp>.<body>")>` over the exact body bytes, the key being the base64 after '
        "`whsec_`; several space-separated signatures may come (any one matching passes); refuse timestamps more "
        f"than {webhooks.DEFAULT_TOLERANCE_SECONDS // 60} minutes off. Deprecated: `{webhooks.SIGNATURE_HEADER}: "
        't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` is still sent for this release and goes '
        "in 0.2.0."
    )


# ---------------------------------------------------------------- protobuf -> JSON Schema (proto3 JSON)


@cache
def file_comment(file_name: str) -> str:
    """The comment at the top of a .proto under protos/ (the lines before `package`), paragraphs kept."""
    path = PROTO_ROOT / file_name
    if not path.is_file():
        return ""
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("package "):
            break
        if line.startswith("//"):
            lines.append(line[2:].strip())
    paragraphs = " ".join(t if t else "\n\n" for t in lines)
    return re.sub(r"\s*\n\n\s*", "\n\n", paragraphs).strip()


def schema_ref(full_name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{full_name}"}


class JsonSchemas:
    """JSON Schema of protobuf messages as json_format.MessageToDict(preserving_proto_field_name=True,
    always_print_fields_with_no_presence=True) renders them, one component per message (recursion works)."""

    def __init__(self, components: dict[str, Schema]) -> None:
        self.components = components

    def ref(self, desc: MessageDesc) -> Schema:
        name: str = desc.full_name
        if name not in self.components:
            self.components[name] = {}  # placeholder first: a message may contain itself
            self.components[name] = self._message(desc)
        return schema_ref(name)

    def _message(self, desc: MessageDesc) -> Schema:
        schema: Schema = {"type": "object", "title": desc.name, "x-protobuf-message": desc.full_name}
        if text := _comment(desc):
            schema["description"] = text
        props: dict[str, Schema] = {}
        required: list[str] = []
        fd: FieldDesc
        for fd in desc.fields:
            props[fd.name] = self.field(fd)
            if not fd.has_presence:  # printed even at its default; a field with presence only when set
                required.append(fd.name)
        schema["properties"] = props
        if required:
            schema["required"] = required
        return schema

    def field(self, fd: FieldDesc) -> Schema:
        if _is_map(fd):
            schema: Schema = {
                "type": "object",
                "additionalProperties": self._value(fd.message_type.fields_by_name["value"]),
            }
        elif fd.is_repeated:
            schema = {"type": "array", "items": self._value(fd)}
        else:
            schema = self._value(fd)
        if text := _comment(fd):
            schema = {**schema, "description": text}
        return schema

    def _value(self, fd: FieldDesc) -> Schema:
        if fd.type == F.TYPE_MESSAGE:
            known = _WELL_KNOWN.get(fd.message_type.full_name)
            if known is not None:
                return dict(known)
            return self.ref(fd.message_type)
        if fd.type == F.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
        return dict(_SCALARS[fd.type])


# ---------------------------------------------------------------- the events


@dataclass(frozen=True)
class EventFile:
    service: str
    module: ModuleType
    messages: tuple[MessageDesc, ...]  # the top-level messages: the events and the types they use

    @property
    def events(self) -> tuple[MessageDesc, ...]:
        """The messages published as events: those no other message of the file uses as a field."""
        used = {
            fd.message_type.full_name
            for m in self.messages
            for fd in m.fields
            if fd.type == F.TYPE_MESSAGE and fd.message_type.file.name == m.file.name
        }
        return tuple(m for m in self.messages if m.full_name not in used)


@cache
def event_files() -> tuple[EventFile, ...]:
    """hongling.events.v1's `<service>_events` modules, in SERVICES order."""
    found: dict[str, EventFile] = {}
    for info in pkgutil.iter_modules(events_pkg.__path__):
        if not info.name.endswith("_events_pb2"):
            continue
        module = importlib.import_module(f"{events_pkg.__name__}.{info.name}")
        desc = module.DESCRIPTOR
        m = _EVENTS_FILE.match(desc.name)
        if not m or m.group(1) not in SERVICES:
            raise ValueError(f"{desc.name}: not <service>_events.proto of a known service ({', '.join(SERVICES)})")
        found[m.group(1)] = EventFile(m.group(1), module, tuple(desc.message_types_by_name.values()))
    return tuple(found[s] for s in SERVICES if s in found)


def event_classes() -> dict[str, type[Message]]:
    """Every event message class by full name."""
    return {d.full_name: getattr(f.module, d.name) for f in event_files() for d in f.events}


def _first_line(text: str) -> str:
    """The first sentence of a comment (a summary), at most one line's worth."""
    first = re.split(r"(?<=[.!?。])\s+(?=[A-Z(\u4e00-\u9fff])", text, maxsplit=1)[0].strip()
    return first if len(first) <= 200 else first[:197].rstrip() + "…"


def _kafka_headers(event_type: str | None) -> Schema:
    ce_type: Schema = {"type": "string", "description": "ce_type: the payload message's full protobuf name"}
    if event_type:
        ce_type = {**ce_type, "const": event_type}
    return {
        "type": "object",
        "description": "CloudEvents attributes as Kafka record headers (binary mode), UTF-8 values",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_tenant", "ce_time", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": SPECVERSION, "description": "CloudEvents specversion"},
            "ce_id": {
                "type": "string",
                "pattern": "^[0-9a-f]{32}$",
                "description": "The event's id (a random UUID as 32 hex digits), the same on every republication: "
                "drop repeats by it",
            },
            "ce_source": {
                "type": "string",
                "pattern": "^/hongling/[a-z]+/[a-z0-9_-]+$",
                "description": "/hongling/<publishing service>/<tenant>",
            },
            "ce_type": ce_type,
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "When the fact was recorded, RFC 3339 in UTC (…Z)",
            },
            "ce_subject": {
                "type": "string",
                "description": "What the event is about: the aggregate, as <collection>/<id> (e.g. tasks/<id>)",
            },
            "ce_tenant": {
                "type": "string",
                "description": "Extension attribute `tenant`: the tenant (subdistrict) slug, e.g. taiqian",
            },
            "content-type": {
                "type": "string",
                "const": CONTENT_TYPE,
                "description": "The record value's encoding: protobuf binary of the ce_type message",
            },
        },
    }


def _kafka_key() -> Schema:
    return {
        "type": "string",
        "pattern": "^[a-z0-9_-]+:.+$",
        "description": "<tenant>:<aggregate id> (UTF-8): the id of the aggregate that recorded the event (an issue, "
        "a task, a call, a meeting, a post, a pledge, a board set …). Records of one key share a partition and "
        "keep their order.",
    }


def _webhook_headers(event_type: str) -> Schema:
    sig_std = "Standard Webhooks: v1,<base64 HMAC-SHA256> over '<webhook-id>.<webhook-timestamp>.<body>'"
    return {
        "type": "object",
        "required": [
            "Content-Type",
            webhooks.WEBHOOK_ID_HEADER,
            webhooks.WEBHOOK_TIMESTAMP_HEADER,
            webhooks.WEBHOOK_SIGNATURE_HEADER,
            "ce-specversion",
            "ce-id",
            "ce-type",
        ],
        "properties": {
            "Content-Type": {"type": "string", "const": WEBHOOK_CONTENT_TYPE},
            "User-Agent": {"type": "string", "const": "Hongling-Webhooks/1"},
            webhooks.WEBHOOK_ID_HEADER: {
                "type": "string",
                "description": "Standard Webhooks message id: the delivery id <webhook id>:<event id>, the same on "
                "every retry (drop repeats by it)",
            },
            webhooks.WEBHOOK_TIMESTAMP_HEADER: {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "This attempt's time, unix seconds (refuse more than 5 minutes off)",
            },
            webhooks.WEBHOOK_SIGNATURE_HEADER: {
                "type": "string",
                "pattern": r"^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$",
                "description": f"{sig_std}; several space-separated during a key rotation, any one matching passes",
            },
            webhooks.SIGNATURE_HEADER: {
                "type": "string",
                "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$",
                "deprecated": True,
                "description": "Deprecated (removed in 0.2.0): t=<unix seconds>,v1=<hex HMAC-SHA256(secret as "
                "UTF-8, '<t>.<body>')>. Use webhook-signature.",
            },
            "ce-specversion": {"type": "string", "const": SPECVERSION},
            "ce-id": {"type": "string", "description": "The event's id (as the body's id)"},
            "ce-type": {"type": "string", "const": event_type},
            "X-Hongling-Delivery": {"type": "string", "description": "The delivery id (as webhook-id)"},
            "X-Hongling-Attempt": {"type": "string", "pattern": "^[0-9]+$", "description": "1, 2, … per retry"},
        },
    }


def _webhook_body(event_type: str, data: Schema) -> Schema:
    return {
        "type": "object",
        "description": "CloudEvents JSON structured mode (webhooks.cloudevent_json), UTF-8, Chinese as it is",
        "required": ["specversion", "id", "source", "type", "time", "subject", "tenant", "datacontenttype", "data"],
        "properties": {
            "specversion": {"type": "string", "const": SPECVERSION},
            "id": {"type": "string", "description": "The event's id (ce_id on Kafka)"},
            "source": {"type": "string", "description": "/hongling/dispatch/<tenant>"},
            "type": {"type": "string", "const": event_type},
            "time": {"type": "string", "format": "date-time", "description": "RFC 3339 in UTC (…Z)"},
            "subject": {"type": "string", "description": "The aggregate, <collection>/<id>"},
            "tenant": {"type": "string", "description": "CloudEvents extension attribute: the tenant slug"},
            "datacontenttype": {"type": "string", "const": "application/json"},
            "data": data,
        },
    }


# ---------------------------------------------------------------- the document


def _channel_id(topic: str) -> str:
    return topic.removeprefix("hongling.").replace(".", "_")


def _kafka_channel_binding(topic: str) -> Schema:
    configs = topic_configs(topic)
    binding: Schema = {"topic": topic, "partitions": PARTITIONS, "bindingVersion": KAFKA_BINDING}
    topic_config: Schema = {}
    if configs.get("cleanup.policy"):
        topic_config["cleanup.policy"] = [configs["cleanup.policy"]]
    else:
        topic_config["cleanup.policy"] = ["delete"]
    if "retention.ms" in configs:
        topic_config["retention.ms"] = int(configs["retention.ms"])
    binding["topicConfiguration"] = topic_config
    return {"kafka": binding}


class AsyncApiBuilder:
    def __init__(self, settings: Figures) -> None:
        self.settings = settings
        self.schemas: dict[str, Schema] = {}
        self.json = JsonSchemas(self.schemas)
        self.messages: dict[str, Schema] = {}
        self.channels: dict[str, Schema] = {}
        self.operations: dict[str, Schema] = {}

    def _event_message(self, desc: MessageDesc, service: str) -> str:
        key = desc.name
        comment = _comment(desc)
        summary = _first_line(comment) if comment else f"{desc.name} ({service})"
        self.messages[key] = {
            "name": desc.name,
            "title": desc.name,
            "summary": summary,
            "description": (f"{comment}\n\n" if comment else "")
            + f"On Kafka: the record value is the protobuf binary encoding of `{desc.full_name}` "
            f"(protos/{desc.file.name}); the attributes are `ce_*` headers. The payload schema is its proto3 "
            "JSON rendering (as in a webhook body's `data`).",
            "contentType": CONTENT_TYPE,
            "headers": _kafka_headers(desc.full_name),
            "payload": self.json.ref(desc),
            "correlationId": {
                "description": "The CloudEvent id (drop repeats by it)",
                "location": "$message.header#/ce_id",
            },
            "bindings": {"kafka": {"key": _kafka_key(), "bindingVersion": KAFKA_BINDING}},
            "x-protobuf-message": desc.full_name,
            "x-protobuf-file": f"protos/{desc.file.name}",
            "x-cloudevents-type": desc.full_name,
            "tags": [{"name": service}],
        }
        return key

    def _events_topic(self, f: EventFile) -> None:
        topic = topic_for(f.service)
        cid = _channel_id(topic)
        keys = [self._event_message(d, f.service) for d in f.events]
        about = file_comment(f.module.DESCRIPTOR.name)
        self.channels[cid] = {
            "address": topic,
            "title": f"{SERVICE_ZH.get(f.service, f.service)}事件 {f.service} events",
            "summary": f"Events the {f.service} service publishes (CloudEvents binary mode, protobuf values)",
            "description": (about + "\n\n" if about else "")
            + f"Published by the {f.service} service's outbox relay; key <tenant>:<aggregate id>; "
            f"{PARTITIONS} partitions; kept for ever (retention.ms={KEPT['retention.ms']}, replayed to rebuild "
            "evaluation's measures). " + DELIVERY,
            "servers": [{"$ref": "#/servers/kafka"}],
            "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in keys},
            "bindings": _kafka_channel_binding(topic),
            "tags": [{"name": f.service}, {"name": "events"}],
        }
        refs = [{"$ref": f"#/channels/{cid}/messages/{k}"} for k in keys]
        self.operations[f"publish_{f.service}"] = {
            "action": "send",
            "title": f"The {f.service} service publishes",
            "summary": f"{f.service} publishes its events on {topic} (outbox relay, idempotent producer, acks=all)",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": refs,
            "bindings": {"kafka": {"clientId": {"type": "string"}, "bindingVersion": KAFKA_BINDING}},
            "tags": [{"name": f.service}],
        }
        self.operations[f"consume_{f.service}"] = {
            "action": "receive",
            "title": f"Integrators read {topic}",
            "summary": f"An integrator (or another service) consumes {topic} with a consumer group of its own",
            "description": "Commit offsets after handling; drop repeats by ce_id; order holds per key only. "
            + RETRIES.format(retries=self.settings.consumer_max_retries),
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": refs,
            "bindings": {"kafka": {"groupId": {"type": "string"}, "bindingVersion": KAFKA_BINDING}},
            "tags": [{"name": f.service}],
        }

    def _internal_messages(self) -> None:
        self.messages["DeadLetter"] = {
            "name": "DeadLetter",
            "title": "Dead letter 死信",
            "summary": "A record a consumer group could not handle: the original record with why",
            "description": "The original record's key, value and headers as they were (any event of the topics "
            "the group reads), plus headers saying why and where from. "
            + RETRIES.format(retries=self.settings.consumer_max_retries),
            "contentType": CONTENT_TYPE,
            "headers": {
                "type": "object",
                "required": ["hl_dlq_reason", "hl_dlq_group", "hl_original_topic"],
                "properties": {
                    "hl_dlq_reason": {"type": "string", "maxLength": 2000},
                    "hl_dlq_group": {"type": "string"},
                    "hl_original_topic": {"type": "string"},
                    "hl_original_partition": {"type": "string", "pattern": "^[0-9]+$"},
                    "hl_original_offset": {"type": "string", "pattern": "^[0-9]+$"},
                },
                "additionalProperties": {"type": "string", "description": "the original ce_* headers"},
            },
            "payload": {"type": "string", "description": "The original record value (protobuf bytes, usually)"},
            "bindings": {"kafka": {"key": _kafka_key(), "bindingVersion": KAFKA_BINDING}},
        }
        self.messages["AggregateState"] = {
            "name": "AggregateState",
            "title": "Aggregate state 聚合状态 (internal)",
            "summary": "The current state of one aggregate, for the services' own read models",
            "description": "Internal, not a contract: the aggregate's document as stored (BSON, without its outbox; "
            "contact data sealed). The projector builds the SQL read models from it (services/common/outbox.py, "
            "'State').",
            "contentType": "application/bson",
            "headers": {
                "type": "object",
                "properties": {"tenant": {"type": "string"}, "collection": {"type": "string"}},
            },
            "payload": {"type": "string", "description": "A BSON document"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "<tenant>:<collection>/<aggregate id>"},
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }

    def _internal_topics(self) -> None:
        for group in (*SERVICES, *EXTRA_GROUPS):
            topic = dead_letter_topic(group)
            self.channels[_channel_id(topic)] = {
                "address": topic,
                "title": f"死信 Dead letters of {group}",
                "description": f"Records the consumer group `{group}` gave up on (internal; for operators: "
                "docs/runbook.md). Retention as the broker's default.",
                "servers": [{"$ref": "#/servers/kafka"}],
                "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
                "bindings": _kafka_channel_binding(topic),
                "tags": [{"name": "internal"}],
            }
        for service in STATE_SERVICES:
            topic = state_topic_for(service)
            self.channels[_channel_id(topic)] = {
                "address": topic,
                "title": f"状态 {service} aggregate states (internal)",
                "description": f"The {service} service's aggregates' current states, compacted "
                f"({', '.join(f'{k}={v}' for k, v in COMPACTED.items())}). Internal to the services: not part of "
                "the event bus's contract.",
                "servers": [{"$ref": "#/servers/kafka"}],
                "messages": {"AggregateState": {"$ref": "#/components/messages/AggregateState"}},
                "bindings": _kafka_channel_binding(topic),
                "tags": [{"name": "internal"}],
            }

    def _webhooks(self) -> None:
        keys: list[str] = []
        for short, cls in webhooks.EVENT_TYPES.items():
            desc = cls.DESCRIPTOR
            key = f"{short}Webhook"
            comment = _comment(desc)
            self.messages[key] = {
                "name": short,
                "title": f"{short} (webhook)",
                "summary": _first_line(comment) if comment else short,
                "description": (f"{comment}\n\n" if comment else "")
                + "POSTed to a registration that wants this type: the CloudEvent in JSON structured mode, `data` "
                f"the proto3 JSON of `{desc.full_name}` (proto field names, every field without presence present).",
                "contentType": WEBHOOK_CONTENT_TYPE,
                "headers": _webhook_headers(desc.full_name),
                "payload": _webhook_body(desc.full_name, self.json.ref(desc)),
                "correlationId": {"description": "The delivery id", "location": "$message.header#/webhook-id"},
                "bindings": {"http": {"headers": _webhook_headers(desc.full_name), "bindingVersion": HTTP_BINDING}},
                "x-protobuf-message": desc.full_name,
                "x-webhook-event-type": short,
                "tags": [{"name": "webhooks"}],
            }
            keys.append(key)
        self.channels["webhooks"] = {
            "address": None,
            "title": "Webhook 推送 Webhook deliveries",
            "summary": "An HTTP POST to the URL a tenant registered, for each dispatch event it asked for",
            "description": _webhook_text(self.settings),
            "servers": [{"$ref": "#/servers/webhook-receiver"}],
            "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in keys},
            "tags": [{"name": "webhooks"}],
        }
        refs = [{"$ref": f"#/channels/webhooks/messages/{k}"} for k in keys]
        http = {"http": {"method": "POST", "bindingVersion": HTTP_BINDING}}
        self.operations["deliver_webhook"] = {
            "action": "send",
            "title": "Dispatch POSTs a webhook",
            "summary": "The dispatch service's webhook notifier POSTs the event, signed, retrying with backoff",
            "description": _webhook_text(self.settings),
            "channel": {"$ref": "#/channels/webhooks"},
            "messages": refs,
            "bindings": http,
            "tags": [{"name": "webhooks"}],
        }
        self.operations["receive_webhook"] = {
            "action": "receive",
            "title": "A receiver takes a webhook",
            "summary": "Verify webhook-signature over the raw body, answer 2xx quickly, drop repeats by webhook-id",
            "channel": {"$ref": "#/channels/webhooks"},
            "messages": refs,
            "bindings": http,
            "tags": [{"name": "webhooks"}],
        }

    def document(self) -> Schema:
        for f in event_files():
            self._events_topic(f)
        self._internal_messages()
        self._internal_topics()
        self._webhooks()
        missing = set(wanted_topics()) - {c["address"] for c in self.channels.values()}
        if missing:
            raise ValueError(f"topics without a channel: {sorted(missing)}")
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "id": "urn:hongling:events",
            "info": {
                "title": "红领益家 Hongling events",
                "version": _version(),
                "description": _description(self.settings),
                "tags": [
                    {"name": "events", "description": "The services' event topics (the contract)"},
                    {"name": "webhooks", "description": "Dispatch events POSTed to registered URLs"},
                    {"name": "internal", "description": "State and dead-letter topics, internal to the services"},
                    *({"name": s, "description": f"{SERVICE_ZH.get(s, s)} The {s} service"} for s in SERVICES),
                ],
            },
            "defaultContentType": CONTENT_TYPE,
            "servers": {
                "kafka": {
                    "host": "{bootstrap}",
                    "protocol": "kafka",
                    "title": "The deployment's Kafka cluster",
                    "description": "HONGLING_KAFKA_BOOTSTRAP (local stack: 127.0.0.1:<port base + 92>); replication "
                    "HONGLING_KAFKA_REPLICATION_FACTOR (min.insync.replicas one fewer on a cluster).",
                    "variables": {"bootstrap": {"default": "127.0.0.1:17092", "description": "host:port"}},
                },
                "webhook-receiver": {
                    "host": "{receiver}",
                    "protocol": "https",
                    "title": "A registered webhook URL",
                    "description": "The receiver a tenant registered (http or https URL); Hongling is the client.",
                    "variables": {"receiver": {"default": "receiver.example.org", "description": "host[:port]"}},
                },
            },
            "channels": self.channels,
            "operations": self.operations,
            "components": {"schemas": dict(sorted(self.schemas.items())), "messages": self.messages},
        }


def build_asyncapi(settings: Settings | None = None) -> Schema:
    """The AsyncAPI 3.0 document of the event topics and the webhooks (retry figures: these settings', else
    the defaults)."""
    return AsyncApiBuilder(Figures.of(settings)).document()


__all__ = ["ASYNCAPI_VERSION", "JsonSchemas", "build_asyncapi", "event_classes", "event_files", "file_comment"]
