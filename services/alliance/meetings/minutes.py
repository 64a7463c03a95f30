"""The minutes of a meeting as a Word document (docx, Chinese) that a community worker prints and has signed:
title, the community's name, time (Asia/Shanghai), place, the attendance table (units and people by name, who
attended for each unit by name; never contact data), each agenda item with its decision and votes, the action
items with their issue and task ids and the issue's status in Chinese, and the signature lines (主持人, 记录人,
参会代表签字)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt

from services.alliance.meetings import domain
from services.common.vocabulary import ISSUE_STATUS_ZH

SHANGHAI = ZoneInfo("Asia/Shanghai")
CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
FONT = "SimSun"
UNKNOWN_PERSON = "（未知人员）"  # who attended for a unit, when org no longer knows the person


@dataclass(frozen=True)
class Row:
    name: str
    kind: str
    status: str
    attendee: str = ""


@dataclass(frozen=True)
class Action:
    title: str
    issue_id: str
    task_id: str = ""
    status: str = ""


@dataclass(frozen=True)
class Item:
    title: str
    source: str
    outcome: str = ""
    voted: bool = False
    votes: tuple[int, int, int] = (0, 0, 0)
    note: str = ""
    actions: Sequence[Action] = field(default_factory=tuple)


@dataclass(frozen=True)
class MinutesIn:
    title: str
    community: str
    starts_at: datetime
    ends_at: datetime | None
    place: str
    status: str
    attendance: Sequence[Row]
    items: Sequence[Item]


def local(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y年%m月%d日 %H:%M")


def filename(title: str, starts_at: datetime) -> str:
    return f"minutes-{starts_at.astimezone(SHANGHAI).strftime('%Y%m%d')}.docx"


def render(m: MinutesIn) -> bytes:
    doc = Document()
    style = doc.styles["Normal"]
    style.font.name = FONT
    style.font.size = Pt(11)
    style.element.rPr.rFonts.set(qn("w:eastAsia"), FONT)
    head = doc.add_heading(f"{m.title} 会议纪要", level=1)
    head.alignment = WD_ALIGN_PARAGRAPH.CENTER
    when = local(m.starts_at) + (f" 至 {local(m.ends_at)}" if m.ends_at else "")
    doc.add_paragraph(f"社区：{m.community}")
    doc.add_paragraph(f"时间：{when}（北京时间）")
    doc.add_paragraph(f"地点：{'线上会议' if m.place == 'online' else m.place}")
    doc.add_paragraph(f"状态：{domain.STATUS_ZH.get(m.status, m.status)}")

    doc.add_heading("一、出席情况", level=2)
    counts = domain.attendance_counts(len(m.attendance), [r.status for r in m.attendance])
    doc.add_paragraph(
        f"应到{counts['invited']}，按时参会{counts[domain.ON_TIME]}，迟到{counts[domain.LATE]}，"
        f"请假{counts[domain.EXCUSED]}，缺席{counts[domain.ABSENT]}。"
    )
    table = doc.add_table(rows=1, cols=4)
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, ("受邀单位/个人", "类型", "出席情况", "参会人"), strict=True):
        cell.text = text
    for r in m.attendance:
        cells = table.add_row().cells
        cells[0].text = r.name
        cells[1].text = "成员单位" if r.kind == domain.UNIT else "个人"
        cells[2].text = domain.ATTENDANCE_ZH.get(r.status, "未记录")
        cells[3].text = r.attendee

    doc.add_heading("二、议题与决议", level=2)
    for n, item in enumerate(m.items, 1):
        doc.add_paragraph(f"议题{n}：{item.title}（来源：{domain.SOURCE_ZH.get(item.source, item.source)}）")
        if item.outcome:
            line = f"决议：{domain.OUTCOME_ZH.get(item.outcome, item.outcome)}"
            if item.voted:
                f, a, ab = item.votes
                line += f"（表决：赞成{f}票，反对{a}票，弃权{ab}票）"
            doc.add_paragraph(line)
        else:
            doc.add_paragraph("决议：尚未形成")
        if item.note:
            doc.add_paragraph(f"说明：{item.note}")
        for act in item.actions:
            follow = f"事项编号 {act.issue_id}"
            if act.task_id:
                follow += f"，任务编号 {act.task_id}"
            if act.status:
                follow += f"，当前状态 {ISSUE_STATUS_ZH.get(act.status, act.status)}"
            doc.add_paragraph(f"跟进事项：{act.title}（{follow}）", style="List Bullet")

    doc.add_heading("三、签字", level=2)
    doc.add_paragraph("主持人：______________________    日期：____________")
    doc.add_paragraph("记录人：______________________    日期：____________")
    doc.add_paragraph("参会代表签字：")
    for _ in range(3):
        doc.add_paragraph("______________________    ______________________    ______________________")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
