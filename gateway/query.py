"""Query parameters declared where a route is defined: one declaration that checks and documents them.

    @bp.get(TASKS)
    @query(page_size(200), PAGE_TOKEN, text("status", "状态 Task status", enum=STATUSES))
    def list_tasks(tenant: str) -> Response:
        q = args()  # {"page_size": 50, "page_token": "", "status": ""}

Before the view runs every declared parameter is read from the query string and checked; a bad one is a
400 `invalid_argument` whose `field` names it (Chinese first, English beside). gateway/openapi.py documents
the same declarations (type, limits, enums, formats), so the document says exactly what is accepted, and
the limits live here only. An empty value (`?status=`) is the same as an absent one. Parameters a route
does not declare are left to the view (the org lists read theirs as filters: `filters()`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import g, request

from gateway.errors import ApiError
from gateway.protojson import SHANGHAI

TEXT_MAX = 200  # characters of one text parameter (ids, codes, names)
# Text parameters take no control characters (C0, DEL, C1: Unicode category Cc): never part of an id, a
# code or a search, and some stores refuse them (PostgreSQL has no NUL in text).
PRINTABLE = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
# A required text: printable, and not blank (a blank value reads as absent).
PRINTABLE_NOT_BLANK = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")
View = TypeVar("View", bound=Callable[..., Any])
Schema = dict[str, Any]


def bad(name: str, zh: str, en: str) -> ApiError:
    """A 400 naming the parameter: `{zh} ({en})`, as the API's other errors read."""
    return ApiError(400, "invalid_argument", f"{zh} ({name} {en})", field=name)


@dataclass(frozen=True)
class Param:
    """One query parameter: its JSON Schema (what the document says), how a present value is read, and
    the value when it is absent or empty."""

    name: str
    schema: Schema
    description: str
    read: Callable[[str], Any]
    default: Any = None
    required: bool = False

    def value(self, raw: str | None) -> Any:
        if raw is None or raw.strip() == "":
            if self.required:
                raise bad(self.name, "缺少必填参数", "is required")
            return self.default
        return self.read(raw.strip())

    def openapi(self) -> Schema:
        out: Schema = {"name": self.name, "in": "query", "description": self.description, "schema": self.schema}
        if self.required:
            out["required"] = True
        return out


def _printable(name: str, raw: str, max_length: int) -> str:
    if len(raw) > max_length:
        raise bad(name, f"内容过长，至多{max_length}个字符", f"is longer than {max_length} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in raw):
        raise bad(name, "不能包含控制字符", "must not contain control characters")
    return raw


def text(
    name: str,
    description: str,
    *,
    enum: Iterable[str] | None = None,
    max_length: int = TEXT_MAX,
    required: bool = False,
) -> Param:
    """A string: one of `enum` when given, else printable and at most max_length characters; default ""."""
    if enum is not None:
        values = tuple(enum)

        def one_of(raw: str) -> str:
            if raw not in values:
                raise bad(name, f"取值无效，可选：{'、'.join(values)}", f"must be one of {', '.join(values)}")
            return raw

        return Param(name, {"type": "string", "enum": list(values)}, description, one_of, "", required)
    schema: Schema = {"type": "string", "maxLength": max_length, "pattern": PRINTABLE}
    if required:
        schema = {**schema, "minLength": 1, "pattern": PRINTABLE_NOT_BLANK}
    text = f"{description} (≤ {max_length} characters, no control characters)"
    return Param(name, schema, text, lambda raw: _printable(name, raw, max_length), "", required)


MONTH = "^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"


def month(name: str, description: str) -> Param:
    """A local month YYYY-MM (Asia/Shanghai); "" when absent (the caller's default)."""

    def read(raw: str) -> str:
        if not re.fullmatch(MONTH, raw):
            raise bad(name, "月份格式须为YYYY-MM", "must be a month YYYY-MM")
        return raw

    return Param(name, {"type": "string", "pattern": MONTH}, f"{description} (YYYY-MM)", read, "")


QUARTER = "^[1-9][0-9]{3}Q[1-4]$"
PERIOD = "^[1-9][0-9]{3}(-(0[1-9]|1[0-2])|Q[1-4])$"


def matching(name: str, description: str, pattern: str, zh: str, en: str) -> Param:
    """A string the pattern matches (documented with it, so a generated request knows it); "" when absent.
    zh / en say what is expected, for the 400."""

    def read(raw: str) -> str:
        if not re.fullmatch(pattern, raw):
            raise bad(name, zh, en)
        return raw

    return Param(name, {"type": "string", "pattern": pattern}, description, read, "")


def quarter(name: str, description: str) -> Param:
    """A local quarter YYYYQn (Asia/Shanghai); "" when absent (the caller's default)."""
    return matching(name, f"{description} (YYYYQn)", QUARTER, "季度格式须为如2026Q4", "must be a quarter like 2026Q4")


def integer(name: str, description: str, *, lo: int, hi: int, default: int | None) -> Param:
    """A whole number lo..hi; `default` when absent."""

    def read(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise bad(name, "应为整数", "must be a whole number") from None
        if not lo <= value <= hi:
            raise bad(name, f"超出范围，应为{lo}..{hi}", f"must be {lo}..{hi}")
        return value

    schema: Schema = {"type": "integer", "minimum": lo, "maximum": hi}
    if default is not None:
        schema["default"] = default
    return Param(name, schema, description, read, default)


def boolean(name: str, description: str) -> Param:
    """true/false (also 1/0, yes/no); false when absent."""

    def read(raw: str) -> bool:
        value = raw.lower()
        if value in TRUE:
            return True
        if value in FALSE:
            return False
        raise bad(name, "应为true或false", "must be true or false")

    return Param(
        name, {"type": "boolean", "default": False}, f"{description}. Accepts true/false, 1/0, yes/no.", read, False
    )


def parse_time(value: Any, field: str = "time") -> datetime:
    """An RFC 3339 time (bodies and query strings); without an offset it is Asia/Shanghai time. 400 naming
    the field for anything else, and for a time that has no UTC equivalent (the year 1 east of Greenwich)."""
    if not isinstance(value, str):
        raise bad(field, "时间格式错误", "must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.strip().upper())  # RFC 3339 allows a lower-case t and z
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=SHANGHAI)
        parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad(
            field, "时间格式错误", f"{value!r} is not an RFC 3339 time such as 2025-05-01T09:30:00+08:00"
        ) from None
    return parsed


def timestamp(name: str, description: str) -> Param:
    """An RFC 3339 time, as an aware datetime; None when absent."""
    schema = {"type": "string", "format": "date-time"}
    return Param(
        name, schema, f"{description} (RFC 3339; no offset = Asia/Shanghai)", lambda raw: parse_time(raw, name)
    )


def page_size(hi: int, default: int) -> Param:
    """The page size of a list whose service takes 1..hi (0: its default)."""
    text = f"每页条数 Items per page, 1..{hi}; 0 or absent: {default}"
    return replace(integer("page_size", text, lo=0, hi=hi, default=None), default=0)  # 0: the service's default


# The tenant a district-wide route (ops' reads) is about: required, and in the caller's scope.
SCOPE_TENANT = text("tenant", "街道/镇 The tenant (in the token's scope)", required=True)
PAGE_TOKEN = text(
    "page_token",
    "翻页 The next_page_token of the previous page (opaque; one not given out by this API is 400)",
    max_length=1000,
)


def query(*params: Param) -> Callable[[View], View]:
    """Declare a view's query parameters: checked before it runs (read them with args()), documented by
    gateway/openapi.py."""
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise RuntimeError(f"a query parameter is declared twice: {names}")

    def wrap(view: View) -> View:
        @functools.wraps(view)
        def checked(*a: Any, **kw: Any) -> Any:
            g.query = read(params)
            return view(*a, **kw)

        checked.__query__ = params  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return wrap


def declared(view: Callable[..., Any] | None) -> tuple[Param, ...]:
    """The query parameters a view declares (none for a view without @query)."""
    found: tuple[Param, ...] = getattr(view, "__query__", ())
    return found


def read(params: Iterable[Param]) -> dict[str, Any]:
    """The declared parameters' values from this request's query string (400 naming a bad one)."""
    out: dict[str, Any] = {}
    for p in params:
        values = request.args.getlist(p.name)
        if len(values) > 1:
            raise bad(p.name, "参数重复，只能给一次", "is given more than once")
        out[p.name] = p.value(values[0] if values else None)
    return out


def args() -> dict[str, Any]:
    """The values of the view's declared parameters (read by @query before the view ran)."""
    found: dict[str, Any] = g.query
    return found


def filters(allowed: Collection[str], skip: Collection[str], *, max_length: int = TEXT_MAX) -> dict[str, str]:
    """The query string's other parameters as exact-match filters: each one of `allowed`, given once, a
    printable text; 400 naming it as `filter.<key>` otherwise. `skip`: parameters that are not filters."""
    out: dict[str, str] = {}
    for key in request.args:
        if key in skip:
            continue
        where = f"filter.{key}"
        if key not in allowed:
            keys = ", ".join(sorted(allowed)) or "none"
            raise ApiError(
                400,
                "invalid_argument",
                f"未知的查询参数或筛选条件 {key!r} (unknown query parameter or filter; filters here: {keys})",
                field=where,
            )
        values = request.args.getlist(key)
        if len(values) != 1:
            raise bad(where, "筛选条件重复", "is given more than once")
        out[key] = _printable(where, values[0].strip(), max_length)
    return out


def filter_params(keys: Iterable[str], description: str = "筛选 Exact match") -> list[Param]:
    """The documented form of filters(): one optional text parameter per key."""
    return [text(k, f"{description}: {k}") for k in keys]
