"""The alliance's ledger: resources pledged and delivered (提供资源), the volunteer time bank (志愿服务时长) and
the community funds (社区经费). gRPC: ResourceService, TimeBankService, FundService (protos/hongling/alliance/
v1/ledger.proto); a Kafka consumer crediting hours from verified facts (consumer.py); read models kept by the
projector (readmodel.py)."""

from __future__ import annotations

from services.alliance.ledger.consumer import build_consumer
from services.alliance.ledger.documents import FundEntryDoc, HoursEntryDoc, PledgeDoc
from services.alliance.ledger.readmodel import REFRESH
from services.alliance.ledger.servicer import register

OUTBOX_DOCUMENTS = (PledgeDoc, HoursEntryDoc, FundEntryDoc)
WORKERS = (build_consumer,)

__all__ = ["OUTBOX_DOCUMENTS", "REFRESH", "WORKERS", "register"]
