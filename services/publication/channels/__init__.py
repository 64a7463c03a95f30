"""The channels: pure renderers of a version's content (services/publication/content.py) — the notice-board page
(HTML and PDF, A4 and A3), the WeChat group message (numbered parts within the length limit), the official-
account article, JSON, the report's xlsx, and Atom feeds. No infrastructure: the same content gives the same
bytes, every time. A placeholder until its area fills it in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The channels of each kind (what PublicationService.RenderPublication accepts for it).
CHANNELS: dict[str, tuple[str, ...]] = {
    "monthly": ("html_a4", "html_a3", "pdf_a4", "pdf_a3", "wechat", "article", "json"),
    "boards": ("html_a4", "html_a3", "pdf_a4", "pdf_a3", "wechat", "article", "json"),
    "report": ("html_a4", "pdf_a4", "xlsx", "json"),
}


@dataclass(frozen=True)
class Rendition:
    content_type: str
    filename: str  # ASCII
    data: bytes
    parts: tuple[str, ...] = field(default=())  # wechat: the numbered messages


@dataclass(frozen=True)
class FeedEntry:
    """One released version in a feed."""

    id: str  # the publication id
    title_zh: str
    period: str
    version: int
    released_at: str  # RFC 3339 UTC
    summary_zh: str
    link: str  # absolute URL of its public page (the gateway's)


def render(content: Mapping[str, Any], channel: str) -> Rendition:
    """One channel of a content (KeyError-free: an unknown channel is ValueError naming the channels)."""
    raise NotImplementedError("channels arrive with the publication issue")


def feed(feed_id: str, title_zh: str, entries: Sequence[FeedEntry], self_link: str) -> bytes:
    """An Atom 1.0 feed (RFC 4287), newest first, deterministic for the same entries."""
    raise NotImplementedError("channels arrive with the publication issue")
