"""Open311 GeoReport v2 at /open311/v2 (http://wiki.open311.org/GeoReport_v2): one jurisdiction per tenant.

`jurisdiction_id` is the tenant's slug (taiqian, daimiao, …): required on every call, since this endpoint
serves seven jurisdictions (missing: 400, unknown: 404 naming the valid ones). Every resource comes in
both formats the spec defines, chosen by the suffix: `.xml` (text/xml, XML declaration, the spec's
element names) and `.json` (application/json, the same data as arrays, as in the spec's examples).

- GET services.{fmt}: the tenant's intake categories as services (service_code = category code,
  service_name = its Chinese name, the English name in description, group, keywords; metadata true,
  type realtime).
- GET services/{service_code}.{fmt}: the service definition: attributes affected_households (number)
  and hazards (multivaluelist of the tenant's hazard rules).
- POST requests.{fmt} (application/x-www-form-urlencoded): a new issue on the channel online (线上接单).
  api_key (a Hongling API token, hl_…) in the form body is the credential: missing or invalid: 403;
  its role must be a reporter's and its tenant scope must include the jurisdiction (the policy table's
  line "open311.create_request", applied here with jurisdiction_id as the tenant). The answer is
  [{service_request_id, service_notice, account_id}]: the service is realtime, so no token (the spec
  returns one or the other).
- GET requests.{fmt}: service_request_id (comma list; overrides every other filter), service_code and
  status (open, closed; comma lists), start_date / end_date (W3C date-times with a time zone; default
  the last 90 days; a wider span, an end before the start or a bad date: 400). Newest first, at most
  LIMIT (1000) requests.
- GET requests/{id}.{fmt}: one request, as a one-element list.
- GET tokens/{token}.{fmt}: [{service_request_id, token}]. A realtime service hands out no tokens; for
  clients that ask anyway a request's token is its service_request_id.
- 查询码 (an extension): POST requests answers the reporter's private follow-up code once, as `follow_code`
  (and says so in service_notice); it is not the spec's `token`, which clients look up in a URL (GET
  tokens/{token}), and a code must never be in a URL. POST requests/{id}/follow.{fmt} with jurisdiction_id
  and follow_code in the form body answers [{service_request_id, status, status_notes, task_status,
  verified, can_rate, rate_until, can_reject, reject_until, rated}] (403 when the code does not match,
  in the same words for a request that does not exist); code checks are limited per client address.

Reading is open to everyone (the spec needs no key there): the gateway reads as itself (a service
principal scoped to the jurisdiction) and shows Open311 fields only: never the reporter's contact, nor
who filed it; and only what residents brought in themselves (PUBLIC_CHANNELS: resident reports, online
reports, grid patrols, the 12345 hotline). Household visits (入户走访, a worker's notes on one household)
and district departments' assistance tasks are not public civic requests: the public reads answer for
them as for an id that does not exist. Errors have the spec's shape, [{code, description}] or
<errors><error>…, with its HTTP statuses (404 missing resources, 403 api_key, 400 anything else wrong)
and bilingual descriptions naming the parameter; nothing is stored when a report is refused.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
from flask import Blueprint, Response, current_app, g, request
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.evaluation.v1 import ratings_pb2, ratings_pb2_grpc
from hongling.intake.v1 import intake_pb2
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from gateway import department
from gateway.calls import clients, tenant_call
from gateway.errors import ApiError, from_rpc_error, storage_unavailable
from gateway.governance.store import current_audit
from gateway.identity import identify
from gateway.policy import POLICY, REFUSALS, decide
from services.common import context
from services.common.errors import UnknownTenant
from services.common.principal import Principal
from services.common.tenants import get_tenant, tenant_slugs

log = logging.getLogger("gateway.open311")

bp = Blueprint("open311", __name__)
PREFIX = "/open311/v2"
FORMAT = "<any(json, xml):fmt>"
SPEC = "http://wiki.open311.org/GeoReport_v2"
SHANGHAI = ZoneInfo("Asia/Shanghai")
WINDOW = timedelta(days=90)  # the spec's default and widest span of GET requests
LIMIT = 1000  # at most this many requests per GET requests (the spec lets the jurisdiction set it)
PAGE = 100  # intake's largest page
READER_SUB = "gateway-open311"
REPORT_ENDPOINT = "open311.create_request"
FOLLOW_NOTICE = (
    "请保存查询码（仅显示一次），凭码查询进度、验收后评价 "
    "(keep the follow-up code, shown only once: with it you follow the request and rate it once verified)"
)
CHANNEL = "online"  # 线上接单
# The channels whose issues the public Open311 reads show (see the module docstring).
PUBLIC_CHANNELS = frozenset(("resident_report", "online", "grid_patrol", "hotline_12345"))
TITLE_MAX = 60
HOUSEHOLDS_MAX = 1_000_000
MEDIA_URL_MAX = 500
# Intake statuses Open311 calls closed (services/intake/domain.py CLOSED; tests/unit/test_open311.py keeps
# them equal): verified, published, rated, cancelled, declined (不予立案). Every other status is open.
CLOSED_STATUSES = frozenset({"verified", "published", "rated", "cancelled", "declined"})
# 核实立案: a report waiting for verification, or declined, reads its filing's note (awaiting verification by
# when; the decline's reason and where to turn), not its last history step.
FILING_NOTE_STATUSES = frozenset({"pending_verification", "declined"})
# A report declined as abusive keeps its closed status and note; its text and files are not published
# (services/intake/domain.py WITHHELD says the same on the issue itself).
WITHHELD = "内容不予公开（不予立案：内容不当） (withheld: declined as abusive)"
URGENCY_ZH = {"routine": "日常", "major": "重大", "urgent": "紧急"}
# Intake's field names -> the Open311 parameter a caller sent.
PARAMS = {
    "location": "lat/long",
    "location.lat": "lat",
    "location.lon": "long",
    "location.address": "address_string",
    "location.compound_id": "address_id",
    "title": "description",
    "description": "description",
    "category": "service_code",
    "contact": "first_name/last_name/phone",
    "contact.name": "first_name/last_name",
    "contact.phone": "phone",
    "affected_households": "attribute[affected_households]",
    "hazards": "attribute[hazards]",
}
ATTRIBUTE_RE = re.compile(r"^attribute\[([^\[\]]*)\](\[\])?$")
W3_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})$")
# Characters XML 1.0 cannot carry, even escaped.
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Root element and item element of each list in the XML format.
ITEMS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
}


class Open311Error(Exception):
    """An error the caller sees in the spec's shape: the HTTP status is also its code."""

    def __init__(self, status: int, description: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = dict(headers or {})


# ---------------------------------------------------------------- formats


def _xml_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return XML_INVALID.sub("", str(value))


def _xml_fill(parent: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _xml_fill(ET.SubElement(parent, key), item)
    elif isinstance(value, list):
        for item in value:
            _xml_fill(ET.SubElement(parent, ITEMS[parent.tag]), item)
    else:
        parent.text = _xml_text(value)


def to_xml(root: str, data: Any) -> str:
    """The spec's XML: <root> holding the data (a list: one ITEMS[root] element per item; a dict: one element
    per key, in order), values as text (true/false, empty for null), with the UTF-8 declaration."""
    element = ET.Element(root)
    _xml_fill(element, data)
    body = ET.tostring(element, encoding="unicode", short_empty_elements=False)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body


def render(root: str, data: Any, fmt: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """`data` in the caller's format: JSON as is (lists as arrays), XML under <root>."""
    if fmt == "json":
        resp = Response(json.dumps(data, ensure_ascii=False), content_type="application/json; charset=utf-8")
    else:
        resp = Response(to_xml(root, data), content_type="text/xml; charset=utf-8")
    resp.status_code = status
    resp.headers.update(headers or {})
    return resp


def error_response(err: Open311Error, fmt: str) -> Response:
    return render("errors", [{"code": err.status, "description": err.description}], fmt, err.status, err.headers)


def open311_param(field: str | None) -> str | None:
    """The Open311 parameter behind one of intake's field names (hazards[2] -> attribute[hazards])."""
    if not field:
        return None
    base = re.sub(r"\[\d+\]$", "", field)
    return PARAMS.get(base, field)


def from_api_error(err: ApiError) -> Open311Error:
    """A gateway or service error in the Open311 shape, naming the Open311 parameter at fault."""
    param = open311_param(err.field)
    description = f"{param}: {err.message}" if param and not err.message.startswith(param) else err.message
    return Open311Error(err.status, description, headers=err.headers)


def _fmt() -> str:
    fmt = (request.view_args or {}).get("fmt")
    if fmt in ("json", "xml"):
        return str(fmt)
    return "json" if request.path.endswith(".json") else "xml"  # XML is the spec's required format


@bp.errorhandler(Open311Error)
def _open311_error(err: Open311Error) -> Response:
    return error_response(err, _fmt())


@bp.errorhandler(ApiError)
def _api_error(err: ApiError) -> Response:
    """Also the policy hook's and the rate limits' refusals on these routes (they run before the view)."""
    return error_response(from_api_error(err), _fmt())


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        text = "the request body is too large (请求体过大)"
    else:
        text = f"{exc.name}: {exc.description} ({status})"
    return error_response(Open311Error(status, text), _fmt())


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    down = storage_unavailable(exc)  # the database is down: 503 with Retry-After, not a 500
    if down is not None:
        log.warning("the database is not answering: %s", exc)
        return error_response(from_api_error(down), _fmt())
    log.exception("unhandled error")
    text = f"internal error (request id {g.get('request_id')}); the operators have the details (服务内部错误)"
    return error_response(Open311Error(500, text), _fmt())


# ---------------------------------------------------------------- parameters


def jurisdiction(values: Mapping[str, str]) -> str:
    """The tenant named by jurisdiction_id, or 400 (missing) / 404 (unknown), naming the valid ones."""
    raw = (values.get("jurisdiction_id") or "").strip()
    valid = ", ".join(tenant_slugs())
    if not raw:
        raise Open311Error(
            400,
            f"jurisdiction_id was not provided: this endpoint serves several jurisdictions; use one of: {valid} "
            "(缺少 jurisdiction_id，请填写街道/镇代码)",
        )
    try:
        get_tenant(raw)
    except UnknownTenant:
        raise Open311Error(
            404, f"jurisdiction_id {raw[:50]!r} was not found; use one of: {valid} (未找到该街道/镇)"
        ) from None
    return raw


def split_list(values: Iterable[str]) -> list[str]:
    """Comma lists, possibly given several times, as one list without blanks or repeats."""
    out: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            if part.strip():
                out[part.strip()] = None
    return list(out)


def parse_statuses(values: Iterable[str]) -> frozenset[str]:
    statuses = split_list(values)
    bad = [s for s in statuses if s not in ("open", "closed")]
    if bad:
        raise Open311Error(400, f"status {bad[0][:30]!r} is not open or closed (状态只能是 open 或 closed)")
    return frozenset(statuses or ("open", "closed"))


def parse_w3(raw: str, name: str) -> datetime:
    """A W3C date-time with its time zone (2025-05-01T08:00:00+08:00, 2025-05-01T00:00:00Z), or 400.

    A '+' that arrived as a space (an unencoded query string) is read as '+'."""
    value = raw.strip()
    value = re.sub(r" (\d{2}:\d{2})$", r"+\1", value)
    at: datetime | None = None
    if W3_RE.match(value):
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            at = None
    if at is None:
        raise Open311Error(
            400,
            f"{name} {raw[:40]!r} is not a W3C date-time with a time zone, e.g. 2025-05-01T00:00:00+08:00 or "
            f"2025-04-30T16:00:00Z ({name} 时间格式不正确，须含时区)",
        )
    return at


def request_window(start_raw: str | None, end_raw: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The requested_datetime range of GET requests, both ends included: the last 90 days by default; one end
    given, 90 days from (or up to) it; both given, at most 90 days apart."""
    start = parse_w3(start_raw, "start_date") if start_raw and start_raw.strip() else None
    end = parse_w3(end_raw, "end_date") if end_raw and end_raw.strip() else None
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - WINDOW
    if end is None:
        end = start + WINDOW
    if end < start:
        raise Open311Error(400, "end_date is before start_date (结束时间早于开始时间)")
    if end - start > WINDOW:
        raise Open311Error(
            400,
            f"start_date to end_date spans {(end - start).days} days; at most 90 days may be asked at once "
            "(查询时间跨度不能超过90天)",
        )
    return start, end


def parse_attributes(form: MultiDict[str, str]) -> dict[str, list[str]]:
    """attribute[code]=v and attribute[code][]=v1&attribute[code][]=v2 (a multivaluelist) -> {code: values}."""
    out: dict[str, list[str]] = {}
    for key in form:
        if not key.startswith("attribute"):
            continue
        m = ATTRIBUTE_RE.match(key)
        if m is None or not m.group(1).strip():
            raise Open311Error(
                400, f"{key[:60]!r} is not an attribute parameter: send attribute[code]=value (属性参数格式不正确)"
            )
        values = out.setdefault(m.group(1).strip(), [])
        values.extend(v.strip() for v in form.getlist(key) if v.strip())
    return out


def _title(description: str, fallback: str) -> str:
    """The issue's title: the description's first line, at most TITLE_MAX characters."""
    first = next((line.strip() for line in description.splitlines() if line.strip()), "")
    if not first:
        return fallback
    return first if len(first) <= TITLE_MAX else first[: TITLE_MAX - 1] + "…"


def _number(values: Mapping[str, str], name: str) -> float | None:
    raw = (values.get(name) or "").strip()
    if not raw:
        return None
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise Open311Error(400, f"{name} {raw[:30]!r} is not a number (WGS84 degrees) ({name} 须为数字)")
    limit = 90 if name == "lat" else 180
    if not -limit <= number <= limit:
        raise Open311Error(400, f"{name} {raw[:30]!r} is outside -{limit}..{limit} ({name} 超出范围)")
    return number


def _has_cjk(text: str) -> bool:
    return any(unicodedata.east_asian_width(ch) in ("W", "F") for ch in text)


def contact_name(first: str, last: str) -> str:
    """first_name + last_name as a name: family name first in Chinese (张 + 三 -> 张三), 'John Smith' otherwise."""
    first, last = first.strip(), last.strip()
    if _has_cjk(first + last):
        return f"{last}{first}"
    return f"{first} {last}".strip()


def report_request(values: MultiDict[str, str], rules: intake_pb2.ClassificationRules) -> intake_pb2.CreateIssueRequest:
    """A POST requests form as intake's CreateIssueRequest (channel online), or 400/404 naming the parameter.

    service_code must be one of the tenant's categories (404 otherwise: the spec's "not found"); a point
    (lat & long) or address_id (a compound id) is needed to place the issue in its grid, as there is no
    geocoder (address_string alone: 400); description becomes the description and, its first line cut to
    60 characters, the title; attribute[affected_households] and attribute[hazards][] become the issue's;
    first_name, last_name and phone become the reporter's contact (personal data, stored encrypted, never
    shown by Open311); media_url (http or https) is kept as a line of the description, never fetched;
    email, device_id and account_id are not kept."""
    code = (values.get("service_code") or "").strip()
    codes = [c.code for c in rules.categories]
    if not code:
        raise Open311Error(
            400, f"service_code was not provided; use one of: {', '.join(codes)} (缺少 service_code，请选择事项类别)"
        )
    category = next((c for c in rules.categories if c.code == code), None)
    if category is None:
        raise Open311Error(
            404, f"service_code {code[:40]!r} was not found; use one of: {', '.join(codes)} (未找到该事项类别)"
        )
    lat, lon = _number(values, "lat"), _number(values, "long")
    if (lat is None) != (lon is None):
        raise Open311Error(400, "lat and long must be sent together (lat 与 long 须同时提供)")
    address = (values.get("address_string") or "").strip()
    compound = (values.get("address_id") or "").strip()
    if lat is None and not compound:
        what = "address_string alone cannot be placed in a grid (no geocoder here)" if address else "no location"
        raise Open311Error(
            400,
            f"{what}: send lat & long (WGS84) or address_id (the compound's id) "
            "(请提供坐标 lat/long 或小区编号 address_id)",
        )
    attributes = parse_attributes(values)
    unknown = sorted(set(attributes) - {"affected_households", "hazards"})
    if unknown:
        raise Open311Error(
            400,
            f"attribute[{unknown[0][:40]}] is not an attribute of {code}; it takes affected_households and hazards "
            "(未知属性)",
        )
    households = 0
    given = attributes.get("affected_households", [])
    if len(given) > 1:
        raise Open311Error(400, "attribute[affected_households] takes one number (受影响户数只能填一个)")
    if given:
        if not re.fullmatch(r"\d{1,7}", given[0]) or int(given[0]) > HOUSEHOLDS_MAX:
            raise Open311Error(
                400,
                f"attribute[affected_households] {given[0][:30]!r} is not a whole number 0..{HOUSEHOLDS_MAX} "
                "(受影响户数须为整数)",
            )
        households = int(given[0])
    hazards = split_list(attributes.get("hazards", []))
    valid_hazards = [h.code for h in rules.hazards]
    for hazard in hazards:
        if hazard not in valid_hazards:
            raise Open311Error(
                400,
                f"attribute[hazards] {hazard[:40]!r} is not a hazard here; use any of: {', '.join(valid_hazards)} "
                "(未知险情类别)",
            )
    description = (values.get("description") or "").strip()
    media = (values.get("media_url") or "").strip()
    if media and (len(media) > MEDIA_URL_MAX or not re.match(r"^https?://[^\s]+$", media)):
        raise Open311Error(
            400, f"media_url must be one http or https URL of at most {MEDIA_URL_MAX} characters (链接格式不正确)"
        )
    title = _title(description, category.name_zh)
    text = description or category.name_zh
    if media:
        text += f"\n附件链接 media_url: {media}"
    name = contact_name(values.get("first_name") or "", values.get("last_name") or "")
    phone = (values.get("phone") or "").strip()
    return intake_pb2.CreateIssueRequest(
        title=title,
        description=text,
        channel=CHANNEL,
        category=code,
        location=common_pb2.Location(lat=lat, lon=lon, address=address, compound_id=compound),
        affected_households=households,
        hazards=hazards,
        contact=intake_pb2.Contact(name=name, phone=phone) if name or phone else None,
    )


# ---------------------------------------------------------------- the spec's records


def w3_time(ts: Timestamp) -> str | None:
    """A protobuf time as the spec's W3C date-time, in Asia/Shanghai (+08:00); None when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    at = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=SHANGHAI)
    return at.isoformat(timespec="seconds")


def service_json(category: intake_pb2.Category) -> dict[str, Any]:
    description = category.name_en or category.name_zh
    if category.group:
        description += f" ({category.group})"
    return {
        "service_code": category.code,
        "service_name": category.name_zh,
        "description": description,
        "metadata": True,
        "type": "realtime",
        "keywords": ", ".join(category.keywords),
        "group": category.group,
    }


def definition_json(code: str, rules: intake_pb2.ClassificationRules) -> dict[str, Any]:
    """The service definition: the two attributes every category takes."""
    return {
        "service_code": code,
        "attributes": [
            {
                "variable": True,
                "code": "affected_households",
                "datatype": "number",
                "required": False,
                "datatype_description": f"整数 0–{HOUSEHOLDS_MAX} A whole number, 0..{HOUSEHOLDS_MAX}",
                "order": 1,
                "description": "受影响户数 How many households are affected? "
                f"(≥{rules.major_households}: 重大 major, ≥{rules.urgent_households}: 紧急 urgent)",
            },
            {
                "variable": True,
                "code": "hazards",
                "datatype": "multivaluelist",
                "required": False,
                "datatype_description": "可多选 Choose any that apply",
                "order": 2,
                "description": "险情 Hazards present: each raises the issue's urgency",
                "values": [{"key": h.code, "name": h.name_zh} for h in rules.hazards],
            },
        ],
    }


def closed_at(issue: intake_pb2.Issue) -> Timestamp | None:
    """When the issue was last closed: the first closed step after its last open one."""
    found: Timestamp | None = None
    was_closed = False
    for step in issue.history:
        closed = step.status in CLOSED_STATUSES
        if closed and not was_closed:
            found = step.at
        was_closed = closed
    return found if was_closed else None


def status_notes(issue: intake_pb2.Issue) -> str | None:
    """The issue's last step, as the resident reads it: Chinese, then English. A report waiting for
    verification or declined: its filing's note (e.g. 不予立案：不属于社区职责，已转12345热线 (declined: out of
    scope, referred to 12345)); never a person's name, phone or the worker's own note."""
    note = issue.filing.status_note_zh
    if issue.status in FILING_NOTE_STATUSES and note:
        return f"{note} ({issue.filing.status_note_en})" if issue.filing.status_note_en else note
    if not issue.history:
        return None
    last = issue.history[-1]
    if last.note_zh and last.note_en:
        return f"{last.note_zh} ({last.note_en})"
    return last.note_zh or last.note_en or None


def agency(issue: intake_pb2.Issue, tenant_zh: str) -> str:
    return issue.place.community_name_zh or tenant_zh


def service_notice(issue: intake_pb2.Issue, tenant_zh: str) -> str:
    who = agency(issue, tenant_zh)
    urgency = issue.urgency or "routine"
    text = f"{who}受理，按{URGENCY_ZH.get(urgency, urgency)}事项办理 ({who} handles it as a {urgency} issue)"
    if issue.status == "pending_verification":
        text = f"{who}已收到，待核实立案 ({who} received it; it awaits verification before filing)"
    if issue.duplicate_of:
        dup = issue.duplicate_of
        text += f"；与事项 {dup} 重复，随原事项办理 (a duplicate of request {dup}; it follows it)"
    return text


def _description(issue: intake_pb2.Issue) -> str:
    """The description; the title first when it is not already the description's start (issues from other
    channels have both)."""
    title, text = issue.title.strip(), issue.description.strip()
    if not title or text.startswith(title.rstrip("…")):
        return text
    return f"{title}\n{text}"


def request_json(issue: intake_pb2.Issue, tenant_zh: str, base_url: str) -> dict[str, Any]:
    """One service request, in the spec's order. Open311 fields only: no contact, no account."""
    loc = issue.location
    status = issue.open311_status or ("closed" if issue.status in CLOSED_STATUSES else "open")
    updated = closed_at(issue) if status == "closed" else None
    media = [
        f"{base_url}/api/v1/tenants/{issue.tenant}/issues/{issue.id}/attachments/{a.id}" for a in issue.attachments
    ]
    description = _description(issue)
    if issue.status == "declined" and issue.filing.decline_reason == "abusive":  # its text and files: not public
        description, media = WITHHELD, []
    return {
        "service_request_id": issue.id,
        "status": status,
        "status_notes": status_notes(issue),
        "service_name": issue.category_zh or issue.category,
        "service_code": issue.category,
        "description": description,
        "agency_responsible": agency(issue, tenant_zh),
        "service_notice": service_notice(issue, tenant_zh),
        "requested_datetime": w3_time(issue.created_at),
        "updated_datetime": w3_time(updated or issue.updated_at) or w3_time(issue.created_at),
        "expected_datetime": None,  # no service level is set for any category: promised to nobody
        "address": loc.address or None,
        "address_id": loc.compound_id or None,
        "zipcode": None,
        "lat": loc.lat if loc.HasField("lat") else None,
        "long": loc.lon if loc.HasField("lon") else None,
        "media_url": media[0] if media else None,
    }


# ---------------------------------------------------------------- calls


def reader(tenant: str) -> Principal:
    """Who the gateway reads public Open311 data as: itself, scoped to the one jurisdiction."""
    return Principal(sub=READER_SUB, role="service", tenants=(tenant,))


@contextmanager
def reading(tenant: str) -> Iterator[None]:
    with context.bound(tenant=tenant, principal=reader(tenant)):
        try:
            yield
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None


def _rules(tenant: str) -> intake_pb2.ClassificationRules:
    with reading(tenant):
        rules: intake_pb2.ClassificationRules = clients().intake.GetClassificationRules(
            intake_pb2.GetClassificationRulesRequest()
        )
    return rules


def _ts(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at.astimezone(UTC))
    return ts


def _newest_first(issues: Iterable[intake_pb2.Issue]) -> list[intake_pb2.Issue]:
    return sorted(issues, key=lambda i: (i.created_at.seconds, i.created_at.nanos, i.id), reverse=True)


def _by_ids(tenant: str, ids: Sequence[str]) -> list[intake_pb2.Issue]:
    found: list[intake_pb2.Issue] = []
    with reading(tenant):
        for i in range(0, len(ids), PAGE):
            chunk = ids[i : i + PAGE]
            resp = clients().intake.ListIssues(intake_pb2.ListIssuesRequest(ids=chunk, page_size=PAGE))
            found.extend(i for i in resp.issues if i.channel in PUBLIC_CHANNELS)
    return _newest_first(found)


def _search(
    tenant: str, codes: Sequence[str], statuses: frozenset[str], start: datetime, end: datetime
) -> list[intake_pb2.Issue]:
    """Requests made in [start, end], of these categories (all: none given) and Open311 statuses, newest first,
    at most LIMIT: one scan of intake's pages per category, stopping at LIMIT matches."""
    found: dict[str, intake_pb2.Issue] = {}
    until = end + timedelta(milliseconds=1)  # intake's created_to is exclusive; times are stored in ms
    with reading(tenant):
        for code in codes or [""]:
            token, matched = "", 0
            while True:
                resp = clients().intake.ListIssues(
                    intake_pb2.ListIssuesRequest(
                        page_size=PAGE,
                        page_token=token,
                        category=code,
                        created_from=_ts(start),
                        created_to=_ts(until),
                    )
                )
                for issue in resp.issues:
                    if issue.channel in PUBLIC_CHANNELS and (issue.open311_status or "open") in statuses:
                        found[issue.id] = issue
                        matched += 1
                if matched >= LIMIT or not resp.next_page_token:
                    break
                token = resp.next_page_token
    return _newest_first(found.values())[:LIMIT]


def _get(tenant: str, request_id: str, what: str) -> intake_pb2.Issue:
    try:
        with reading(tenant):
            issue: intake_pb2.Issue = clients().intake.GetIssue(intake_pb2.GetIssueRequest(id=request_id))
    except ApiError as err:
        if err.status == 404:
            raise Open311Error(404, f"{what} {request_id[:60]!r} was not found in {tenant} (未找到该诉求)") from None
        raise
    if issue.channel not in PUBLIC_CHANNELS:  # not a public request: answered as one that does not exist
        raise Open311Error(404, f"{what} {request_id[:60]!r} was not found in {tenant} (未找到该诉求)")
    return issue


def reporter(values: MultiDict[str, str], tenant: str) -> Principal:
    """The principal behind the form's api_key, admitted by the policy table's line for reporting with the
    jurisdiction as its tenant; 403 otherwise (missing, invalid, a role that may not report, out of scope)."""
    if "api_key" in request.args:
        raise Open311Error(
            403, "send api_key in the form body, not in the URL (URLs are logged) (api_key 请放在请求体中)"
        )
    key = (values.get("api_key") or "").strip()
    if not key:
        raise Open311Error(403, "api_key was not provided: reporting needs a Hongling API token (缺少 api_key)")
    try:
        identity = identify(f"Bearer {key}", current_app.extensions["hongling.tokens"], None)
    except ApiError as err:
        raise Open311Error(403, f"invalid api_key: {err.message} (api_key 无效)") from None
    rule = POLICY[REPORT_ENDPOINT]
    principal, refusal = decide(replace(rule, tenant_scoped=True), REPORT_ENDPOINT, identity, tenant, local=False)
    if refusal is not None:
        route = request.url_rule.rule if request.url_rule else REPORT_ENDPOINT
        REFUSALS.labels(route, identity.principal.role, "403").inc()
        if identity.principal.role == "district_department":  # every department call is audited, refused too
            department.audit_plain_call(
                identity.principal,
                outcome="refused",
                door="http",
                method=f"{request.method} {route}",
                tenant=tenant,
                request_id=g.get("request_id") or "",
                detail={"reason": refusal.code},
                audit=current_audit(),
            )
        raise Open311Error(403, f"api_key refused: {refusal.message}")
    assert principal is not None
    g.identity, g.principal = identity, principal  # the request log and tenant_call act as the api_key's holder
    current_app.extensions["hongling.ratelimits"].check_principal()
    return principal


# ---------------------------------------------------------------- routes


@bp.get(f"{PREFIX}/services.{FORMAT}")
def list_services(fmt: str) -> Response:
    """Open311服务列表 GeoReport v2: the jurisdiction's services (intake categories)"""
    tenant = jurisdiction(request.args)
    return render("services", [service_json(c) for c in _rules(tenant).categories], fmt)


@bp.get(f"{PREFIX}/services/<service_code>.{FORMAT}")
def get_service_definition(service_code: str, fmt: str) -> Response:
    """Open311服务定义 GeoReport v2: a service's attributes (affected households, hazards)"""
    tenant = jurisdiction(request.args)
    rules = _rules(tenant)
    if service_code not in (c.code for c in rules.categories):
        codes = ", ".join(c.code for c in rules.categories)
        raise Open311Error(
            404, f"service_code {service_code[:40]!r} was not found; use one of: {codes} (未找到该事项类别)"
        )
    return render("service_definition", definition_json(service_code, rules), fmt)


@bp.post(f"{PREFIX}/requests.{FORMAT}")
def create_request(fmt: str) -> Response:
    """Open311上报诉求 GeoReport v2: report a service request (api_key in the form body)"""
    if request.content_length and request.mimetype not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        raise Open311Error(
            400,
            f"send the request as application/x-www-form-urlencoded, not {request.mimetype or 'no type'} "
            "(请以表单格式提交)",
        )
    values = request.values
    tenant = jurisdiction(values)
    reporter(request.form, tenant)
    rules = _rules(tenant)
    req = report_request(values, rules)
    with tenant_call(tenant):  # as the api_key's holder; a service's refusal becomes an Open311 error
        issue: intake_pb2.Issue = clients().intake.CreateIssue(req)
    notice = service_notice(issue, get_tenant(tenant).name_zh)
    if issue.follow_code:
        notice += f"；{FOLLOW_NOTICE}"
    answer = {
        "service_request_id": issue.id,
        "service_notice": notice,
        "account_id": None,
        # 查询码 (an extension of the spec's answer): shown once, only its hash is kept; see follow_request.
        "follow_code": issue.follow_code or None,
    }
    resp = render("service_requests", [answer], fmt, 201)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get(f"{PREFIX}/requests.{FORMAT}")
def list_requests(fmt: str) -> Response:
    """Open311诉求列表 GeoReport v2: service requests (ids, service_code, status, start_date/end_date)"""
    args = request.args
    tenant = jurisdiction(args)
    ids = split_list(args.getlist("service_request_id"))
    if ids:  # the spec: it overrides every other argument
        if len(ids) > LIMIT:
            raise Open311Error(400, f"service_request_id: at most {LIMIT} ids at once (一次最多查询{LIMIT}条)")
        issues = _by_ids(tenant, ids)
    else:
        codes = split_list(args.getlist("service_code"))
        if codes:
            known = [c.code for c in _rules(tenant).categories]
            bad = [c for c in codes if c not in known]
            if bad:
                raise Open311Error(
                    400,
                    f"service_code {bad[0][:40]!r} is not a service here; use any of: {', '.join(known)} "
                    "(未知事项类别)",
                )
        statuses = parse_statuses(args.getlist("status"))
        start, end = request_window(args.get("start_date"), args.get("end_date"), datetime.now(UTC))
        issues = _search(tenant, codes, statuses, start, end)
    tenant_zh = get_tenant(tenant).name_zh
    base = request.host_url.rstrip("/")
    return render("service_requests", [request_json(i, tenant_zh, base) for i in issues], fmt)


@bp.get(f"{PREFIX}/requests/<service_request_id>.{FORMAT}")
def get_request(service_request_id: str, fmt: str) -> Response:
    """Open311诉求详情 GeoReport v2: one service request"""
    tenant = jurisdiction(request.args)
    issue = _get(tenant, service_request_id, "service_request_id")
    data = [request_json(issue, get_tenant(tenant).name_zh, request.host_url.rstrip("/"))]
    return render("service_requests", data, fmt)


@bp.get(f"{PREFIX}/tokens/<token>.{FORMAT}")
def get_token(token: str, fmt: str) -> Response:
    """Open311令牌查询 GeoReport v2: the service_request_id of a token (here: the request's own id)"""
    tenant = jurisdiction(request.args)
    issue = _get(tenant, token, "token")
    return render("service_requests", [{"service_request_id": issue.id, "token": token}], fmt)


@bp.post(f"{PREFIX}/requests/<service_request_id>/follow.{FORMAT}")
def follow_request(service_request_id: str, fmt: str) -> Response:
    """Open311诉求跟踪 (extension): the reporter follows its request with the follow-up code (form body)"""
    if "follow_code" in request.args:
        raise Open311Error(400, "send follow_code in the form body, not in the URL (查询码请放在请求体中)")
    values = request.form
    tenant = jurisdiction(request.values)
    code = (values.get("follow_code") or "").strip()
    if not code:
        raise Open311Error(400, "follow_code is required: the code the report's answer gave (缺少查询码)")
    if len(code) > 40:
        raise Open311Error(400, "follow_code is not a follow-up code (查询码格式不正确)")
    current_app.extensions["hongling.ratelimits"].check_follow()
    stub = ratings_pb2_grpc.RatingServiceStub(clients().channels["evaluation"])
    try:
        with reading(tenant):
            found = stub.FollowIssue(ratings_pb2.FollowIssueRequest(issue_id=service_request_id, follow_code=code))
    except ApiError as err:
        if err.status in (403, 404):
            raise Open311Error(403, "the follow-up code does not match this request (查询码不正确)") from None
        raise
    answer = {
        "service_request_id": found.issue_id,
        "status": "closed" if found.status in CLOSED_STATUSES else "open",
        "status_notes": f"{found.status_zh} ({found.status})",
        "task_status": found.task_status or None,
        "verified": found.verified,
        "can_rate": found.can_rate,
        "rate_until": w3_time(found.rate_until) if found.HasField("rate_until") else None,
        "can_reject": found.can_reject,
        "reject_until": w3_time(found.reject_until) if found.HasField("reject_until") else None,
        "rated": found.HasField("rating"),
    }
    resp = render("service_requests", [answer], fmt)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/open311/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], endpoint="unknown_resource")
def unknown_resource(rest: str) -> Response:
    """Open311未知资源 Anything else under /open311: 404 (or 405) in the spec's error format"""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ("GET", "POST"):
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "open311.unknown_resource":
            allowed.append(method)
    if allowed:
        raise Open311Error(
            405,
            f"{request.method} is not allowed on {request.path}; use {' or '.join(allowed)} (不支持该请求方法)",
            headers={"Allow": ", ".join(allowed)},
        )
    raise Open311Error(
        404,
        f"no such resource: {request.path[:100]}; GeoReport v2 ({SPEC}) serves {PREFIX}/services, "
        f"services/{{service_code}}, requests, requests/{{id}} and tokens/{{token}}, each .json or .xml "
        "(资源不存在)",
    )
