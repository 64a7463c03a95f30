"""The notice-board page as PDF (pdf_a4, pdf_a3), printed by WeasyPrint from the very HTML of html.py.

WeasyPrint lays the page out with Pango (the system's libpango, installed by deploy/local/pdf.sh) and embeds a
subset of the font the CSS names — Noto Sans CJK SC, from Debian's fonts-noto-cjk (deploy/local/browser.sh) —
so every Chinese character is drawn on any machine that opens the file, nothing is a box.

Byte-identical for the same content and edition: the document's dates are the period's end (the page's
<meta name="dcterms.created|modified">, never the wall clock), no file identifier is written, and WeasyPrint
names font subsets by a hash of the font and the glyphs used (weasyprint/pdf/fonts.py), not at random.
tests/unit/test_publication_channels.py renders twice in separate processes and compares the bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from services.publication.channels import Edition, Rendition
from services.publication.channels.html import Paper, page_html

# WeasyPrint logs every CSS property it does not support as a warning, and font subsetting at INFO: quiet them
# (a page that fails to render still raises).
logging.getLogger("weasyprint").setLevel(logging.ERROR)
logging.getLogger("fontTools").setLevel(logging.ERROR)


def render_pdf(content: Mapping[str, Any], edition: Edition, paper: Paper) -> Rendition:
    import weasyprint  # imported on first use: it loads Pango and is only needed for this channel

    html = weasyprint.HTML(string=page_html(content, edition, paper), base_url=None)
    data = html.write_pdf(pdf_identifier=False, uncompressed_pdf=False)
    assert data is not None  # write_pdf returns the bytes when given no target
    return Rendition("application/pdf", f"{edition.stem}-{paper.lower()}.pdf", bytes(data))
