"""Keyset page tokens: (time, id) of the last item of a page, bound to the filters it was made for.

A token is opaque to callers (url-safe base64 of a small JSON); it names the position after which the
next page starts and the fingerprint of the filters, so a token reused with other filters is refused
instead of silently skipping or repeating items.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from services.common.errors import InvalidArgument


def page_token(at: datetime, item_id: str, fingerprint: str) -> str:
    """The token of the page after the item (at, item_id), for these filters."""
    raw = json.dumps({"t": int(at.timestamp() * 1000), "i": item_id, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_page_token(token: str, fingerprint: str) -> tuple[datetime, str]:
    """(time, id) a token continues after; INVALID_ARGUMENT (field page_token) if it is not one this service
    made for these filters."""
    bad = InvalidArgument("page_token is not one this service issued for these filters", field="page_token")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        at = datetime.fromtimestamp(int(data["t"]) / 1000, tz=UTC)
        item_id, made_for = str(data["i"]), str(data["f"])
    except (ValueError, KeyError, TypeError, OverflowError, binascii.Error):
        raise bad from None
    if made_for != fingerprint:
        raise bad
    return at, item_id
