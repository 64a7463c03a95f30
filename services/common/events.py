"""CloudEvents 1.0 in Kafka binary mode with protobuf payloads.

Headers: ce_specversion, ce_id, ce_source, ce_type (the payload message's full name), ce_time,
ce_subject, ce_tenant, content-type: application/protobuf. Key: "<tenant>:<aggregate id>".
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import DecodeError, Message

from services.common.tenants import get_tenant

SPECVERSION = "1.0"
CONTENT_TYPE = "application/protobuf"


def topic_for(service: str) -> str:
    return f"hongling.{service}.v1"


def state_topic_for(service: str) -> str:
    """The service's internal, compacted topic of its aggregates' current states (services/common/outbox.py,
    "State"): what the projector builds the read models from. Not part of the event bus."""
    return f"hongling.{service}.state.v1"


def state_key(tenant: str, collection: str, aggregate_id: str) -> bytes:
    return f"{tenant}:{collection}/{aggregate_id}".encode()


def dead_letter_topic(group: str) -> str:
    return f"hongling.{group}.dlq.v1"


def record_key(tenant: str, aggregate_id: str) -> bytes:
    return f"{tenant}:{aggregate_id}".encode()


class PoisonEvent(Exception):
    """A record that can never be handled (bad envelope or payload): straight to the dead-letter topic."""


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    time: datetime
    subject: str
    tenant: str
    data: bytes

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("ce_specversion", SPECVERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", self.time.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()),
            ("ce_subject", self.subject.encode()),
            ("ce_tenant", self.tenant.encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]

    @classmethod
    def from_record(cls, headers: list[tuple[str, bytes]] | None, value: bytes | None) -> CloudEvent:
        h = {k: v.decode("utf-8", "replace") for k, v in (headers or [])}
        missing = [k for k in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_tenant") if not h.get(k)]
        if missing:
            raise PoisonEvent(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
        if h["ce_specversion"] != SPECVERSION:
            raise PoisonEvent(f"unsupported CloudEvents specversion {h['ce_specversion']!r}")
        if h.get("content-type", CONTENT_TYPE) != CONTENT_TYPE:
            raise PoisonEvent(f"unsupported content-type {h.get('content-type')!r}")
        try:
            get_tenant(h["ce_tenant"])
        except Exception as exc:
            raise PoisonEvent(str(exc)) from None
        try:
            time = datetime.fromisoformat(h.get("ce_time", "").replace("Z", "+00:00"))
        except ValueError:
            raise PoisonEvent(f"bad ce_time {h.get('ce_time')!r}") from None
        return cls(
            id=h["ce_id"],
            source=h["ce_source"],
            type=h["ce_type"],
            time=time,
            subject=h.get("ce_subject", ""),
            tenant=h["ce_tenant"],
            data=value or b"",
        )

    def decode(self, message_class: builtins.type[Message]) -> Message:
        msg = message_class()
        try:
            msg.ParseFromString(self.data)
        except DecodeError as exc:
            raise PoisonEvent(f"payload is not a valid {self.type}: {exc}") from None
        return msg
