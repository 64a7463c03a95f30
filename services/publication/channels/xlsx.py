"""The report upward as a workbook (xlsx, kind report): the subdistrict's measures, the communities' ranking,
the exceptions (three tables on one sheet) and the burden ledger (减负台账), with Chinese headers, column
widths that fit them, and frozen header rows.

Byte-identical for the same content and edition. openpyxl stamps the save time into docProps/core.xml
(dcterms:created/modified) and zipfile stamps every member with the local time; both are set here to the
period's end (the content's as_of), by rewriting the archive after openpyxl has written it. Strings are
always written as strings: a name beginning with "=" must never become a formula.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from services.publication.channels import Edition, Rendition
from services.publication.channels.view import (
    EXCEPTION_TABLES,
    LEDGER_HEADERS,
    exception_rows,
    ledger_rows,
    number,
    percent,
    ranking_headers,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="E8E8E8")
_WRAP = Alignment(wrap_text=True, vertical="top")


def _width(value: object) -> float:
    """Display width in Excel's character units: a CJK character is two."""
    text = str(value) if value is not None else ""
    return max((sum(2 if ord(ch) > 0x2E80 else 1 for ch in line) for line in text.split("\n")), default=0)


def _write(ws: Worksheet, row: int, values: Sequence[object], header: bool = False) -> None:
    for col, value in enumerate(values, 1):
        cell = ws.cell(row=row, column=col, value=value)
        if isinstance(value, str):
            cell.data_type = "s"  # never a formula, whatever the text begins with
        if header:
            cell.font = _BOLD
            cell.fill = _HEAD_FILL
        cell.alignment = _WRAP


def _table(ws: Worksheet, start: int, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> int:
    """A titled table from `start`; the next free row (after a blank one)."""
    _write(ws, start, [title], header=False)
    ws.cell(row=start, column=1).font = Font(bold=True, size=13)
    _write(ws, start + 1, headers, header=True)
    for i, row in enumerate(rows):
        _write(ws, start + 2 + i, row)
    if not rows:
        _write(ws, start + 2, ["本期无记录"])
    return start + 2 + max(1, len(rows)) + 1


def _sheet(wb: Workbook, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Worksheet:
    ws = wb.create_sheet(title)
    _write(ws, 1, headers, header=True)
    for i, row in enumerate(rows, 2):
        _write(ws, i, row)
    ws.freeze_panes = "A2"
    return ws


def _fit(ws: Worksheet) -> None:
    widths: dict[int, float] = {}
    for row in ws.iter_rows():
        for cell in row:
            if cell.value is not None and not (cell.column == 1 and cell.font.size == 13):
                widths[cell.column] = max(widths.get(cell.column, 0), _width(cell.value))
    for col, w in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = min(60, max(8, w + 2))


def _rate(value: float | None) -> float | str:
    return "—" if value is None else round(value, 4)


def workbook(content: Mapping[str, Any], edition: Edition) -> Workbook:
    c = content
    wb = Workbook()
    assert wb.active is not None
    wb.remove(wb.active)
    mark = f"第 {edition.version} 版" + ("（草稿）" if edition.draft else "")

    measures = _sheet(
        wb,
        "指标",
        ("指标", "代码", "分子", "分母", "比率", "比率（%）", "方向"),
        [
            (
                r["name_zh"],
                r["key"],
                r["numerator"],
                r["denominator"],
                _rate(r["rate"]),
                percent(r["rate"]),
                "越低越好" if r["lower_is_better"] else "越高越好",
            )
            for r in c["measures"]
        ],
    )
    # The title and edition under the table, where they do not disturb the frozen header.
    tail = measures.max_row + 2
    _write(measures, tail, [c["title_zh"]])
    _write(measures, tail + 1, [f"{mark} · {edition.publication_id} · 截至 {str(c['as_of'])[:10]}"])
    if edition.changes:
        _write(measures, tail + 2, ["更正说明：" + "；".join(edition.changes)])
    anchor = c.get("audit_anchor")
    if anchor:
        line = f"审计日志链头 序号 {anchor['seq']} 哈希 {anchor['hash']} 签名 {anchor['signature']}"
        _write(measures, tail + 3, [line])

    _sheet(
        wb,
        "社区排名",
        ranking_headers(c),
        [
            (
                r["rank"],
                r["community_name_zh"],
                r["composite"] if r["composite"] is not None else number(None),
                r["issues_handled"],
                *(_rate(x["rate"]) for x in r["rates"]),
            )
            for r in c["rankings"]
        ],
    )

    ws = wb.create_sheet("异常")
    row = 1
    for key, caption, headers, _numeric in EXCEPTION_TABLES:
        row = _table(ws, row, caption, headers, exception_rows(c, key))
    ws.freeze_panes = "A3"  # the first table's header; the others' headers are in bold

    _sheet(wb, "减负台账", LEDGER_HEADERS, ledger_rows(c))
    # numbers as numbers in the ledger (view.ledger_rows formats them as text for the page)
    ledger = wb["减负台账"]
    for r in ledger.iter_rows(min_row=2, min_col=2, max_col=10):
        for cell in r:
            if isinstance(cell.value, str) and cell.value.isdigit():
                cell.value = int(cell.value)
    for sheet in wb.worksheets:
        _fit(sheet)
    wb.properties.title = str(c["title_zh"])
    wb.properties.creator = "红领益家 Hongling"
    return wb


def _fixed_time(as_of: str) -> datetime:
    return datetime.fromisoformat(as_of)


def deterministic(data: bytes, at: datetime) -> bytes:
    """The archive with its members' times and docProps/core.xml's dates set to `at`, members in their order."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    local = at.astimezone(SHANGHAI)
    date_time = (max(1980, local.year), local.month, local.day, local.hour, local.minute, local.second)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = body.decode()
                text = re.sub(r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)", rf"\g<1>{stamp}\g<3>", text)
                body = text.encode()
            member = zipfile.ZipInfo(info.filename, date_time=date_time)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o600 << 16
            dst.writestr(member, body)
    return out.getvalue()


def render_xlsx(content: Mapping[str, Any], edition: Edition) -> Rendition:
    at = _fixed_time(str(content["as_of"]))
    wb = workbook(content, edition)
    wb.properties.created = at.astimezone(UTC).replace(tzinfo=None)
    buffer = io.BytesIO()
    wb.save(buffer)
    return Rendition(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        f"{edition.stem}.xlsx",
        deterministic(buffer.getvalue(), at),
    )
