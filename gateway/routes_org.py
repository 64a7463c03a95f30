"""Organisation structure over HTTP: /api/v1/tenants/<tenant>/org/... -> hongling.org.v1.OrgService.

Generic over the collections (COLLECTIONS), each mapped to the service's Create/Update/Get/List and,
for list entries, Delete methods:

    GET    {collection}?page_size=&page_token=&<filter>=…    list (filters as the service defines them)
    POST   {collection}                                     create -> 201, Location, ETag: "<version>"
    GET    {collection}/{id}[?reveal=true]                  one record, ETag; reveal: personal data unmasked
    PUT    {collection}/{id}      If-Match: "<version>"     update (missing If-Match 428, stale 412)
    DELETE {collection}/{id}      If-Match: "<version>"     list entries only -> 204
    POST   {collection}/import?format=xlsx|csv&dry_run=     spreadsheet in (raw body or multipart `file`)
    POST   {collection}/import-jobs?format=&dry_run=        the same as a background job -> 202, Location
    GET    import-jobs/{job_id} · import-jobs?page_size=     a job and its progress · the tenant's jobs
    GET    {collection}/export?format=xlsx|csv&<filter>=…   spreadsheet out (attachment)
    POST   resolve-location   {lat, lon} | {compound_id}
    POST   candidates         {skills, services, resources, grid_id, time, limit}

Bodies and responses are the protobuf messages as JSON with proto field names (gateway/protojson.py).
Who may call what is in gateway/policy.py; whether personal data may be revealed is the org service's call.
A community worker lists, exports, reads and changes its own community's records only (社区范围: the
policy table and gateway/community.py; the org service checks the same).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request
from google.protobuf.message import Message
from hongling.org.v1 import org_pb2 as pb

from gateway import department
from gateway.app import json_body
from gateway.calls import admit, clients, department_access, tenant_call
from gateway.community import list_filter, sees
from gateway.errors import ApiError
from gateway.protojson import from_json, to_json
from gateway.query import PAGE_TOKEN, args, boolean, filters, page_size, parse_time, query, text

bp = Blueprint("org", __name__)
ORG = "/api/v1/tenants/<tenant>/org"
SERVICE = pb.DESCRIPTOR.services_by_name["OrgService"]
SHEET_FORMATS = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
# The org service's own limit for a spreadsheet (services/org/sheets.py MAX_BYTES); gRPC channels carry
# up to 16 MiB (services/common/grpc_client.py), so the file passes through whole.
IMPORT_MAX_BYTES = 5 * 1024 * 1024
ETAG_RE = re.compile(r'^\s*"([1-9][0-9]{0,17})"\s*$')
PAGE_MAX, PAGE_DEFAULT = 500, 50  # the org service's list pages (services/org/handlers.py)


@dataclass(frozen=True)
class Collection:
    slug: str  # in the URL
    message: type[Message]
    plural: str  # as in the List method's name
    # The exact-match filters its List (and ExportSheet) takes: the org service's EntitySpec.filters,
    # checked here so a wrong key is refused before the call (tests/unit/test_gateway_org.py compares them).
    filters: tuple[str, ...] = ()
    sheets: bool = False  # importable from / exportable to spreadsheets

    @property
    def name(self) -> str:
        return str(self.message.DESCRIPTOR.name)

    @property
    def entity(self) -> str:
        """The entity name ImportSheet/ExportSheet take (member_units, people, …)."""
        return self.slug.replace("-", "_")

    @property
    def deletable(self) -> bool:
        return f"Delete{self.name}" in SERVICE.methods_by_name

    def method(self, verb: str) -> str:
        return f"{verb}{self.plural if verb == 'List' else self.name}"

    def rpc(self, verb: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(clients().org, self.method(verb))
        return method


COLLECTIONS: dict[str, Collection] = {
    c.slug: c
    for c in (
        Collection("communities", pb.Community, "Communities"),
        Collection("grids", pb.Grid, "Grids", ("community_id",)),
        Collection("compounds", pb.Compound, "Compounds", ("grid_id", "community_id")),
        Collection("grid-stations", pb.GridStation, "GridStations", ("grid_id", "community_id")),
        Collection(
            "party-organizations",
            pb.PartyOrganization,
            "PartyOrganizations",
            ("community_id", "kind", "place_id", "parent_id"),
        ),
        Collection(
            "member-units", pb.MemberUnit, "MemberUnits", ("community_id", "kind", "status", "serves_grid_id"), True
        ),
        Collection("people", pb.Person, "People", ("community_id", "grid_id", "role"), True),
        Collection("volunteer-teams", pb.VolunteerTeam, "VolunteerTeams", ("community_id",)),
        Collection("talent-entries", pb.TalentEntry, "TalentEntries", ("person_id", "skill", "community_id"), True),
        Collection(
            "team-service-entries",
            pb.TeamServiceEntry,
            "TeamServiceEntries",
            ("team_id", "service", "community_id"),
            True,
        ),
        Collection(
            "unit-resource-entries",
            pb.UnitResourceEntry,
            "UnitResourceEntries",
            ("unit_id", "resource", "category", "community_id"),
            True,
        ),
        Collection("responsibility-items", pb.ResponsibilityItem, "ResponsibilityItems", ("domain", "unit_kind")),
        Collection("public-affairs-items", pb.PublicAffairsItem, "PublicAffairsItems", ("community_id", "mode")),
    )
}
for _c in COLLECTIONS.values():  # a typo here must fail at import, not on the first request
    for _verb in ("Create", "Update", "Get", "List"):
        if _c.method(_verb) not in SERVICE.methods_by_name:
            raise RuntimeError(f"OrgService has no {_c.method(_verb)} for collection {_c.slug}")


def readable_fields(operations: Iterable[str]) -> frozenset[str]:
    """The record fields data-access operations (org.read:<collection>) can be granted: the collections'
    top-level message fields as the API names them (id is always returned; version and meta never)."""
    names: set[str] = set()
    for op in operations:
        c = COLLECTIONS.get(op.removeprefix("org.read:"))
        if c is not None:
            names |= {f.name for f in c.message.DESCRIPTOR.fields} - {"id", "version", "meta"}
    return frozenset(names)


# ---------------------------------------------------------------- request helpers


def collection_of(slug: str, *, sheets: bool = False) -> Collection:
    """The collection a URL slug names, or 404 naming the valid ones (both doors use it)."""
    found = COLLECTIONS.get(slug)
    if found is None:
        raise ApiError(
            404,
            "unknown_collection",
            f"no collection {slug!r} (未知数据集合); use one of: {', '.join(COLLECTIONS)}",
            field="collection",
        )
    if sheets and not found.sheets:
        names = ", ".join(c.slug for c in COLLECTIONS.values() if c.sheets)
        raise ApiError(
            404,
            "no_spreadsheets",
            f"{slug} has no spreadsheet import or export (不支持表格导入导出); these have: {names}",
            field="collection",
        )
    return found


def if_match_version(header: str | None) -> int:
    """The version an If-Match header names; 428 when it is missing, 400 when it is not one strong ETag."""
    if header is None:
        raise ApiError(
            428,
            "precondition_required",
            'send If-Match with the ETag you read, e.g. If-Match: "3", so nobody\'s change is overwritten '
            "(请带上读取时的版本号 If-Match，以免覆盖他人的修改)",
            field="If-Match",
        )
    m = ETAG_RE.match(header)
    if m is None:
        raise ApiError(
            400,
            "invalid_argument",
            'If-Match must be the one ETag a GET returned, e.g. "3" (版本号格式错误)',
            field="If-Match",
        )
    return int(m.group(1))


def _item(msg: Message, status: int = 200) -> Response:
    body = to_json(msg)
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["ETag"] = f'"{body["version"]}"'  # every entity message has a version
    return resp


def content_disposition(filename: str, fallback: str) -> str:
    """An attachment header carrying any (e.g. Chinese) file name: RFC 6266 with RFC 5987 filename*."""
    clean = "".join(ch for ch in filename if ch.isprintable() and ch not in '\\/"').strip() or fallback
    plain = clean if clean.isascii() else fallback
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(clean, safe='')}"


def sheet_format(value: str | None, filename: str = "", mimetype: str = "") -> str:
    """xlsx or csv: from ?format=, else from the uploaded file's name or type; 400 otherwise."""
    if value:
        fmt = value.strip().lower()
        if fmt not in SHEET_FORMATS:
            raise ApiError(400, "invalid_argument", "format must be xlsx or csv (仅支持xlsx或csv)", field="format")
        return fmt
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in SHEET_FORMATS:
        return suffix
    for fmt, content_type in SHEET_FORMATS.items():
        if mimetype and content_type.startswith(mimetype):
            return fmt
    raise ApiError(400, "invalid_argument", "say format=xlsx or format=csv (请指明文件格式)", field="format")


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"  # records hold personal data, masked or not
    return resp


# ---------------------------------------------------------------- CRUD


def community_of(c: Collection, record: Message) -> str:
    """The community a record belongs to (a community is its own)."""
    return str(getattr(record, "id" if c.slug == "communities" else "community_id", ""))


def department_records(
    c: Collection, access: department.Access, org: Any, filters: Mapping[str, str], page_size: int, page_token: str
) -> tuple[list[dict[str, Any]], str]:
    """A district department's page of records under its grant (both doors; the caller binds the tenant and
    principal): its community only, only the granted fields; (records, next page token)."""
    if c.slug == "communities":  # the grant's one community
        admit(access, target=c.slug)
        items, token = [getattr(org, c.method("Get"))(pb.GetRequest(id=access.community_id))], ""
    else:
        scoped = {k: v for k, v in filters.items() if k not in department.NON_FILTER_ARGS}
        scoped["community_id"] = access.community_id
        req = pb.ListRequest(page_size=page_size, page_token=page_token, filter=scoped)
        admit(access, target=c.slug)
        resp = getattr(org, c.method("List"))(req)
        items, token = list(resp.items), resp.next_page_token
    return [department.project(to_json(i), access.fields) for i in items], token


def own_community(c: Collection, given: dict[str, str]) -> dict[str, str]:
    """A list's or export's filters with a community worker's community (another named: 403); collections
    without a community_id filter are left as they are (communities: only its own is shown; responsibility
    items are the tenant's)."""
    if "community_id" not in c.filters:
        return given
    forced = list_filter(given.get("community_id", ""))
    return {**given, "community_id": forced} if forced else given


LIST_QUERY = (page_size(PAGE_MAX, PAGE_DEFAULT), PAGE_TOKEN)
SHEET_FORMAT_DOC = "表格格式 xlsx or csv"


@bp.get(f"{ORG}/<collection>")
@query(*LIST_QUERY)
def list_items(tenant: str, collection: str) -> Response:
    """列出记录 List a collection's records (paged; filters as the collection defines them)

    A district department reads only under a data-access grant (header `X-Hongling-Grant`): records of
    the grant's community, `id` and the granted fields (`fields=a,b` asks for fewer), filters only on
    granted fields."""
    c = collection_of(collection)
    q = args()
    access = department_access()
    if access is not None:
        scoped = filters(c.filters, department.NON_FILTER_ARGS)
        with tenant_call(tenant):
            records, token = department_records(c, access, clients().org, scoped, q["page_size"], q["page_token"])
        return jsonify({"items": records, "next_page_token": token or None})
    req = pb.ListRequest(
        page_size=q["page_size"],
        page_token=q["page_token"],
        filter=own_community(c, filters(c.filters, [p.name for p in LIST_QUERY])),
    )
    with tenant_call(tenant):
        resp = c.rpc("List")(req)
    items = [i for i in resp.items if c.slug != "communities" or sees(i.id)]  # the org service limits them too
    return jsonify({"items": [to_json(i) for i in items], "next_page_token": resp.next_page_token or None})


@bp.post(f"{ORG}/<collection>")
def create_item(tenant: str, collection: str) -> Response:
    c = collection_of(collection)
    msg = from_json(json_body(), c.message, drop=("meta", "version"))
    with tenant_call(tenant):
        created = c.rpc("Create")(msg)
    resp = _item(created, 201)
    resp.headers["Location"] = f"/api/v1/tenants/{tenant}/org/{collection}/{created.id}"
    return resp


@bp.get(f"{ORG}/<collection>/<item_id>")
@query(
    boolean(
        "reveal",
        "显示个人信息 Show personal data (phones, ID numbers) unmasked: only roles that handle people may, and "
        "every reveal is logged (按权限显示，留痕)",
    )
)
def get_item(tenant: str, collection: str, item_id: str) -> Response:
    """查看记录 One record, with its version as ETag; reveal=true shows personal data unmasked (logged)

    A district department reads a record only under a data-access grant covering its community:
    `id` and the granted fields."""
    c = collection_of(collection)
    req = pb.GetRequest(id=item_id, reveal=args()["reveal"])
    access = department_access()
    with tenant_call(tenant):
        found = c.rpc("Get")(req)
    if access is None:
        return _item(found)
    admit(access, target=f"{c.slug}/{item_id}", community_id=community_of(c, found))
    return jsonify(department.project(to_json(found), access.fields))


@bp.put(f"{ORG}/<collection>/<item_id>")
def update_item(tenant: str, collection: str, item_id: str) -> Response:
    c = collection_of(collection)
    version = if_match_version(request.headers.get("If-Match"))
    body = json_body()
    if body.get("id") not in (None, "", item_id):
        raise ApiError(400, "invalid_argument", f"id in the body is not {item_id!r} as in the path", field="id")
    if body.get("version") not in (None, version, str(version)):
        raise ApiError(
            400, "invalid_argument", f"version in the body differs from If-Match ({version})", field="version"
        )
    msg = from_json(body, c.message, drop=("meta", "version", "id"))
    msg.id = item_id  # type: ignore[attr-defined]
    msg.version = version  # type: ignore[attr-defined]
    with tenant_call(tenant, conditional=True):
        return _item(c.rpc("Update")(msg))


@bp.delete(f"{ORG}/<collection>/<item_id>")
def delete_item(tenant: str, collection: str, item_id: str) -> tuple[str, int]:
    c = collection_of(collection)
    if not c.deletable:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{collection} are not deleted; update them instead (该类记录不可删除，请修改)",
            headers={"Allow": "GET, HEAD, PUT, OPTIONS"},
        )
    version = if_match_version(request.headers.get("If-Match"))
    with tenant_call(tenant, conditional=True):
        c.rpc("Delete")(pb.DeleteRequest(id=item_id, version=version))
    return "", 204


# ---------------------------------------------------------------- queries


@bp.post(f"{ORG}/resolve-location")
def resolve_location(tenant: str) -> Response:
    body = json_body()
    extra = sorted(set(body) - {"lat", "lon", "compound_id"})
    if extra:
        raise ApiError(400, "invalid_argument", f"{extra[0]} is not a known field (未知字段)", field=extra[0])
    if "compound_id" in body:
        if "lat" in body or "lon" in body:
            raise ApiError(400, "invalid_argument", "give lat and lon, or compound_id, not both", field="compound_id")
        if not isinstance(body["compound_id"], str) or not body["compound_id"]:
            raise ApiError(400, "invalid_argument", "compound_id must be a non-empty string", field="compound_id")
        req = pb.ResolveLocationRequest(compound_id=body["compound_id"])
    else:
        for name in ("lat", "lon"):
            value = body.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(
                    400, "invalid_argument", f"{name} is required: a number (需要经纬度 lat, lon)", field=name
                )
        req = pb.ResolveLocationRequest(point=pb.Point(lat=body["lat"], lon=body["lon"]))
    with tenant_call(tenant):
        return jsonify(to_json(clients().org.ResolveLocation(req)))


@bp.post(f"{ORG}/candidates")
def find_candidates(tenant: str) -> Response:
    body = json_body()
    msg = from_json(body, pb.FindCandidatesRequest, drop=("time",))
    if body.get("time") is not None:
        msg.time.FromDatetime(parse_time(body["time"]).astimezone(UTC))
    with tenant_call(tenant):
        return jsonify(to_json(clients().org.FindCandidates(msg)))


# ---------------------------------------------------------------- spreadsheets


IMPORT_QUERY = (
    text("format", f"{SHEET_FORMAT_DOC}; absent: from the uploaded file's name or content type", enum=SHEET_FORMATS),
    boolean("dry_run", "试导入 Check every row and report the bad ones (row, column, reason); store nothing"),
)


def uploaded_sheet() -> tuple[bytes, str, str]:
    """The spreadsheet a request carries (multipart field `file`, or the raw body): (content, file name, type);
    400 when there is none, 413 beyond IMPORT_MAX_BYTES."""
    request.max_content_length = IMPORT_MAX_BYTES + 64 * 1024  # room for multipart framing
    filename = ""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, "invalid_argument", "send the spreadsheet in the form field 'file'", field="file")
        content = upload.read()
        filename = upload.filename or ""
        mimetype = upload.mimetype
    else:
        content = request.get_data()
        mimetype = request.mimetype
    if not content:
        raise ApiError(400, "invalid_argument", "the spreadsheet is empty (文件为空)", field="file")
    if len(content) > IMPORT_MAX_BYTES:
        raise ApiError(
            413, "body_too_large", f"the spreadsheet is larger than {IMPORT_MAX_BYTES} bytes (文件过大)", field="file"
        )
    return content, filename, mimetype


@bp.post(f"{ORG}/<collection>/import")
@query(*IMPORT_QUERY)
def import_sheet(tenant: str, collection: str) -> Response:
    c = collection_of(collection, sheets=True)
    content, filename, mimetype = uploaded_sheet()
    req = pb.ImportSheetRequest(
        entity=c.entity,
        format=sheet_format(args()["format"], filename, mimetype),
        content=content,
        dry_run=args()["dry_run"],
    )
    with tenant_call(tenant):
        return jsonify(to_json(clients().org.ImportSheet(req)))


# ---------------------------------------------------------------- spreadsheet imports as background jobs

IMPORT_JOBS = f"{ORG}/import-jobs"
JOBS_MAX, JOBS_DEFAULT = 100, 20  # the org service's pages of jobs (services/org/jobs.py)


def import_job_url(tenant: str, job_id: str) -> str:
    return f"/api/v1/tenants/{tenant}/org/import-jobs/{quote(job_id, safe='')}"


@bp.post(f"{ORG}/<collection>/import-jobs")
@query(*IMPORT_QUERY)
def start_import_job(tenant: str, collection: str) -> Response:
    """导入任务 Start a spreadsheet import as a background job: 202 at once, then follow it at Location

    The same file, rules and result as the import route, for files too large to wait for (up to 20,000 rows):
    the org service keeps the file with the job and imports it in the background, and the job
    (`GET …/org/import-jobs/{job_id}`) shows how far it has got: `status` queued → running → succeeded or
    failed, `stage` checking → writing, `rows_checked` and then `rows_written` of `total_rows` (updated about
    every second, never going back), and at the end `created` / `updated` / `unchanged`, or the bad rows
    (`errors`: row, column, reason; the first 1,000, `error_count` counts them all) and nothing written
    (a real import with a bad row fails; a dry run succeeds with them), or why it failed (`message`). Poll
    about once a second. A job survives a restart of the service: it resumes, rows already saved counting
    unchanged (`attempts` > 1). Times are Asia/Shanghai. 后台导入：立即返回任务，按Location查看进度与结果。"""
    c = collection_of(collection, sheets=True)
    content, filename, mimetype = uploaded_sheet()
    req = pb.StartImportJobRequest(
        entity=c.entity,
        format=sheet_format(args()["format"], filename, mimetype),
        content=content,
        dry_run=args()["dry_run"],
        filename=filename,
    )
    with tenant_call(tenant):
        job = clients().org.StartImportJob(req)
    resp = jsonify(to_json(job))
    resp.status_code = 202
    resp.headers["Location"] = import_job_url(tenant, job.id)
    return resp


@bp.get(f"{IMPORT_JOBS}/<job_id>")
def get_import_job(tenant: str, job_id: str) -> Response:
    """查看导入任务 An import job: its status, progress and, once finished, its result or bad rows

    Whoever started it and the tenant's staff read it; a community worker only the jobs it started (another's
    is 404, as a job that does not exist)."""
    with tenant_call(tenant):
        return jsonify(to_json(clients().org.GetImportJob(pb.GetImportJobRequest(id=job_id))))


@bp.get(IMPORT_JOBS)
@query(page_size(JOBS_MAX, JOBS_DEFAULT), PAGE_TOKEN)
def list_import_jobs(tenant: str) -> Response:
    """导入任务列表 The tenant's import jobs, newest first (a community worker: the ones it started)

    Each job as `GET …/import-jobs/{job_id}` shows it, without its bad rows (`errors` is empty here;
    `error_count` counts them)."""
    q = args()
    req = pb.ListImportJobsRequest(page_size=q["page_size"], page_token=q["page_token"])
    with tenant_call(tenant):
        resp = clients().org.ListImportJobs(req)
    return jsonify({"items": [to_json(j) for j in resp.items], "next_page_token": resp.next_page_token or None})


EXPORT_FORMAT = text("format", f"{SHEET_FORMAT_DOC}; absent: xlsx", enum=SHEET_FORMATS)


@bp.get(f"{ORG}/<collection>/export")
@query(EXPORT_FORMAT)
def export_sheet(tenant: str, collection: str) -> Response:
    c = collection_of(collection, sheets=True)
    fmt = args()["format"] or "xlsx"
    flt = own_community(c, filters(c.filters, [EXPORT_FORMAT.name]))
    req = pb.ExportSheetRequest(entity=c.entity, format=fmt, filter=flt)
    with tenant_call(tenant):
        out = clients().org.ExportSheet(req)
    resp = Response(out.content, content_type=out.content_type or SHEET_FORMATS[fmt])
    resp.headers["Content-Disposition"] = content_disposition(out.filename, f"{collection}-{tenant}.{fmt}")
    resp.headers["X-Row-Count"] = str(out.rows)
    return resp
