"""The publication's channels (services/publication/channels): every channel of every kind renders the
samples, says the edition, escapes every value, and gives the same bytes for the same content and edition.
The WeChat split is tested at its edges; the PDF as an image in test_publication_pdf.py."""

from __future__ import annotations

import copy
import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from typing import Any

import pytest
from openpyxl import load_workbook

from services.publication import samples
from services.publication.channels import CHANNELS, Edition, FeedEntry, feed, render
from services.publication.channels.view import CHAT_ROWS, PRINT_ROWS
from services.publication.channels.wechat import LIMIT, split

ATOM = "{http://www.w3.org/2005/Atom}"


def contents() -> dict[str, dict[str, Any]]:
    return {
        "monthly": dict(samples.monthly()),
        "boards": dict(samples.boards("c-daimiao-01")),
        "boards_tenant": dict(samples.boards()),
        "report": dict(samples.report()),
    }


RELEASED = Edition("monthly:c-daimiao-01:2026-11:v1", 1, draft=False)
CORRECTION = Edition(
    "monthly:c-daimiao-01:2026-11:v2",
    2,
    corrects_version=1,
    changes=("事项 iss-2611000003 的办结日期由 11-04 更正为 11-05", "经费支出更正为 12,345.00 元"),
    draft=True,
)
ALL = [(name, ch) for name, c in contents().items() for ch in CHANNELS[c["kind"]]]


@pytest.mark.parametrize(("name", "channel"), ALL)
def test_every_channel_of_every_kind_renders_its_content(name: str, channel: str) -> None:
    content = contents()[name]
    r = render(content, channel, RELEASED)
    assert r.data and r.filename.isascii() and r.filename.startswith(RELEASED.stem)
    if channel in ("html_a4", "html_a3", "article", "wechat"):
        text = r.data.decode()
        assert content["title_zh"] in text
        assert "第 1 版" in text and "草稿" not in text
        if content["kind"] == "boards":
            for board in content["boards"]:
                assert board["title_zh"] in text
                for entry in board["entries"]:
                    assert entry["name"] in text
            assert "贝叶斯平均" in text
        if content["kind"] == "monthly":
            assert all(i["ref"] in text for i in content["issues"])
            assert "50,000.00" in text  # the fund's opening balance, from fen
        if content["kind"] == "report":
            assert "东岳书画院" in text and "考核任务，不得下派" in text
    if channel.startswith("pdf"):
        assert r.data.startswith(b"%PDF-") and r.content_type == "application/pdf"


@pytest.mark.parametrize(("name", "channel"), [("monthly", "html_a4"), ("monthly", "html_a3"), ("report", "html_a4")])
def test_the_page_prints_the_audit_anchor_in_full_with_how_to_check_it(name: str, channel: str) -> None:
    html = render(contents()[name], channel, RELEASED).data.decode()
    anchor = samples.ANCHOR
    for value in (str(anchor["seq"]), anchor["hash"], anchor["signature"], anchor["public_key"]):
        assert value in html
    assert "核验方法" in html and "verify --heads" in html


def test_the_page_is_large_type_print_css_for_its_paper() -> None:
    a4 = render(contents()["monthly"], "html_a4", RELEASED).data.decode()
    a3 = render(contents()["monthly"], "html_a3", RELEASED).data.decode()
    assert "size: A4" in a4 and "size: A3" in a3
    body = re.compile(r"html \{[^}]*font-size: (\d+)pt")
    assert int(body.search(a4)[1]) >= 14  # type: ignore[index]
    assert int(body.search(a3)[1]) > int(body.search(a4)[1])  # type: ignore[index]
    assert '"Noto Sans CJK SC"' in a4
    assert '<meta name="dcterms.created" content="2026-12-01T00:00:00+08:00">' in a4


@pytest.mark.parametrize("channel", ["html_a4", "article", "wechat"])
def test_a_correction_lists_its_changes_first_and_a_draft_is_marked(channel: str) -> None:
    text = render(contents()["monthly"], channel, CORRECTION).data.decode()
    assert "第 2 版" in text and "更正第 1 版" in text and "草稿" in text
    first_section = text.index("本月概况")
    for change in CORRECTION.changes:
        assert 0 <= text.index(change) < first_section
    if channel == "html_a4":
        assert "更正说明" in text and 'class="watermark"' in text
        assert 'class="watermark"' not in render(contents()["monthly"], channel, RELEASED).data.decode()


EVIL = "<script>alert('x')</script>\"'&"


def planted() -> dict[str, dict[str, Any]]:
    c = contents()
    monthly = copy.deepcopy(c["monthly"])
    monthly["title_zh"] = "岱宗社区 " + EVIL + "\\"
    monthly["meetings"][0]["title_zh"] = EVIL
    monthly["issues"][0]["handled_by"] = [EVIL]
    boards = copy.deepcopy(c["boards"])
    boards["boards"][0]["entries"][0]["name"] = EVIL
    report = copy.deepcopy(c["report"])
    report["ledger"][0]["community_name_zh"] = '=HYPERLINK("http://x")' + EVIL
    report["exceptions"]["silent_units"][0]["name"] = EVIL
    return {"monthly": monthly, "boards": boards, "report": report}


@pytest.mark.parametrize("name", ["monthly", "boards", "report"])
def test_every_value_is_escaped_in_html(name: str) -> None:
    content = planted()[name]
    for channel in [ch for ch in CHANNELS[content["kind"]] if ch.startswith("html") or ch == "article"]:
        html = render(content, channel, RELEASED).data.decode()
        assert "<script" not in html.lower(), channel
        assert "&lt;script&gt;" in html, channel
        assert html.count("</style>") <= 1  # the title in the page's CSS (its footer) cannot close the style


def test_plain_text_channels_carry_the_text_as_it_is() -> None:
    text = render(planted()["monthly"], "wechat", RELEASED).data.decode()
    assert EVIL in text  # plain text: shown as typed, never interpreted


def test_the_workbook_never_turns_a_name_into_a_formula() -> None:
    data = render(planted()["report"], "xlsx", RELEASED).data
    wb = load_workbook(io.BytesIO(data))
    cell = wb["减负台账"]["A2"]
    assert cell.data_type == "s" and str(cell.value).startswith("=HYPERLINK")


def test_the_article_is_self_contained_with_inline_styles_only() -> None:
    for name in ("monthly", "boards"):
        html = render(contents()[name], "article", RELEASED).data.decode()
        assert "<style" not in html and "<script" not in html and "<link" not in html and "class=" not in html
        assert not re.search(r"""(src|href)\s*=""", html) and "url(" not in html
        assert "<table" in html and 'style="' in html


def test_the_wechat_message_is_plain_text_in_numbered_parts_within_the_limit() -> None:
    r = render(samples.monthly(300), "wechat", RELEASED)
    assert len(r.parts) == 2
    n = len(r.parts)
    for i, part in enumerate(r.parts, 1):
        assert part.startswith(f"【{i}/{n}】") and len(part) <= LIMIT
        assert not re.search(r"<[a-z/]|^#|\]\(|^```", part, re.M)  # no HTML, no markdown
    assert r.data == "\n\n".join(r.parts).encode()
    # the first CHAT_ROWS issues listed, each line whole in exactly one part; the rest counted, not listed
    assert "iss-2611000299" not in r.data.decode() and f"另有 {300 - CHAT_ROWS} 件未列出" in r.data.decode()
    for ref in ("iss-2611000000", f"iss-26110000{CHAT_ROWS - 1:02d}"):
        holders = [p for p in r.parts if ref in p]
        assert len(holders) == 1
        line = next(x for x in holders[0].split("\n") if ref in x)
        assert line.endswith(("评分 5", "评分 4", "王**", "李**", "协会", "卫生院", "服务队"))
    assert "响应率 · 46 / 50 · 92.0%" in r.data.decode()


def test_a_long_month_is_listed_in_full_online_and_counted_on_the_board() -> None:
    month = samples.monthly(1000)
    article = render(month, "article", RELEASED).data.decode()
    page = render(month, "html_a4", RELEASED).data.decode()
    assert "iss-2611000999" in article and "iss-2611000999" not in page
    assert f"以下列出前 {PRINT_ROWS} 件，另有 {1000 - PRINT_ROWS} 件未列出" in page
    # the table by category counts every issue, listed or not
    assert "分类统计" in page and ">200<" in page.replace(" ", "")


def test_a_month_of_many_whistles_counts_every_unit_and_lists_the_first() -> None:
    month = samples.monthly(3)
    one = month["whistles"][0]
    month["whistles"] = [{**one, "ref": f"wh-{n:04d}"} for n in range(100)]
    page = render(month, "html_a4", RELEASED).data.decode()
    assert "wh-0039" in page and "wh-0040" not in page
    assert f"另有 {100 - PRINT_ROWS} 次未列出" in page and "各单位报到" in page
    # the table by unit counts all 100 calls: the unit that answered late in each, 100 times
    by_unit = page[page.index("<caption>各单位报到") :]
    row = by_unit[by_unit.index("财源街道卫生院") :][:400].replace(" ", "")
    assert ">100<" in row and row.count(">0<") >= 2
    assert "wh-0099" in render(month, "article", RELEASED).data.decode()


def test_wechat_split_edges() -> None:
    assert split([]) == []
    exact = ["一" * (LIMIT - 6), "二" * 5]  # + 1 newline = LIMIT: one message, unnumbered
    assert split(exact) == ["\n".join(exact)]
    over = ["一" * (LIMIT - 5), "二" * 5]  # one character more: two numbered parts, lines whole
    assert split(over) == ["【1/2】" + over[0], "【2/2】" + over[1]]
    # a line longer than a message is cut at character boundaries, the prefix within the limit
    long = "长" * (3 * LIMIT)
    parts = split(["前言", long, "后记"])
    assert all(len(p) <= LIMIT for p in parts)
    body = "".join(re.sub(r"^【\d+/\d+】", "", p) for p in parts)
    assert body == "前言" + long + "\n后记" or body.replace("\n", "") == "前言" + long + "后记"
    assert parts[0] == f"【1/{len(parts)}】前言"  # the short line is not glued to a cut piece
    # no part starts or ends with a blank line
    blanky = ["甲" * 1200, "", "乙" * 1200, "", "", "丙" * 10]
    for p in split(blanky):
        text = re.sub(r"^【\d+/\d+】", "", p)
        assert text and not text.startswith("\n") and not text.endswith("\n")
    # ten or more parts: the wider prefix still fits
    many = split(["字" * 1000] * 40)
    assert len(many) >= 10 and all(len(p) <= LIMIT for p in many) and many[9].startswith(f"【10/{len(many)}】")
    with pytest.raises(ValueError):
        split(["x" * 10], limit=3)


def test_the_workbook_has_its_sheets_with_chinese_headers_and_frozen_rows() -> None:
    wb = load_workbook(io.BytesIO(render(contents()["report"], "xlsx", RELEASED).data))
    assert wb.sheetnames == ["指标", "社区排名", "异常", "减负台账"]
    assert [c.value for c in wb["指标"][1]][:3] == ["指标", "代码", "分子"]
    assert wb["社区排名"]["B2"].value == "岱宗社区" and wb["社区排名"]["A1"].value == "名次"
    assert wb["减负台账"]["K1"].value == "原因" and wb["减负台账"]["B2"].value == 3
    anomalies = [c.value for row in wb["异常"].iter_rows() for c in row if c.value]
    for title in ("超期任务", "验收未通过", "吹哨未报到单位", "tsk-0042", "tsk-0031", "东岳书画院"):
        assert title in anomalies
    for ws in wb.worksheets:
        assert ws.freeze_panes in ("A2", "A3")
        assert ws.column_dimensions["A"].width >= 8


def test_the_workbook_carries_no_wall_clock() -> None:
    data = render(contents()["report"], "xlsx", RELEASED).data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert {i.date_time for i in z.infolist()} == {(2026, 12, 1, 0, 0, 0)}
        core = z.read("docProps/core.xml").decode()
    assert core.count("2026-11-30T16:00:00Z") == 2


RENDER_TWICE = """
import hashlib, sys
from services.publication import samples
from services.publication.channels import Edition, render
c = {"monthly": samples.monthly(), "boards": samples.boards(), "report": samples.report()}[sys.argv[1]]
e = Edition("x:y:2026-11:v3", 3, 2, ("改了一处",), False)
print(hashlib.sha256(render(c, sys.argv[2], e).data).hexdigest())
"""


@pytest.mark.parametrize(("name", "channel"), [("monthly", "pdf_a4"), ("boards", "pdf_a3"), ("report", "xlsx")])
def test_the_same_content_gives_the_same_bytes_in_separate_processes(name: str, channel: str) -> None:
    digests = {
        subprocess.run(
            [sys.executable, "-c", RENDER_TWICE, name, channel], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1


def test_every_channel_is_deterministic_in_process() -> None:
    for name, channel in ALL:
        if channel.startswith("pdf"):
            continue  # in separate processes above
        c = contents()[name]
        first = render(c, channel, CORRECTION)
        assert first == render(copy.deepcopy(c), channel, CORRECTION), (name, channel)


def test_an_unknown_channel_is_refused_naming_the_kinds_channels() -> None:
    with pytest.raises(ValueError, match="xlsx"):
        render(contents()["monthly"], "xlsx", RELEASED)


def entries() -> list[FeedEntry]:
    return [
        FeedEntry(
            "monthly:c-daimiao-01:2026-10:v1",
            "岱宗社区 2026年10月 一月一公示",
            "2026-10",
            1,
            "2026-11-02T01:00:00Z",
            "办结 96 件 & <更多>",
            "https://hl.example/public/daimiao/publications/monthly:c-daimiao-01:2026-10:v1",
        ),
        FeedEntry(
            "monthly:c-daimiao-01:2026-11:v1",
            "岱宗社区 2026年11月 一月一公示",
            "2026-11",
            1,
            "2026-12-02T01:00:00Z",
            "办结 120 件",
            "https://hl.example/public/daimiao/publications/monthly:c-daimiao-01:2026-11:v1",
            tenant="daimiao",
        ),
    ]


def test_the_atom_feed_has_rfc_4287s_required_elements_newest_first() -> None:
    self_link = "https://hl.example/api/v1/public/tenants/daimiao/feed.atom"
    data = feed("urn:hongling:feed:daimiao", "岱庙街道 公示", entries(), self_link)
    root = ET.fromstring(data)
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}id") == "urn:hongling:feed:daimiao"
    assert root.findtext(f"{ATOM}title") == "岱庙街道 公示"
    assert root.findtext(f"{ATOM}updated") == "2026-12-02T01:00:00Z"
    assert root.find(f"{ATOM}author/{ATOM}name") is not None
    self_el = root.find(f"{ATOM}link[@rel='self']")
    assert self_el is not None and self_el.get("href") == self_link
    found = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}updated") for e in found] == ["2026-12-02T01:00:00Z", "2026-11-02T01:00:00Z"]
    for e in found:
        ident = e.findtext(f"{ATOM}id") or ""
        assert re.fullmatch(r"urn:hongling:publication:[A-Za-z0-9:._~%-]+", ident)
        assert e.findtext(f"{ATOM}title") and e.findtext(f"{ATOM}summary") is not None
        alt = e.find(f"{ATOM}link[@rel='alternate']")
        assert alt is not None and (alt.get("href") or "").startswith("https://")
    assert found[0].findtext(f"{ATOM}id") == "urn:hongling:publication:daimiao:monthly:c-daimiao-01:2026-11:v1"
    assert found[1].findtext(f"{ATOM}summary") == "办结 96 件 & <更多>"  # escaped in XML, intact when read
    assert feed("urn:hongling:feed:daimiao", "岱庙街道 公示", entries()[::-1], self_link) == data
    empty = ET.fromstring(feed("daimiao", "空", [], self_link))
    assert empty.findtext(f"{ATOM}updated") == "1970-01-01T00:00:00Z"
    assert empty.findtext(f"{ATOM}id") == "urn:hongling:feed:daimiao"


def test_json_is_canonical_and_carries_the_edition() -> None:
    r = render(contents()["monthly"], "json", CORRECTION)
    assert r.data == render(contents()["monthly"], "json", CORRECTION).data
    assert b'"changes":["' in r.data and r.data.endswith(b"\n")


def quiet() -> dict[str, dict[str, Any]]:
    """A month, a quarter and a report with nothing in them: every channel still renders, saying so."""
    monthly = copy.deepcopy(contents()["monthly"])
    monthly.update(
        issues=[], whistles=[], meetings=[], funds=[], problem_of_month=None, measures=samples.rates(None, None)
    )
    monthly["summary"]["rating_average"] = None
    boards = copy.deepcopy(contents()["boards"])
    for board in boards["boards"]:
        board["entries"] = []
    report = copy.deepcopy(contents()["report"])
    report.update(
        rankings=[], ledger=[], exceptions={"overdue_tasks": [], "failed_verifications": [], "silent_units": []}
    )
    return {"monthly": monthly, "boards": boards, "report": report}


@pytest.mark.parametrize("name", ["monthly", "boards", "report"])
def test_an_empty_period_renders_in_every_channel(name: str) -> None:
    content = quiet()[name]
    for channel in CHANNELS[content["kind"]]:
        r = render(content, channel, RELEASED)
        assert r.data, channel
        if channel in ("html_a4", "article", "wechat"):
            text = r.data.decode()
            assert "本期无记录" in text or "本季度暂无上榜" in text, channel
