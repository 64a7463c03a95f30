"""ResourceService, TimeBankService and FundService: protobuf <-> the ledger's commands and reads, nothing else.

Scope: a community worker's lists are its own community's and another community's pledge or entry is
NOT_FOUND as a missing one; a member reads and acts for its own unit (pledges) or itself (hours) only.
"""

from __future__ import annotations

from datetime import date

import grpc
from hongling.alliance.v1 import ledger_pb2 as pb
from hongling.alliance.v1 import ledger_pb2_grpc as pb_grpc

from services.common import community
from services.common.context import current_principal, require_tenant
from services.common.errors import InvalidArgument, NotFound
from services.common.principal import Principal

from . import domain, handlers, readmodel
from .documents import FundEntryDoc, HoursEntryDoc, PledgeDoc
from .handlers import ts

PAGE_DEFAULT, PAGE_MAX = 50, 200


def _principal() -> Principal:
    principal = current_principal.get()
    assert principal is not None  # the interceptor refuses calls without one
    return principal


def _size(n: int) -> int:
    if n < 0 or n > PAGE_MAX:
        raise InvalidArgument(f"page_size must be 1..{PAGE_MAX} (每页条数无效)", field="page_size")
    return n or PAGE_DEFAULT


def pledge_to_pb(doc: PledgeDoc) -> pb.Pledge:
    now = handlers.utcnow()
    return pb.Pledge(
        id=doc.id,
        tenant=require_tenant(),
        community_id=doc.community_id,
        unit_id=doc.unit_id,
        person_id=doc.person_id or "",
        resource_entry_id=doc.resource_entry_id,
        resource=doc.resource,
        quantity=doc.quantity,
        unit_of_measure=doc.unit_of_measure or "",
        for_kind=doc.for_kind,
        for_id=doc.for_id,
        item_id=doc.item_id or "",
        status=doc.status,
        pledged_at=ts(doc.pledged_at),
        pledged_by=doc.pledged_by or "",
        delivered_at=ts(doc.delivered_at),
        confirmed_by=doc.confirmed_by or "",
        withdrawn_at=ts(doc.withdrawn_at),
        withdrawn_by=doc.withdrawn_by or "",
        withdraw_reason=doc.withdraw_reason or "",
        age_seconds=domain.age_seconds(doc.pledged_at, now) if doc.status == domain.PLEDGED else 0,
        version=doc.version or 1,
        note=doc.note or "",
    )


def entry_to_pb(doc: HoursEntryDoc) -> pb.HoursEntry:
    return pb.HoursEntry(
        id=doc.id,
        tenant=require_tenant(),
        person_id=doc.person_id,
        community_id=doc.community_id or "",
        unit_id=doc.unit_id or "",
        hours=doc.hours,
        source_kind=doc.source_kind,
        source_id=doc.source_id,
        corrects_entry_id=doc.corrects_entry_id or "",
        reason=doc.reason or "",
        by=doc.by or "",
        balance=doc.balance or 0.0,
        at=ts(doc.at),
        recorded_at=ts(doc.created_at),
    )


def fund_entry_to_pb(doc: FundEntryDoc) -> pb.FundEntry:
    return pb.FundEntry(
        id=doc.id,
        tenant=require_tenant(),
        community_id=doc.community_id,
        fund=doc.fund,
        kind=doc.kind,
        amount_fen=doc.amount_fen,
        source=doc.source or "",
        for_kind=doc.for_kind or "",
        for_id=doc.for_id or "",
        item_id=doc.item_id or "",
        unit_id=doc.unit_id or "",
        note=doc.note or "",
        by=doc.by or "",
        balance_fen=doc.balance_fen or 0,
        seq=doc.seq or 0,
        postings=[pb.Posting(account=p.account, debit_fen=p.debit_fen, credit_fen=p.credit_fen) for p in doc.postings],
        at=ts(doc.at),
    )


class ResourceServicer(pb_grpc.ResourceServiceServicer):
    def PledgeResource(self, request: pb.PledgeResourceRequest, context: grpc.ServicerContext) -> pb.Pledge:
        doc = handlers.pledge(
            unit_id=request.unit_id,
            resource_entry_id=request.resource_entry_id,
            quantity=request.quantity,
            unit_of_measure=request.unit_of_measure,
            for_kind=request.for_kind,
            for_id=request.for_id,
            item_id=request.item_id,
            note=request.note,
            idempotency_key=request.idempotency_key,
            by=_principal(),
        )
        return pledge_to_pb(doc)

    def ConfirmDelivery(self, request: pb.PledgeActionRequest, context: grpc.ServicerContext) -> pb.Pledge:
        return pledge_to_pb(handlers.confirm_delivery(request.id.strip(), _principal()))

    def WithdrawPledge(self, request: pb.PledgeActionRequest, context: grpc.ServicerContext) -> pb.Pledge:
        return pledge_to_pb(handlers.withdraw(request.id.strip(), request.reason, _principal()))

    def GetPledge(self, request: pb.GetPledgeRequest, context: grpc.ServicerContext) -> pb.Pledge:
        return pledge_to_pb(handlers.get_pledge(request.id, _principal()))

    def ListPledges(self, request: pb.ListPledgesRequest, context: grpc.ServicerContext) -> pb.ListPledgesResponse:
        p = _principal()
        unit = request.unit_id.strip()
        if p.role == "member":
            unit = handlers.member_unit(p, unit)
        else:
            handlers.require_role(p, handlers.STAFF, "list pledges")
        status = request.status.strip()
        if status and status not in domain.PLEDGE_STATUSES:
            raise InvalidArgument(
                f"status must be one of {', '.join(domain.PLEDGE_STATUSES)} (状态无效)", field="status"
            )
        where = {
            "community_id": community.list_filter(request.community_id.strip(), p),
            "unit_id": unit,
            "status": status,
            "for_kind": request.for_kind.strip(),
            "for_id": request.for_id.strip(),
        }
        fingerprint = "|".join(f"{k}={v}" for k, v in sorted(where.items()))
        size = _size(request.page_size)
        docs, more = readmodel.list_pledges(
            **where, size=size, after=readmodel.after_of(request.page_token, fingerprint)
        )
        return pb.ListPledgesResponse(
            pledges=[pledge_to_pb(d) for d in docs], next_page_token=readmodel.token_of(more, fingerprint)
        )

    def ListResourceEntries(
        self, request: pb.ListResourceEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListResourceEntriesResponse:
        found = handlers.resource_entries(request.unit_id, _principal())
        return pb.ListResourceEntriesResponse(
            entries=[
                pb.ResourceEntry(
                    id=e.id,
                    unit_id=e.unit_id,
                    community_id=e.community_id,
                    resource=e.resource,
                    category=e.category,
                    quantity=e.quantity,
                    unit_of_measure=e.unit_of_measure,
                    conditions=e.conditions,
                )
                for e in found
            ]
        )


class TimeBankServicer(pb_grpc.TimeBankServiceServicer):
    def GetHoursBalance(self, request: pb.GetHoursBalanceRequest, context: grpc.ServicerContext) -> pb.HoursBalance:
        person = handlers.person_readable(request.person_id.strip(), _principal())
        found = readmodel.hours_balance(person)
        return pb.HoursBalance(
            person_id=person,
            hours=found.hours,
            entries=found.entries,
            updated_at=ts(found.updated_at),
            name_zh=handlers.person_name(person),
        )

    def ListHoursEntries(
        self, request: pb.ListHoursEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListHoursEntriesResponse:
        p = _principal()
        person = request.person_id.strip()
        community_id = request.community_id.strip()
        if p.role == "member" or person:
            person = handlers.person_readable(person, p)
            community_id = ""
        else:
            handlers.require_role(p, handlers.STAFF, "read volunteer hours")
            community_id = community.list_filter(community_id, p)
        fingerprint = f"person={person}|community={community_id}"
        docs, more = readmodel.list_hours_entries(
            person_id=person,
            community_id=community_id,
            size=_size(request.page_size),
            after=readmodel.after_of(request.page_token, fingerprint),
        )
        return pb.ListHoursEntriesResponse(
            entries=[entry_to_pb(d) for d in docs], next_page_token=readmodel.token_of(more, fingerprint)
        )

    def CorrectHours(self, request: pb.CorrectHoursRequest, context: grpc.ServicerContext) -> pb.HoursEntry:
        doc = handlers.correct_hours(
            request.entry_id, request.hours, request.reason, request.idempotency_key, _principal()
        )
        return entry_to_pb(doc)

    def ExportHours(self, request: pb.ExportHoursRequest, context: grpc.ServicerContext) -> pb.ExportHoursResponse:
        p = _principal()
        handlers.require_role(p, handlers.STAFF, "export volunteer hours")
        cid = request.community_id.strip()
        if not cid:
            raise InvalidArgument("community_id is required (须指明社区)", field="community_id")
        cid = community.list_filter(cid, p)
        if handlers.ORG.community(cid) is None:
            raise NotFound(f"community {cid!r} not found in this tenant (该街道/镇没有这个社区)", field="community_id")
        year = request.year or date.today().year
        start, end = domain.year_bounds(year)
        people = readmodel.hours_of_year(cid, start, end)
        names = {x["person_id"]: handlers.person_name(x["person_id"]) for x in people}
        content = handlers.export_xlsx(cid, year, people, names)
        return pb.ExportHoursResponse(
            filename=f"volunteer-hours-{cid}-{year}.xlsx",
            content=content,
            people=len(people),
            entries=sum(len(x["entries"]) for x in people),
        )

    def GetTimeBankRules(self, request: pb.GetTimeBankRulesRequest, context: grpc.ServicerContext) -> pb.TimeBankRules:
        handlers.require_role(_principal(), handlers.STAFF, "read the time-bank rules")
        return _rules_pb(*handlers.current_rules())

    def PutTimeBankRules(self, request: pb.TimeBankRules, context: grpc.ServicerContext) -> pb.TimeBankRules:
        pairs = [(x.call_type.strip(), x.hours) for x in request.task_hours]
        return _rules_pb(*handlers.put_rules(pairs, request.version, _principal()))


def _rules_pb(hours: dict[str, float], version: int) -> pb.TimeBankRules:
    return pb.TimeBankRules(
        task_hours=[pb.CallTypeHours(call_type=k, hours=hours[k]) for k in domain.CALL_TYPES], version=version
    )


class FundServicer(pb_grpc.FundServiceServicer):
    def AllocateFunds(self, request: pb.AllocateFundsRequest, context: grpc.ServicerContext) -> pb.FundEntry:
        doc = handlers.allocate(
            request.community_id,
            request.fund,
            request.amount_fen,
            request.source,
            request.note,
            request.idempotency_key,
            _principal(),
        )
        return fund_entry_to_pb(doc)

    def SpendFunds(self, request: pb.SpendFundsRequest, context: grpc.ServicerContext) -> pb.FundEntry:
        doc = handlers.spend(
            request.community_id,
            request.fund,
            request.amount_fen,
            request.for_kind,
            request.for_id,
            request.item_id,
            request.unit_id,
            request.note,
            request.idempotency_key,
            _principal(),
        )
        return fund_entry_to_pb(doc)

    def ListFundBalances(
        self, request: pb.ListFundBalancesRequest, context: grpc.ServicerContext
    ) -> pb.ListFundBalancesResponse:
        p = _principal()
        handlers.require_role(p, handlers.STAFF, "read community funds")
        rows = readmodel.fund_balances(community.list_filter(request.community_id.strip(), p))
        return pb.ListFundBalancesResponse(
            balances=[
                pb.FundBalance(
                    community_id=r["community_id"],
                    fund=r["fund"],
                    fund_zh=domain.FUNDS.get(r["fund"], r["fund"]),
                    balance_fen=r["balance_fen"],
                    allocated_fen=r["allocated_fen"],
                    spent_fen=r["spent_fen"],
                    entries=r["entries"],
                    updated_at=ts(r["updated_at"]),
                )
                for r in rows
            ]
        )

    def ListFundEntries(
        self, request: pb.ListFundEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListFundEntriesResponse:
        p = _principal()
        handlers.require_role(p, handlers.STAFF, "read community funds")
        cid = community.list_filter(request.community_id.strip(), p)
        fund = domain.fund(request.fund) if request.fund.strip() else ""
        fingerprint = f"community={cid}|fund={fund}"
        docs, more = readmodel.list_fund_entries(
            community_id=cid,
            fund=fund,
            size=_size(request.page_size),
            after=readmodel.after_of(request.page_token, fingerprint),
        )
        return pb.ListFundEntriesResponse(
            entries=[fund_entry_to_pb(d) for d in docs], next_page_token=readmodel.token_of(more, fingerprint)
        )

    def ListFundMonths(
        self, request: pb.ListFundMonthsRequest, context: grpc.ServicerContext
    ) -> pb.ListFundMonthsResponse:
        p = _principal()
        handlers.require_role(p, handlers.STAFF, "read community funds")
        cid = community.list_filter(request.community_id.strip(), p)
        this = domain.local_month(handlers.utcnow())
        last = domain.parse_month(request.to_month, "to_month") if request.to_month.strip() else this
        back = date(last.year - 1, last.month, 1)
        first = domain.parse_month(request.from_month, "from_month") if request.from_month.strip() else back
        if first > last:
            raise InvalidArgument("from_month is after to_month (起始月份晚于结束月份)", field="from_month")
        rows = readmodel.fund_months(cid, first, last)
        return pb.ListFundMonthsResponse(
            months=[
                pb.FundMonth(
                    community_id=r["community_id"],
                    fund=r["fund"],
                    month=r["month"].strftime("%Y-%m"),
                    allocated_fen=r["allocated_fen"],
                    spent_fen=r["spent_fen"],
                    closing_fen=r["closing_fen"],
                )
                for r in rows
            ]
        )


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_ResourceServiceServicer_to_server(ResourceServicer(), server)
    pb_grpc.add_TimeBankServiceServicer_to_server(TimeBankServicer(), server)
    pb_grpc.add_FundServiceServicer_to_server(FundServicer(), server)
    return [pb.DESCRIPTOR.services_by_name[n].full_name for n in ("ResourceService", "TimeBankService", "FundService")]
