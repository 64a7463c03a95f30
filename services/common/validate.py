"""Checks of a command's fields that every service words the same way: a 400 (INVALID_ARGUMENT) naming the
field, in Chinese with English beside it. Domain modules call these; the rules (what a field may hold) stay
theirs."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument

# An id as the services make them (hex, uuid, "ic-…", "<task>:<attempt>"): printable ASCII, no spaces.
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,119}$")


def bad(field_name: str, zh: str, en: str) -> InvalidArgument:
    return InvalidArgument(f"{zh} ({field_name}: {en})", field=field_name)


def text(value: str, field_name: str, label_zh: str, max_len: int, *, required: bool = False) -> str:
    """A free text, trimmed: at most max_len characters, no control characters but newline and tab."""
    v = (value or "").strip()
    if required and not v:
        raise bad(field_name, f"请填写{label_zh}", "is required")
    if len(v) > max_len:
        raise bad(field_name, f"{label_zh}至多{max_len}个字符", f"at most {max_len} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in v):
        raise bad(field_name, f"{label_zh}不能包含控制字符", "must not contain control characters")
    return v


def ident(value: str, field_name: str, label_zh: str, *, required: bool = True, pattern: re.Pattern[str] = ID) -> str:
    """An id, trimmed; "" when absent and not required."""
    v = (value or "").strip()
    if not v:
        if required:
            raise bad(field_name, f"请填写{label_zh}", "is required")
        return ""
    if not pattern.match(v):
        raise bad(field_name, f"{label_zh}编号格式不正确", f"{v[:40]!r} is not an id")
    return v
