"""What the alliance's areas share besides their process: times as stored and as sent, and the conflict answers
of the one write path (services/common/unitofwork.py). Plain helpers, no area's rules."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import Aborted
from services.common.unitofwork import Conflicts


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
    out.FromDatetime(aware(at))  # type: ignore[arg-type]
    return out


def conflicts(noun: str, noun_zh: str = "记录") -> Conflicts:
    """The ABORTED answers of a record of this kind changed under a change: stale, raced or busy."""
    return Conflicts(
        stale=lambda i, v, e: Aborted(f"{noun} {i!r} is at version {v}, not {e}: reload and retry ({noun_zh}已被修改)"),
        raced=lambda i: Aborted(
            f"{noun} {i!r} was changed at the same moment: reload and retry ({noun_zh}已被同时修改)"
        ),
        busy=lambda i: Aborted(
            f"{noun} {i!r} kept changing under this change: retry shortly ({noun_zh}正被频繁修改，请重试)"
        ),
    )
