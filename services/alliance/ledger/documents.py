"""The ledger's persistence schema (per-tenant database hl_alliance_<tenant>, collections prefixed ledger_).

- ledger_pledges: one document per pledge (its events; its state goes to the state topic for the lists).
- ledger_hours_entries: one document per time-bank entry; a credit's _id is derived from its source and its
  person (domain.entry_id), so the same source credits a person once (an insert by unique _id).
- ledger_hours_accounts: a person's running balance (_id the person's id), changed only through the unit of
  work's version claims, so concurrent credits of one person serialise and the balance after each entry is
  exact; `recent` remembers the last entries applied (a resumed entry is never applied twice).
- ledger_fund_entries: one document per allocation or spending with its balanced postings.
- ledger_funds: a fund's running balance (_id "<community>:<fund>"), the one place concurrent spends of one
  fund serialise (version claims: a spend decided on a stale balance loses its claim and decides again).
- ledger_rules: the tenant's time-bank rules (hours per verified task by call type).

The read models (services/alliance/ledger/readmodel.py) are made of the entries' and pledges' states only.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


class PledgeDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "ledger_pledges"}

    id = me.StringField(primary_key=True)
    community_id = me.StringField(required=True)
    unit_id = me.StringField(required=True)
    person_id = me.StringField(default="")
    resource_entry_id = me.StringField(required=True)
    resource = me.StringField(required=True)
    quantity = me.FloatField(required=True)
    unit_of_measure = me.StringField(default="")
    for_kind = me.StringField(required=True)
    for_id = me.StringField(required=True)
    item_id = me.StringField(default="")
    note = me.StringField(default="")
    status = me.StringField(required=True)
    pledged_at = me.DateTimeField(required=True)
    pledged_by = me.StringField(default="")
    delivered_at = me.DateTimeField()
    confirmed_by = me.StringField(default="")
    withdrawn_at = me.DateTimeField()
    withdrawn_by = me.StringField(default="")
    withdraw_reason = me.StringField(default="")
    version = me.IntField(default=1)
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()


class HoursEntryDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "ledger_hours_entries"}

    id = me.StringField(primary_key=True)
    person_id = me.StringField(required=True)
    community_id = me.StringField(default="")
    unit_id = me.StringField(default="")
    hours = me.FloatField(required=True)
    source_kind = me.StringField(required=True)
    source_id = me.StringField(required=True)
    corrects_entry_id = me.StringField(default="")
    reason = me.StringField(default="")
    by = me.StringField(default="")
    at = me.DateTimeField(required=True)  # when the fact happened
    applied = me.BooleanField(default=False)  # added to the person's balance (and HoursCredited recorded)
    balance = me.FloatField(default=0.0)  # the person's balance after this entry
    version = me.IntField(default=1)
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()


class HoursAccountDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "ledger_hours_accounts"}

    id = me.StringField(primary_key=True)  # the person's id
    balance = me.FloatField(default=0.0)
    entries = me.IntField(default=0)
    recent = me.ListField(me.DictField())  # [{id, balance}] of the last entries applied
    version = me.IntField(default=0)
    updated_at = me.DateTimeField()


class PostingDoc(me.EmbeddedDocument):
    account = me.StringField(required=True)
    debit_fen = me.LongField(default=0)
    credit_fen = me.LongField(default=0)


class FundEntryDoc(OutboxDocument):
    PUBLISH_STATE: ClassVar[bool] = True
    meta: ClassVar[dict[str, Any]] = {"collection": "ledger_fund_entries"}

    id = me.StringField(primary_key=True)
    community_id = me.StringField(required=True)
    fund = me.StringField(required=True)
    kind = me.StringField(required=True)  # allocation | spending
    amount_fen = me.LongField(required=True)
    source = me.StringField(default="")
    for_kind = me.StringField(default="")
    for_id = me.StringField(default="")
    item_id = me.StringField(default="")
    unit_id = me.StringField(default="")
    note = me.StringField(default="")
    by = me.StringField(default="")
    status = me.StringField(required=True)  # pending | posted | refused
    balance_fen = me.LongField(default=0)
    seq = me.IntField(default=0)
    postings = me.EmbeddedDocumentListField(PostingDoc)
    at = me.DateTimeField(required=True)
    version = me.IntField(default=1)
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField()


class FundDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "ledger_funds"}

    id = me.StringField(primary_key=True)  # "<community>:<fund>"
    community_id = me.StringField(required=True)
    fund = me.StringField(required=True)
    balance_fen = me.LongField(default=0)
    seq = me.IntField(default=0)
    recent = me.ListField(me.DictField())  # [{id, balance_fen, seq}] of the last entries posted
    version = me.IntField(default=0)
    updated_at = me.DateTimeField()


class LedgerRulesDoc(TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "ledger_rules"}

    id = me.StringField(primary_key=True)
    task_hours = me.DictField()
    version = me.IntField(default=0)
    updated_at = me.DateTimeField()
    updated_by = me.StringField(default="")
