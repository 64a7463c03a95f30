"""Keyset page tokens: (time, id) of the last item of a page, bound to the filters it was made for.

A token is opaque to callers (url-safe base64 of a small JSON); it names the position after which the
next page starts and the fingerprint of the filters, so a token reused with other filters is refused
instead of silently skipping or repeating items.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.common.errors import InvalidArgument


def bad_token() -> InvalidArgument:
    return InvalidArgument("page_token is not one this service issued for these filters", field="page_token")


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str, fingerprint: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        made_for = str(data["f"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_token() from None
    if made_for != fingerprint:
        raise bad_token()
    return dict(data)


def page_token(at: datetime, item_id: str, fingerprint: str) -> str:
    """The token of the page after the item (at, item_id), for these filters."""
    return _encode({"t": int(at.timestamp() * 1000), "i": item_id, "f": fingerprint})


def parse_page_token(token: str, fingerprint: str) -> tuple[datetime, str]:
    """(time, id) a token continues after; INVALID_ARGUMENT (field page_token) if it is not one this service
    made for these filters."""
    data = _decode(token, fingerprint)
    try:
        return datetime.fromtimestamp(int(data["t"]) / 1000, tz=UTC), str(data["i"])
    except (ValueError, KeyError, TypeError, OverflowError):
        raise bad_token() from None


def position_token(position: Sequence[str | int], fingerprint: str) -> str:
    """The token of the page after a position of several sort keys (e.g. period, number, id)."""
    return _encode({"k": list(position), "f": fingerprint})


def parse_position_token(token: str, fingerprint: str, length: int) -> list[Any]:
    """The sort keys a position token continues after (`length` of them), or INVALID_ARGUMENT."""
    keys = _decode(token, fingerprint).get("k")
    if not isinstance(keys, list) or len(keys) != length:
        raise bad_token()
    return keys
