"""The WeChat group message (wechat): plain text — no HTML, no markdown, which a group chat shows as typed —
with the key figures and one line per row, split into numbered messages "【1/3】…" when longer than one.

LIMIT (channels.WECHAT_LIMIT) is the length of one message we allow ourselves: 2,000 characters. WeChat's
own cap on a text message is larger and counted in ways that vary by client; 2,000 keeps every part whole
on every client and short enough to read on a phone. Splitting never breaks a line, unless one line alone
exceeds a message, and then at character boundaries; the numbering prefix counts within the limit. A
message that fits is one part, unnumbered. Rendition.parts holds the messages to send one by one;
Rendition.data is them joined by a blank line (for a download).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.publication.channels import WECHAT_LIMIT, Edition, Rendition
from services.publication.channels.view import CHAT_ROWS, NONE, View, view

LIMIT = WECHAT_LIMIT  # characters per message (see the module's docstring)


def lines_of(v: View, edition: Edition) -> list[str]:
    """The message's lines: title, edition, a correction's changes, then each section's figures, paragraphs
    and table rows (a row as its non-empty cells joined by " · "), and the audit anchor in full."""
    head = f"第 {edition.version} 版"
    if edition.corrects_version:
        head += f"（更正第 {edition.corrects_version} 版）"
    if edition.draft:
        head += " · 草稿，未发布"
    lines = [v.title, f"{head} · {v.period_zh} · 截至 {v.as_of_zh}"]
    if edition.changes:
        lines += ["", "更正说明："]
        lines += [f"{n}. {change}" for n, change in enumerate(edition.changes, 1)]
    for s in v.sections:
        lines += ["", f"■ {s.title}"]
        if s.figures:
            lines.append("；".join(f"{label} {value}" for label, value in s.figures))
        lines += list(s.paragraphs)
        for t in s.tables:
            if len(s.tables) > 1 or t.caption != s.title:
                lines.append(f"〔{t.caption}〕")
            if not t.rows:
                lines.append(t.empty)
            for row in t.rows:
                cells = [
                    (f"{t.headers[i]} {c}" if i in t.label else c).replace("\n", " · ")
                    for i, c in enumerate(row)
                    if c and c != NONE
                ]
                lines.append(" · ".join(cells))
    if v.anchor:
        a = v.anchor
        lines += [
            "",
            "■ 审计日志链头",
            f"序号 {a.seq} · 时间 {a.at}",
            f"哈希 {a.hash}",
            f"签名 {a.signature}",
            f"公钥 {a.public_key}",
            a.how_to_check,
        ]
    return lines


def _pack(lines: Sequence[str], budget: int) -> list[str]:
    """Lines into chunks of at most `budget` characters, whole lines only; a longer line is cut at character
    boundaries into chunks of its own. A chunk never starts or ends with a blank line."""
    chunks: list[list[str]] = [[]]
    size = 0

    def add(line: str) -> None:
        nonlocal size
        current = chunks[-1]
        extra = len(line) + (1 if current else 0)
        if current and size + extra > budget:
            chunks.append([])
            current, size, extra = chunks[-1], 0, len(line)
        if not current and not line:
            return  # no blank line at a chunk's start
        current.append(line)
        size += extra

    for line in lines:
        if len(line) <= budget:
            add(line)
            continue
        for start in range(0, len(line), budget):
            piece = line[start : start + budget]
            if chunks[-1]:
                chunks.append([])
                size = 0
            add(piece)
    out = []
    for chunk in chunks:
        while chunk and not chunk[-1]:
            chunk.pop()
        if chunk:
            out.append("\n".join(chunk))
    return out


def split(lines: Sequence[str], limit: int = LIMIT) -> list[str]:
    """The messages: one unnumbered if the text fits `limit`, else numbered parts "【i/n】…", each ≤ limit."""
    whole = "\n".join(lines).strip("\n")
    if len(whole) <= limit:
        return [whole] if whole else []
    digits = 1
    while True:
        widest = 10**digits - 1
        budget = limit - len(f"【{widest}/{widest}】")
        if budget < 1:
            raise ValueError(f"a limit of {limit} leaves no room for a message's text")
        chunks = _pack(lines, budget)
        if len(chunks) <= widest:
            return [f"【{i}/{len(chunks)}】{chunk}" for i, chunk in enumerate(chunks, 1)]
        digits += 1


def render_wechat(content: Mapping[str, Any], edition: Edition) -> Rendition:
    parts = tuple(split(lines_of(view(content, issue_rows=CHAT_ROWS), edition)))
    data = "\n\n".join(parts).encode()
    return Rendition("text/plain; charset=utf-8", f"{edition.stem}-wechat.txt", data, parts)
