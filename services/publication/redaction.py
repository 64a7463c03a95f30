"""Redaction of the free text a worker typed for the public (a meeting's title, an agenda item, a place): mobile
and landline numbers, ID numbers and exact home addresses are masked on their way into a publication's
content. Residents' own text never enters a publication at all (services/publication/content.py), so this is
the second line, for slips in text meant to be public ("联系王师傅 13912345678", "3号楼2单元501室").

What is masked, and as what:
- an 18-digit resident ID number (the last may be X) or a 15-digit old one → "［身份证号已隐去］";
- a mainland mobile number (1[3-9] + 9 digits, optionally +86 / spaced / dashed) → "［电话已隐去］";
- a landline (0 + area code, dash, 7–8 digits) → "［电话已隐去］";
- a door: building + unit + room ("3号楼2单元501室", "5栋1单元302", "12幢301室") → the building alone
  ("3号楼"), which names a place on the compound's board without pointing at a household.
Digits inside longer digit runs are never taken for a phone (an order number stays as it is).
"""

from __future__ import annotations

import re

ID_MASK = "［身份证号已隐去］"
PHONE_MASK = "［电话已隐去］"

_ID = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)0\d{2,3}[\s-]\d{7,8}(?!\d)")
_BUILDING = r"(\d+|[一二三四五六七八九十]+)\s*(?:号楼|号|栋|幢|座)"
_DOOR = re.compile(
    _BUILDING
    + r"\s*(?:(?:\d+|[一二三四五六七八九十]+)\s*单元)?\s*(?:-?\s*\d{2,4}(?:室|号|户)?)"
    + r"|"
    + _BUILDING
    + r"\s*(?:\d+|[一二三四五六七八九十]+)\s*单元"
)


def _building(match: re.Match[str]) -> str:
    number = match.group(1) or match.group(2) or ""
    return f"{number}号楼"


_WIDE = str.maketrans("０１２３４５６７８９Ｘｘ＋－", "0123456789Xx+-")


def redact(text: str) -> str:
    """The text with phones, ID numbers and doors masked (full-width digits read as digits)."""
    out = text.translate(_WIDE)
    out = _ID.sub(ID_MASK, out)
    out = _MOBILE.sub(PHONE_MASK, out)
    out = _LANDLINE.sub(PHONE_MASK, out)
    return _DOOR.sub(_building, out)
