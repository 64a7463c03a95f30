"""The official-account article (article): one self-contained HTML fragment to paste into WeChat's editor —
inline styles only (the editor strips <style>, classes and scripts), no external resource (no image, font or
link to fetch), the view's sections with their tables. Autoescaped Jinja2 like the page (html.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.publication.channels import Edition, Rendition
from services.publication.channels.html import environment
from services.publication.channels.view import view

_CELL = "border:1px solid #333;padding:4px 6px;vertical-align:top;white-space:pre-line;"

# The inline styles, by role: a phone's width, 16px body, black on white, ruled tables.
STYLES = {
    "article": "font-family:-apple-system,PingFang SC,Noto Sans CJK SC,Microsoft YaHei,sans-serif;"
    "font-size:16px;line-height:1.6;color:#111;background:#fff;",
    "kind": "margin:0;color:#b00000;font-weight:bold;font-size:14px;",
    "h1": "margin:4px 0 8px;font-size:22px;line-height:1.3;font-weight:bold;",
    "meta": "margin:0 0 12px;font-size:14px;color:#333;",
    "draft": "color:#b00000;",
    "box": "border:1px solid #333;padding:8px 12px;margin:12px 0;",
    "h2": "margin:20px 0 8px;padding-left:8px;border-left:4px solid #b00000;font-size:18px;font-weight:bold;",
    "h2plain": "margin:0 0 6px;font-size:18px;font-weight:bold;",
    "p": "margin:6px 0;",
    "ol": "margin:6px 0;padding-left:24px;",
    "caption": "margin:10px 0 4px;font-weight:bold;",
    "table": "width:100%;border-collapse:collapse;font-size:14px;margin:0 0 10px;",
    "th": _CELL + "background:#eee;font-weight:bold;text-align:left;",
    "td": _CELL + "text-align:left;",
    "tdnum": _CELL + "text-align:right;",
    "figure": "border:1px solid #333;padding:6px;text-align:center;width:33%;",
    "figvalue": "font-size:20px;font-weight:bold;",
    "figlabel": "font-size:13px;",
    "code": "margin:4px 0;font-family:monospace;font-size:13px;word-break:break-all;",
    "small": "margin:6px 0;font-size:13px;color:#333;",
}


def render_article(content: Mapping[str, Any], edition: Edition) -> Rendition:
    html = environment().get_template("article.html.j2").render(v=view(content), edition=edition, s=STYLES)
    return Rendition("text/html; charset=utf-8", f"{edition.stem}-article.html", html.encode())
