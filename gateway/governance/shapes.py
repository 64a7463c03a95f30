"""What the governance HTTP API takes and gives, and who sees which record: pure, no Flask, no I/O.

Bodies are checked for shape here (pydantic, strict types, unknown fields refused, `null` = absent);
the rules are gateway/governance/domain.py's. Records are shown as JSON with times in Asia/Shanghai.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gateway.governance import domain
from services.common.audit import Entry
from services.common.principal import Principal
from services.common.tenants import get_tenant

REASON_MAX = 500
PAGE_DEFAULT, PAGE_MAX = 20, 100
AUDIT_DEFAULT, AUDIT_MAX = 100, 500
# Grants listed for a tenant show the newest entries of each grant's trail; the grant itself pages all.
AUDIT_IN_LIST = 10
PUBLIC_AFFAIRS_MODES = {"undertake": "承办", "assist": "协办"}
STATUS_ZH = {"filed": "待审核", "approved": "已批准", "rejected": "已驳回"}
GRANT_STATUS_ZH = {
    "active": "有效",
    "not_started": "未开始",
    "expired": "已过期",
    "used_up": "额度已用完",
    "revoked": "已撤销",
}
# Who reads requests and grants (the routes' roles are in gateway/policy.py; this is which records).
REQUEST_READERS = frozenset({"district_approver", "district_department", "subdistrict_admin"})
GRANT_READERS = frozenset({"district_approver", "district_department", "subdistrict_admin", "community_worker"})

M = TypeVar("M", bound=BaseModel)
Short = Annotated[str, StringConstraints(max_length=64)]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]
Task = Annotated[str, StringConstraints(max_length=500)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FundingIn(_Body):
    amount_yuan: float | None = None
    source: str | None = None
    working_conditions: str | None = None


class FileRequestIn(_Body):
    """A department's request (申请). The rules (required fields, lengths, period, operations, assessment
    tasks refused) are domain.validate_request's; this checks types only."""

    kind: str | None = Field(None, description="data_access (数据调取) or assistance_task (协助任务)")
    title: Annotated[str, StringConstraints(max_length=200)] | None = None
    purpose: str | None = None
    tenant: str | None = Field(None, description="the tenant (街道/镇) slug")
    community_id: str | None = None
    public_affairs_item_id: str | None = Field(None, description="the community's 承办/协办 list item relied on")
    funding: FundingIn | None = None
    starts_on: str | None = Field(None, description="YYYY-MM-DD, Asia/Shanghai")
    ends_on: str | None = Field(None, description="YYYY-MM-DD, Asia/Shanghai")
    operations: Annotated[list[Short], Field(max_length=len(domain.DATA_OPERATIONS))] | None = None
    fields: Annotated[list[FieldName], Field(max_length=200)] | None = None
    tasks: Annotated[list[Task], Field(max_length=100)] | None = None
    quota: int | None = None
    assessment: bool | None = None


class ApproveIn(_Body):
    """Optional narrowing (收窄): fewer operations or fields, an earlier end, a lower quota."""

    operations: Annotated[list[Short], Field(max_length=len(domain.DATA_OPERATIONS))] | None = None
    fields: Annotated[list[FieldName], Field(max_length=200)] | None = None
    ends_on: str | None = None
    quota: int | None = None
    tasks: Annotated[list[Task], Field(max_length=100)] | None = None
    reason: Annotated[str, StringConstraints(max_length=REASON_MAX)] | None = None


class ReasonIn(_Body):
    reason: Annotated[str, StringConstraints(max_length=REASON_MAX)] | None = None


class BodyError(ValueError):
    """A body that does not fit: the field (dotted, lists as [i]) and a bilingual message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


_KINDS = {
    "missing": "is required (必填)",
    "extra_forbidden": "is not a known field (未知字段)",
    "string_type": "must be a string (应为文本)",
    "int_type": "must be a whole number (应为整数)",
    "float_type": "must be a number (应为数字)",
    "bool_type": "must be true or false (应为布尔值)",
    "list_type": "must be a list (应为列表)",
    "model_type": "must be a JSON object (应为对象)",
    "dict_type": "must be a JSON object (应为对象)",
    "string_too_long": "is too long (内容过长)",
    "too_long": "has too many entries (条目过多)",
    "string_pattern_mismatch": "must be a field name: lower-case letters, digits, '_' or '.' (字段名格式错误)",
}


def body_error(exc: ValidationError) -> BodyError:
    err = exc.errors()[0]
    field = ""
    for part in err["loc"]:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return BodyError(field, f"{field} {_KINDS.get(err['type'], err['msg'])}")


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """The body as `model`, or BodyError naming the first field that does not fit."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise body_error(exc) from None


def domain_field(field: str | None) -> str | None:
    """domain.validate_request names funding's parts by their own name; the API names them in full."""
    return f"funding.{field}" if field in ("source", "working_conditions") else field


def narrowing(body: ApproveIn) -> domain.Narrowing:
    ends_on = None
    if body.ends_on is not None:
        try:
            ends_on = date.fromisoformat(body.ends_on)
        except ValueError:
            raise BodyError("ends_on", f"ends_on {body.ends_on!r} is not a date YYYY-MM-DD (日期格式错误)") from None
    if body.quota is not None and not 0 <= body.quota <= domain.MAX_QUOTA:
        raise BodyError("quota", f"quota must be 0..{domain.MAX_QUOTA} (额度超出范围)")
    return domain.Narrowing(
        operations=body.operations, fields=body.fields, ends_on=ends_on, quota=body.quota, tasks=body.tasks
    )


def required_reason(body: ReasonIn, what: str) -> str:
    reason = (body.reason or "").strip()
    if not reason:
        raise BodyError("reason", f"reason is required: say why the {what} (必须说明理由)")
    return reason


# ---------------------------------------------------------------- who sees what


def scope(principal: Principal) -> tuple[str, ...] | None:
    """The tenants a principal's records are limited to; None: every tenant."""
    return None if "*" in principal.tenants else principal.tenants


def may_see_request(principal: Principal, doc: Mapping[str, Any]) -> bool:
    """District approvers: every request in their scope; departments: their own; subdistrict admins:
    those on their tenant(s)."""
    if principal.role not in REQUEST_READERS or not principal.may_act_on(doc["tenant"]):
        return False
    return principal.role != "district_department" or doc["department"] == principal.sub


def may_see_grant(principal: Principal, doc: Mapping[str, Any]) -> bool:
    """As requests, and community workers of the tenant too: the community sees every grant on it (a
    community worker the grants on its own community only)."""
    if principal.role not in GRANT_READERS or not principal.may_act_on(doc["tenant"]):
        return False
    if not principal.sees_community(doc.get("community_id")):
        return False
    return principal.role != "district_department" or doc["department"] == principal.sub


def request_filter(principal: Principal) -> tuple[tuple[str, ...] | None, str | None]:
    """(tenants, department) a principal's request list is limited to (None: no limit)."""
    return scope(principal), principal.sub if principal.role == "district_department" else None


# ---------------------------------------------------------------- JSON


def local_time(value: datetime) -> str:
    """RFC 3339 in Asia/Shanghai (stored in UTC; naive values are UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(domain.SHANGHAI).isoformat(timespec="seconds")


def _decision_json(decision: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not decision:
        return None
    return {"by": decision["by"], "at": local_time(decision["at"]), "reason": decision.get("reason") or ""}


def request_json(doc: Mapping[str, Any], grant: Mapping[str, Any] | None = None, *, now: datetime) -> dict[str, Any]:
    """A request as the API shows it; `grant`: its grant's document, once approved."""
    tenant = get_tenant(doc["tenant"])
    mode = doc.get("public_affairs_mode") or ""
    return {
        "id": doc["_id"],
        "status": doc["status"],
        "status_zh": STATUS_ZH.get(doc["status"], doc["status"]),
        "kind": doc["kind"],
        "kind_zh": domain.KINDS.get(doc["kind"], doc["kind"]),
        "department": doc["department"],
        "title": doc.get("title") or "",
        "purpose": doc["purpose"],
        "tenant": doc["tenant"],
        "tenant_name_zh": tenant.name_zh,
        "community_id": doc["community_id"],
        "public_affairs_item_id": doc["public_affairs_item_id"],
        "public_affairs_mode": mode,
        "public_affairs_mode_zh": PUBLIC_AFFAIRS_MODES.get(mode, mode),
        "funding": dict(doc["funding"]),
        "starts_on": doc["starts_on"],
        "ends_on": doc["ends_on"],
        "operations": list(doc.get("operations") or []),
        "fields": list(doc.get("fields") or []),
        "tasks": list(doc.get("tasks") or []),
        "quota": int(doc.get("quota") or 0),
        # Wording that often hides an assessment (domain.FLAGGED_WORDING): let through, for the approver to check.
        "flags": [{"phrase": f, "why": domain.FLAGGED_WHY.get(f, "")} for f in doc.get("flags") or []],
        "filed_by": doc["filed_by"],
        "filed_at": local_time(doc["filed_at"]),
        "decision": _decision_json(doc.get("decision")),
        "grant_id": doc.get("grant_id"),
        "grant": grant_json(grant, now=now) if grant is not None else None,
    }


def grant_status(doc: Mapping[str, Any], now: datetime) -> str:
    if doc.get("revoked"):
        return "revoked"
    if now >= doc["expires_at"]:
        return "expired"
    if now < doc["starts_at"]:
        return "not_started"
    quota = int(doc.get("quota") or 0)
    if quota and int(doc.get("used") or 0) >= quota:
        return "used_up"
    return "active"


def grant_json(
    doc: Mapping[str, Any], *, now: datetime, audit: Sequence[Entry] | None = None, audit_more: int | None = None
) -> dict[str, Any]:
    """A grant as the API shows it, with how much of it is used; `audit`: entries of its trail (newest
    first), `audit_more`: the `audit_before` value that pages on (None: that was all)."""
    quota, used = int(doc.get("quota") or 0), int(doc.get("used") or 0)
    status = grant_status(doc, now)
    revocation = doc.get("revocation")
    out: dict[str, Any] = {
        "id": doc["_id"],
        "request_id": doc["request_id"],
        "status": status,
        "status_zh": GRANT_STATUS_ZH[status],
        "department": doc["department"],
        "kind": doc["kind"],
        "kind_zh": domain.KINDS.get(doc["kind"], doc["kind"]),
        "tenant": doc["tenant"],
        "community_id": doc["community_id"],
        "operations": list(doc.get("operations") or []),
        "fields": list(doc.get("fields") or []),
        "tasks": list(doc.get("tasks") or []),
        "starts_at": local_time(doc["starts_at"]),
        "expires_at": local_time(doc["expires_at"]),
        "quota": quota,
        "used": used,
        "remaining": max(quota - used, 0) if quota else None,
        "approved_by": doc["approved_by"],
        "approved_at": local_time(doc["approved_at"]),
        "revoked": bool(doc.get("revoked")),
        "revocation": _decision_json(revocation),
        "audit_count": int(doc.get("audit_count") or 0),
    }
    if audit is not None:
        out["audit"] = [entry_json(e) for e in audit]
        out["audit_before"] = audit_more
    return out


def entry_json(entry: Entry) -> dict[str, Any]:
    """An audit entry (never personal data: account ids, roles, ids and counts)."""
    return {
        "seq": entry.seq,
        "time": local_time(datetime.fromisoformat(entry.time.replace("Z", "+00:00"))),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "outcome": entry.outcome,
        "tenant": entry.tenant,
        "target": entry.target,
        "grant_id": entry.grant_id,
        "detail": dict(entry.detail),
        "hash": entry.hash,
    }


def request_detail(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a request: ids, kinds, counts and amounts; never the free text
    (purpose, tasks), which may name people."""
    return {
        "kind": doc["kind"],
        "community_id": doc["community_id"],
        "public_affairs_item_id": doc["public_affairs_item_id"],
        "operations": list(doc.get("operations") or []),
        "fields": list(doc.get("fields") or []),
        "tasks": len(doc.get("tasks") or []),
        "quota": int(doc.get("quota") or 0),
        "starts_on": doc["starts_on"],
        "ends_on": doc["ends_on"],
        "funding_yuan": doc["funding"]["amount_yuan"],
        "flags": list(doc.get("flags") or []),
    }


def grant_detail(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "operations": list(doc.get("operations") or []),
        "fields": list(doc.get("fields") or []),
        "quota": int(doc.get("quota") or 0),
        "starts_at": local_time(doc["starts_at"]),
        "expires_at": local_time(doc["expires_at"]),
    }
