"""Atom 1.0 feeds (RFC 4287) of released versions, per tenant and per community, for integrations and feed
readers. Deterministic for the same entries: no wall clock (the feed's <updated> is its newest entry's
release, or the epoch for an empty feed), entries in a fixed order (newest release first, then by id), XML
written by ElementTree (which escapes every text and attribute).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from urllib.parse import quote

from services.publication.channels import FeedEntry

ATOM = "http://www.w3.org/2005/Atom"
EPOCH = "1970-01-01T00:00:00Z"


def urn(kind: str, ident: str) -> str:
    """An IRI for an id that is not one already: urn:hongling:<kind>:<ident, percent-encoded but for ':'>."""
    if ident.startswith(("urn:", "tag:", "http://", "https://")):
        return ident
    return f"urn:hongling:{kind}:{quote(ident, safe=':-._~')}"


def atom_feed(
    feed_id: str, title_zh: str, entries: Sequence[FeedEntry], self_link: str, *, author_zh: str = "红领益家"
) -> bytes:
    ET.register_namespace("", ATOM)
    ordered = sorted(entries, key=lambda e: (e.released_at, e.id), reverse=True)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    root = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": "zh-CN"})
    sub(root, "id", urn("feed", feed_id))
    sub(root, "title", title_zh, type="text")
    sub(root, "updated", ordered[0].released_at if ordered else EPOCH)
    sub(root, "link", rel="self", type="application/atom+xml", href=self_link)
    author = sub(root, "author")
    sub(author, "name", author_zh)
    sub(root, "generator", "红领益家 Hongling")
    for e in ordered:
        entry = sub(root, "entry")
        sub(entry, "id", urn("publication", f"{e.tenant}:{e.id}" if e.tenant else e.id))
        sub(entry, "title", f"{e.title_zh}（第 {e.version} 版）", type="text")
        sub(entry, "updated", e.released_at)
        sub(entry, "published", e.released_at)
        sub(entry, "link", rel="alternate", type="text/html", href=e.link)
        sub(entry, "summary", e.summary_zh, type="text")
        sub(entry, "category", term=e.period)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
