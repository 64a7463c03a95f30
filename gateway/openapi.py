"""The OpenAPI 3.1 document of the HTTP API, built at run time from the code (served by gateway/docs.py).

Nothing here lists the routes: build_spec() walks the Flask url_map (every /api/v1 route) and takes
- the summary from the view's docstring (first line; the rest is the description), falling back to a
  bilingual line per endpoint in SUMMARIES while a view has none;
- path parameters from the rule (converter -> type), methods from the rule;
- who may call it from gateway/policy.py POLICY: the roles (description and `x-hongling-roles`), bearer
  security, `security: [{}, {bearer: []}]` where the anonymous public is admitted, and how a community
  worker is held to its community there (description and `x-hongling-community-scope`);
- request and response schemas from what the route really uses: pydantic models' JSON Schema
  (CreateIssueIn), and for the org routes JSON Schema converted from the protobuf message descriptors
  exactly as gateway/protojson.py writes them (ProtoSchemas), with the .proto comments as descriptions;
  the dispatch and webhook routes declare theirs next to the views (routes_dispatch.DOCS: body model or
  message, answer message or page of them, query parameters, If-Match, headers).
The generic org routes (`<collection>`) are expanded into one path per collection of
gateway/routes_org.py COLLECTIONS, with that collection's message; import/export only where the
collection has spreadsheets, DELETE only where the service deletes. A route this module has no
knowledge of still appears, with its docstring, parameters, roles and the error responses.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from flask import Flask
from google.protobuf.descriptor import FieldDescriptor
from hongling.intake.v1 import intake_pb2
from hongling.org.v1 import org_pb2
from pydantic import BaseModel
from werkzeug.routing import Rule as UrlRule

from gateway.department import GRANT_HEADER
from gateway.policy import COMMUNITY_SCOPES, POLICY, Rule
from gateway.protojson import TIMESTAMP, FieldDesc, MessageDesc
from gateway.query import declared, filter_params
from gateway.routes_alliance_meetings import bp as _alliance_meetings_bp  # noqa: F401  (adds its routes' DOCS)
from gateway.routes_audit import EXPORT_FORMATS
from gateway.routes_dashboard import bp as _dashboard_bp  # noqa: F401  (adds its route's DOCS)
from gateway.routes_dispatch import DOCS, Doc
from gateway.routes_issues import CHANNEL_NAMES_ZH, AssistanceTaskIn, CreateIssueIn, FilingDecisionIn, ReclassifyIn
from gateway.routes_org import COLLECTIONS, ETAG_RE, IMPORT_MAX_BYTES, SHEET_FORMATS, Collection
from gateway.routes_ratings import bp as _ratings_bp  # noqa: F401  (adds its routes' DOCS)
from gateway.routes_webhooks import bp as _webhooks_bp  # noqa: F401  (adds its routes' DOCS)
from gateway.tokens import TOKEN_ROLES
from services.common.tenants import all_tenants

OPENAPI_VERSION = "3.1.0"
API_PREFIX = "/api/v1/"
PROTO_ROOT = Path(__file__).resolve().parents[1] / "protos"
JSON = "application/json"
METHOD_ORDER = ("get", "post", "put", "patch", "delete")
BINARY = {"schema": {"type": "string", "format": "binary"}}  # a spreadsheet as the body
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
IF_MATCH: dict[str, Any] = {"$ref": "#/components/parameters/If-Match"}
GRANT_PARAM: dict[str, Any] = {
    "name": "X-Hongling-Grant",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^gr-[0-9a-f]{28}$"},
    "description": "授权编号 District departments: the approved grant this call is made under (others: omit)",
}
F = FieldDescriptor
Schema = dict[str, Any]

# Chinese names of the org collections, for tags and summaries (the URL slugs are English).
COLLECTION_ZH = {
    "communities": "社区",
    "grids": "网格",
    "compounds": "小区",
    "grid-stations": "网格驿站",
    "party-organizations": "党组织",
    "member-units": "成员单位",
    "people": "人员",
    "volunteer-teams": "志愿者队伍",
    "talent-entries": "社区人才清单",
    "team-service-entries": "志愿者队伍服务清单",
    "unit-resource-entries": "驻地单位资源清单",
    "responsibility-items": "责任清单",
    "public-affairs-items": "公共事务清单",
}
# Used while a view has no docstring. {zh}, {slug}, {name}: the org collection (expanded routes).
SUMMARIES = {
    "tenants": "街道/镇列表 The tenants (subdistricts and towns)",
    "issues.create_issue": "上报民情事项 Report an issue",
    "issues.get_issue": "查看事项及派单 An issue and its dispatch task",
    "issues.list_issues": "事项列表 Issues, newest first",
    "issues.count_issues": "事项统计 Issues by status",
    "org.list_items": "{zh}列表 List {slug}",
    "org.get_item": "查看{zh} Read one {name}",
    "org.create_item": "新建{zh} Create a {name}",
    "org.update_item": "修改{zh} Update a {name}",
    "org.delete_item": "删除{zh} Delete a {name}",
    "org.import_sheet": "导入{zh}表格 Import {slug} from a spreadsheet",
    "org.start_import_job": "导入{zh}表格（后台任务） Import {slug} from a spreadsheet as a background job",
    "org.export_sheet": "导出{zh}表格 Export {slug} as a spreadsheet",
    "org.resolve_location": "定位 A point or compound -> its community, grid and compound",
    "org.find_candidates": "点将依据 People, teams and units that fit a need, best first",
}
# Which collections an expanded org route exists for (the views refuse the others with 404/405).
APPLIES: dict[str, Callable[[Collection], bool]] = {
    "org.delete_item": lambda c: c.deletable,
    "org.import_sheet": lambda c: c.sheets,
    "org.start_import_job": lambda c: c.sheets,
    "org.export_sheet": lambda c: c.sheets,
}
# The org import jobs' routes without a collection (gateway/routes_org.py), declared as the dispatch routes'.
ORG_DOCS = {
    "org.get_import_job": Doc(org_pb2.ImportJob, errors=(404,)),
    "org.list_import_jobs": Doc(org_pb2.ImportJob, list_key="items", errors=(400,)),
}
# Fields the org routes drop from request bodies (routes_org from_json(..., drop=...)): read-only.
ORG_READ_ONLY = ("meta", "version")
# path parameters with a pattern (gateway/routes_publications.py)
PATH_PATTERNS = {
    "pub_id": "^(monthly|boards|report):(\\*|[A-Za-z0-9][A-Za-z0-9._:-]{0,63}):[0-9]{4}(-(0[1-9]|1[0-2])|Q[1-4])"
    "(:v[1-9][0-9]{0,5})?$",
    "community_id": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
}
PATH_PARAM_DOCS = {
    "item_id": "记录编号 The record's id",
    "issue_id": "事项编号 The issue's id",
    "task_id": "任务编号 The task's id",
    "whistle_id": "集结号编号 The call's id",
    "webhook_id": "推送地址编号 The webhook registration's id",
    "job_id": "导入任务编号 The import job's id",
    "post_id": "岗位编号 The post's id",
    "shift_id": "班次编号 The shift's id",
    "claim_id": "认领编号 The claim's id",
    "activity_id": "活动编号 The activity's id",
    "pub_id": "发布编号 <kind>:<scope>:<period>:v<n>, e.g. monthly:c-001:2026-11:v1; without :v<n> the current "
    "released version",
    "channel": "渠道 html_a4 | html_a3 | pdf_a4 | pdf_a3 | wechat | article | json | xlsx (the kind's own)",
}
# Routes whose JSON is their views' own (no model describes it): the success status, what answers it carries
# (None: JSON) and the errors each view sends, so that every status they answer is in the document.
PLAIN: dict[str, tuple[int, dict[str, Schema] | None, tuple[int, ...]]] = {
    "audit.list_entries": (200, None, (400,)),
    "audit.list_tenant_entries": (200, None, (400,)),
    "audit.verify_chain": (200, None, ()),
    "auth.login": (200, None, (400, 403, 503)),
    "auth.logout": (204, {}, (400, 503)),
    "auth.me": (200, None, ()),
    "governance.list_requests": (200, None, (400,)),
    "governance.file_request": (201, None, (400, 404, 409)),
    "governance.get_request": (200, None, (404,)),
    "governance.approve_request": (200, None, (400, 404, 409)),
    "governance.reject_request": (200, None, (400, 404, 409)),
    "governance.get_grant": (200, None, (404,)),
    "governance.revoke_grant": (200, None, (400, 404, 409)),
    "governance.list_tenant_grants": (200, None, (400,)),
    "alliance_ledger.export_hours": (200, {XLSX: BINARY}, (400,)),
    "alliance_meetings.minutes": (200, {DOCX: BINARY}, (404,)),
    "users.list_users": (200, None, (400, 404, 503)),
    "users.create_user": (201, None, (400, 409, 503)),
    "users.change_role": (200, None, (400, 404, 409, 503)),
}
# Those of them that read a JSON object as their body (the views say which fields).
PLAIN_BODIES = frozenset(
    {
        "auth.login",
        "governance.file_request",
        "governance.approve_request",
        "governance.reject_request",
        "governance.revoke_grant",
        "users.create_user",
        "users.change_role",
    }
)
ERRORS: dict[int, str] = {
    400: "请求有误 Bad request: not JSON, an unknown field, a wrong type or value; `field` names it",
    401: "未认证 No token where the route needs one, or a malformed, unknown, expired or revoked token",
    403: "无权访问 The token's role may not use this route, or its tenant scope does not include {tenant}",
    404: "不存在 Unknown tenant, collection or record",
    409: "冲突 It exists already, or the service's rules refuse the change in the current state",
    412: "版本已过期 If-Match names a version that is no longer current: read the record again, then retry",
    413: "请求体过大 The body is too large",
    428: "缺少If-Match Send If-Match with the ETag you read, so nobody's change is overwritten",
    429: "请求过多 Too many requests from this address or caller (the gateway's rate limits), or a back-end "
    "service's limit was reached; retry after Retry-After seconds",
    503: "服务暂不可用 A back-end service is not answering right now; retry after Retry-After seconds",
}
ISSUE_EXAMPLE = {
    "title": "楼道灯不亮",
    "description": "3号楼2单元楼道灯坏了",
    "channel": "online",
    "location": {"lat": 36.1876, "lon": 117.1296, "address": "嘉德社区3号楼"},
}
INFO_DESCRIPTION = """\
红领益家社区共治平台（泰山区）的HTTP接口。本文档由网关在运行时根据代码生成：路由、权限表、请求模型与protobuf消息定义。
The HTTP API of the Hongling community co-governance platform (Taishan District). This document is
built by the gateway at run time from its code: the routes, the policy table, the request models and
the protobuf message descriptors.

- **认证 Authentication**: `Authorization: Bearer hl_…` (an API token); no header = the anonymous public
  (匿名公众). Each operation names the roles it admits, also as `x-hongling-roles`; a tenant-scoped route
  also needs `{tenant}` in the token's scope (`*` = every tenant). A presented token is always checked.
- **错误 Errors**: always `{"error": {"code", "message", "field", "request_id"}}`, never a stack trace.
- **时间 Times**: RFC 3339, shown in Asia/Shanghai (`+08:00`).
- **组织架构 Org records**: JSON with the protobuf field names. Responses carry every field (an unset
  nested record or optional value as `null`); in requests an absent or `null` field is left unset and an
  unknown field is refused (400). 64-bit integers are JSON numbers. Personal data (phones, ID numbers)
  is stored encrypted and shown masked unless revealed.
- **请求编号 Request ids**: every response has `X-Request-Id`; send your own (8–64 of `A-Z a-z 0-9 . _ -`)
  to follow a call through the logs."""


# ---------------------------------------------------------------- .proto comments


_PACKAGE = re.compile(r"^package\s+([\w.]+)\s*;")
_BLOCK = re.compile(r"^(message|enum|oneof|service)\s+(\w+)\s*\{")
_FIELD = re.compile(
    r"^(?:optional\s+|repeated\s+)?(?:map\s*<[^>]*>|[\w.]+)\s+(\w+)\s*=\s*\d+\s*(?:\[[^\]]*\])?\s*;\s*(?://\s*(.*))?$"
)


@cache
def proto_comments(file_name: str) -> dict[str, str]:
    """The comments of a .proto under protos/, by full name ("pkg.Msg", "pkg.Msg.field"): the comment
    lines right above an element and the comment after it on its line. {} when the file is not there
    (e.g. google/protobuf/*.proto): the descriptors carry no source info, so this is the only source."""
    path = PROTO_ROOT / file_name
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    package = ""
    stack: list[tuple[str, str]] = []  # (kind, name) of the open blocks
    pending: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("//"):
            pending.append(line[2:].strip())
            continue
        leading, pending = " ".join(pending), []
        scope = ".".join([package, *(name for kind, name in stack if kind == "message")]).strip(".")
        if m := _PACKAGE.match(line):
            package = m.group(1)
        elif m := _BLOCK.match(line):
            kind, name = m.groups()
            if kind == "message" and leading:
                out[f"{scope}.{name}"] = leading
            if line.count("{") > line.count("}"):
                stack.append((kind, name))
        elif line.startswith("}"):
            if stack:
                stack.pop()
        elif (m := _FIELD.match(line)) and stack and stack[-1][0] in ("message", "oneof"):
            text = " ".join(t for t in (leading, (m.group(2) or "").strip()) if t)
            if text:
                out[f"{scope}.{m.group(1)}"] = text
    return out


def _comment(desc: Any) -> str:
    return proto_comments(desc.file.name).get(desc.full_name, "")


# ---------------------------------------------------------------- protobuf -> JSON Schema


def component_name(desc: MessageDesc) -> str:
    """The components/schemas key of a message: its full name without the leading "hongling."."""
    name: str = desc.full_name
    return name.removeprefix("hongling.")


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """The schema, or null."""
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


_SCALARS: dict[int, Schema] = {
    F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_INT64: {"type": "integer", "format": "int64"},
    F.TYPE_SINT64: {"type": "integer", "format": "int64"},
    F.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    F.TYPE_UINT64: {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
    F.TYPE_FIXED64: {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    F.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}


def _is_map(fd: FieldDesc) -> bool:
    return fd.type == F.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


class ProtoSchemas:
    """JSON Schema for protobuf messages as gateway/protojson.py's to_json writes them, one component per
    message (so recursive messages work): every field a property; 64-bit integers as JSON integers;
    Timestamp as an RFC 3339 date-time string; enums by name; bytes as base64; maps as objects; repeated
    as arrays; a field with presence (a nested message, `optional`, a oneof member) may be null."""

    def __init__(self, components: dict[str, Schema], read_only: dict[str, Iterable[str]] | None = None) -> None:
        self.components = components
        self.read_only = {k: frozenset(v) for k, v in (read_only or {}).items()}

    def ref(self, desc: MessageDesc) -> Schema:
        """A $ref to the message's schema, adding it (and every message it uses) to the components."""
        name = component_name(desc)
        if name not in self.components:
            self.components[name] = {}  # placeholder first: a message may contain itself
            self.components[name] = self._message(desc)
        return ref(name)

    def _message(self, desc: MessageDesc) -> Schema:
        schema: Schema = {"type": "object", "title": desc.name}
        notes = [_comment(desc)]
        oneofs = [o for o in desc.oneofs if not o.name.startswith("_")]  # "_x": proto3 `optional x`
        notes += [f"oneof {o.name}: at most one of {', '.join(f.name for f in o.fields)} (至多其一)" for o in oneofs]
        if text := " ".join(n for n in notes if n):
            schema["description"] = text
        read_only = self.read_only.get(component_name(desc), frozenset())
        props: dict[str, Schema] = {}
        fd: FieldDesc
        for fd in desc.fields:
            prop = self.field(fd)
            if fd.name in read_only:
                prop = {**prop, "readOnly": True}
            props[fd.name] = prop
        schema["properties"] = props
        schema["additionalProperties"] = False  # protojson.check refuses unknown fields
        return schema

    def field(self, fd: FieldDesc) -> Schema:
        """One field as to_json writes it."""
        if _is_map(fd):
            key_fd = fd.message_type.fields_by_name["key"]
            schema: Schema = {
                "type": "object",
                "additionalProperties": self._value(fd.message_type.fields_by_name["value"]),
            }
            if key_fd.type != F.TYPE_STRING:
                schema["propertyNames"] = {"pattern": "^(true|false)$" if key_fd.type == F.TYPE_BOOL else "^-?[0-9]+$"}
        elif fd.is_repeated:
            schema = {"type": "array", "items": self._value(fd)}
        elif fd.has_presence:
            schema = nullable(self._value(fd))
        else:
            schema = self._value(fd)
        if text := _comment(fd):
            schema = {**schema, "description": text}
        return schema

    def _value(self, fd: FieldDesc) -> Schema:
        if fd.type == F.TYPE_MESSAGE:
            if fd.message_type.full_name == TIMESTAMP:
                return {"type": "string", "format": "date-time"}
            return self.ref(fd.message_type)
        if fd.type == F.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
        return dict(_SCALARS[fd.type])


# ---------------------------------------------------------------- the routes


_COLLECTION = re.compile(r"<(?:\w+:)?collection>")  # the generic org routes' placeholder
_ARG = re.compile(r"<(?:(?P<conv>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
_CONVERTERS: dict[str, Schema] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}


def openapi_path(rule: str) -> tuple[str, list[tuple[str, Schema]]]:
    """A Werkzeug rule as an OpenAPI path, and its path parameters with their schemas."""
    params: list[tuple[str, Schema]] = []

    def sub(m: re.Match[str]) -> str:
        schema = dict(_CONVERTERS.get(m["conv"] or "", {"type": "string"}))
        # <any(a, b):name> is an enum (the publications' channels); the
        # publications' ids and a community's id in a path have their patterns
        if m["conv"] == "any" and m["args"]:
            schema = {"type": "string", "enum": [a.strip() for a in m["args"].split(",")]}
        elif m["name"] in PATH_PATTERNS:
            schema = {"type": "string", "pattern": PATH_PATTERNS[m["name"]]}
        params.append((m["name"], schema))
        return "{" + m["name"] + "}"

    return _ARG.sub(sub, rule), params


def _docstring(view: Callable[..., Any] | None) -> tuple[str, str]:
    """The view's docstring as (first line, the rest)."""
    doc = inspect.getdoc(view) if view is not None else None
    if not doc:
        return "", ""
    first, _, rest = doc.partition("\n")
    return first.strip(), rest.strip()


def _json(schema: Schema) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _ok(description: str, schema: Schema | None = None, headers: Iterable[str] = (), content: Any = None) -> Schema:
    out: Schema = {"description": description}
    if headers:
        out["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    if content is not None:
        out["content"] = content
    elif schema is not None:
        out["content"] = _json(schema)
    return out


def _param(name: str, where: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    out: Schema = {"name": name, "in": where, "description": description, "schema": schema}
    if required:
        out["required"] = True
    return out


@dataclass
class Op:
    """What one operation documents beyond what every operation gets."""

    params: list[Schema] = field(default_factory=list)
    body: Schema | None = None  # the requestBody object
    responses: dict[str, Schema] = field(default_factory=dict)  # success responses
    errors: tuple[int, ...] = ()  # beyond 401/403 and the tenant-scoped 404/429/503
    notes: str = ""


class SpecBuilder:
    """Collects paths and components while the url_map is walked."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}
        read_only: dict[str, Iterable[str]] = {
            component_name(c.message.DESCRIPTOR): ORG_READ_ONLY for c in COLLECTIONS.values()
        }
        for doc in DOCS.values():
            if doc.read_only and doc.body is not None and not issubclass(doc.body, BaseModel):
                read_only[component_name(doc.body.DESCRIPTOR)] = doc.read_only
        self.proto = ProtoSchemas(self.schemas, read_only=read_only)
        self.paths: dict[str, dict[str, Schema]] = {}
        self.tags: dict[str, str] = {}
        self.operation_ids: set[str] = set()

    # ------------------------------------------------------------ component helpers

    def model(self, cls: type[BaseModel]) -> Schema:
        """A $ref to a pydantic model's JSON Schema, its own $defs hoisted into the components."""
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, sub)
        self.schemas.setdefault(cls.__name__, schema)
        return ref(cls.__name__)

    def message(self, cls: Any) -> Schema:
        return self.proto.ref(cls.DESCRIPTOR)

    # ------------------------------------------------------------ the walk

    def add(self, url_rule: UrlRule, view: Callable[..., Any] | None) -> None:
        methods = sorted((url_rule.methods or set()) - {"HEAD", "OPTIONS"})
        if _COLLECTION.search(url_rule.rule):
            applies = APPLIES.get(url_rule.endpoint, lambda _c: True)
            for c in COLLECTIONS.values():
                if applies(c):
                    rule = _COLLECTION.sub(c.slug, url_rule.rule)
                    for method in methods:
                        self._operation(rule, method, url_rule.endpoint, view, c)
        else:
            for method in methods:
                self._operation(url_rule.rule, method, url_rule.endpoint, view, None)

    def _operation(
        self, rule: str, method: str, endpoint: str, view: Callable[..., Any] | None, c: Collection | None
    ) -> None:
        path, path_params = openapi_path(rule)
        policy = POLICY.get(endpoint)
        first, rest = _docstring(view)
        zh = COLLECTION_ZH.get(c.slug, c.slug) if c else ""
        fallback = SUMMARIES.get(endpoint, policy.family if policy else endpoint)
        if c is not None:
            summary = f"{first} ({zh} {c.slug})" if first else fallback.format(zh=zh, slug=c.slug, name=c.name)
        else:
            summary = first or fallback
        op = self._describe(endpoint, c)
        params: list[Schema] = []
        for name, schema in path_params:
            if name == "tenant":
                params.append({"$ref": "#/components/parameters/tenant"})
            else:
                params.append(_param(name, "path", schema, PATH_PARAM_DOCS.get(name, name), required=True))
        params += [p.openapi() for p in declared(view)]  # the view's @query (gateway/query.py)
        params += op.params
        if policy is not None and policy.grant:
            params.append(GRANT_PARAM)
        base_id = endpoint.replace(".", "_") + (f"__{c.slug.replace('-', '_')}" if c else "")
        operation_id = base_id if base_id not in self.operation_ids else f"{base_id}__{method.lower()}"
        self.operation_ids.add(operation_id)
        tag = f"org.{c.slug}" if c else self._tag_of(endpoint, path)
        document: Schema = {
            "operationId": operation_id,
            "summary": summary,
            "description": "\n\n".join(t for t in (rest, op.notes, self._who(policy)) if t),
            "tags": [tag],
        }
        if params:
            document["parameters"] = params
        if op.body is not None:
            document["requestBody"] = op.body
        document["responses"] = self._responses(policy, op, self._general_errors(params, op))
        document["security"] = self._security(policy)
        document["x-hongling-roles"] = self._roles(policy)
        if policy is not None and policy.tenant_scoped:
            document["x-hongling-tenant-scoped"] = True
        if policy is not None and policy.community:
            document["x-hongling-community-scope"] = policy.community
        self.paths.setdefault(path, {})[method.lower()] = document
        if c is not None:
            self.tags.setdefault(tag, f"组织架构 · {zh} Organisation: {c.slug} ({c.name})")

    def _tag_of(self, endpoint: str, path: str) -> str:
        family = endpoint.split(".", 1)[0] if "." in endpoint else path[len(API_PREFIX) :].split("/", 1)[0]
        known = {
            "tenants": "街道/镇 The tenants: 7 subdistricts (街道) and towns (镇)",
            "issues": "民情事项 Issues: residents' problems from every channel (社区接单)",
            "org": "组织架构 Organisation: location and matching queries, spreadsheet import jobs",
            "dispatch": "吹号派单 Dispatch: the whistle board (集结号), report-ins (报到), claims (认领), "
            "assignment (点将), task transitions and deadlines",
            "webhooks": "事件推送 Webhooks: signed deliveries of dispatch events to SMS / WeChat gateways and "
            "other systems",
            "docs": "接口文档 This API's description",
            "dashboard": "仪表盘 Dashboard: figures kept as rollups by the read models (no row is read per request)",
            "verification": "验单 Verification: the queue of done tasks, collective review rounds (集中评议), on-site "
            "checks (现场核验) and the tenant's rules; the verdicts are events dispatch applies",
        }
        self.tags.setdefault(family, known.get(family, family))
        return family

    # ------------------------------------------------------------ per endpoint

    def _describe(self, endpoint: str, c: Collection | None) -> Op:
        """What the route really takes and returns, from the objects it uses."""
        if c is not None:
            return self._org_collection(endpoint, c)
        if endpoint in DOCS or endpoint in ORG_DOCS:
            return self._declared(DOCS.get(endpoint) or ORG_DOCS[endpoint])
        if endpoint == "tenants":
            tenants = {
                "type": "object",
                "properties": {"tenants": {"type": "array", "items": self.message(org_pb2.Tenant)}},
            }
            return Op(responses={"200": _ok("街道/镇 The 7 tenants (slug, 中文名, English name, kind)", tenants)})
        if endpoint == "issues.create_issue":
            created = {
                "type": "object",
                "required": ["issue", "task"],
                "properties": {
                    "issue": ref("IssueView"),
                    "task": {"type": "null", "description": "派单 (later)"},
                    "follow_code": {
                        "type": ["string", "null"],
                        "description": "查询码 The reporter's private follow-up code, shown ONCE (only its hash is "
                        "kept): with it the reporter follows, rates or rejects the result "
                        "(/issues/{id}/follow, header X-Follow-Code). null for a retried idempotency key, a "
                        "meeting's action item or a department's task",
                    },
                },
            }
            self._issue_views()
            body = {
                "required": True,
                "content": {JSON: {"schema": self._create_issue_body(), "example": ISSUE_EXAMPLE}},
            }
            return Op(
                body=body,
                responses={
                    "201": _ok("已受理 Created: the issue; dispatch opens its task shortly", created, ["Location"])
                },
                errors=(400, 409),
                notes="The intake service owns the rules (lengths, channels, location); the gateway checks shapes.",
            )
        if endpoint == "issues.hand_over_task":
            self._issue_views()
            handed = {
                "type": "object",
                "required": ["issue", "grant"],
                "properties": {
                    "issue": ref("IssueView"),
                    "grant": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}, "quota": {"type": "integer"}},
                    },
                },
            }
            return Op(
                body={"required": True, "content": _json(self.model(AssistanceTaskIn))},
                responses={"201": _ok("已移交 Handed over: the issue, on channel department_assistance", handed)},
                errors=(400,),
            )
        if endpoint == "issues.get_issue":
            self._issue_views()
            one = {
                "type": "object",
                "required": ["issue", "task"],
                "properties": {"issue": ref("IssueView"), "task": nullable(ref("TaskView"))},
            }
            return Op(responses={"200": _ok("事项 The issue; `task` is null until dispatch has it", one)})
        if endpoint == "issues.list_issues":
            self._issue_views()
            page = {
                "type": "object",
                "required": ["issues", "next_page_token"],
                "properties": {
                    "issues": {"type": "array", "items": ref("IssueView")},
                    "next_page_token": {"type": ["string", "null"], "description": "null on the last page"},
                },
            }
            return Op(responses={"200": _ok("事项 A page of issues, newest first", page)}, errors=(400,))
        if endpoint == "issues.count_issues":
            counts = {"type": "object", "additionalProperties": {"type": "integer"}}
            body = {
                "type": "object",
                "required": ["community_id", "total", "by_status", "by_status_zh"],
                "properties": {
                    "community_id": {"type": ["string", "null"], "description": "null: the whole tenant"},
                    "total": {"type": "integer"},
                    "by_status": counts,
                    "by_status_zh": counts,
                },
            }
            return Op(
                responses={"200": _ok("事项统计 Issues by status (statuses with none left out)", body)}, errors=(400,)
            )
        if endpoint == "issues.reclassify_issue":
            self._issue_views()
            one = {"type": "object", "required": ["issue"], "properties": {"issue": ref("IssueView")}}
            return Op(
                params=[IF_MATCH],
                body={"required": True, "content": _json(self.model(ReclassifyIn))},
                responses={"200": _ok("已重新分类 The issue, reclassified; ETag: its version", one, ["ETag"])},
                errors=(400, 404, 409, 412, 428),
            )
        if endpoint == "issues.decide_filing":
            self._issue_views()
            both = {
                "type": "object",
                "required": ["issue", "task"],
                "properties": {"issue": ref("IssueView"), "task": nullable(ref("TaskView"))},
            }
            return Op(
                params=[self._if_match_param()],
                body={"required": True, "content": _json(self.model(FilingDecisionIn))},
                responses={
                    "200": _ok("已立案或不予立案 The issue as decided (and its task, once opened)", both, ["ETag"])
                },
                errors=(400, 404, 409, 412),
                notes="409 `already_decided`: the issue does not wait for verification (decided, or filed directly).",
            )
        if endpoint == "issues.reveal_contact":
            contact = {
                "type": "object",
                "required": ["name", "phone"],
                "properties": {"name": {"type": "string"}, "phone": {"type": "string"}},
            }
            return Op(
                responses={"200": _ok("联系方式 The reporter's contact, unmasked (logged)", contact)}, errors=(404,)
            )
        if endpoint == "verification.get_check_photo":  # gateway/routes_verification.py
            photos = {t: BINARY for t in ("image/jpeg", "image/png", "image/webp")}
            found = {"description": "核验照片 The photo as uploaded", "content": photos}
            return Op(responses={"200": found}, errors=(404,))
        if endpoint == "issues.get_attachment":
            files = {t: BINARY for t in ("image/jpeg", "image/png", "image/webp", "application/pdf")}
            return Op(responses={"200": {"description": "附件 The file as uploaded", "content": files}}, errors=(404,))
        if endpoint in ("issues.get_rules", "issues.put_rules"):
            rules = self.message(intake_pb2.ClassificationRules)
            op = Op(responses={"200": _ok("分类规则 Categories and rules; ETag: their version", rules, ["ETag"])})
            if endpoint == "issues.put_rules":
                op = Op(
                    params=[IF_MATCH],
                    body={"required": True, "content": _json(rules)},
                    responses=op.responses,
                    errors=(400, 409, 412, 428),
                )
            return op
        if endpoint == "org.resolve_location":
            body = {
                "oneOf": [
                    {
                        "type": "object",
                        "title": "point",
                        "required": ["lat", "lon"],
                        "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                        "additionalProperties": False,
                        "description": "经纬度 A point (WGS-84), flat (not {point: …})",
                    },
                    {
                        "type": "object",
                        "title": "compound",
                        "required": ["compound_id"],
                        "properties": {"compound_id": {"type": "string", "minLength": 1}},
                        "additionalProperties": False,
                        "description": "小区 A compound's id",
                    },
                ]
            }
            return Op(
                body={"required": True, "content": _json(body)},
                responses={"200": _ok("所在社区/网格/小区", self.message(org_pb2.ResolveLocationResponse))},
                errors=(400, 404),
            )
        if endpoint == "org.find_candidates":
            return Op(
                body={"required": True, "content": _json(self.message(org_pb2.FindCandidatesRequest))},
                responses={
                    "200": _ok(
                        "候选 Candidates, best first, with reasons", self.message(org_pb2.FindCandidatesResponse)
                    )
                },
                errors=(400,),
                notes="`time` may leave out the offset: it is then Asia/Shanghai time (未带时区按北京时间).",
            )
        if endpoint in ("audit.export_entries", "audit.export_tenant_entries"):
            files = {mime.split(";")[0]: {"schema": {"type": "string"}} for mime in EXPORT_FORMATS.values()}
            text = "审计日志 ndjson (one entry per line; format=ndjson, the default) or CSV (format=csv)"
            headers = ["Content-Disposition", "X-Audit-From-Seq", "X-Audit-To-Seq"]
            return Op(responses={"200": _ok(text, headers=headers, content=files)}, errors=(400,))
        # the publications' files and feeds (gateway/routes_publications.py)
        if endpoint in ("publications.public_feed", "publications.public_community_feed"):
            atom = {"application/atom+xml": {"schema": {"type": "string"}}}
            return Op(responses={"200": _ok("订阅源 Atom 1.0, released versions newest first", content=atom)})
        if endpoint in ("publications.render_publication", "publications.public_render"):
            wechat = {
                "type": "object",
                "required": ["parts", "limit"],
                "properties": {
                    "parts": {"type": "array", "items": {"type": "string"}, "description": "【1/n】… each ≤ limit"},
                    "limit": {"type": "integer", "description": "WeChat's length limit of one message"},
                },
            }
            renditions: dict[str, Any] = {
                "application/json": {"schema": {"anyOf": [wechat, {"type": "object"}]}},
                "text/html": {"schema": {"type": "string"}},
                "application/pdf": BINARY,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": BINARY,
            }
            text = "渠道版本 The rendition (wechat: its parts as JSON); a draft's is marked 草稿"
            answer = _ok(text, headers=["Content-Disposition"], content=renditions)
            return Op(responses={"200": answer}, errors=(400, 404))
        if endpoint == "docs.openapi_json":
            return Op(responses={"200": _ok("本文档 This OpenAPI document", {"type": "object"})})
        if endpoint == "docs.asyncapi_json":
            asyncapi = {"type": "object", "description": "AsyncAPI 3.0.0 (https://www.asyncapi.com/docs/reference)"}
            return Op(responses={"200": _ok("事件与Webhook的AsyncAPI文档 The AsyncAPI 3.0 document", asyncapi)})
        if endpoint in PLAIN:
            status, content, errors = PLAIN[endpoint]
            if content is None:
                answer = _ok("成功 Success", {})
            else:
                answer = _ok("成功 Success", content=content) if content else _ok("成功 Done, no body")
            plain_body: Schema | None = None
            if endpoint in PLAIN_BODIES:
                plain_body = {
                    "required": True,
                    "content": _json({"type": "object", "description": "见说明 See the description"}),
                }
            return Op(body=plain_body, responses={str(status): answer}, errors=errors)
        return Op(responses={"200": _ok("成功 Success", {})})

    def _declared(self, doc: Doc) -> Op:
        """A route that declares what it takes and answers (routes_dispatch.DOCS)."""
        params: list[Schema] = []
        if doc.if_match == "required":
            params.append(IF_MATCH)
        elif doc.if_match == "optional":
            params.append(self._if_match_param())
        for name, description in doc.request_headers:
            params.append(_param(name, "header", {"type": "string"}, description))
        body: Schema | None = None
        if doc.body is not None:
            schema = self.model(doc.body) if issubclass(doc.body, BaseModel) else self.message(doc.body)
            body = {"required": True, "content": _json(schema)}
        if doc.response is None:
            return Op(
                params=params, body=body, responses={str(doc.status): _ok("成功 Done, no body")}, errors=doc.errors
            )
        if issubclass(doc.response, BaseModel):  # a JSON answer of the gateway's own (routes_dashboard)
            answer, name = self.model(doc.response), doc.response.__name__
        else:
            answer, name = self.message(doc.response), doc.response.DESCRIPTOR.name
        text = f"成功 The {name}"
        if doc.list_key:
            props: Schema = {doc.list_key: {"type": "array", "items": answer}}
            if doc.paged:
                props["next_page_token"] = {
                    "type": ["string", "null"],
                    "description": "null on the last page (末页为null)",
                }
            answer = {"type": "object", "required": sorted(props), "properties": props, "additionalProperties": False}
            text = f"成功 A page of {name} ({doc.list_key})"
        if "ETag" in doc.headers:
            text += "; ETag: its version, to send back in If-Match"
        return Op(
            params=params,
            body=body,
            responses={str(doc.status): _ok(text, answer, doc.headers)},
            errors=doc.errors,
            notes="Fields sent back as read and ignored (只读): " + ", ".join(f"`{f}`" for f in doc.read_only) + "."
            if doc.read_only
            else "",
        )

    @staticmethod
    def _if_match_param() -> Schema:
        return _param(
            "If-Match",
            "header",
            {"type": "string", "pattern": ETAG_RE.pattern},
            '版本号 Optional: the ETag you read, e.g. "3"; a stale one is 412',
        )

    def _issue_views(self) -> None:
        """The issue routes' JSON (routes_issues.issue_json): the intake Issue message as protojson writes it,
        plus the Chinese names and each attachment's URL."""
        if "IssueView" in self.schemas:
            return
        channels = ", ".join(f"{k} ({v})" for k, v in CHANNEL_NAMES_ZH.items())
        self.message(intake_pb2.Issue)
        base = copy.deepcopy(self.schemas[component_name(intake_pb2.Issue.DESCRIPTOR)])
        props = base["properties"]
        props.pop("follow_code", None)  # at the top of the report's answer only (routes_issues.create_issue)
        base["required"] = [r for r in base.get("required", []) if r != "follow_code"]
        props["channel"] = {**props["channel"], "description": f"渠道 One of: {channels}"}
        props["grant_id"] = {
            "type": ["string", "null"],
            "description": "部门协助任务的授权 The assistance grant (channel department_assistance only)",
        }
        props["channel_zh"] = {"type": "string", "description": "渠道中文名 The channel's Chinese name"}
        props["status_zh"] = {"type": "string", "description": "状态中文名 The status in Chinese"}
        props["urgency_zh"] = {"type": "string", "description": "日常事项 / 重大事项 / 紧急事项"}
        attachment = copy.deepcopy(self.schemas[component_name(intake_pb2.Attachment.DESCRIPTOR)])
        attachment["properties"]["url"] = {"type": "string", "description": "下载地址 Where the file is served"}
        attachment["required"] = [*attachment.get("required", []), "url"]
        self.schemas["IssueAttachmentView"] = attachment
        props["attachments"] = {"type": "array", "items": ref("IssueAttachmentView")}
        base["required"] = sorted({*base.get("required", []), "channel_zh", "status_zh", "urgency_zh", "grant_id"})
        base["title"] = "Issue"
        self.schemas["IssueView"] = base
        self.schemas["TaskView"] = {
            "type": "object",
            "title": "Task",
            "required": ["id", "issue_id", "status", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "issue_id": {"type": "string"},
                "status": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
            },
            "additionalProperties": False,
        }

    def _create_issue_body(self) -> Schema:
        body = self.model(CreateIssueIn)
        schema = self.schemas["CreateIssueIn"]
        channel = schema["properties"]["channel"]
        channel.setdefault(
            "description", "渠道 One of: " + ", ".join(f"{k} ({v})" for k, v in CHANNEL_NAMES_ZH.items())
        )
        return body

    @staticmethod
    def _filters(c: Collection) -> list[Schema]:
        """The collection's exact-match filters (routes_org Collection.filters; any other key is 400)."""
        return [p.openapi() for p in filter_params(c.filters, "筛选 Exact match on")]

    def _org_collection(self, endpoint: str, c: Collection) -> Op:
        msg = self.message(c.message)
        etag = ["ETag"]
        if endpoint == "org.list_items":
            page = {
                "type": "object",
                "required": ["items", "next_page_token"],
                "properties": {
                    "items": {"type": "array", "items": msg},
                    "next_page_token": {
                        "type": ["string", "null"],
                        "description": "null on the last page (末页为null)",
                    },
                },
            }
            return Op(
                params=self._filters(c),
                responses={"200": _ok(f"{COLLECTION_ZH.get(c.slug, c.slug)} A page, by id", page)},
                errors=(400,),
            )
        if endpoint == "org.get_item":
            return Op(responses={"200": _ok(c.name, msg, etag)}, errors=(400, 404))
        body = {"required": True, "content": _json(msg)}
        if endpoint == "org.create_item":
            return Op(
                body=body,
                responses={"201": _ok(f"已创建 Created: the {c.name} as stored", msg, ["ETag", "Location"])},
                errors=(400, 409),
                notes="`id` may be chosen (letters, digits, '-', '_') or left empty to be generated; "
                "`meta` and `version` are ignored (只读).",
            )
        if_match = {"$ref": "#/components/parameters/If-Match"}
        if endpoint == "org.update_item":
            return Op(
                params=[if_match],
                body=body,
                responses={"200": _ok(f"已修改 Updated: the {c.name} as stored", msg, etag)},
                errors=(400, 404, 409, 412, 428),
                notes="PUT replaces the record: send all of it as read, changed (整条提交). Personal data sent "
                "back masked, as read, stays as it is. `id` and `version` in the body, if sent, must match the "
                "path and If-Match.",
            )
        if endpoint == "org.delete_item":
            return Op(params=[if_match], responses={"204": _ok("已删除 Deleted")}, errors=(400, 404, 409, 412, 428))
        if endpoint in ("org.import_sheet", "org.start_import_job"):
            content: dict[str, Schema] = {mime.split(";")[0]: BINARY for mime in SHEET_FORMATS.values()}
            content["multipart/form-data"] = {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "the spreadsheet"}},
                }
            }
            sheet = {"required": True, "content": content, "description": f"≤ {IMPORT_MAX_BYTES} bytes"}
            if endpoint == "org.start_import_job":
                job = self.message(org_pb2.ImportJob)
                queued = _ok("已排队 Queued: the job (status queued); follow it at Location", job, ["Location"])
                return Op(body=sheet, responses={"202": queued}, errors=(400, 404, 413))
            return Op(
                body=sheet,
                responses={
                    "200": _ok(
                        "导入结果 Rows read, created, updated, unchanged; bad rows",
                        self.message(org_pb2.ImportSheetResponse),
                    )
                },
                errors=(400, 404, 409, 413),
                notes="A real import is all-or-nothing and idempotent (全部成功才写入，可重复导入).",
            )
        if endpoint == "org.export_sheet":
            return Op(
                params=self._filters(c),
                responses={
                    "200": _ok(
                        "表格 The spreadsheet, personal data masked (个人信息已脱敏)",
                        headers=["Content-Disposition", "X-Row-Count"],
                        content={mime.split(";")[0]: BINARY for mime in SHEET_FORMATS.values()},
                    )
                },
                errors=(400, 404),
            )
        return Op(responses={"200": _ok("成功 Success", {})})

    # ------------------------------------------------------------ who may call, and errors

    @staticmethod
    def _roles(policy: Rule | None) -> list[str]:
        return [r for r in TOKEN_ROLES if policy is not None and policy.admits(r)]

    @staticmethod
    def _security(policy: Rule | None) -> list[Schema]:
        if policy is not None and "public" in policy.roles and "public" not in policy.local_only:
            return [{}, {"bearer": []}]
        return [{"bearer": []}]

    def _who(self, policy: Rule | None) -> str:
        if policy is None:
            return "**角色 Roles**: none: this route is not in the policy table and is refused to everyone (默认拒绝)."
        shown = [f"{r} (anonymous 匿名)" if r == "public" else r for r in self._roles(policy)]
        text = f"**角色 Roles** ({policy.family}): {', '.join(shown)}."
        if policy.local_only:
            text += f" Only from this host: {', '.join(sorted(policy.local_only))}."
        if policy.grant:
            text += (
                f" district_department only under an approved grant covering `{policy.grant}` (header "
                f"`{GRANT_HEADER}`), its community and fields; every such call, allowed or refused, is audited "
                "(须经审核授权)."
            )
        if policy.tenant_scoped:
            text += " 按街道/镇授权 Tenant-scoped: a token's scope must include `{tenant}` (`*` = every tenant)" + (
                "; the anonymous public may act on any tenant." if "public" in policy.roles else "."
            )
        if policy.community:
            text += f" 社区范围 A community worker: {COMMUNITY_SCOPES[policy.community]}."
        return text

    @staticmethod
    def _general_errors(params: list[Schema], op: Op) -> set[int]:
        """What any operation of this shape may answer, whatever its view: 429 (the per-address limit is
        checked before everything else); with a body, 400 (not JSON, not an object) and 413 (too large); with
        query parameters, 400 (gateway/query.py); with a path parameter besides the tenant, 404."""
        codes = {429}
        if op.body is not None:
            codes |= {400, 413}
        named = [p for p in params if "name" in p]
        if any(p["in"] == "query" for p in named):
            codes.add(400)
        if any(p["in"] == "path" and p["name"] != "tenant" for p in named):
            codes.add(404)
        return codes

    @staticmethod
    def _responses(policy: Rule | None, op: Op, general: set[int]) -> dict[str, Schema]:
        codes = {401, *op.errors, *general}
        if policy is None or set(TOKEN_ROLES) - policy.roles or policy.tenant_scoped:
            codes.add(403)
        if policy is not None and policy.tenant_scoped:  # unknown tenant; these routes call the services
            codes |= {404, 429, 503}
        out = dict(op.responses)
        for code in sorted(codes):
            out[str(code)] = {"$ref": f"#/components/responses/E{code}"}
        out["default"] = {"$ref": "#/components/responses/Unexpected"}
        return out

    # ------------------------------------------------------------ the document

    def document(self) -> Schema:
        error = {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "request_id"],
                    "properties": {
                        "code": {"type": "string", "description": "机器可读 e.g. invalid_argument, forbidden"},
                        "message": {"type": "string", "description": "可读说明 Readable, often with Chinese"},
                        "field": {"type": "string", "description": "出错的字段 The field at fault, when one is"},
                        "request_id": {"type": "string", "description": "请求编号 As in X-Request-Id"},
                    },
                }
            },
        }
        self.schemas["Error"] = error
        responses: dict[str, Schema] = {}
        for code, text in ERRORS.items():
            headers = ["X-Request-Id"]
            if code == 401:
                headers.append("WWW-Authenticate")
            if code in (429, 503):
                headers.append("Retry-After")
            responses[f"E{code}"] = _ok(text, ref("Error"), headers)
        responses["Unexpected"] = _ok(
            "其他错误 Any other error (500, 502, 504…), the same shape", ref("Error"), ["X-Request-Id"]
        )
        tenants = ", ".join(f"{t.slug} ({t.name_zh})" for t in all_tenants())
        tenant_param = _param(
            "tenant",
            "path",
            {"type": "string", "enum": [t.slug for t in all_tenants()]},
            f"街道/镇 The tenant: {tenants}",
            required=True,
        )
        components = {
            "schemas": dict(sorted(self.schemas.items())),
            "responses": responses,
            "parameters": {
                "tenant": tenant_param,
                "If-Match": _param(
                    "If-Match",
                    "header",
                    {"type": "string", "pattern": ETAG_RE.pattern},
                    '版本号 The ETag you read, e.g. "3": missing 428, stale 412 (防止覆盖他人的修改)',
                    required=True,
                ),
            },
            "headers": {
                "ETag": {
                    "description": '版本 The record\'s version as a strong ETag, e.g. "3"; send it back in If-Match',
                    "schema": {"type": "string"},
                },
                "Location": {"description": "新记录的地址 The created resource's URL", "schema": {"type": "string"}},
                "X-Request-Id": {"description": "请求编号 The request's id", "schema": {"type": "string"}},
                "WWW-Authenticate": {"description": 'Bearer realm="hongling" (RFC 6750)', "schema": {"type": "string"}},
                "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}},
                "Content-Disposition": {"description": "attachment; filename*=UTF-8''…", "schema": {"type": "string"}},
                "X-Row-Count": {"description": "导出行数 Rows in the spreadsheet", "schema": {"type": "integer"}},
                "X-Audit-From-Seq": {
                    "description": "导出起始序号 The first seq exported",
                    "schema": {"type": "integer"},
                },
                "X-Audit-To-Seq": {"description": "导出结束序号 Last seq exported", "schema": {"type": "integer"}},
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "hl_… API token",
                    "description": "API令牌 `Authorization: Bearer hl_…`, made by `python -m gateway.tokens create` "
                    "(shown once). No header: the anonymous public.",
                }
            },
        }
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "红领益家 Hongling API",
                "version": _version(),
                "description": INFO_DESCRIPTION,
            },
            "tags": [{"name": name, "description": self.tags[name]} for name in sorted(self.tags, key=_tag_rank)],
            "paths": {
                path: dict(sorted(ops.items(), key=lambda kv: METHOD_ORDER.index(kv[0])))
                for path, ops in sorted(self.paths.items(), key=lambda kv: kv[0].replace("{", "~"))
            },
            "components": components,
        }


def _tag_rank(name: str) -> int:
    """Tags in reading order: tenants, issues, org, the org collections, anything new, the docs."""
    order = {"tenants": 0, "issues": 1, "org": 2, "docs": 5}
    return order.get(name, 3 if name.startswith("org.") else 4)


def _version() -> str:
    try:
        return metadata.version("hongling")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_spec(app: Flask) -> Schema:
    """The OpenAPI 3.1 document of every /api/v1 route of the app."""
    builder = SpecBuilder()
    rules = sorted(
        (r for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX)),
        key=lambda r: (r.rule.replace("<", "~"), r.endpoint),  # concrete paths before parameters
    )
    for url_rule in rules:
        builder.add(url_rule, app.view_functions.get(url_rule.endpoint))
    return builder.document()
