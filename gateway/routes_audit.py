"""The audit log over HTTP: read it, export it, verify the whole chain (services/common/audit.py).

    GET  /api/v1/audit?tenant=&action=&actor=&before_seq=&limit=          newest first, keyset pages
    GET  /api/v1/tenants/{tenant}/audit?action=&actor=&before_seq=&limit=  one tenant's entries
    GET  /api/v1/audit/export?format=ndjson|csv&tenant=&from_seq=&to_seq=  streamed, in seq order
    GET  /api/v1/tenants/{tenant}/audit/export?format=&from_seq=&to_seq=   one tenant's, streamed
    POST /api/v1/audit/verify                                               the whole chain, first broken entry

Who may call which route is gateway/policy.py: district approvers (and ops) read the whole log within
their token's tenant scope (`*` = every tenant) plus the district-level entries (tenant ""); a
subdistrict admin reads its own tenant's entries on the tenant routes. Entries never carry personal
data (shapes.entry_json). Pages: `limit` entries (default 50, at most 500), `next_before_seq` is the
`before_seq` of the next page (null: no more). Pages come from the log's SQL read model
(services/common/audit_readmodel.py), a moment behind the log; exports and verification read the log
itself. An ndjson export carries, per line, every field the hash covers as it was hashed (`time_utc`,
`request_id`, `prev_hash`, `hash`), so the file can be checked offline:
`python -m services.common.audit verify-file FILE [--partial]` (--partial for a tenant's file).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Blueprint, Response, g, jsonify, stream_with_context

from gateway.errors import ApiError
from gateway.governance.shapes import entry_json
from gateway.governance.store import current_audit
from gateway.query import Param, args, integer, query, text
from services.common import audit_readmodel, metrics
from services.common.audit import AuditLog, Entry
from services.common.errors import UnknownTenant
from services.common.principal import Principal
from services.common.tenants import get_tenant

bp = Blueprint("audit", __name__)
AUDIT = "/api/v1/audit"
TENANT_AUDIT = "/api/v1/tenants/<tenant>/audit"
LIMIT_DEFAULT, LIMIT_MAX = 50, 500
SEQ_MAX = 10**15
TEXT_MAX = 128
EXPORT_FORMATS = {"ndjson": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}
EXPORT_CHUNK = 200  # entries per chunk written to the response
# CSV columns: bilingual headers (as the org spreadsheets), then the export record's key.
CSV_COLUMNS = (
    ("序号 seq", "seq"),
    ("时间 time", "time"),
    ("操作人 actor", "actor"),
    ("角色 role", "role"),
    ("操作 action", "action"),
    ("结果 outcome", "outcome"),
    ("街道/镇 tenant", "tenant"),
    ("对象 target", "target"),
    ("授权编号 grant_id", "grant_id"),
    ("请求编号 request_id", "request_id"),
    ("详情 detail", "detail"),
    ("UTC时间 time_utc", "time_utc"),
    ("前一条哈希 prev_hash", "prev_hash"),
    ("哈希 hash", "hash"),
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---------------------------------------------------------------- arguments


def _principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:  # the policy hook sets it before any view runs; never assume it
        raise ApiError(403, "forbidden", "no authenticated caller (拒绝访问)")
    return principal


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_argument", message, field=field)


def _seq(name: str, description: str) -> Param:
    return integer(name, f"{description}, 1..{SEQ_MAX}", lo=1, hi=SEQ_MAX, default=None)


TENANT = text("tenant", "街道/镇 Only this tenant's entries (in the caller's scope); absent: the whole scope")
PAGE = (
    text("action", "操作 e.g. personal_data.reveal, request.approve", max_length=TEXT_MAX),
    text("actor", "操作人 An account id", max_length=TEXT_MAX),
    integer("limit", f"条数 Entries per page, 1..{LIMIT_MAX}", lo=1, hi=LIMIT_MAX, default=LIMIT_DEFAULT),
    _seq("before_seq", "翻页 The previous page's next_before_seq"),
)
EXPORT = (
    text("format", "格式 ndjson (default) or csv", enum=EXPORT_FORMATS),
    _seq("from_seq", "起始序号 The first entry (inclusive); absent: 1"),
    _seq("to_seq", "结束序号 The last entry (inclusive); absent: the last when the export began"),
)


def _scope_filter(p: Principal) -> tuple[str | None, tuple[str, ...] | None]:
    """(tenant, tenants) for the district-wide routes: ?tenant= (known, in the caller's scope), or
    everything the caller's scope covers: its tenants and the district-level entries (tenant "")."""
    wanted = args()["tenant"]
    if wanted:
        try:
            get_tenant(wanted)
        except UnknownTenant as exc:
            raise _bad("tenant", exc.message) from None
        if not p.may_act_on(wanted):
            raise ApiError(
                403,
                "tenant_out_of_scope",
                f"{p.sub!r} ({p.role}) may act on {', '.join(p.tenants) or 'no tenant'}, not on {wanted!r} "
                "(无权访问该街道/镇数据)",
                field="tenant",
            )
        return wanted, None
    return None, (None if "*" in p.tenants else (*p.tenants, ""))


# ---------------------------------------------------------------- reading


def _page(tenant: str | None, tenants: tuple[str, ...] | None) -> Response:
    q = args()
    entries, more = audit_readmodel.page(
        tenant=tenant,
        tenants=tenants,
        action=q["action"] or None,
        actor=q["actor"] or None,
        before=q["before_seq"],
        limit=q["limit"],
    )
    return jsonify({"entries": [entry_json(e) for e in entries], "next_before_seq": more})


@bp.get(AUDIT)
@query(TENANT, *PAGE)
def list_entries() -> Response:
    """审计日志 The audit log, newest first

    Every entry in the caller's tenant scope (`*` = every tenant) and the district-level ones (tenant
    ""). Filters: `tenant`, `action` (e.g. personal_data.reveal, request.approve), `actor` (an account
    id); `limit` (default 50, at most 500); `before_seq`: the previous page's `next_before_seq`."""
    tenant, tenants = _scope_filter(_principal())
    return _page(tenant, tenants)


@bp.get(TENANT_AUDIT)
@query(*PAGE)
def list_tenant_entries(tenant: str) -> Response:
    """街道/镇审计日志 One tenant's audit entries, newest first

    Every entry about the tenant: department requests and calls under grants, decisions, personal data
    revealed, accounts and roles. Filters: `action`, `actor`; `limit` (default 50, at most 500);
    `before_seq`: the previous page's `next_before_seq`."""
    return _page(tenant, None)


# ---------------------------------------------------------------- export


def export_record(entry: Entry) -> dict[str, Any]:
    """An entry as exported: as the API shows it, plus what the hash covers as it was hashed."""
    return entry_json(entry) | {"time_utc": entry.time, "request_id": entry.request_id, "prev_hash": entry.prev_hash}


def _csv_cell(value: Any) -> Any:
    if isinstance(value, Mapping):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # A cell a spreadsheet would run as a formula is written as text.
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


def _ndjson(entries: Iterator[Entry]) -> Iterator[str]:
    chunk: list[str] = []
    for entry in entries:
        chunk.append(json.dumps(export_record(entry), ensure_ascii=False, separators=(",", ":")) + "\n")
        if len(chunk) >= EXPORT_CHUNK:
            yield "".join(chunk)
            chunk.clear()
    if chunk:
        yield "".join(chunk)


def _csv(entries: Iterator[Entry]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write("\ufeff")  # a BOM: Excel then opens the Chinese correctly
    writer.writerow([title for title, _ in CSV_COLUMNS])
    for n, entry in enumerate(entries, 1):
        record = export_record(entry)
        writer.writerow([_csv_cell(record[key]) for _, key in CSV_COLUMNS])
        if n % EXPORT_CHUNK == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _export(tenant: str | None, tenants: tuple[str, ...] | None) -> Response:
    q = args()
    fmt = q["format"] or "ndjson"
    from_seq, to_seq = q["from_seq"] or 1, q["to_seq"]
    if to_seq is not None and to_seq < from_seq:
        raise _bad("to_seq", "to_seq must not be below from_seq (结束序号不能小于起始序号)")
    audit: AuditLog = current_audit()
    # The export is the log as it stood when it began (the head hint: O(1), where reading the last
    # entry scans the log on the local FerretDB): entries appended meanwhile are not in it.
    head = audit.last_seq()
    last = head if to_seq is None else min(to_seq, head)
    entries = audit.iter_entries(tenant=tenant, tenants=tenants, from_seq=from_seq, to_seq=last)
    body = _ndjson(entries) if fmt == "ndjson" else _csv(entries)
    resp = Response(stream_with_context(body), content_type=EXPORT_FORMATS[fmt])
    name = f"hongling-audit-{tenant or 'all'}-{from_seq}-{last}.{fmt}"
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["X-Audit-From-Seq"] = str(from_seq)
    resp.headers["X-Audit-To-Seq"] = str(last)
    return resp


@bp.get(f"{AUDIT}/export")
@query(TENANT, *EXPORT)
def export_entries() -> Response:
    """导出审计日志 Export the audit log (ndjson or CSV), in seq order

    `format`: ndjson (default; one entry per line with `time_utc`, `prev_hash` and `hash`, checkable
    offline with `python -m services.common.audit verify-file`) or csv (UTF-8 with a BOM, bilingual
    header row). `tenant` (in the caller's scope; otherwise the whole scope and district-level entries),
    `from_seq`, `to_seq` (inclusive). The export ends at the entry that was last when it began
    (`X-Audit-To-Seq`)."""
    tenant, tenants = _scope_filter(_principal())
    return _export(tenant, tenants)


@bp.get(f"{TENANT_AUDIT}/export")
@query(*EXPORT)
def export_tenant_entries(tenant: str) -> Response:
    """导出街道/镇审计日志 Export one tenant's audit entries (ndjson or CSV), in seq order

    As GET /api/v1/audit/export, for this tenant's entries only (check an ndjson file with
    `python -m services.common.audit verify-file FILE --partial`: other tenants' entries are not in it)."""
    return _export(tenant, None)


# ---------------------------------------------------------------- verification


@bp.post(f"{AUDIT}/verify")
def verify_chain() -> Response:
    """校验审计日志 Verify the whole audit chain and name the first broken entry

    Reads every entry from the first: links, hashes, continuity and every signed checkpoint. Answers 200
    whenever the check ran; `ok` false with `first_broken_seq` and `reason` when the chain is broken."""
    started = time.perf_counter()
    result = current_audit().verify()
    metrics.AUDIT_CHAIN_BROKEN.set(0 if result.ok else 1)  # the alert's signal from the full check
    return jsonify(
        {
            "ok": result.ok,
            "checked": result.checked,
            "checkpoints": result.checkpoints,
            "first_broken_seq": result.first_broken_seq,
            "reason": result.reason,
            "seconds": round(time.perf_counter() - started, 3),
            "summary": result.summary(),
        }
    )
