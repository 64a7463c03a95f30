"""Spreadsheet import and export (xlsx or CSV) for member units, people and the three lists.

Import reads the first worksheet (or the CSV), maps its headers — Chinese, the English field names,
or the bilingual "单位名称 name_zh" headers an export writes — to fields, and turns every row into the
fields the API takes. Every row is then checked with the handlers' own validation and reference
checks (handlers.check), against the record it would update, before anything is written: a file
with any bad row writes nothing and reports each bad row as (row, column as written, reason).

A good file is upserted row by row: by `id`, or for a row without one by its natural key (the unit's
community + name, the person's ID number or community + name, the entry's owner + skill/service/
resource), falling back to an id derived from that key, so the same file imported twice finds the
same records. A row equal to what is stored is counted unchanged and not written (no new version, no
events). Columns missing from the sheet keep their stored values; masked personal data (138****5678,
as exports carry it) keeps the stored value.

Export writes every record a List filter selects, personal data masked, with bilingual headers.

A community worker (社区范围, services/common/community.py) imports rows of its own community only: a row
placing a record in another community is a bad row (`community_out_of_scope`), a row naming another
community's record by id is one whose record is not found; its exports hold its own community's records.

Parsing (read_table, parse_header, parse_row and the cell helpers) needs no storage and is tested on
its own; import_sheet and export_sheet run inside a call bound to a tenant. An import run as a background
job (services/org/jobs.py) passes an ImportProgress, told of every row checked and written.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Literal, Protocol

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from services.common.context import require_tenant
from services.common.errors import Aborted, HonglingError, InvalidArgument
from services.common.protect import Protector
from services.org import domain, handlers
from services.org.documents import OrgDocument

log = logging.getLogger(__name__)

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
MAX_COLUMNS = 200
# An xlsx is a zip archive: refuse one that expands beyond this (a "zip bomb") before parsing it.
MAX_XLSX_EXPANDED = 100 * 1024 * 1024
# Errors listed in one answer; the rest are counted (keeps the answer far below gRPC's 4 MB).
MAX_LISTED_ERRORS = 5_000
PROGRESS_EVERY = 1_000
FORMATS: dict[str, str] = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the old binary .xls
# A cell starting with one of these is a formula to Excel; exported text cells get a leading "'"
# in CSV (and are written as plain strings in xlsx) so a sheet can never run what a user typed.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
LIST_SPLIT = re.compile(r"[;；、,，\n]+")
QUOTES = str.maketrans("", "", "\"'“”‘’「」『』")  # ASCII and full-width quotes users type around names
WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_ZH_DAY = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 7, "天": 7, "七": 7}
_EN_DAY = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_DAY = (
    r"(?:周|星期|礼拜)[一二三四五六日天七]|[1-7]"
    r"|mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?|thu(?:rs|rsday)?|fri(?:day)?|sat(?:urday)?|sun(?:day)?"
)
_DAYS_RE = re.compile(rf"^({_DAY})(?:\s*[-~～至到—–]\s*({_DAY}))?$", re.IGNORECASE)
_HOURS_RE = re.compile(r"(\d{1,2})\s*[:：]\s*(\d{2})\s*[-~～至到—–]\s*(\d{1,2})\s*[:：]\s*(\d{2})\s*$")
_DATE_RE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_COMPACT_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")

Kind = Literal["text", "id", "ids", "enum", "enums", "terms", "int", "number", "date", "availability", "personal"]


# ---------------------------------------------------------------- public results


@dataclass
class RowError:
    row: int
    column: str
    reason: str


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0  # every error found (errors lists the first MAX_LISTED_ERRORS)


class ImportProgress(Protocol):
    """Told how far an import has got (services/org/jobs.py keeps a job's progress with it). Each call may
    raise to stop the import where it is (the rows written so far stay written)."""

    def read(self, total: int) -> None:
        """The file is read: it has `total` data rows; checking starts."""

    def checked(self, count: int) -> None:
        """`count` rows are checked (of total)."""

    def writing(self, done: int) -> None:
        """Every row is good and the writing starts; `done` rows need nothing written (unchanged)."""

    def written(self, done: int) -> None:
        """`done` rows are written or need nothing written (of total)."""


@dataclass
class SheetFile:
    filename: str
    content_type: str
    content: bytes
    rows: int


# ---------------------------------------------------------------- what each sheet holds


@dataclass(frozen=True)
class Column:
    key: str  # the API field; dotted for a person's nested fields (party.work_unit)
    zh: str  # the Chinese header an export writes (with the key: "单位名称 name_zh")
    kind: Kind = "text"
    aliases: tuple[str, ...] = ()
    choices: Mapping[str, Any] | None = None  # code -> Chinese name, or (Chinese, English)
    required: bool = False

    @property
    def title(self) -> str:
        return f"{self.zh} {self.key}"


@dataclass(frozen=True)
class Sheet:
    entity: str  # the plural the API takes: member_units
    spec: str  # the handlers' entity: member_unit
    title: str  # the worksheet's name on export
    id_prefix: str  # for ids derived from the natural key
    natural_key: tuple[str, ...]  # fields that identify a record when a row has no id
    columns: tuple[Column, ...]

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)


ID = Column("id", "编号", "id", ("ID", "编码"))
SHEETS: dict[str, Sheet] = {
    s.entity: s
    for s in (
        Sheet(
            "member_units",
            "member_unit",
            "成员单位",
            "unit",
            ("community_id", "name_zh"),
            (
                Column("id", "编号", "id", ("ID", "编码", "单位编号")),
                Column("community_id", "社区编号", "id", ("社区", "社区ID", "所属社区"), required=True),
                Column("name_zh", "单位名称", aliases=("名称", "单位"), required=True),
                Column("kind", "类型", "enum", ("单位类型", "单位性质"), domain.UNIT_KINDS, required=True),
                Column("contact_name", "联系人"),
                Column("contact_phone", "联系电话", "personal", ("电话", "联系方式", "手机号")),
                Column("serves_grid_ids", "服务网格", "ids", ("服务网格编号", "网格")),
                Column("serves_compound_ids", "服务小区", "ids", ("服务小区编号", "小区")),
                Column("joined_on", "加入日期", "date", ("报到日期", "入盟日期"), required=True),
                Column("left_on", "退出日期", "date"),
                Column("duties_accepted", "承诺职责", "enums", ("职责", "认领职责"), domain.DUTIES),
                Column("public_name", "公示名称", aliases=("公示名", "公开名称")),
            ),
        ),
        Sheet(
            "people",
            "person",
            "人员",
            "person",
            ("community_id", "name_zh"),
            (
                Column("id", "编号", "id", ("ID", "编码", "人员编号")),
                Column("community_id", "社区编号", "id", ("社区", "社区ID", "所属社区"), required=True),
                Column("grid_id", "网格编号", "id", ("网格", "所在网格")),
                Column("name_zh", "姓名", aliases=("名字",), required=True),
                Column("roles", "身份", "enums", ("角色", "人员类别"), domain.ROLES, required=True),
                Column("phone", "手机号", "personal", ("联系电话", "电话", "手机", "手机号码")),
                Column("id_number", "身份证号", "personal", ("身份证", "身份证号码", "公民身份号码")),
                Column("party.home_community_id", "报到社区", "id", ("双报到社区",)),
                Column("party.work_unit", "工作单位"),
                Column("party.dual_report_registered_on", "报到日期", "date", ("双报到日期",)),
                Column("volunteer.team_id", "志愿队伍", "id", ("志愿队伍编号", "队伍编号")),
                Column("volunteer.services", "志愿服务", "terms", ("服务项目", "志愿服务项目")),
                Column("volunteer.availability", "服务时间", "availability", ("可服务时间", "志愿服务时间")),
                Column("worker.post", "岗位", "enum", ("社区岗位",), domain.POSTS),
                Column("worker.grade", "等级", "int", ("岗位等级", "级别")),
                Column("public_name", "公示名称", aliases=("公示名", "公开名称")),
                Column("member_unit_id", "成员单位编号", "id", ("所属成员单位", "成员单位")),
            ),
        ),
        Sheet(
            "talent_entries",
            "talent_entry",
            "社区人才清单",
            "talent",
            ("person_id", "skill"),
            (
                ID,
                Column("person_id", "人员编号", "id", ("人员",), required=True),
                Column("skill", "技能", aliases=("专长", "特长"), required=True),
                Column("level", "等级", "int", ("技能等级", "级别"), required=True),
                Column("note", "备注", aliases=("说明",)),
            ),
        ),
        Sheet(
            "team_service_entries",
            "team_service_entry",
            "志愿者队伍服务清单",
            "teamsvc",
            ("team_id", "service"),
            (
                ID,
                Column("team_id", "队伍编号", "id", ("队伍", "志愿队伍", "志愿队伍编号"), required=True),
                Column("service", "服务项目", aliases=("服务", "服务内容"), required=True),
                Column("capacity", "可派人数", "int", ("人数",), required=True),
                Column("hours_per_week", "每周时长", "number", ("每周小时", "每周服务时长", "每周小时数")),
            ),
        ),
        Sheet(
            "unit_resource_entries",
            "unit_resource_entry",
            "单位资源清单",
            "resource",
            ("unit_id", "resource"),
            (
                ID,
                Column("unit_id", "单位编号", "id", ("单位",), required=True),
                Column("resource", "资源名称", aliases=("资源",), required=True),
                Column("category", "资源类别", "enum", ("类别", "资源类型"), domain.RESOURCE_CATEGORIES, required=True),
                Column("quantity", "数量", "number"),
                Column("unit_of_measure", "计量单位"),
                Column("conditions", "使用条件", aliases=("条件", "使用说明")),
            ),
        ),
    )
}
# Names staff use besides the Chinese names in domain.py.
EXTRA_NAMES: dict[str, str] = {
    "社区工作者": "community_worker",
    "专职社工": "community_worker",
    "中共党员": "party_member",
    "执法部门": "law_enforcement",
    "物业公司": "property_company",
    "物业": "property_company",
    "业主委员会": "owners_committee",
}
ERROR_PREFIXES = ("party", "volunteer", "worker")


def sheet_for(entity: str) -> Sheet:
    found = SHEETS.get((entity or "").strip().lower())
    if found is None:
        raise InvalidArgument(f"unknown entity {entity!r}; use one of: {', '.join(SHEETS)}", field="entity")
    return found


def format_of(fmt: str) -> str:
    value = (fmt or "").strip().lower().lstrip(".")
    if value not in FORMATS:
        raise InvalidArgument(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}", field="format")
    return value


# ---------------------------------------------------------------- reading files


@dataclass
class Table:
    header: list[Any]
    header_row: int
    rows: list[tuple[int, list[Any]]]  # (row number as in the sheet, cells); empty rows left out


def read_table(fmt: str, content: bytes) -> Table:
    """The header row (the first non-empty row) and the non-empty rows below it, or InvalidArgument."""
    check_file(fmt, content)
    rows = _xlsx_rows(content) if fmt == "xlsx" else _csv_rows(content)
    header: list[Any] | None = None
    header_row = 0
    body: list[tuple[int, list[Any]]] = []
    for number, cells in rows:
        if all(_blank(c) for c in cells):
            continue
        if len(cells) > MAX_COLUMNS and any(not _blank(c) for c in cells[MAX_COLUMNS:]):
            raise InvalidArgument(f"row {number} has values beyond column {MAX_COLUMNS}", field="content")
        if header is None:
            header, header_row = cells, number
            continue
        if len(body) >= MAX_ROWS:
            raise InvalidArgument(
                f"the file has more than {MAX_ROWS:,} data rows; split it into files of at most {MAX_ROWS:,}",
                field="content",
            )
        body.append((number, cells))
    if header is None:
        raise InvalidArgument("the sheet is empty: no header row", field="content")
    return Table(header, header_row, body)


def check_file(fmt: str, content: bytes) -> None:
    """What can be told of a file without reading it (its size, what kind of file it starts as), or
    InvalidArgument: checked before a job is queued, and again when the file is read."""
    if not content:
        raise InvalidArgument("the file is empty", field="content")
    if len(content) > MAX_BYTES:
        raise InvalidArgument(
            f"the file is {len(content) / 1024 / 1024:.2f} MB; at most {MAX_BYTES // 1024 // 1024} MB "
            "(split it into smaller files)",
            field="content",
        )
    if fmt == "xlsx":
        if content.startswith(OLE_MAGIC):
            raise InvalidArgument(
                "this is an old Excel .xls file; save it as .xlsx (Excel 工作簿) or as CSV UTF-8", field="content"
            )
        if not content.startswith(ZIP_MAGIC):
            hint = " (it looks like text: send it with format csv)" if _looks_like_text(content) else ""
            raise InvalidArgument(f"the file is not an xlsx workbook{hint}", field="content")
    else:
        if content.startswith(ZIP_MAGIC):
            raise InvalidArgument("this is an xlsx workbook, not CSV: send it with format xlsx", field="content")
        if content.startswith(OLE_MAGIC):
            raise InvalidArgument(
                "this is an old Excel .xls file, not CSV; save it as CSV UTF-8 or .xlsx", field="content"
            )


def _xlsx_rows(content: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            expanded = sum(i.file_size for i in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InvalidArgument("the xlsx file is damaged (not a readable zip archive)", field="content") from None
    if expanded > MAX_XLSX_EXPANDED:
        raise InvalidArgument(
            f"the xlsx file expands to {expanded / 1024 / 1024:.0f} MB; at most {MAX_XLSX_EXPANDED // 1024 // 1024} MB",
            field="content",
        )
    try:
        book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # any parser error on untrusted input is the file's fault, never a trace
        raise InvalidArgument(
            f"the xlsx file cannot be read ({type(exc).__name__}); save it again from Excel as .xlsx", field="content"
        ) from None
    try:
        if not book.worksheets:
            raise InvalidArgument("the workbook has no worksheet", field="content")
        ws = book.worksheets[0]
        ws.reset_dimensions()  # some writers claim 16,384 columns; read only the cells really there
        number = 0
        try:
            for cells in ws.iter_rows(max_col=MAX_COLUMNS + 1):
                number = next((c.row for c in cells if getattr(c, "row", None)), number + 1)
                values = [c.value for c in cells]
                while values and values[-1] is None:
                    values.pop()
                yield number, values
        except Exception as exc:
            raise InvalidArgument(
                f"the xlsx file cannot be read after row {number} ({type(exc).__name__})", field="content"
            ) from None
    finally:
        book.close()


def _looks_like_text(content: bytes) -> bool:
    head = content[:512]
    return b"\x00" not in head and all(b >= 9 for b in head)


def _csv_rows(content: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        try:
            content.decode("gb18030")
            guess = "; it looks GBK/GB18030-encoded (Excel's plain 'CSV')"
        except UnicodeDecodeError:
            guess = ""
        raise InvalidArgument(
            f"the CSV file is not UTF-8 text (byte {exc.start + 1} cannot be read{guess}); "
            "in Excel save as 'CSV UTF-8 (逗号分隔)', or send the .xlsx",
            field="content",
        ) from None
    first = text.split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=lambda d: (first.count(d), d == ","))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    number = 0
    try:
        for number, cells in enumerate(reader, 1):
            yield number, [_unguard(c) for c in cells]
    except csv.Error as exc:
        raise InvalidArgument(f"the CSV file cannot be read at row {number + 1}: {exc}", field="content") from None


def _unguard(value: str) -> str:
    """Undo the formula guard an export put in front of a text cell ("'=x" -> "=x")."""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_START else value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# ---------------------------------------------------------------- headers


def normalize_header(value: str) -> str:
    """Full-width to half-width, brackets, stars and colons to spaces, spaces collapsed, case folded."""
    value = unicodedata.normalize("NFKC", value)
    value = re.sub(r"[()\[\]*:]", " ", value)  # after NFKC, full-width brackets and colons are ASCII
    return " ".join(value.split()).casefold()


def header_names(sheet: Sheet) -> dict[str, Column]:
    """Every accepted spelling of every column of the sheet, normalized."""
    out: dict[str, Column] = {}
    for col in sheet.columns:
        for name in (col.key, col.zh, col.title, f"{col.key} {col.zh}", *col.aliases):
            out.setdefault(normalize_header(name), col)
    return out


@dataclass(frozen=True)
class Header:
    index: int  # 0-based position in the row
    title: str  # as written in the sheet
    column: Column


def parse_header(sheet: Sheet, cells: Sequence[Any], row: int = 1) -> tuple[list[Header], list[RowError]]:
    names = header_names(sheet)
    headers: list[Header] = []
    errors: list[RowError] = []
    seen: dict[str, str] = {}
    for index, cell in enumerate(cells):
        title = cell_text(cell)
        if not title:
            continue
        col = names.get(normalize_header(title))
        if col is None:  # "编号/ID", "名称（name_zh）": spellings that each name the same column
            found = {names.get(part) for part in re.split(r"[\s/]+", normalize_header(title)) if part}
            col = found.pop() if len(found) == 1 else None
        if col is None:
            known = ", ".join(c.title for c in sheet.columns)
            errors.append(RowError(row, title, f"unknown column {title!r} for {sheet.entity}; columns: {known}"))
            continue
        if col.key in seen:
            errors.append(RowError(row, title, f"column {title!r} repeats {seen[col.key]!r} (both are {col.key})"))
            continue
        seen[col.key] = title
        headers.append(Header(index, title, col))
    missing = [c.title for c in sheet.columns if c.required and c.key not in seen]
    if missing:
        errors.append(RowError(row, "", f"missing required column(s): {', '.join(missing)}"))
    return headers, errors


# ---------------------------------------------------------------- cells


def cell_text(value: Any) -> str:
    """A cell as text: numbers without a spurious .0, dates as YYYY-MM-DD, times as HH:MM."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value).strip()


def split_list(value: Any) -> list[str]:
    """A list cell: items separated by ; ； 、 , ， or line breaks."""
    return [p.strip() for p in LIST_SPLIT.split(cell_text(value)) if p.strip()]


def _choice_key(value: str) -> str:
    return "".join(unicodedata.normalize("NFKC", value).translate(QUOTES).split()).casefold()


def _choice_names(choices: Mapping[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for code, label in choices.items():
        labels = label if isinstance(label, tuple) else (label,)
        for name in (code, *labels):
            names.setdefault(_choice_key(str(name)), code)
    for name, code in EXTRA_NAMES.items():
        if code in choices:
            names.setdefault(_choice_key(name), code)
    return names


def zh_name(choices: Mapping[str, Any], code: str) -> str:
    label = choices.get(code)
    if label is None:
        return code
    return str(label[0] if isinstance(label, tuple) else label)


def parse_choice(value: str, choices: Mapping[str, Any], key: str) -> str:
    """A code (property_company), its Chinese name (物业服务企业) or English name -> the code."""
    code = _choice_names(choices).get(_choice_key(value))
    if code is None:
        allowed = ", ".join(f"{c} ({zh_name(choices, c)})" for c in choices)
        raise InvalidArgument(f"{key} {value!r} is not one of: {allowed}", field=key)
    return code


def _day_number(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit():
        return int(token)
    if token[-1] in _ZH_DAY and not token.isascii():
        return _ZH_DAY[token[-1]]
    return _EN_DAY[token[:3]]


def parse_availability(value: Any, key: str = "volunteer.availability") -> list[dict[str, Any]]:
    """ "周六 08:00-12:00; 周日 14:00-17:00", "6 08:00-12:00", "周一至周五 18:00-20:00" -> slots."""
    slots: list[dict[str, Any]] = []
    for part in split_list(value):
        text = unicodedata.normalize("NFKC", part)
        hours = _HOURS_RE.search(text)
        days = _DAYS_RE.match(text[: hours.start()].strip()) if hours else None
        if hours is None or days is None:
            raise InvalidArgument(
                f"{key}: {part!r} is not a time slot like '周六 08:00-12:00' or '6 08:00-12:00'", field=key
            )
        first = _day_number(days.group(1))
        last = _day_number(days.group(2)) if days.group(2) else first
        if last < first:
            raise InvalidArgument(f"{key}: {part!r} has its days backwards (周一至周五 is Monday to Friday)", field=key)
        start = f"{int(hours.group(1)):02d}:{hours.group(2)}"
        end = f"{int(hours.group(3)):02d}:{hours.group(4)}"
        slots.extend({"weekday": w, "start": start, "end": end} for w in range(first, last + 1))
    return slots


def format_availability(slots: Sequence[Mapping[str, Any]] | None) -> str:
    return "; ".join(
        f"{WEEKDAYS_ZH[int(s['weekday']) - 1]} {s['start']}-{s['end']}"
        for s in slots or []
        if 1 <= int(s.get("weekday", 0)) <= 7
    )


def parse_date(value: Any) -> str:
    """Excel dates, 2024-03-05, 2024/3/5, 2024.3.5, 2024年3月5日, 20240305 -> 2024-03-05 (else as written)."""
    text = cell_text(value)
    m = _DATE_RE.match(text) or _COMPACT_DATE_RE.match(text)
    if m:
        return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"
    return text


def _number(value: Any, integer: bool) -> Any:
    if isinstance(value, bool) or value is None:
        return 0 if value is None else value
    if isinstance(value, int | float):
        return int(value) if integer and float(value).is_integer() else value
    text = unicodedata.normalize("NFKC", str(value)).strip()
    if not text:
        return 0
    try:
        number = float(text)
    except ValueError:
        return text  # the validator names it: "level '三' is not a number"
    return int(number) if integer and number.is_integer() else number


def _personal(value: Any, col: Column) -> str:
    if isinstance(value, float) and col.key == "id_number":
        raise InvalidArgument(
            f"{col.key} is a number in the sheet, which loses digits of an 18-digit ID number; "
            "format the column as text (文本) and enter the numbers again",
            field=col.key,
        )
    return cell_text(value)


def parse_cell(col: Column, value: Any) -> Any:
    """One cell as the API field value; InvalidArgument (field = the column's key) when it cannot be."""
    kind = col.kind
    if kind == "int":
        return _number(value, integer=True)
    if kind == "number":
        return _number(value, integer=False)
    if kind == "date":
        return parse_date(value)
    if kind == "personal":
        return _personal(value, col)
    if kind in ("ids", "terms"):
        return split_list(value)
    if kind == "enums":
        assert col.choices is not None
        return [parse_choice(v, col.choices, col.key) for v in split_list(value)]
    if kind == "enum":
        text = cell_text(value)
        assert col.choices is not None
        return parse_choice(text, col.choices, col.key) if text else ""
    if kind == "availability":
        return parse_availability(value, col.key)
    return cell_text(value)


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if rest:
        block = data.get(head)
        if not isinstance(block, dict):
            block = data[head] = {}
        block[rest] = value
    else:
        data[key] = value


def _get(data: Mapping[str, Any], key: str) -> Any:
    head, _, rest = key.partition(".")
    if rest:
        block = data.get(head)
        return block.get(rest) if isinstance(block, Mapping) else None
    return data.get(key)


def parse_row(headers: Sequence[Header], cells: Sequence[Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A row as API fields (nested for a person's party/volunteer/worker), and (column, reason) problems."""
    data: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for h in headers:
        raw = cells[h.index] if h.index < len(cells) else None
        try:
            value = parse_cell(h.column, raw)
        except InvalidArgument as exc:
            problems.append((h.title, exc.message))
            continue
        if h.column.key == "id":
            if value:
                data["id"] = value
            continue
        _set(data, h.column.key, value)
    used = {h.index for h in headers}
    for index, raw in enumerate(cells):
        if index not in used and not _blank(raw):
            problems.append(
                (f"({get_column_letter(index + 1)})", "a value in a column without a known header; add the header")
            )
    return data, problems


# ---------------------------------------------------------------- checking rows against storage


@dataclass
class _Plan:
    row: int
    ident: str
    data: dict[str, Any]
    old: OrgDocument | None
    action: Literal["create", "update", "unchanged"] = "create"


class _Errors:
    """Every row error; the answer lists the first MAX_LISTED_ERRORS in sheet order and counts the rest."""

    def __init__(self) -> None:
        self.all: list[RowError] = []
        self.bad_rows: set[int] = set()

    def add(self, row: int, column: str, reason: str) -> None:
        self.bad_rows.add(row)
        self.all.append(RowError(row, column, reason))

    def result(self) -> list[RowError]:
        ordered = sorted(self.all, key=lambda e: e.row)  # stable: a row's errors keep their column order
        if len(ordered) <= MAX_LISTED_ERRORS:
            return ordered
        rest = ordered[MAX_LISTED_ERRORS:]
        return [
            *ordered[:MAX_LISTED_ERRORS],
            RowError(
                rest[0].row,
                "",
                f"{len(rest)} more error(s) from row {rest[0].row} on are not listed "
                f"(at most {MAX_LISTED_ERRORS:,} are); fix these and check again",
            ),
        ]


INTERNAL_FIELDS = ("_id", "outbox", "deleted", "created_at", "updated_at", "version")
ROLE_BLOCKS = (("party", "party_member"), ("volunteer", "volunteer"), ("worker", "community_worker"))


def stored_fields(sp: handlers.EntitySpec, doc: OrgDocument) -> dict[str, Any]:
    """A stored record as API fields, personal data masked (as reads and exports show it)."""
    raw = doc.to_mongo().to_dict()
    out = {k: v for k, v in raw.items() if k not in INTERNAL_FIELDS and v is not None}
    for name in sp.personal:
        out.pop(f"{name}_enc", None)
        out[name] = out.pop(f"{name}_masked", "")
    out.pop("id_number_key", None)
    out["id"] = doc.id
    return out


def _merge(stored: Mapping[str, Any], data: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The stored record with the sheet's columns laid over it (columns not in the sheet keep their value)."""
    out = copy.deepcopy(dict(stored))
    for key in keys:
        _set(out, key, copy.deepcopy(_get(data, key)))
    roles = out.get("roles") or []
    for block, role in ROLE_BLOCKS:
        if role not in roles and not any(k.startswith(f"{block}.") for k in keys):
            out[block] = None  # role dropped in the sheet: its stored details go with it
    return out


def _comparable(value: Any) -> Any:
    """Empty values ("" / None / [] / {}) compare equal; dicts and lists compared by content."""
    if isinstance(value, Mapping):
        items = {k: _comparable(v) for k, v in value.items()}
        value = {k: v for k, v in items.items() if v is not None}
    elif isinstance(value, list | tuple):
        value = [_comparable(v) for v in value]
    return None if value in ("", None, [], {}) else value


def _differs(sp: handlers.EntitySpec, values: Mapping[str, Any], old: OrgDocument, protector: Protector) -> bool:
    stored = old.to_mongo().to_dict()
    skip = {"id_number_key"}
    for name in sp.personal:
        skip |= {f"{name}_enc", f"{name}_masked"}
        sealed = values.get(f"{name}_enc")
        if sealed is not None and protector.open(sealed) != protector.open(stored.get(f"{name}_enc") or ""):
            return True
    return any(_comparable(values[k]) != _comparable(stored.get(k)) for k in values if k not in skip)


def _unique_keys(sp: handlers.EntitySpec) -> list[tuple[str, ...]]:
    specs = sp.doc._meta.get("index_specs") or []
    return [tuple(f for f, _ in s["fields"]) for s in specs if s.get("unique")]


def _derived_id(sheet: Sheet, parts: Sequence[str]) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]
    return f"{sheet.id_prefix}-{digest}"


def _current_lookup(raw: dict[str, Any], protector: Protector) -> None:
    """During a data key rotation, a person the re-sealing has not reached yet carries the former key's look-up
    hash: give it the current key's here (in memory), so a row with the same ID number finds it."""
    sealed = raw.get("id_number_enc")
    stored = raw.get("id_number_key")
    if not (isinstance(sealed, str) and sealed and isinstance(stored, str) and not stored.startswith("none:")):
        return
    if not protector.sealed_with_current(sealed):
        try:
            raw["id_number_key"] = protector.lookup_key(protector.open(sealed))
        except ValueError:
            return  # opens with neither key: left as it is (the rekey run reports it)


@dataclass(frozen=True)
class _Key:
    """How a row without an id finds its record: its natural key (or a person's ID number)."""

    fields: tuple[str, ...]
    values: tuple[str, ...]
    derived: str  # the id a new record gets: the same for the same key, import after import
    column: str  # the field whose column a problem with the key is reported on


def _natural(sheet: Sheet, data: Mapping[str, Any], protector: Protector) -> _Key:
    raw_id_number = str(data.get("id_number") or "").strip().upper()
    if sheet.spec == "person" and raw_id_number and not domain.is_masked(raw_id_number):
        key = protector.lookup_key(raw_id_number)  # keyed hash: neither the key nor the id reveal the number
        return _Key(("id_number_key",), (key,), f"{sheet.id_prefix}-{key[:20]}", "id_number")
    values = []
    for name in sheet.natural_key:
        value = str(data.get(name) or "")
        values.append(domain.term(value) if name in ("skill", "service", "resource") else value.strip())
    return _Key(sheet.natural_key, tuple(values), _derived_id(sheet, values), sheet.natural_key[-1])


def _column_for(field_name: str | None, titles: Mapping[str, str], data: Mapping[str, Any]) -> str:
    """The sheet's header for a field an error names (a person's "post" is the worker.post column)."""
    if not field_name:
        return ""
    name = re.sub(r"\[\d+\]$", "", field_name)
    for candidate in (name, *(f"{p}.{name}" for p in ERROR_PREFIXES)):
        if candidate in titles:
            return titles[candidate]
    block = [k for k in titles if k.startswith(f"{name}.")]  # a whole block: "party is set but ..."
    filled = [k for k in block if _comparable(_get(data, k)) is not None]
    return titles[(filled or block)[0]] if block else ""


class _Checker:
    """Checks rows one by one against storage, and against the rows before them in the file.

    What the rows need from the entity's own collection is read in one pass (load): FerretDB v1
    answers any query not by _id with a full scan, so a look-up per row would make a large
    import quadratic. References to other entities go through the handlers' checks (by _id).
    """

    def __init__(self, sheet: Sheet, headers: Sequence[Header], ctx: handlers.Context, errors: _Errors) -> None:
        self.sheet = sheet
        self.sp = handlers.SPECS[sheet.spec]
        self.ctx = ctx
        self.errors = errors
        self.titles = {h.column.key: h.title for h in headers}
        self.keys = [h.column.key for h in headers if h.column.key != "id"]
        self.unique = _unique_keys(self.sp)
        self.ids: dict[str, int] = {}  # id -> the first row that has it
        self.seen_keys: dict[tuple[tuple[str, ...], tuple[Any, ...]], tuple[int, str]] = {}
        self.existing: dict[str, OrgDocument] = {}  # the records rows may update, tombstones included
        self.taken: dict[tuple[tuple[str, ...], tuple[Any, ...]], str] = {}  # unique key -> stored id
        self.found: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}  # natural key -> live ids

    def title(self, key: str) -> str:
        return self.titles.get(key, "")

    def load(self, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """One pass over the collection: unique keys in use, and the records the rows name or match."""
        ids: set[str] = set()
        wanted: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
        for _, data in rows:
            if data.get("id"):
                ids.add(str(data["id"]))
            else:
                key = _natural(self.sheet, data, self.ctx.protector)
                ids.add(key.derived)
                wanted.add((key.fields, key.values))
        lookups = {fields for fields, _ in wanted}
        rotating = len(self.ctx.protector.lookup_keys("x")) > 1
        for raw in self.sp.doc._get_collection().find({}):
            ident = raw["_id"]
            if rotating:
                _current_lookup(raw, self.ctx.protector)
            for fields in self.unique:
                self.taken[(fields, tuple(raw.get(f) for f in fields))] = ident
            keep = ident in ids
            if not raw.get("deleted"):
                for fields in lookups:
                    natural = (fields, tuple(str(raw.get(f) or "") for f in fields))
                    if natural in wanted:
                        self.found.setdefault(natural, []).append(ident)
                        keep = True
            if keep:
                self.existing[ident] = self.sp.doc._from_son(raw)

    def check(self, row: int, data: dict[str, Any]) -> _Plan | None:
        ident = str(data.get("id") or "")
        derived_from = ""
        try:
            if ident:
                domain.entity_id(ident)
            else:
                ident, derived_from = self._identify(data)
        except HonglingError as exc:
            self.errors.add(row, self.title("id") or _column_for(exc.field, self.titles, data), exc.message)
            return None
        earlier = self.ids.get(ident)
        if earlier is not None:
            if derived_from:
                self.errors.add(row, self.title(derived_from), f"the same record as row {earlier} (重复行)")
            else:
                self.errors.add(row, self.title("id"), f"id {ident!r} is also in row {earlier} (编号重复)")
            return None
        self.ids[ident] = row
        old = self.existing.get(ident)
        if old is not None and old.deleted:
            self.errors.add(
                row, self.title("id"), f"{ident!r} was just deleted and is being removed; retry in a minute"
            )
            return None
        data = _merge(stored_fields(self.sp, old), data, self.keys) if old is not None else data
        try:
            values = handlers.check(self.sp, data, old, self.ctx)
        except HonglingError as exc:
            self.errors.add(row, _column_for(exc.field, self.titles, data), exc.message)
            return None
        if not self._unique_ok(row, ident, values, data):
            return None
        plan = _Plan(row, ident, data, old)
        if old is not None:
            plan.action = "update" if _differs(self.sp, values, old, self.ctx.protector) else "unchanged"
        return plan

    def _identify(self, data: dict[str, Any]) -> tuple[str, str]:
        """The live record with the row's natural key, else the id derived from that key."""
        key = _natural(self.sheet, data, self.ctx.protector)
        matches = self.found.get((key.fields, key.values), [])
        if len(matches) > 1:
            what = " + ".join(self.title(f) or f for f in key.fields)
            raise InvalidArgument(
                f"{len(matches)} records have this row's {what}; add the 编号 (id) column to say which one",
                field=key.column,
            )
        return (matches[0] if matches else key.derived), key.column

    def _unique_ok(self, row: int, ident: str, values: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
        for fields in self.unique:
            key = tuple(values.get(f) for f in fields)
            if any(v in ("", None) for v in key):
                continue  # not set by this row (a masked ID number keeps the stored one)
            column = self.title(fields[-1].removesuffix("_key")) or _column_for(fields[-1], self.titles, data)
            earlier = self.seen_keys.get((fields, key))
            if earlier is not None and earlier[1] != ident:
                what = " + ".join(f.removesuffix("_key") for f in fields)
                self.errors.add(row, column, f"the same {what} as row {earlier[0]} ({self.sp.unique_message})")
                return False
            self.seen_keys[(fields, key)] = (row, ident)
            other = self.taken.get((fields, key))
            if other is not None and other != ident:
                self.errors.add(row, column, f"{self.sp.unique_message}: {other!r}")
                return False
        return True


# ---------------------------------------------------------------- import


def import_sheet(
    entity: str,
    fmt: str,
    content: bytes,
    dry_run: bool,
    ctx: handlers.Context,
    progress: ImportProgress | None = None,
) -> ImportResult:
    """Check every row of the file; unless dry_run and if no row is bad, create or update the records."""
    sheet = sheet_for(entity)
    table = read_table(format_of(fmt), content)
    headers, header_errors = parse_header(sheet, table.header, table.header_row)
    result = ImportResult(rows=len(table.rows))
    if progress is not None:
        progress.read(len(table.rows))
    if header_errors:
        result.errors = header_errors
        result.error_count = len(header_errors)
        return result
    mode = "dry run" if dry_run else "import"
    log.info("sheet %s of %s: %d rows to check", mode, sheet.entity, len(table.rows))

    errors = _Errors()
    checker = _Checker(sheet, headers, ctx, errors)
    parsed: list[tuple[int, dict[str, Any]]] = []
    for row, cells in table.rows:
        data, problems = parse_row(headers, cells)
        for column, reason in problems:
            errors.add(row, column, reason)
        parsed.append((row, data))
    checker.load([(row, data) for row, data in parsed if row not in errors.bad_rows])

    plans: list[_Plan] = []
    for count, (row, data) in enumerate(parsed, 1):
        if row not in errors.bad_rows:
            plan = checker.check(row, data)
            if plan is not None:
                plans.append(plan)
        _progress(count, len(parsed), f"sheet {mode} of {sheet.entity}: %d/%d rows checked")
        if progress is not None:
            progress.checked(count)

    result.errors = errors.result()
    result.error_count = len(errors.all)
    if result.errors:
        log.info("sheet %s of %s: %d of %d rows are bad", mode, sheet.entity, len(errors.bad_rows), result.rows)
        if dry_run:
            _count(result, plans)
        return result
    if not dry_run:
        _write(sheet, plans, ctx, progress)
    _count(result, plans)
    log.info(
        "sheet %s of %s: %d rows, %d created, %d updated, %d unchanged",
        mode,
        sheet.entity,
        result.rows,
        result.created,
        result.updated,
        result.unchanged,
    )
    return result


def _count(result: ImportResult, plans: Sequence[_Plan]) -> None:
    result.created = sum(p.action == "create" for p in plans)
    result.updated = sum(p.action == "update" for p in plans)
    result.unchanged = sum(p.action == "unchanged" for p in plans)


def _progress(count: int, total: int, message: str) -> None:
    if count % PROGRESS_EVERY == 0 or (count == total and total >= PROGRESS_EVERY):
        log.info(message, count, total)


def _write(sheet: Sheet, plans: Sequence[_Plan], ctx: handlers.Context, progress: ImportProgress | None = None) -> None:
    sp = handlers.SPECS[sheet.spec]
    todo = [p for p in plans if p.action != "unchanged"]
    unchanged = len(plans) - len(todo)
    if progress is not None:
        progress.writing(unchanged)
    for count, plan in enumerate(todo, 1):
        try:
            if plan.action == "create":
                handlers.create(sp, {**plan.data, "id": plan.ident}, ctx)
            else:
                assert plan.old is not None
                handlers.update(sp, {**plan.data, "id": plan.ident, "version": plan.old.version}, ctx)
        except HonglingError as exc:
            # Every row was checked; this one changed underneath (another user, another import).
            # Rows written so far stay written: importing the same file again finishes the job,
            # since rows already saved count as unchanged.
            raise Aborted(
                f"row {plan.row}: {exc.message} — the data changed while the file was imported; "
                f"{count - 1} earlier row(s) were saved; import the same file again to finish",
                field=exc.field,
            ) from None
        _progress(count, len(todo), f"sheet import of {sheet.entity}: %d/%d rows written")
        if progress is not None:
            progress.written(unchanged + count)


# ---------------------------------------------------------------- export


def export_value(col: Column, value: Any) -> Any:
    """A stored field as the export shows it: lists joined by "; ", choices by their Chinese name."""
    if col.kind in ("ids", "terms"):
        return "; ".join(str(v) for v in value or [])
    if col.kind == "enums":
        assert col.choices is not None
        return "; ".join(zh_name(col.choices, str(v)) for v in value or [])
    if col.kind == "enum":
        assert col.choices is not None
        return zh_name(col.choices, str(value)) if value else ""
    if col.kind == "availability":
        return format_availability(value)
    if col.kind in ("int", "number"):
        if value in (None, ""):
            return ""
        number = float(value)
        return int(number) if number.is_integer() else number
    return "" if value is None else str(value)


def _display_width(value: Any) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in str(value))


def _xlsx(sheet: Sheet, titles: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet(sheet.title)
    for index, title in enumerate(titles):
        width = max([_display_width(title), *(_display_width(r[index]) for r in rows)])
        ws.column_dimensions[get_column_letter(index + 1)].width = min(max(width + 2, 8), 60)
    ws.freeze_panes = "A2"
    bold = Font(bold=True)

    def cell(value: Any, header: bool = False) -> Any:
        c = WriteOnlyCell(ws, value=value)
        if isinstance(value, str):
            c.data_type = "s"  # never a formula, whatever the text starts with
            c.number_format = "@"  # and Excel keeps it as text when edited (ids, phones, dates)
        if header:
            c.font = bold
            c.alignment = Alignment(vertical="center")
        return c

    ws.append([cell(t, header=True) for t in titles])
    for r in rows:
        ws.append([cell(v) for v in r])
    if rows:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(titles))}{len(rows) + 1}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _guard(value: Any) -> Any:
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


def _csv(titles: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(titles)
    for r in rows:
        writer.writerow([_guard(v) for v in r])
    return out.getvalue().encode("utf-8-sig")  # with a BOM: Excel then opens the Chinese correctly


def write_table(sheet: Sheet, fmt: str, rows: Sequence[Sequence[Any]]) -> bytes:
    """Rows of export values (one per column of the sheet) under the bilingual headers, as xlsx or CSV."""
    titles = [c.title for c in sheet.columns]
    return _xlsx(sheet, titles, rows) if format_of(fmt) == "xlsx" else _csv(titles, rows)


def export_sheet(entity: str, fmt: str, filters: dict[str, str], protector: Protector) -> SheetFile:
    """Every record the filters (a List request's) select, as xlsx or CSV; personal data masked.

    The protector is not used: exports carry the stored masked forms only, never decrypted values.
    """
    sheet = sheet_for(entity)
    fmt = format_of(fmt)
    sp = handlers.SPECS[sheet.spec]
    tenant = require_tenant()
    query: dict[str, Any] = {"deleted__ne": True}
    filters = handlers.list_filters(sp, filters)  # a community worker's: its own community only
    for key, value in filters.items():  # the List filters, with List's message for a wrong one
        if key not in sp.filters:
            allowed = ", ".join(sp.filters) or "none"
            raise InvalidArgument(f"cannot filter {sp.name} by {key!r}; filters: {allowed}", field=f"filter.{key}")
        query[sp.filters[key]] = value
    rows: list[list[Any]] = []
    for doc in sp.doc.objects(**query).order_by("id"):  # one query: every page would be another scan
        fields = stored_fields(sp, doc)
        rows.append([export_value(c, _get(fields, c.key)) for c in sheet.columns])
    content = write_table(sheet, fmt, rows)
    day = datetime.now(domain.SHANGHAI).strftime("%Y%m%d")
    log.info("sheet export of %s: %d rows, %d bytes", sheet.entity, len(rows), len(content))
    return SheetFile(f"{sheet.entity}-{tenant}-{day}.{fmt}", FORMATS[fmt], content, len(rows))
