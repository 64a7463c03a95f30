"""The channels: pure renderers of a version's content (services/publication/content.py) — the notice-board page
(HTML and PDF, A4 and A3), the WeChat group message (numbered parts within the length limit), the official-
account article, JSON, the report's xlsx, and Atom feeds. No infrastructure: the same content and edition give
the same bytes, every time (no wall clock, no random ids). JSON is here; each other format has its module
(html.py, pdf.py, wechat.py, article.py, xlsx.py, atom.py), imported when first used: WeasyPrint and openpyxl
are heavy, and a caller that only reads JSON or a feed never loads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.publication.content import canonical

# The channels of each kind (what PublicationService.RenderPublication accepts for it).
CHANNELS: dict[str, tuple[str, ...]] = {
    "monthly": ("html_a4", "html_a3", "pdf_a4", "pdf_a3", "wechat", "article", "json"),
    "boards": ("html_a4", "html_a3", "pdf_a4", "pdf_a3", "wechat", "article", "json"),
    "report": ("html_a4", "pdf_a4", "xlsx", "json"),
}

# The length of one WeChat message the wechat channel keeps to, in characters (why 2,000: channels/wechat.py);
# REST's wechat answer reports it beside the parts.
WECHAT_LIMIT = 2000


@dataclass(frozen=True)
class Rendition:
    content_type: str
    filename: str  # ASCII
    data: bytes
    parts: tuple[str, ...] = field(default=())  # wechat: the numbered messages


@dataclass(frozen=True)
class Edition:
    """Which version a rendition is of: every channel shows the version, a correction's changes, and a draft mark."""

    publication_id: str  # "<kind>:<scope>:<period>:v<version>"
    version: int
    corrects_version: int = 0
    changes: tuple[str, ...] = ()  # readable lines (zh), what changed from the version corrected
    draft: bool = True  # not released yet: every channel marks it 草稿 (draft)

    @property
    def stem(self) -> str:
        """An ASCII file name stem: "monthly-c-001-2026-11-v2"."""
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in self.publication_id)
        return safe.replace("--", "-")


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
    tenant: str = ""  # makes the entry's id unique across tenants: urn:hongling:publication:<tenant>:<id>


def render(content: Mapping[str, Any], channel: str, edition: Edition) -> Rendition:
    """One channel of a content (an unknown channel: ValueError naming the kind's channels)."""
    kind = str(content.get("kind", ""))
    if channel not in CHANNELS.get(kind, ()):
        raise ValueError(f"channel {channel!r} is not one of {kind}'s: {', '.join(CHANNELS.get(kind, ()))}")
    if channel == "json":
        return render_json(content, edition)
    if channel in ("html_a4", "html_a3"):
        from services.publication.channels.html import render_html

        return render_html(content, edition, "A4" if channel == "html_a4" else "A3")
    if channel in ("pdf_a4", "pdf_a3"):
        from services.publication.channels.pdf import render_pdf

        return render_pdf(content, edition, "A4" if channel == "pdf_a4" else "A3")
    if channel == "wechat":
        from services.publication.channels.wechat import render_wechat

        return render_wechat(content, edition)
    if channel == "article":
        from services.publication.channels.article import render_article

        return render_article(content, edition)
    if channel == "xlsx":
        from services.publication.channels.xlsx import render_xlsx

        return render_xlsx(content, edition)
    raise ValueError(f"channel {channel!r} has no renderer")


def render_json(content: Mapping[str, Any], edition: Edition) -> Rendition:
    """For integrations: the edition and the content, canonical JSON (sorted keys, UTF-8) and a newline."""
    doc = {
        "publication_id": edition.publication_id,
        "version": edition.version,
        "corrects_version": edition.corrects_version,
        "changes": list(edition.changes),
        "draft": edition.draft,
        "content": content,
    }
    return Rendition("application/json; charset=utf-8", f"{edition.stem}.json", (canonical(doc) + "\n").encode())


def feed(
    feed_id: str, title_zh: str, entries: Sequence[FeedEntry], self_link: str, *, author_zh: str = "红领益家"
) -> bytes:
    """An Atom 1.0 feed (RFC 4287), newest first, deterministic for the same entries (channels/atom.py)."""
    from services.publication.channels.atom import atom_feed

    return atom_feed(feed_id, title_zh, entries, self_link, author_zh=author_zh)
