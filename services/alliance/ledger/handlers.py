"""The ledger's commands and event handlers: pledges, the time bank and the funds (one function each).

Writes go through the one write path (services/common/unitofwork.py). An entry (hours or money) is written
in three steps, each safe to repeat, so a crash at any point is finished by the retry (the consumer's
redelivery, or the caller's retry with its idempotency key) and never applied twice:

1. insert the entry by its _id, not yet applied (a credit's _id is derived from its source and person, a
   command's from the caller's idempotency key): a second insert of the same _id finds the first;
2. apply it to the running balance (the person's hours account, the fund) as that aggregate's next version,
   claimed by insert: concurrent entries of one account serialise, a spend decided on a stale balance loses
   its claim and decides again on the new one, so a fund is never overdrawn (FerretDB has no isolated
   conditional update; the claim is the atomic step). The account remembers its last entries, so a resumed
   entry is not applied again;
3. mark the entry applied with the balance after it and its event (HoursCredited, FundsAllocated,
   FundsSpent), in the entry's own document write. The read side counts an entry once it is applied.

A command's entry (an allocation, a spending, a correction) is also guarded by a durable timer
("alliance.ledger_finish", services/common/clocks.py) scheduled just before step 1 and cancelled after step 3: if the
process dies between the steps and the caller never retries, the timer finishes the entry after the restart
(steps 2 and 3 are idempotent), so the account's balance and the entries the read side counts never part.
A consumer's credit needs no timer: its event is redelivered until step 3 is done.
"""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
import mongoengine as me
import pymongo.errors
from hongling.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from hongling.events.v1 import alliance_events_pb2 as aev
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.alliance.activities.documents import ActivityDoc
from services.alliance.meetings.documents import MeetingDoc
from services.alliance.shared import aware, conflicts, ts, utcnow
from services.common import clocks, community, context, unitofwork
from services.common.context import require_tenant
from services.common.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.grpc_client import LazyStub, peer_call
from services.common.outbox import OutboxDocument
from services.common.principal import Principal
from services.common.unitofwork import Conflicts, UnitOfWork

from . import domain
from .documents import (
    FundDoc,
    FundEntryDoc,
    HoursAccountDoc,
    HoursEntryDoc,
    LedgerRulesDoc,
    PledgeDoc,
    PostingDoc,
)

log = logging.getLogger(__name__)

ORG_SERVICE = "hongling.org.v1.OrgService"
SERVICE = "service:alliance"
STAFF = ("community_worker", "subdistrict_admin")
RECENT = 500  # entries an account remembers (a resumed entry is far more recent than this)
CHANGE_DEADLINE = 20.0
RULES_ID = "timebank_rules"
D = TypeVar("D", bound=OutboxDocument)


def _conflicts(kind: str) -> Conflicts:
    return conflicts(kind)


# ---------------------------------------------------------------- who is calling


def require_role(p: Principal, roles: tuple[str, ...], what: str) -> None:
    if p.role not in roles and p.role != "service":
        raise PermissionDenied(
            f"role {p.role!r} may not {what}; it needs one of: {', '.join(roles)} (当前角色无权操作)"
        )


def member_unit(p: Principal, asked: str) -> str:
    """The unit a member acts for: its own (its credential is bound to a member_unit); naming another, or a
    credential bound to a person or a team, is refused."""
    if p.responder is None or p.responder[0] != "member_unit":
        raise PermissionDenied(
            "only a member unit's credential pledges resources (仅成员单位可承诺资源)", reason="not_your_responder"
        )
    own = p.responder[1]
    if asked and asked != own:
        raise PermissionDenied(
            f"a member acts only as member_unit:{own}, not as {asked} (成员只能以本单位身份操作)",
            field="unit_id",
            reason="not_your_responder",
        )
    return own


def member_person(p: Principal) -> str:
    if p.responder is None or p.responder[0] != "person":
        raise PermissionDenied(
            "only a person's member credential reads its own hours (仅本人可查看志愿时长)", reason="not_your_responder"
        )
    return p.responder[1]


# ---------------------------------------------------------------- org, asked over gRPC


class Org:
    """The org service, asked as this service (a "service" principal of the call's tenant)."""

    def __init__(self) -> None:
        self._stub = LazyStub(org_pb2_grpc.OrgServiceStub, "org", ORG_SERVICE, "alliance")

    def _get(self, method: str, ident: str) -> Any | None:
        me_ = Principal(sub="alliance", role="service", tenants=(require_tenant(),))
        try:
            with context.bound(principal=me_):
                return getattr(self._stub(), method)(org_pb2.GetRequest(id=ident))
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    "the organisation service cannot be reached; retry shortly (组织架构服务暂不可用，请稍后重试)"
                ) from None
            raise

    def resource_entry(self, ident: str) -> Any | None:
        return self._get("GetUnitResourceEntry", ident)

    def person(self, ident: str) -> Any | None:
        return self._get("GetPerson", ident)

    def resource_entries(self, unit_id: str) -> list[Any]:
        """The entries of one unit's resource list (every page), asked as the alliance service."""

        def every_page() -> list[Any]:
            found: list[Any] = []
            token = ""
            while True:
                resp = self._stub().ListUnitResourceEntries(
                    org_pb2.ListRequest(page_size=500, page_token=token, filter={"unit_id": unit_id})
                )
                found.extend(resp.items)
                token = resp.next_page_token
                if not token:
                    return found

        return peer_call(every_page, "alliance")

    def community(self, ident: str) -> Any | None:
        return self._get("GetCommunity", ident)


ORG = Org()


class Targets:
    """What a pledge or a spending is for, looked up where it lives: an activity or a meeting in this service's
    tenant database (by _id), a task at dispatch over gRPC (as this service). community_of answers the
    community it belongs to, or None when there is no such thing in the tenant."""

    def __init__(self) -> None:
        self._dispatch = LazyStub(
            dispatch_pb2_grpc.DispatchServiceStub, "dispatch", "hongling.dispatch.v1.DispatchService", "alliance"
        )

    def community_of(self, kind: str, ident: str, item: str, uow: UnitOfWork) -> str | None:
        if kind == domain.ACTIVITY:
            activity = uow.load_fields(ActivityDoc, ident, ["community_id"])
            return str(activity["community_id"]) if activity else None
        if kind == domain.DECISION:
            meeting = uow.load(MeetingDoc, ident)
            items = {i.id: i for i in (meeting.agenda if meeting else [])}
            on = items.get(item)
            if meeting is None or on is None or (on.decision is not None and on.decision.outcome == "rejected"):
                return None
            return str(meeting.community_id)
        me_ = Principal(sub="alliance", role="service", tenants=(require_tenant(),))
        try:
            with context.bound(principal=me_):
                task = self._dispatch().GetTask(dispatch_pb2.GetTaskRequest(id=ident))
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    "the dispatch service cannot be reached; retry shortly (派单服务暂不可用，请稍后重试)"
                ) from None
            raise
        return str(task.community_id)


TARGETS = Targets()
FOR_ZH = {domain.TASK: "任务", domain.ACTIVITY: "活动", domain.DECISION: "会议决议"}


def require_target(kind: str, ident: str, item: str, community_id: str, uow: UnitOfWork, targets: Targets) -> None:
    """A pledge or a spending is tied to a task, an activity or a meeting's decision that exists in this tenant,
    in the same community (a decision: an agenda item of the meeting, not rejected)."""
    where = targets.community_of(kind, ident, item, uow)
    field = "item_id" if kind == domain.DECISION and where is None and uow.load(MeetingDoc, ident) else "for_id"
    if where is None:
        raise InvalidArgument(
            f"no {kind} {ident!r}{f' item {item!r}' if item else ''} in this tenant to tie this to: name an existing "
            f"one (未找到所属{FOR_ZH[kind]})",
            field=field,
        )
    if where != community_id:
        raise InvalidArgument(
            f"{kind} {ident!r} belongs to another community than {community_id!r} (所属{FOR_ZH[kind]}不在本社区)",
            field="for_id",
        )


def _insert(doc: D, uow: UnitOfWork) -> bool:
    """Create a document (version 1); False when one with its _id exists already."""
    doc.version = 1
    try:
        return uow.write(doc, 0)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        return False


# ---------------------------------------------------------------- pledges (提供资源)


def _visible_pledge(doc: PledgeDoc | None, ident: str, p: Principal) -> PledgeDoc:
    missing = NotFound(f"pledge {ident!r} not found in this tenant (未找到该资源承诺)", field="id")
    if doc is None or not community.sees(doc.community_id, p):
        raise missing
    if p.role == "member" and (p.responder is None or p.responder != ("member_unit", doc.unit_id)):
        raise missing
    return doc


def resource_entries(unit_id: str, by: Principal, org: Org = ORG) -> list[Any]:
    """The unit's resource list to pledge from: a member unit's own; staff name the unit, a community worker
    sees only the entries placed in its community."""
    require_role(by, ("member", *STAFF), "read a unit's resource list")
    unit = member_unit(by, unit_id.strip()) if by.role == "member" else unit_id.strip()
    if not unit:
        raise InvalidArgument(
            "unit_id is required: the member unit whose list is read (须指明成员单位)", field="unit_id"
        )
    return [e for e in org.resource_entries(unit) if by.role == "member" or community.sees(e.community_id, by)]


def pledge(
    *,
    unit_id: str,
    resource_entry_id: str,
    quantity: float,
    unit_of_measure: str,
    for_kind: str,
    for_id: str,
    item_id: str,
    note: str,
    idempotency_key: str,
    by: Principal,
    uow: UnitOfWork = unitofwork.MONGO,
    org: Org = ORG,
    targets: Targets = TARGETS,
) -> PledgeDoc:
    require_role(by, ("member", *STAFF), "pledge resources")
    unit = member_unit(by, unit_id.strip()) if by.role == "member" else unit_id.strip()
    if not unit:
        raise InvalidArgument("unit_id is required: the member unit that pledges (须指明承诺单位)", field="unit_id")
    kind, ident, item = domain.target(for_kind, for_id, item_id)
    text = domain.note(note)
    entry_id = resource_entry_id.strip()
    if not entry_id:
        raise InvalidArgument(
            "resource_entry_id is required: the item of the unit's resource list (须选择资源清单中的项目)",
            field="resource_entry_id",
        )
    entry = org.resource_entry(entry_id)
    if entry is None or entry.unit_id != unit:
        raise InvalidArgument(
            f"resource_entry_id {entry_id!r} is not on unit {unit!r}'s resource list (驻地和双报到单位资源清单); "
            "pick one of its entries or add it to the list first (该资源不在本单位资源清单中)",
            field="resource_entry_id",
        )
    community.require_placed_in_scope(entry.community_id)
    amount = domain.quantity(quantity, float(entry.quantity or 0))
    require_target(kind, ident, item, entry.community_id, uow, targets)
    key = idempotency_key.strip()
    pid = domain.keyed_id("pl", key, f"{by.sub}:{unit}") if key else f"pl-{uuid.uuid4().hex}"
    now = utcnow()
    person = by.responder[1] if by.responder is not None and by.responder[0] == "person" else ""
    doc = PledgeDoc(
        id=pid,
        community_id=entry.community_id,
        unit_id=unit,
        person_id=person,
        resource_entry_id=entry_id,
        resource=entry.resource,
        quantity=amount,
        unit_of_measure=(unit_of_measure or "").strip()[:20] or entry.unit_of_measure,
        for_kind=kind,
        for_id=ident,
        item_id=item,
        note=text,
        status=domain.PLEDGED,
        pledged_at=now,
        pledged_by=by.sub,
        created_at=now,
        updated_at=now,
    )
    doc.record(
        aev.ResourcePledged(
            pledge_id=pid,
            tenant=require_tenant(),
            community_id=doc.community_id,
            unit_id=unit,
            person_id=person,
            resource=doc.resource,
            quantity=amount,
            unit_of_measure=doc.unit_of_measure,
            for_kind=kind,
            for_id=ident,
            at=ts(now),
        ),
        pid,
        at=now,
    )
    if not _insert(doc, uow):
        found = uow.load(PledgeDoc, pid)
        return _visible_pledge(found, pid, by)
    return doc


def get_pledge(ident: str, by: Principal, uow: UnitOfWork = unitofwork.MONGO) -> PledgeDoc:
    return _visible_pledge(uow.load(PledgeDoc, ident.strip()) if ident.strip() else None, ident, by)


def confirm_delivery(ident: str, by: Principal, uow: UnitOfWork = unitofwork.MONGO) -> PledgeDoc:
    require_role(by, STAFF, "confirm a delivery")
    _visible_pledge(uow.load(PledgeDoc, ident), ident, by)

    def mutate(doc: PledgeDoc, now: datetime) -> bool:
        domain.can_deliver(doc.status)
        doc.status = domain.DELIVERED
        doc.delivered_at = now
        doc.confirmed_by = by.sub
        doc.record(
            aev.ResourceDelivered(**_pledge_fields(doc, now), confirmed_by=by.sub),
            doc.id,
            at=now,
        )
        return True

    done = unitofwork.change(
        uow, PledgeDoc, f"ledger_pledge:{ident}", ident, mutate, conflicts=_conflicts("pledge"), now=utcnow
    )
    assert done.doc is not None
    return done.doc


def _pledge_fields(doc: PledgeDoc, now: datetime) -> dict[str, Any]:
    """What a pledge's later events (delivered, withdrawn) say of it."""
    return {
        "pledge_id": doc.id,
        "tenant": require_tenant(),
        "community_id": doc.community_id,
        "unit_id": doc.unit_id,
        "person_id": doc.person_id or "",
        "resource": doc.resource,
        "quantity": doc.quantity,
        "pledged_at": ts(doc.pledged_at),
        "at": ts(now),
    }


def withdraw(ident: str, reason: str, by: Principal, uow: UnitOfWork = unitofwork.MONGO) -> PledgeDoc:
    require_role(by, ("member", *STAFF), "withdraw a pledge")
    why = domain.note(reason, "reason")
    if not why:
        raise InvalidArgument("reason is required to withdraw a pledge (撤回须说明原因)", field="reason")
    _visible_pledge(uow.load(PledgeDoc, ident), ident, by)

    def mutate(doc: PledgeDoc, now: datetime) -> bool:
        domain.can_withdraw(doc.status)
        doc.status = domain.WITHDRAWN
        doc.withdrawn_at = now
        doc.withdrawn_by = by.sub
        doc.withdraw_reason = why
        doc.record(
            aev.ResourcePledgeWithdrawn(**_pledge_fields(doc, now), withdrawn_by=by.sub),
            doc.id,
            at=now,
        )
        return True

    done = unitofwork.change(
        uow, PledgeDoc, f"ledger_pledge:{ident}", ident, mutate, conflicts=_conflicts("pledge"), now=utcnow
    )
    assert done.doc is not None
    return done.doc


# ---------------------------------------------------------------- the time bank


def _apply_hours(entry: HoursEntryDoc, uow: UnitOfWork) -> HoursEntryDoc:
    """Steps 2 and 3 (module docstring) for an inserted hours entry."""
    if entry.applied:
        return entry

    def add(acct: HoursAccountDoc, now: datetime) -> bool:
        if any(r.get("id") == entry.id for r in acct.recent or []):
            return False
        acct.balance = domain.hours_value((acct.balance or 0.0) + entry.hours)
        acct.entries = (acct.entries or 0) + 1
        acct.recent = [*(acct.recent or [])[-(RECENT - 1) :], {"id": entry.id, "balance": acct.balance}]
        return True

    acct = unitofwork.change(
        uow,
        HoursAccountDoc,
        f"ledger_hours:{entry.person_id}",
        entry.person_id,
        add,
        conflicts=_conflicts("hours account"),
        now=utcnow,
        fresh=lambda: HoursAccountDoc(id=entry.person_id, balance=0.0, entries=0, recent=[]),
        deadline=CHANGE_DEADLINE,
    ).doc
    assert acct is not None
    balance = next((float(r["balance"]) for r in acct.recent if r.get("id") == entry.id), acct.balance)

    def mark(doc: HoursEntryDoc, now: datetime) -> bool:
        if doc.applied:
            return False
        doc.applied = True
        doc.balance = balance
        doc.record(
            aev.HoursCredited(
                entry_id=doc.id,
                tenant=require_tenant(),
                community_id=doc.community_id or "",
                unit_id=doc.unit_id or "",
                person_id=doc.person_id,
                hours=doc.hours,
                source_kind=doc.source_kind,
                source_id=doc.source_id,
                corrects_entry_id=doc.corrects_entry_id or "",
                balance=balance,
                at=ts(doc.at),
            ),
            doc.person_id,
            at=now,
        )
        return True

    done = unitofwork.change(
        uow,
        HoursEntryDoc,
        f"ledger_hours_entry:{entry.id}",
        entry.id,
        mark,
        conflicts=_conflicts("hours entry"),
        now=utcnow,
    )
    assert done.doc is not None
    return done.doc


FINISH_KIND = "alliance.ledger_finish"
FINISH_AFTER = timedelta(minutes=2)  # far longer than steps 2 and 3 take; a restart fires it at once if due


def _guard(kind: str, entry_id: str, uow: UnitOfWork) -> str | None:
    """Schedule the finishing timer of a command's new entry (the real store only: an in-memory unit of work
    has no process to die). Its key, or None."""
    if uow is not unitofwork.MONGO:
        return None
    key = f"ledger-finish:{entry_id}"
    clocks.schedule(key, FINISH_KIND, utcnow() + FINISH_AFTER, {"kind": kind, "entry_id": entry_id})
    return key


def _unguard(key: str | None) -> None:
    if key is not None:
        clocks.cancel(key)


@clocks.handler(FINISH_KIND)
def on_ledger_finish(timer: clocks.Timer) -> None:
    """Finish a command's entry left between its steps by a crash (idempotent: a finished entry is left as is)."""
    ident = timer.payload.get("entry_id", "")
    if timer.payload.get("kind") == "hours":
        hours = unitofwork.MONGO.load(HoursEntryDoc, ident)
        if hours is not None and not hours.applied:
            _apply_hours(hours, unitofwork.MONGO)
        return
    entry = unitofwork.MONGO.load(FundEntryDoc, ident)
    if entry is not None and entry.status == "pending":
        with contextlib.suppress(FailedPrecondition):  # beyond the balance: now recorded refused
            _apply_funds(entry, unitofwork.MONGO)
    log.info("ledger entry %s finished by its timer after an interrupted command", ident)


def _enter_hours(entry: HoursEntryDoc, uow: UnitOfWork, *, guarded: bool = False) -> HoursEntryDoc:
    # The timer first, then the entry: a crash between the two leaves a timer that finds nothing to finish,
    # never an entry without its timer.
    key = _guard("hours", entry.id, uow) if guarded else None
    if not _insert(entry, uow):
        found = uow.load(HoursEntryDoc, entry.id)
        if found is None:
            raise Aborted(f"hours entry {entry.id} could not be written; retry (请重试)")
        entry = found
    done = _apply_hours(entry, uow)
    _unguard(key)
    return done


def credit(
    source_kind: str,
    source_id: str,
    person_id: str,
    hours: float,
    at: datetime,
    *,
    community_id: str = "",
    unit_id: str = "",
    uow: UnitOfWork = unitofwork.MONGO,
) -> HoursEntryDoc | None:
    """Credit a person hours for a verified fact, once per source and person (None: it credits nothing)."""
    h = domain.fact_hours(hours)
    if h is None or not person_id.strip() or not source_id.strip():
        return None
    now = utcnow()
    entry = HoursEntryDoc(
        id=domain.entry_id(source_kind, source_id, person_id),
        person_id=person_id.strip(),
        community_id=community_id,
        unit_id=unit_id,
        hours=h,
        source_kind=source_kind,
        source_id=source_id,
        by=SERVICE,
        at=at,
        applied=False,
        created_at=now,
        updated_at=now,
    )
    return _enter_hours(entry, uow)


def correct_hours(
    entry_id: str, hours: float, reason: str, idempotency_key: str, by: Principal, uow: UnitOfWork = unitofwork.MONGO
) -> HoursEntryDoc:
    require_role(by, STAFF, "correct volunteer hours")
    h = domain.correction_hours(hours)
    why = domain.note(reason, "reason")
    if not why:
        raise InvalidArgument("reason is required for a correction (更正须说明原因)", field="reason")
    ident = entry_id.strip()
    missing = NotFound(f"hours entry {ident!r} not found in this tenant (未找到该时长记录)", field="entry_id")
    corrected = uow.load(HoursEntryDoc, ident) if ident else None
    if corrected is None or not corrected.applied or not community.sees(corrected.community_id, by):
        raise missing
    key = idempotency_key.strip()
    cid = domain.keyed_id("hc", key, f"{by.sub}:{ident}") if key else f"hc-{uuid.uuid4().hex}"
    now = utcnow()
    entry = HoursEntryDoc(
        id=cid,
        person_id=corrected.person_id,
        community_id=corrected.community_id or "",
        unit_id=corrected.unit_id or "",
        hours=h,
        source_kind=domain.CORRECTION,
        source_id=ident,
        corrects_entry_id=ident,
        reason=why,
        by=by.sub,
        at=now,
        applied=False,
        created_at=now,
        updated_at=now,
    )
    return _enter_hours(entry, uow, guarded=True)  # a command's entry: its timer finishes it after a crash


def get_entry(ident: str, uow: UnitOfWork = unitofwork.MONGO) -> HoursEntryDoc | None:
    return uow.load(HoursEntryDoc, ident) if ident else None


def person_readable(person_id: str, by: Principal, org: Org = ORG) -> str:
    """The person whose hours the caller may read: a member its own; a community worker a person of its
    community (org's record), another's is missing; a subdistrict admin anyone of the tenant."""
    if by.role == "member":
        own = member_person(by)
        if person_id and person_id != own:
            raise NotFound(f"person {person_id!r} not found in this tenant (未找到)", field="person_id")
        return own
    require_role(by, STAFF, "read volunteer hours")
    ident = person_id.strip()
    if not ident:
        raise InvalidArgument("person_id is required (须指明人员)", field="person_id")
    if by.community is not None:
        person = org.person(ident)
        if person is None or person.community_id != by.community:
            raise NotFound(f"person {ident!r} not found in this tenant (未找到)", field="person_id")
    return ident


def person_name(person_id: str, org: Org = ORG) -> str:
    person = org.person(person_id)
    return str(person.name_zh) if person is not None else ""


def current_rules(uow: UnitOfWork = unitofwork.MONGO) -> tuple[dict[str, float], int]:
    doc = uow.load(LedgerRulesDoc, RULES_ID)
    if doc is None:
        return dict(domain.DEFAULT_TASK_HOURS), 0
    return {**domain.DEFAULT_TASK_HOURS, **{k: float(v) for k, v in (doc.task_hours or {}).items()}}, doc.version


def put_rules(
    pairs: list[tuple[str, float]], expected_version: int, by: Principal, uow: UnitOfWork = unitofwork.MONGO
) -> tuple[dict[str, float], int]:
    require_role(by, ("subdistrict_admin",), "change the time-bank rules")
    hours = domain.rules_hours(pairs)

    def replace(doc: LedgerRulesDoc, _now: datetime) -> bool:
        doc.task_hours = hours
        doc.updated_by = by.sub
        return True

    written = unitofwork.change(
        uow,
        LedgerRulesDoc,
        "ledger_rules",
        RULES_ID,
        replace,
        conflicts=_conflicts("the time-bank rules"),
        now=utcnow,
        expected_version=expected_version,
        fresh=lambda: LedgerRulesDoc(id=RULES_ID, version=0, task_hours={}),
    ).doc
    assert written is not None
    return current_rules(uow)


def export_xlsx(community_id: str, year: int, people: list[dict[str, Any]], names: dict[str, str]) -> bytes:
    """A community's year: a sheet of each person's total and one of every entry (names, never contact data)."""
    from openpyxl import Workbook

    wb = Workbook()
    totals = wb.active
    assert totals is not None
    totals.title = "汇总 Totals"
    totals.append(["人员编号 Person", "姓名 Name", "时长合计 Hours", "记录数 Entries"])
    details = wb.create_sheet("明细 Entries")
    details.append(
        [
            "人员编号 Person",
            "姓名 Name",
            "时间 At (Asia/Shanghai)",
            "时长 Hours",
            "来源 Source",
            "来源编号 Source id",
            "更正 Corrects",
            "原因 Reason",
        ]
    )
    for person in people:
        pid = person["person_id"]
        entries = person["entries"]
        totals.append([pid, names.get(pid, ""), round(sum(e["hours"] for e in entries), 2), len(entries)])
        for e in entries:
            local = aware(e["at"]).astimezone(domain.LOCAL).strftime("%Y-%m-%d %H:%M")  # type: ignore[union-attr]
            details.append(
                [
                    pid,
                    names.get(pid, ""),
                    local,
                    e["hours"],
                    e["source_kind"],
                    e["source_id"],
                    e["corrects_entry_id"],
                    e["reason"],
                ]
            )
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# ---------------------------------------------------------------- funds (社区经费)


def _apply_funds(entry: FundEntryDoc, uow: UnitOfWork) -> FundEntryDoc:
    """Steps 2 and 3 (module docstring) for an inserted fund entry; a spending beyond the balance marks the
    entry refused and raises FAILED_PRECONDITION."""
    if entry.status == "refused":
        raise _refused(entry)
    if entry.status != "pending":
        return entry
    fid = domain.fund_id(entry.community_id, entry.fund)
    refused: list[FailedPrecondition] = []

    def post(fund: FundDoc, now: datetime) -> bool:
        if any(r.get("id") == entry.id for r in fund.recent or []):
            return False
        balance = int(fund.balance_fen or 0)
        if entry.kind == domain.SPENDING:
            try:
                balance = domain.spend(balance, entry.amount_fen)
            except FailedPrecondition as exc:
                refused.append(exc)
                return False
        else:
            balance += entry.amount_fen
        fund.balance_fen = balance
        fund.seq = int(fund.seq or 0) + 1
        fund.recent = [*(fund.recent or [])[-(RECENT - 1) :], {"id": entry.id, "balance_fen": balance, "seq": fund.seq}]
        return True

    fund = unitofwork.change(
        uow,
        FundDoc,
        f"ledger_fund:{fid}",
        fid,
        post,
        conflicts=_conflicts("fund"),
        now=utcnow,
        fresh=lambda: FundDoc(
            id=fid, community_id=entry.community_id, fund=entry.fund, balance_fen=0, seq=0, recent=[]
        ),
        deadline=CHANGE_DEADLINE,
    ).doc
    assert fund is not None
    posted = next((r for r in fund.recent if r.get("id") == entry.id), None)

    def mark(doc: FundEntryDoc, now: datetime) -> bool:
        if doc.status != "pending":
            return False
        if posted is None:
            doc.status = "refused"
            return True
        doc.status = "posted"
        doc.balance_fen = int(posted["balance_fen"])
        doc.seq = int(posted["seq"])
        tenant = require_tenant()
        if doc.kind == domain.ALLOCATION:
            event: Any = aev.FundsAllocated(
                entry_id=doc.id,
                tenant=tenant,
                community_id=doc.community_id,
                fund=doc.fund,
                amount_fen=doc.amount_fen,
                source=doc.source,
                balance_fen=doc.balance_fen,
                at=ts(doc.at),
            )
        else:
            event = aev.FundsSpent(
                entry_id=doc.id,
                tenant=tenant,
                community_id=doc.community_id,
                fund=doc.fund,
                amount_fen=doc.amount_fen,
                for_kind=doc.for_kind,
                for_id=doc.for_id,
                unit_id=doc.unit_id or "",
                balance_fen=doc.balance_fen,
                at=ts(doc.at),
            )
        doc.record(event, fid, at=now)
        return True

    done = unitofwork.change(
        uow,
        FundEntryDoc,
        f"ledger_fund_entry:{entry.id}",
        entry.id,
        mark,
        conflicts=_conflicts("fund entry"),
        now=utcnow,
    ).doc
    assert done is not None
    if done.status == "refused":
        raise refused[0] if refused else _refused(done)
    return done


def _refused(entry: FundEntryDoc) -> FailedPrecondition:
    return FailedPrecondition(
        f"this spending of {entry.amount_fen / 100:.2f} yuan was refused: the fund held less (余额不足，该支出未入账)",
        field="amount_fen",
        reason="insufficient_funds",
    )


def _fund_entry(
    kind: str,
    community_id: str,
    fund_name: str,
    amount_fen: int,
    counterpart: str,
    fields: dict[str, str],
    idempotency_key: str,
    by: Principal,
    uow: UnitOfWork,
    org: Org,
    target: tuple[str, str, str] | None = None,
    targets: Targets | None = None,
) -> FundEntryDoc:
    require_role(by, STAFF, "allocate or spend community funds")
    cid = community_id.strip()
    if not cid:
        raise InvalidArgument("community_id is required (须指明社区)", field="community_id")
    community.require_placed_in_scope(cid)
    name = domain.fund(fund_name)
    amount = domain.amount(amount_fen)
    if org.community(cid) is None:
        raise InvalidArgument(
            f"community {cid!r} does not exist in this tenant (该街道/镇没有这个社区)", field="community_id"
        )
    if target is not None:
        require_target(*target, cid, uow, targets or TARGETS)
    key = idempotency_key.strip()
    eid = domain.keyed_id("fe", key, f"{by.sub}:{cid}:{name}:{kind}") if key else f"fe-{uuid.uuid4().hex}"
    now = utcnow()
    entry = FundEntryDoc(
        id=eid,
        community_id=cid,
        fund=name,
        kind=kind,
        amount_fen=amount,
        by=by.sub,
        status="pending",
        postings=[
            PostingDoc(account=x.account, debit_fen=x.debit_fen, credit_fen=x.credit_fen)
            for x in domain.postings(kind, cid, name, amount, counterpart)
        ],
        at=now,
        created_at=now,
        updated_at=now,
        **fields,
    )
    guard = _guard("fund", eid, uow)  # before the entry, as an hours entry's (_enter_hours)
    if not _insert(entry, uow):
        found = uow.load(FundEntryDoc, eid)
        if found is None:
            raise Aborted(f"fund entry {eid} could not be written; retry (请重试)")
        entry = found
    try:
        done = _apply_funds(entry, uow)
    except FailedPrecondition:  # refused, for good; any other failure leaves the timer to finish the entry
        _unguard(guard)
        raise
    _unguard(guard)
    return done


def allocate(
    community_id: str,
    fund_name: str,
    amount_fen: int,
    source: str,
    note: str,
    idempotency_key: str,
    by: Principal,
    uow: UnitOfWork = unitofwork.MONGO,
    org: Org = ORG,
) -> FundEntryDoc:
    """Money into a fund from a stated source: a subdistrict admin for any community of the tenant, a community
    worker for its own (stating where the money came from, e.g. 党费 or a donation, which the entry keeps)."""
    src = domain.source(source)
    fields = {"source": src, "note": domain.note(note)}
    return _fund_entry(
        domain.ALLOCATION, community_id, fund_name, amount_fen, src, fields, idempotency_key, by, uow, org
    )


def spend(
    community_id: str,
    fund_name: str,
    amount_fen: int,
    for_kind: str,
    for_id: str,
    item_id: str,
    unit_id: str,
    note: str,
    idempotency_key: str,
    by: Principal,
    uow: UnitOfWork = unitofwork.MONGO,
    org: Org = ORG,
    targets: Targets = TARGETS,
) -> FundEntryDoc:
    kind, ident, item = domain.target(for_kind, for_id, item_id)
    unit = unit_id.strip()
    if len(unit) > domain.ID_MAX:
        raise InvalidArgument("unit_id is too long (单位编号过长)", field="unit_id")
    fields = {"for_kind": kind, "for_id": ident, "item_id": item, "unit_id": unit, "note": domain.note(note)}
    return _fund_entry(
        domain.SPENDING,
        community_id,
        fund_name,
        amount_fen,
        kind,
        fields,
        idempotency_key,
        by,
        uow,
        org,
        target=(kind, ident, item),
        targets=targets,
    )


Handler = Callable[..., Any]
