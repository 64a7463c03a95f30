"""Intake domain rules (社区接单): what a valid new issue is. Plain Python, no infrastructure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.common.errors import InvalidArgument

# Channel code -> Chinese name. District-department assistance tasks arrive with the gateway issue.
CHANNELS: dict[str, str] = {
    "household_visit": "入户走访",
    "resident_report": "居民反映",
    "online": "线上接单",
    "grid_patrol": "网格巡查",
    "hotline_12345": "12345热线",
}
TITLE_MAX = 120
DESCRIPTION_MAX = 4000
ADDRESS_MAX = 300
STATUS_RECEIVED = "received"
DEFAULT_CATEGORY = "unclassified"
ID_NAMESPACE = uuid.UUID("3f5b3c1e-6a39-4c56-9d2b-6d3b2a8e1f00")


@dataclass(frozen=True)
class Location:
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    compound_id: str = ""

    @property
    def has_point(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class NewIssue:
    title: str
    description: str
    channel: str
    category: str
    location: Location


def _text(value: str, field: str, limit: int, *, required: bool) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidArgument(f"{field} is required (必填)", field=field)
    if len(value) > limit:
        raise InvalidArgument(
            f"{field} is {len(value)} characters; at most {limit} are allowed (超出长度限制)", field=field
        )
    return value


def validate_location(loc: Location) -> Location:
    if (loc.lat is None) != (loc.lon is None):
        raise InvalidArgument("location needs both lat and lon, or neither", field="location")
    if loc.has_point:
        assert loc.lat is not None and loc.lon is not None
        if not -90 <= loc.lat <= 90:
            raise InvalidArgument(f"location.lat {loc.lat} is outside -90..90", field="location.lat")
        if not -180 <= loc.lon <= 180:
            raise InvalidArgument(f"location.lon {loc.lon} is outside -180..180", field="location.lon")
    address = _text(loc.address, "location.address", ADDRESS_MAX, required=False)
    if not loc.has_point and not address and not loc.compound_id:
        raise InvalidArgument(
            "location needs a point (lat, lon), an address or a compound id (请提供位置)", field="location"
        )
    return Location(loc.lat, loc.lon, address, loc.compound_id.strip())


def validate_new_issue(title: str, description: str, channel: str, category: str, location: Location) -> NewIssue:
    """A checked NewIssue, or InvalidArgument naming the first field that is wrong."""
    title = _text(title, "title", TITLE_MAX, required=True)
    description = _text(description, "description", DESCRIPTION_MAX, required=True)
    if channel not in CHANNELS:
        raise InvalidArgument(f"unknown channel {channel!r}; use one of: {', '.join(CHANNELS)}", field="channel")
    category = (category or "").strip() or DEFAULT_CATEGORY
    return NewIssue(title, description, channel, category, validate_location(location))


def new_issue_id(idempotency_key: str = "") -> str:
    """A fresh id, or a stable one derived from the client's idempotency key (so a retry finds the first)."""
    if idempotency_key:
        return uuid.uuid5(ID_NAMESPACE, idempotency_key).hex
    return uuid.uuid4().hex
