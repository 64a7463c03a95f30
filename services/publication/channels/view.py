"""What every human-readable channel shows, once: a content (services/publication/content.py) turned into
titled sections of key figures, paragraphs and tables of display strings.

The notice-board page (html.py, and pdf.py from it), the official-account article (article.py) and the WeChat
message (wechat.py) all render this view, so they say the same things in the same words and order; only the
medium differs. Values are formatted here (amounts in 元 from fen, rates as percentages, "—" for no facts) and
nothing else: escaping belongs to each medium (Jinja2's autoescape for HTML, none for plain text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.publication.content import KIND_ZH

NONE = "—"  # no facts in the period (a rate without a denominator, an average without ratings)

# The measures' Chinese names, for a formula's weights (which are keyed by the measure alone).
MEASURE_ZH = {
    "response": "响应率",
    "resolution": "解决率",
    "satisfaction": "满意率",
    "on_time": "按时办结率",
    "reopen": "返工率",
    "whistle": "吹哨报到率",
    "duties": "履职率",
}

VERIFY_ZH = (
    "核验方法：链头（序号、哈希）由审计密钥签名，任何人可用所附公钥按 Ed25519 验证对"
    "“hongling-audit-checkpoint:序号:哈希”的签名；以 python -m services.common.audit verify --heads "
    "本公示的 JSON 版，即可核对审计日志直至该序号未被改写。"
)


@dataclass(frozen=True)
class Table:
    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: frozenset[int] = frozenset()  # right-aligned columns
    empty: str = "本期无记录"
    label: frozenset[int] = frozenset()  # columns a one-line rendering (WeChat) shows with their header
    # Column widths in percent, for a table that can be long: a page then lays it out with fixed widths,
    # not by measuring every cell of every row (which, for 1,000 rows, is most of a PDF's render time).
    widths: tuple[int, ...] = ()


@dataclass(frozen=True)
class Section:
    title: str
    figures: tuple[tuple[str, str], ...] = ()  # key figures: (label, value)
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()


@dataclass(frozen=True)
class AnchorView:
    seq: str
    hash: str
    at: str
    signature: str
    public_key: str
    how_to_check: str = VERIFY_ZH


@dataclass(frozen=True)
class View:
    kind_zh: str
    title: str
    title_en: str
    scope_zh: str  # "岱庙街道 · 岱宗社区"
    period_zh: str
    as_of: str  # the content's as_of, as given (the period's end, +08:00)
    as_of_zh: str  # "2026-12-01"
    sections: tuple[Section, ...] = field(default=())
    anchor: AnchorView | None = None


# ---------------------------------------------------------------- formatting


def yuan(fen: int) -> str:
    """An amount in fen as 元 with two decimals and thousands separators (integers only: no float rounding)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def percent(rate: float | None) -> str:
    return NONE if rate is None else f"{rate * 100:.1f}%"


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return NONE
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def names(values: Sequence[str]) -> str:
    return "、".join(values) if values else NONE


def _rate_rows(rates: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, ...], ...]:
    return tuple(
        (
            str(r["name_zh"]),
            f"{number(r['numerator'])} / {number(r['denominator'])}",
            percent(r["rate"]),
            "越低越好" if r["lower_is_better"] else "越高越好",
        )
        for r in rates
    )


def _measures(caption: str, rates: Sequence[Mapping[str, Any]]) -> Table:
    return Table(caption, ("指标", "分子 / 分母", "比率", "方向"), _rate_rows(rates), frozenset({1, 2}))


# ---------------------------------------------------------------- the kinds


# How many of a month's issues a medium lists one by one (None: all). A compound's board and a group chat are
# read standing up: they list the first ones and say how many more there are and where (the article and the
# JSON list every one); the table by category above the list counts them all. With 1,000 issues a month a
# full list was 69 A4 pages of PDF (8 s of layout alone) and 45 WeChat messages, which nobody reads.
PRINT_ROWS = 40
CHAT_ROWS = 20


def view(content: Mapping[str, Any], *, issue_rows: int | None = None) -> View:
    """The content as sections; `issue_rows` caps a month's list of issues (see PRINT_ROWS)."""
    kind = str(content["kind"])
    if kind == "monthly":
        sections = _monthly(content, issue_rows)
    else:
        sections = {"boards": _boards, "report": _report}[kind](content)
    scope = str(content["scope_name_zh"])
    tenant = str(content["tenant_name_zh"])
    anchor = content.get("audit_anchor")
    return View(
        kind_zh=KIND_ZH[kind],
        title=str(content["title_zh"]),
        title_en=str(content["title_en"]),
        scope_zh=tenant if scope == tenant else f"{tenant} · {scope}",
        period_zh=str(content["period_zh"]),
        as_of=str(content["as_of"]),
        as_of_zh=str(content["as_of"])[:10],
        sections=sections,
        anchor=None
        if not anchor
        else AnchorView(
            seq=str(anchor["seq"]),
            hash=str(anchor["hash"]),
            at=str(anchor["at"]),
            signature=str(anchor["signature"]),
            public_key=str(anchor["public_key"]),
        ),
    )


def _status(issue: Mapping[str, Any]) -> str:
    """ "已验收" over "通过·超期": the status, then the verification and the overdue mark."""
    below = "·".join(x for x in (issue["verification_zh"], "超期" if issue["overdue"] else "") if x)
    return f"{issue['status_zh']}\n{below}" if below else str(issue["status_zh"])


def _by_category(issues: Sequence[Mapping[str, Any]]) -> Table:
    """Every issue of the month counted by category: received, done (or beyond), verified, the mean rating."""
    rows: dict[str, list[Any]] = {}
    for i in issues:
        row = rows.setdefault(str(i["category_zh"]), [0, 0, 0, []])
        row[0] += 1
        row[1] += 1 if i["done_on"] else 0
        row[2] += 1 if i["verification"] == "passed" else 0
        if i["rating"] is not None:
            row[3].append(int(i["rating"]))
    return Table(
        "分类统计",
        ("类别", "事项", "已办结", "验收通过", "平均评分"),
        tuple(
            (name, str(n), str(done), str(passed), number(sum(r) / len(r)) if r else NONE)
            for name, (n, done, passed, r) in sorted(rows.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ),
        frozenset({1, 2, 3, 4}),
        label=frozenset({1, 2, 3, 4}),
    )


def _by_unit(whistles: Sequence[Mapping[str, Any]]) -> Table:
    """Every whistle of the month counted by the unit called: in time, late, not answered (most called first)."""
    rows: dict[str, list[int]] = {}
    for w in whistles:
        for n, key in enumerate(("answered_in_time", "answered_late", "not_answered")):
            for name in w[key]:
                rows.setdefault(str(name), [0, 0, 0])[n] += 1
    return Table(
        "各单位报到",
        ("单位", "吹哨", "按时报到", "迟到", "未报到"),
        tuple(
            (name, str(sum(r)), str(r[0]), str(r[1]), str(r[2]))
            for name, r in sorted(rows.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        ),
        frozenset({1, 2, 3, 4}),
        label=frozenset({1, 2, 3, 4}),
    )


def _monthly(c: Mapping[str, Any], issue_rows: int | None = None) -> tuple[Section, ...]:
    s = c["summary"]
    overview = Section(
        "本月概况",
        figures=(
            ("受理事项", str(s["issues_received"])),
            ("办结事项", str(s["issues_handled"])),
            ("验收通过", str(s["verified"])),
            ("验收未通过", str(s["verification_failed"])),
            ("居民评价", str(s["rated"])),
            ("平均评分", number(s["rating_average"])),
            ("吹哨次数", str(s["whistles"])),
            ("召开会议", str(s["meetings"])),
            ("超期事项", str(s["overdue"])),
        ),
    )
    sections = [overview]
    p = c.get("problem_of_month")
    if p:
        sections.append(
            Section(
                "每月一题",
                paragraphs=(
                    f"本月议题：{p['topic_zh']}",
                    f"本月相关事项 {p['issues']} 件，已办理 {p['handled']} 件。",
                    *(f"· {a}" for a in p["actions_zh"]),
                ),
            )
        )
    issues = Table(
        "群众诉求办理",
        ("编号 · 呼叫", "类别 · 网格", "受理 → 办结", "状态 · 验收", "办理单位", "评分"),
        tuple(
            (
                str(i["ref"]) + (f"\n{i['call_type_zh']}" if i["call_type_zh"] else ""),
                f"{i['category_zh']}\n{i['grid_zh']}",
                f"{i['received_on'][5:]}\n→ {i['done_on'][5:] if i['done_on'] else NONE}",
                _status(i),
                names(i["handled_by"]),
                NONE if i["rating"] is None else str(i["rating"]),
            )
            for i in (c["issues"] if issue_rows is None else c["issues"][:issue_rows])
        ),
        frozenset({5}),
        label=frozenset({4, 5}),
        widths=(21, 15, 13, 15, 28, 8),
    )
    more = len(c["issues"]) - len(issues.rows)
    sections.append(
        Section(
            "群众诉求办理",
            paragraphs=(
                f"以下列出前 {len(issues.rows)} 件，另有 {more} 件未列出；全部事项见本月公示的公众号文章和 JSON 版。",
            )
            if more > 0
            else (),
            tables=(_by_category(c["issues"]), issues),
        )
    )
    listed_whistles = c["whistles"] if issue_rows is None else c["whistles"][:issue_rows]
    whistles = Table(
        "吹哨报到",
        ("编号", "日期", "类型 · 类别", "按时报到", "迟到", "未报到"),
        tuple(
            (
                str(w["ref"]),
                str(w["blown_on"]),
                f"{w['call_type_zh']} · {w['category_zh']}",
                names(w["answered_in_time"]),
                names(w["answered_late"]),
                names(w["not_answered"]),
            )
            for w in listed_whistles
        ),
        label=frozenset({3, 4, 5}),
        widths=(20, 12, 18, 18, 16, 16),
    )
    more_whistles = len(c["whistles"]) - len(listed_whistles)
    sections.append(
        Section(
            "吹哨报到",
            paragraphs=(
                f"以下列出前 {len(listed_whistles)} 次吹哨，另有 {more_whistles} 次未列出；各单位报到情况见上表。",
            )
            if more_whistles > 0
            else (),
            tables=(_by_unit(c["whistles"]), whistles),
        )
    )
    meetings = Table(
        "会议出席",
        ("日期", "会议", "地点", "应到", "按时", "迟到", "请假", "缺席"),
        tuple(
            (
                str(m["held_on"]),
                str(m["title_zh"]),
                str(m["place_zh"]),
                str(m["invited"]),
                str(m["on_time"]),
                str(m["late"]),
                str(m["excused"]),
                str(m["absent"]),
            )
            for m in c["meetings"]
        ),
        frozenset({3, 4, 5, 6, 7}),
        label=frozenset({3, 4, 5, 6, 7}),
    )
    decisions = Table(
        "会议决议",
        ("日期", "议题", "结果", "表决", "转办事项"),
        tuple(
            (
                str(m["held_on"]),
                str(d["item_zh"]),
                str(d["decision_zh"] or "未决"),
                str(d["votes"] or NONE),
                str(d["actions"]),
            )
            for m in c["meetings"]
            for d in m["decisions"]
        ),
        frozenset({4}),
        label=frozenset({4}),
    )
    sections.append(Section("联席会议", tables=(meetings, decisions)))
    funds = Table(
        "经费收支（元）",
        ("经费", "期初余额", "本月拨入", "本月支出", "期末余额"),
        tuple(
            (
                str(f["fund_zh"]),
                yuan(f["opening_fen"]),
                yuan(f["allocated_fen"]),
                yuan(f["spent_fen"]),
                yuan(f["closing_fen"]),
            )
            for f in c["funds"]
        ),
        frozenset({1, 2, 3, 4}),
        label=frozenset({1, 2, 3, 4}),
    )
    sections.append(Section("社区经费", tables=(funds,)))
    sections.append(Section("评价指标", tables=(_measures("评价指标", c["measures"]),)))
    return tuple(sections)


def explanation(entry: Mapping[str, Any]) -> str:
    """An entrant's score in words, one measure a line: how its rate was pooled, weighted and counted."""
    return "\n".join(
        f"{e['name_zh']} {number(e['numerator'])}/{number(e['denominator'])} → "
        f"{e['shrunk']:.3f}（榜均 {e['mean']:.3f}）× 权重 {number(e['weight'], 2)} = {e['points']:.2f} 分"
        for e in entry["explanation"]
    )


def _boards(c: Mapping[str, Any]) -> tuple[Section, ...]:
    f = c["formula"]
    weights = "、".join(f"{MEASURE_ZH.get(k, k)} {round(w * 100):d}%" for k, w in sorted(f["weights"].items()))
    paragraphs = [
        f"计分公式（{f['version']}）：{f['text_zh']}。",
        f"k = {number(f['k'])}；权重：{weights}。",
    ]
    if c.get("evaluation_changes"):
        paragraphs.append(f"评价更正（第 {c['evaluation_version']} 版）：{c['evaluation_changes']}")
    sections = [Section("计分办法", paragraphs=tuple(paragraphs))]
    for b in c["boards"]:
        table = Table(
            str(b["title_zh"]),
            ("名次", "名称", "得分", "工作量", "得分说明"),
            tuple(
                (str(e["rank"]), str(e["name"]), f"{e['score']:.1f}", str(e["workload"]), explanation(e))
                for e in b["entries"]
            ),
            frozenset({0, 2, 3}),
            empty="本季度暂无上榜",
            label=frozenset({2, 3}),
            widths=(7, 22, 9, 9, 53),
        )
        sections.append(Section(str(b["title_zh"]), tables=(table,)))
    return tuple(sections)


def ranking_headers(c: Mapping[str, Any]) -> tuple[str, ...]:
    first = c["rankings"][0]["rates"] if c["rankings"] else []
    return ("名次", "社区", "综合得分", "办结事项", *(str(r["name_zh"]) for r in first))


def ranking_rows(c: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    return tuple(
        (
            str(r["rank"]),
            str(r["community_name_zh"]),
            number(r["composite"]),
            str(r["issues_handled"]),
            *(percent(x["rate"]) for x in r["rates"]),
        )
        for r in c["rankings"]
    )


LEDGER_HEADERS = (
    "社区",
    "数据需求",
    "协助任务",
    "批准",
    "压减",
    "驳回",
    "拒绝",
    "其中考核任务",
    "配额",
    "已用",
    "原因",
)


def ledger_rows(c: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    return tuple(
        (
            str(line["community_name_zh"]),
            str(line["data_requests"]),
            str(line["assistance_tasks"]),
            str(line["approved"]),
            str(line["narrowed"]),
            str(line["rejected"]),
            str(line["refused"]),
            str(line["assessment_refused"]),
            str(line["quota_granted"]),
            str(line["quota_used"]),
            "；".join(f"{r['reason_zh']} ×{r['count']}" for r in line["reasons"]) or NONE,
        )
        for line in c["ledger"]
    )


EXCEPTION_TABLES = (
    ("overdue_tasks", "超期任务", ("社区", "编号", "类别", "应办结日期", "超期天数"), frozenset({4})),
    ("failed_verifications", "验收未通过", ("社区", "编号", "类别", "验收日期", "验收方式"), frozenset[int]()),
    ("silent_units", "吹哨未报到单位", ("社区", "单位", "被点名次数", "报到", "未报到"), frozenset({2, 3, 4})),
)


def exception_rows(c: Mapping[str, Any], key: str) -> tuple[tuple[str, ...], ...]:
    rows = c["exceptions"][key]
    if key == "overdue_tasks":
        return tuple(
            (r["community_name_zh"], r["ref"], r["category_zh"], r["due_on"], str(r["days_overdue"])) for r in rows
        )
    if key == "failed_verifications":
        return tuple((r["community_name_zh"], r["ref"], r["category_zh"], r["failed_on"], r["method_zh"]) for r in rows)
    return tuple(
        (r["community_name_zh"], r["name"], str(r["whistles"]), str(r["answered"]), str(r["missed"])) for r in rows
    )


def _report(c: Mapping[str, Any]) -> tuple[Section, ...]:
    columns = frozenset(range(2, len(ranking_headers(c))))
    rankings = Table("社区排名", ranking_headers(c), ranking_rows(c), columns, label=columns)
    exceptions = tuple(
        Table(caption, headers, exception_rows(c, key), numeric, label=numeric)
        for key, caption, headers, numeric in EXCEPTION_TABLES
    )
    ledger = Table(
        "社区减负台账", LEDGER_HEADERS, ledger_rows(c), frozenset(range(1, 10)), label=frozenset(range(1, 11))
    )
    return (
        Section("街道评价指标", tables=(_measures("街道评价指标", c["measures"]),)),
        Section("社区排名", tables=(rankings,)),
        Section("异常情况", tables=exceptions),
        Section(
            "减负台账",
            paragraphs=(
                "区级部门向社区提出的数据需求和协助任务：申报、批准、压减、驳回及拒绝（含考核任务）情况与配额使用。",
            ),
            tables=(ledger,),
        ),
    )
