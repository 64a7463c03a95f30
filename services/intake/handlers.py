"""Intake commands: load, apply the domain rules, save state and events in one write."""

from __future__ import annotations

from datetime import UTC, datetime

import pymongo.errors
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.events.v1 import intake_events_pb2 as ev

from services.common.context import require_tenant
from services.common.errors import InvalidArgument, NotFound
from services.common.principal import Principal
from services.intake.documents import IssueDoc, LocationDoc
from services.intake.domain import STATUS_RECEIVED, NewIssue, new_issue_id

PAGE_MAX = 100


def _event_location(loc: LocationDoc) -> common_pb2.Location:
    return common_pb2.Location(
        lat=loc.lat,
        lon=loc.lon,
        address=loc.address or "",
        compound_id=loc.compound_id or "",
    )


def create_issue(new: NewIssue, by: Principal, idempotency_key: str = "") -> IssueDoc:
    """Store the issue with its IssueReceived event; a retried key returns the first issue unchanged."""
    tenant = require_tenant()
    issue_id = new_issue_id(idempotency_key)
    if idempotency_key:
        existing = IssueDoc.objects(id=issue_id).first()
        if existing is not None:
            return existing
    now = datetime.now(UTC)
    doc = IssueDoc(
        id=issue_id,
        title=new.title,
        description=new.description,
        channel=new.channel,
        category=new.category,
        location=LocationDoc(
            lat=new.location.lat,
            lon=new.location.lon,
            address=new.location.address,
            compound_id=new.location.compound_id,
        ),
        status=STATUS_RECEIVED,
        created_by=by.sub,
        created_at=now,
    )
    received = ev.IssueReceived(
        issue_id=issue_id,
        tenant=tenant,
        title=new.title,
        channel=new.channel,
        category=new.category,
        location=_event_location(doc.location),
    )
    received.received_at.FromDatetime(now)
    doc.record(received, subject=f"issues/{issue_id}", at=now)
    try:
        doc.save(force_insert=True)
    except pymongo.errors.DuplicateKeyError:
        found = IssueDoc.objects(id=issue_id).first()
        if found is None:
            raise
        return found
    return doc


def get_issue(issue_id: str) -> IssueDoc:
    doc = IssueDoc.objects(id=issue_id).first() if issue_id else None
    if doc is None:
        raise NotFound(f"issue {issue_id!r} not found in this tenant (未找到该事项)", field="id")
    return doc


def list_issues(page_size: int, page_token: str) -> tuple[list[IssueDoc], str]:
    """Newest first; the page token is the offset of the next page."""
    if page_size < 0 or page_size > PAGE_MAX:
        raise InvalidArgument(f"page_size must be 1..{PAGE_MAX}", field="page_size")
    size = page_size or 20
    try:
        offset = int(page_token or 0)
    except ValueError:
        raise InvalidArgument("page_token is not one this service issued", field="page_token") from None
    docs = list(IssueDoc.objects.order_by("-created_at").skip(offset).limit(size + 1))
    next_token = str(offset + size) if len(docs) > size else ""
    return docs[:size], next_token
