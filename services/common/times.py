"""Times as stored and as sent, one definition for every service: now to the millisecond (what BSON keeps, so a
document read back equals the one written), a stored time made aware (pymongo reads naive UTC), and a protobuf
Timestamp of a time. Storage is UTC; months and quarters are Asia/Shanghai where a domain names them."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def utcnow() -> datetime:
    """Now in UTC to the millisecond (what BSON stores), so a document read back equals the one written."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def aware(at: datetime | None) -> datetime | None:
    """A stored time (naive UTC when read back) as an aware UTC time."""
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def ts(at: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp of a time (None: unset)."""
    if at is None:
        return None
    out = Timestamp()
    out.FromDatetime(at if at.tzinfo else at.replace(tzinfo=UTC))
    return out
