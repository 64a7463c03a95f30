"""The notice-board PDF checked as what people will see: its first page rendered to an image by pdfium (a
different PDF engine from the one that wrote it) — the paper's size, white paper with real ink, a dark title,
and Chinese really drawn with the embedded Noto CJK font, not boxes (tofu).

No stack needed, and nothing skipped: deploy/local/pdf.sh (run by make unit/test/bench/up) installs Pango
and the font, so a missing one fails here loudly."""

from __future__ import annotations

import io
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops
from pypdf import PdfReader

from services.publication import samples
from services.publication.channels import Edition, render

MM_PER_PT = 25.4 / 72
SCALE = 100 / 72  # 100 dpi
RELEASED = Edition("monthly:c-daimiao-01:2026-11:v1", 1, draft=False)


def count(image: Image.Image, low: int, high: int) -> int:
    """How many pixels of a greyscale image are in [low, high)."""
    return sum(image.histogram()[low:high])


def share(image: Image.Image, low: int, high: int) -> float:
    return count(image, low, high) / (image.width * image.height)


def pdf_of(content: dict[str, Any], channel: str) -> bytes:
    return render(content, channel, RELEASED).data


@pytest.fixture(scope="module")
def monthly_a4() -> bytes:
    return pdf_of(dict(samples.monthly()), "pdf_a4")


@pytest.mark.parametrize(
    ("kind", "channel", "size_mm"),
    [
        ("monthly", "pdf_a4", (210, 297)),
        ("monthly", "pdf_a3", (297, 420)),
        ("boards", "pdf_a3", (297, 420)),
        ("report", "pdf_a4", (210, 297)),
    ],
)
def test_the_page_is_its_paper_white_with_real_ink_and_a_dark_title(
    kind: str, channel: str, size_mm: tuple[int, int]
) -> None:
    content = {"monthly": samples.monthly, "boards": samples.boards, "report": samples.report}[kind]()
    doc = pdfium.PdfDocument(pdf_of(dict(content), channel))
    page = doc[0]
    width, height = page.get_size()
    assert abs(width * MM_PER_PT - size_mm[0]) <= 1 and abs(height * MM_PER_PT - size_mm[1]) <= 1
    image = page.render(scale=SCALE).to_pil().convert("L")
    white = share(image, 200, 256)
    ink = share(image, 0, 100)
    assert white > 0.7, f"{white:.0%} white"  # paper, not a dark or blank-grey page
    assert ink > 0.01, f"{ink:.1%} ink"  # and really printed on
    top = image.crop((0, 0, image.width, image.height // 8))
    title_ink = count(top, 0, 100)
    assert title_ink > 500, "the title region (top eighth) has no dark text"
    text = page.get_textpage().get_text_range()
    assert content["title_zh"] in text.replace("\r\n", "\n")


def test_the_pdf_embeds_noto_sans_cjk(monthly_a4: bytes) -> None:
    reader = PdfReader(io.BytesIO(monthly_a4))
    embedded = []
    for font in reader.pages[0]["/Resources"]["/Font"].values():
        font = font.get_object()
        descendant = font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
        descriptor = descendant["/FontDescriptor"].get_object()
        if any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")):
            embedded.append(str(font["/BaseFont"]))
    assert any("Noto-Sans-CJK-SC" in name for name in embedded), embedded
    info = reader.metadata
    assert info is not None and str(info.get("/CreationDate")).startswith("D:20261201000000+08'00")


def test_chinese_characters_are_drawn_as_glyphs_not_boxes(monthly_a4: bytes) -> None:
    page = pdfium.PdfDocument(monthly_a4)[0]
    textpage = page.get_textpage()
    text = textpage.get_text_range()
    title = samples.monthly()["title_zh"]
    start = text.index(title)
    # Two different characters of the title, at the same size: 岱 and 宗 (the first two).
    image = page.render(scale=SCALE).to_pil().convert("L")
    _, height = page.get_size()

    def glyph(index: int) -> Image.Image:
        left, _bottom, right, top = textpage.get_charbox(index)
        assert right - left > 10, "the title's characters are large type"
        box = (int(left * SCALE), int((height - top) * SCALE), int(left * SCALE) + 30, int((height - top) * SCALE) + 30)
        return image.crop(box)

    first, second = glyph(start), glyph(start + 1)
    for g in (first, second):
        assert count(g, 0, 100) > 30, "a character drew no ink"
    differing = count(ImageChops.difference(first, second), 101, 256)
    assert differing > 60, f"岱 and 宗 look alike ({differing} pixels differ): boxes, not glyphs?"
    assert title[0] != title[1]


def test_the_footer_prints_a_title_with_quotes_and_backslashes_as_it_is() -> None:
    # The footer's text is a CSS string (@page @bottom-center): the title goes in escaped, and comes out whole.
    content = dict(samples.monthly())
    content["title_zh"] = '岱宗社区 "公示" \\ </style> 2026年11月'
    page = pdfium.PdfDocument(pdf_of(content, "pdf_a4"))[0]
    last = page.get_textpage().get_text_range().replace("\r\n", "\n").strip().split("\n")[-1]
    assert last.startswith(content["title_zh"] + " · 第 1 版"), last
