"""The alliance's ledger for the portals: /api/v1/tenants/<tenant>/alliance/... -> ResourceService,
TimeBankService, FundService (hongling.alliance.v1, services/alliance/ledger).

    GET    alliance/pledges?community_id=&unit_id=&status=&for_kind=&for_id=   pledges (pledged: oldest first, with age)
    POST   alliance/pledges                          a unit pledges an item of its resource list -> 201
    GET    alliance/pledges/{id}                     one pledge
    POST   alliance/pledges/{id}/delivery            the community confirms delivery
    POST   alliance/pledges/{id}/withdrawal          withdrawn before delivery (reason)
    GET    alliance/resource-entries?unit_id=        the unit's resource list to pledge from (a member: its own)
    GET    alliance/hours/{person_id}                a person's balance (志愿服务时长)
    GET    alliance/hours/{person_id}/entries        a person's entries, newest first
    GET    alliance/hours-entries?community_id=      a community's entries, newest first
    POST   alliance/hours-entries/{id}/corrections   a correction entry (negative allowed, reason) -> 201
    GET    alliance/hours-export?community_id=&year= the community's year as xlsx
    GET|PUT alliance/timebank-rules                  hours per verified task by call type
    GET    alliance/funds?community_id=              balances per fund (社区经费)
    GET    alliance/fund-entries?community_id=&fund= entries, newest first, with their postings
    GET    alliance/fund-months?community_id=&from_month=&to_month=  allocated, spent, closing per month
    POST   alliance/fund-allocations                 money into a fund (source stated) -> 201
    POST   alliance/fund-spendings                   money out for a task, activity or decision -> 201 (409: too little)

Members act for the helper their credential is bound to: a member unit pledges and withdraws its own
pledges, a person reads its own hours. A community worker's lists are its own community's, another
community's pledge, entry or person is 404; the services check the same again. Who may call what is
gateway/policy.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from hongling.alliance.v1 import ledger_pb2 as pb
from hongling.alliance.v1 import ledger_pb2_grpc as pb_grpc
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr

from gateway.app import json_body
from gateway.calls import tenant_call
from gateway.community import list_filter
from gateway.protojson import StrictInt64, to_json
from gateway.query import PAGE_TOKEN, args, integer, month, page_size, query, text
from gateway.routes_dispatch import DOCS, Doc, message, optional_version, page, parse
from gateway.routes_org import content_disposition

bp = Blueprint("alliance_ledger", __name__)
BASE = "/api/v1/tenants/<tenant>/alliance"
PAGED = (page_size(200, 50), PAGE_TOKEN)
COMMUNITY = text("community_id", "社区 Community")
FUNDS = ("running", "resident_service", "model_community", "property_backstop")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _channel() -> Any:
    return current_app.extensions["hongling.clients"].channels["alliance"]


def resources() -> pb_grpc.ResourceServiceStub:
    return pb_grpc.ResourceServiceStub(_channel())


def timebank() -> pb_grpc.TimeBankServiceStub:
    return pb_grpc.TimeBankServiceStub(_channel())


def funds() -> pb_grpc.FundServiceStub:
    return pb_grpc.FundServiceStub(_channel())


# ---------------------------------------------------------------- bodies (shapes; the service owns the rules)


class PledgeIn(BaseModel):
    """A pledge of an item of the unit's resource list to a task, an activity or a meeting decision. A member
    unit pledges as itself (unit_id may be omitted); staff name the unit."""

    model_config = ConfigDict(extra="forbid")
    unit_id: StrictStr = ""
    resource_entry_id: StrictStr
    quantity: StrictFloat | StrictInt64
    unit_of_measure: StrictStr = ""
    for_kind: StrictStr = Field(description="task | activity | decision")
    for_id: StrictStr = Field(description="the task's, the activity's or the meeting's id")
    item_id: StrictStr = Field("", description="decision: the meeting's agenda item")
    note: StrictStr = ""
    idempotency_key: StrictStr = ""


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: StrictStr = ""


class CorrectionIn(BaseModel):
    """A correction: hours (negative takes hours off), a reason; the entry it corrects is the path's."""

    model_config = ConfigDict(extra="forbid")
    hours: StrictFloat | StrictInt64
    reason: StrictStr
    idempotency_key: StrictStr = ""


class CallTypeHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call_type: StrictStr
    hours: StrictFloat | StrictInt64


class TimeBankRulesIn(BaseModel):
    """Hours per verified task by call type (service, tackling, emergency); those not named keep their value."""

    model_config = ConfigDict(extra="forbid")
    task_hours: list[CallTypeHoursIn] = Field(max_length=3)
    version: StrictInt64 | StrictStr = 0


class AllocationIn(BaseModel):
    """Money into a fund (running, resident_service, model_community, property_backstop), in fen, with its source."""

    model_config = ConfigDict(extra="forbid")
    community_id: StrictStr
    fund: StrictStr
    amount_fen: StrictInt64
    source: StrictStr
    note: StrictStr = ""
    idempotency_key: StrictStr = ""


class SpendingIn(BaseModel):
    """Money out of a fund, in fen, for a task, an activity or a meeting decision (item_id); never beyond the
    balance (409)."""

    model_config = ConfigDict(extra="forbid")
    community_id: StrictStr
    fund: StrictStr
    amount_fen: StrictInt64
    for_kind: StrictStr
    for_id: StrictStr
    item_id: StrictStr = ""
    unit_id: StrictStr = ""
    note: StrictStr = ""
    idempotency_key: StrictStr = ""


# ---------------------------------------------------------------- pledges (提供资源)


@bp.get(f"{BASE}/pledges")
@query(
    COMMUNITY,
    text("unit_id", "成员单位 Member unit"),
    text(
        "status",
        "状态 pledged (oldest first, with age), delivered, withdrawn",
        enum=("pledged", "delivered", "withdrawn"),
    ),
    text("for_kind", "用途 task, activity, decision", enum=("task", "activity", "decision")),
    text("for_id", "用途编号 The task's, activity's or meeting's id"),
    *PAGED,
)
def list_pledges(tenant: str) -> Response:
    """资源承诺 Pledges: status=pledged lists those waiting for delivery oldest first, each with its age

    A member unit sees its own pledges; a community worker its community's."""
    q = args()
    req = pb.ListPledgesRequest(
        community_id=list_filter(q["community_id"]),
        unit_id=q["unit_id"],
        status=q["status"],
        for_kind=q["for_kind"],
        for_id=q["for_id"],
        page_size=q["page_size"],
        page_token=q["page_token"],
    )
    with tenant_call(tenant):
        resp = resources().ListPledges(req)
    return page("pledges", list(resp.pledges), resp.next_page_token)


@bp.post(f"{BASE}/pledges")
def create_pledge(tenant: str) -> tuple[Response, int] | Response:
    """承诺资源 Pledge an item of the unit's resource list (驻地和双报到单位资源清单)

    The item must be on the unit's list at org (400 otherwise) and the quantity at most what the list offers.
    A retry with the same idempotency_key answers the first pledge."""
    data: PledgeIn = parse(PledgeIn, json_body())
    req = pb.PledgeResourceRequest(
        unit_id=data.unit_id.strip(),
        resource_entry_id=data.resource_entry_id.strip(),
        quantity=float(data.quantity),
        unit_of_measure=data.unit_of_measure,
        for_kind=data.for_kind,
        for_id=data.for_id,
        item_id=data.item_id,
        note=data.note,
        idempotency_key=data.idempotency_key,
    )
    with tenant_call(tenant):
        found = resources().PledgeResource(req)
    return message(found, 201, location=f"/api/v1/tenants/{tenant}/alliance/pledges/{found.id}")


@bp.get(f"{BASE}/pledges/<pledge_id>")
def get_pledge(tenant: str, pledge_id: str) -> Response:
    """查看资源承诺 One pledge"""
    with tenant_call(tenant):
        return message(resources().GetPledge(pb.GetPledgeRequest(id=pledge_id)))


@bp.post(f"{BASE}/pledges/<pledge_id>/delivery")
def confirm_delivery(tenant: str, pledge_id: str) -> Response:
    """确认交付 The community confirms that the pledge was delivered (409 if withdrawn or delivered already)"""
    optional_version()
    with tenant_call(tenant):
        return message(resources().ConfirmDelivery(pb.PledgeActionRequest(id=pledge_id)))


@bp.post(f"{BASE}/pledges/<pledge_id>/withdrawal")
def withdraw_pledge(tenant: str, pledge_id: str) -> Response:
    """撤回承诺 Withdraw a pledge before delivery, with a reason (recorded)"""
    data: ReasonIn = parse(ReasonIn, json_body())
    with tenant_call(tenant):
        return message(resources().WithdrawPledge(pb.PledgeActionRequest(id=pledge_id, reason=data.reason)))


@bp.get(f"{BASE}/resource-entries")
@query(text("unit_id", "成员单位 Member unit (a member unit: its own, may be omitted; staff: required)"))
def list_resource_entries(tenant: str) -> Response:
    """资源清单 The unit's resource list (驻地和双报到单位资源清单) to pledge from: each item, what it offers

    A member unit reads its own list; staff name the unit (a community worker: its own community's)."""
    q = args()
    with tenant_call(tenant):
        resp = resources().ListResourceEntries(pb.ListResourceEntriesRequest(unit_id=q["unit_id"]))
    return jsonify({"entries": [to_json(e) for e in resp.entries]})


# ---------------------------------------------------------------- the time bank (志愿服务时长)


@bp.get(f"{BASE}/hours/<person_id>")
def get_hours(tenant: str, person_id: str) -> Response:
    """志愿时长余额 A person's balance (one read-side row) and name"""
    with tenant_call(tenant):
        return message(timebank().GetHoursBalance(pb.GetHoursBalanceRequest(person_id=person_id)), etag=False)


@bp.get(f"{BASE}/hours/<person_id>/entries")
@query(*PAGED)
def list_person_hours(tenant: str, person_id: str) -> Response:
    """志愿时长明细 A person's entries, newest first: source (activity, shift, task, correction), balance after"""
    q = args()
    req = pb.ListHoursEntriesRequest(person_id=person_id, page_size=q["page_size"], page_token=q["page_token"])
    with tenant_call(tenant):
        resp = timebank().ListHoursEntries(req)
    return page("entries", list(resp.entries), resp.next_page_token)


@bp.get(f"{BASE}/hours-entries")
@query(COMMUNITY, *PAGED)
def list_hours_entries(tenant: str) -> Response:
    """社区志愿时长明细 A community's entries, newest first"""
    q = args()
    req = pb.ListHoursEntriesRequest(
        community_id=list_filter(q["community_id"]), page_size=q["page_size"], page_token=q["page_token"]
    )
    with tenant_call(tenant):
        resp = timebank().ListHoursEntries(req)
    return page("entries", list(resp.entries), resp.next_page_token)


@bp.post(f"{BASE}/hours-entries/<entry_id>/corrections")
def correct_hours(tenant: str, entry_id: str) -> tuple[Response, int] | Response:
    """更正时长 A correction: a new entry naming the one it corrects (negative hours allowed), with a reason"""
    data: CorrectionIn = parse(CorrectionIn, json_body())
    req = pb.CorrectHoursRequest(
        entry_id=entry_id, hours=float(data.hours), reason=data.reason, idempotency_key=data.idempotency_key
    )
    with tenant_call(tenant):
        return message(timebank().CorrectHours(req), 201, etag=False)


@bp.get(f"{BASE}/hours-export")
@query(
    text("community_id", "社区 Community (required)", required=True),
    replace(integer("year", "年份 Year (Asia/Shanghai); absent: this year", lo=2000, hi=2100, default=None), default=0),
)
def export_hours(tenant: str) -> Response:
    """导出志愿时长 A community's year as xlsx: each person's total and entries (names only, no contact data)"""
    q = args()
    req = pb.ExportHoursRequest(community_id=list_filter(q["community_id"]), year=q["year"])
    with tenant_call(tenant):
        found = timebank().ExportHours(req)
    resp = Response(found.content, mimetype=XLSX)
    resp.headers["Content-Disposition"] = content_disposition(found.filename, f"volunteer-hours-{q['year']}.xlsx")
    resp.headers["X-People"] = str(found.people)
    resp.headers["X-Entries"] = str(found.entries)
    return resp


@bp.get(f"{BASE}/timebank-rules")
def get_timebank_rules(tenant: str) -> Response:
    """时长规则 Hours per verified task by call type (defaults: service 2, tackling 4, emergency 3)"""
    with tenant_call(tenant):
        return message(timebank().GetTimeBankRules(pb.GetTimeBankRulesRequest()))


@bp.put(f"{BASE}/timebank-rules")
def put_timebank_rules(tenant: str) -> Response:
    """设置时长规则 Set hours per verified task by call type (If-Match optional: a stale one is 412)"""
    data: TimeBankRulesIn = parse(TimeBankRulesIn, json_body())
    version = optional_version()
    req = pb.TimeBankRules(
        task_hours=[pb.CallTypeHours(call_type=x.call_type, hours=float(x.hours)) for x in data.task_hours],
        version=version or int(data.version or 0),
    )
    with tenant_call(tenant, conditional=True):
        return message(timebank().PutTimeBankRules(req))


# ---------------------------------------------------------------- community funds (社区经费)


@bp.get(f"{BASE}/funds")
@query(COMMUNITY)
def list_fund_balances(tenant: str) -> Response:
    """经费余额 Each fund's balance, allocated and spent (one read-side row per fund)"""
    req = pb.ListFundBalancesRequest(community_id=list_filter(args()["community_id"]))
    with tenant_call(tenant):
        resp = funds().ListFundBalances(req)
    return jsonify({"balances": [message_json(b) for b in resp.balances]})


@bp.get(f"{BASE}/fund-entries")
@query(COMMUNITY, text("fund", "经费 Fund", enum=FUNDS), *PAGED)
def list_fund_entries(tenant: str) -> Response:
    """经费流水 Entries newest first, each with its balanced postings and the balance after it"""
    q = args()
    req = pb.ListFundEntriesRequest(
        community_id=list_filter(q["community_id"]),
        fund=q["fund"],
        page_size=q["page_size"],
        page_token=q["page_token"],
    )
    with tenant_call(tenant):
        resp = funds().ListFundEntries(req)
    return page("entries", list(resp.entries), resp.next_page_token)


@bp.get(f"{BASE}/fund-months")
@query(
    COMMUNITY,
    month("from_month", "起始月份 From month; absent: 12 months back"),
    month("to_month", "结束月份 To month; absent: this month"),
)
def list_fund_months(tenant: str) -> Response:
    """经费月报 Per month and fund: allocated, spent and the closing balance (for the monthly publication)"""
    q = args()
    req = pb.ListFundMonthsRequest(
        community_id=list_filter(q["community_id"]), from_month=q["from_month"], to_month=q["to_month"]
    )
    with tenant_call(tenant):
        resp = funds().ListFundMonths(req)
    return jsonify({"months": [message_json(m) for m in resp.months]})


@bp.post(f"{BASE}/fund-allocations")
def allocate_funds(tenant: str) -> tuple[Response, int] | Response:
    """拨付经费 Money into a community's fund, from a stated source (a subdistrict admin; a community worker for
    its own community)"""
    data: AllocationIn = parse(AllocationIn, json_body())
    req = pb.AllocateFundsRequest(
        community_id=data.community_id.strip(),
        fund=data.fund.strip(),
        amount_fen=data.amount_fen,
        source=data.source,
        note=data.note,
        idempotency_key=data.idempotency_key,
    )
    with tenant_call(tenant):
        return message(funds().AllocateFunds(req), 201, etag=False)


@bp.post(f"{BASE}/fund-spendings")
def spend_funds(tenant: str) -> tuple[Response, int] | Response:
    """支出经费 Money out of a fund for a task, an activity or a meeting decision; beyond the balance is 409"""
    data: SpendingIn = parse(SpendingIn, json_body())
    req = pb.SpendFundsRequest(
        community_id=data.community_id.strip(),
        fund=data.fund.strip(),
        amount_fen=data.amount_fen,
        for_kind=data.for_kind,
        for_id=data.for_id,
        item_id=data.item_id,
        unit_id=data.unit_id,
        note=data.note,
        idempotency_key=data.idempotency_key,
    )
    with tenant_call(tenant):
        return message(funds().SpendFunds(req), 201, etag=False)


def message_json(msg: Any) -> dict[str, Any]:
    from gateway.protojson import to_json

    return to_json(msg)


E = "alliance_ledger."
DOCS.update(
    {
        f"{E}list_pledges": Doc(pb.Pledge, list_key="pledges", errors=(400,)),
        f"{E}create_pledge": Doc(pb.Pledge, 201, PledgeIn, errors=(400,), headers=("ETag", "Location")),
        f"{E}list_resource_entries": Doc(pb.ResourceEntry, list_key="entries", paged=False, errors=(400,)),
        f"{E}get_pledge": Doc(pb.Pledge, errors=(404,), headers=("ETag",)),
        f"{E}confirm_delivery": Doc(pb.Pledge, errors=(404, 409), headers=("ETag",)),
        f"{E}withdraw_pledge": Doc(pb.Pledge, body=ReasonIn, errors=(400, 404, 409), headers=("ETag",)),
        f"{E}get_hours": Doc(pb.HoursBalance, errors=(400, 404)),
        f"{E}list_person_hours": Doc(pb.HoursEntry, list_key="entries", errors=(400, 404)),
        f"{E}list_hours_entries": Doc(pb.HoursEntry, list_key="entries", errors=(400,)),
        f"{E}correct_hours": Doc(pb.HoursEntry, 201, CorrectionIn, errors=(400, 404)),
        f"{E}get_timebank_rules": Doc(pb.TimeBankRules, headers=("ETag",)),
        f"{E}put_timebank_rules": Doc(
            pb.TimeBankRules, body=TimeBankRulesIn, if_match="optional", errors=(400, 412), headers=("ETag",)
        ),
        f"{E}list_fund_balances": Doc(pb.FundBalance, list_key="balances", paged=False, errors=(400,)),
        f"{E}list_fund_entries": Doc(pb.FundEntry, list_key="entries", errors=(400,)),
        f"{E}list_fund_months": Doc(pb.FundMonth, list_key="months", paged=False, errors=(400,)),
        f"{E}allocate_funds": Doc(pb.FundEntry, 201, AllocationIn, errors=(400,)),
        f"{E}spend_funds": Doc(pb.FundEntry, 201, SpendingIn, errors=(400, 409)),
    }
)
