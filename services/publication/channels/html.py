"""The notice-board page for a compound's bulletin board (html_a4, html_a3): one Chinese page per version,
readable at a distance — large type (A4 body 14pt, A3 20pt: the paper's linear ratio), black on white, ruled
tables — with print CSS (@page size and margins, page numbers), the edition (第 N 版; a correction's changes
first, as 更正说明; a 草稿 watermark on a draft) and, for the monthly notice and the report, the audit log's
signed head printed in full with how to check it.

Rendered from Jinja2 templates (templates/) with autoescape on every value: the content's strings come from
people (a meeting's title, a unit's public name) and must never become markup. The PDF channel (pdf.py)
prints this same HTML, so the page and the PDF never differ in what they say.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

import jinja2
from markupsafe import Markup

from services.publication.channels import Edition, Rendition
from services.publication.channels.view import PRINT_ROWS, view

Paper = Literal["A4", "A3"]

# Type sizes per paper: A3 is A4 scaled by √2 (≈1.41), so the page reads the same from √2 times as far.
SIZES: dict[str, dict[str, str]] = {
    "A4": {
        "body": "14pt",
        "small": "12pt",
        "h1": "26pt",
        "h2": "18pt",
        "margin": "14mm 12mm 18mm 12mm",
        "watermark": "150pt",
        "screen": "210mm",
    },
    "A3": {
        "body": "20pt",
        "small": "16pt",
        "h1": "36pt",
        "h2": "25pt",
        "margin": "18mm 16mm 24mm 16mm",
        "watermark": "210pt",
        "screen": "297mm",
    },
}


def css_string(value: object) -> Markup:
    """A value for inside a CSS string ("…"): every character but letters and digits as a CSS hex escape, so
    no quote, backslash or "</style>" in it can end the string or the style element."""
    out = []
    for ch in str(value):
        # a hex escape ends at its one following space, which CSS consumes: a space of the text survives
        out.append(ch if ch.isalnum() or ch == " " else f"\\{ord(ch):x} ")
    return Markup("".join(out))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("services.publication.channels", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing field is a bug, never a blank on the board
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["css_string"] = css_string
    return env


def page_html(content: Mapping[str, Any], edition: Edition, paper: Paper) -> str:
    """The page's HTML text (what pdf.py prints)."""
    template = environment().get_template("page.html.j2")
    return template.render(v=view(content, issue_rows=PRINT_ROWS), edition=edition, paper=paper, css=SIZES[paper])


def render_html(content: Mapping[str, Any], edition: Edition, paper: Paper) -> Rendition:
    data = page_html(content, edition, paper).encode()
    return Rendition("text/html; charset=utf-8", f"{edition.stem}-{paper.lower()}.html", data)
