"""Department requests and grants, stored at district level: database `hl_governance` (not per tenant).

Every document is keyed by its id (`_id`), so every single-record look-up is by _id.

Once-only steps are inserts, not conditional updates. MongoDB applies `find_one_and_update({_id, status:
"filed"}, …)` atomically, but FerretDB v1 (the local and CI database, on either backend) reads and
writes such an update without a transaction (FerretDB issue #3040): measured here, two concurrent approvals of one
request both "won" and 12 concurrent uses of a grant with quota 5 all passed. An insert with a given
_id is atomic on both (the primary key), so each step that may happen only once claims its _id:

- `requests`: a department's request as filed. Its status moves once, filed -> approved | rejected: the
  decider inserts `claims/decision:<request id>` (of two approvers deciding at once, exactly one insert
  succeeds; the other gets DuplicateKeyError -> 409), then copies the decision onto the request (only
  the claim's winner writes that, so the copy cannot be lost to a concurrent write; a copy missing after
  a crash is made again on the next read).
- `grants`: what an approval allows. Its id is derived from its request's (`dr-X` -> `gr-X`) and the
  decision claim carries its terms, so the grant document, inserted right after, can always be written
  again from the approved request: there is never a grant without an approved request. After its
  insert a grant document changes once: revocation, claimed the same way (`claims/revocation:<grant id>`).
- `grant_uses`: one document per use, `_id = "<grant id>:<n>"` for n = 1, 2, …: a use takes the next
  free n by inserting it, never beyond the quota (0 = unlimited), so concurrent users can never together
  exceed the quota. `used` is the number of uses taken.
- `grant_audit`: which audit-log entries concern a grant (their seq), numbered the same way: the grant's
  `audit_count`, read by _id as it stands (read-your-writes). The trail's entries are read from the
  audit log's SQL read model by grant_id (services/common/audit_readmodel.py), a moment behind.
- `counters`: where the numbering of uses and links stands (`uses:<grant id>`, `audit:<grant id>`), a
  hint only: counts step forward from it by _id while the next number is taken, as the audit log's head.

Ids are `dr-`/`gr-` + 12 hex digits of the filing time in milliseconds + 16 random hex digits:
unguessable, and sorted by _id they are sorted by filing time (keyset pages, newest first).

For grant enforcement (a department's call under a grant), see grant_for_call, use_grant and
record_grant_audit at the end of this module.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pymongo
import pymongo.errors
from flask import current_app
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

from gateway.governance import domain
from services.common.audit import AuditLog, Entry

log = logging.getLogger("gateway.governance")

DATABASE = "hl_governance"
STATUSES = ("filed", "approved", "rejected")
REQUEST_PREFIX, GRANT_PREFIX = "dr-", "gr-"
ID_RE = re.compile(r"^(dr|gr)-[0-9a-f]{28}$")
STORE_KEY = "hongling.governance"
AUDIT_KEY = "hongling.audit"


# ---------------------------------------------------------------- ids


def new_request_id(now: datetime | None = None) -> str:
    """A fresh request id: the filing time (ms, hex) then 64 random bits."""
    millis = int((now or datetime.now(UTC)).timestamp() * 1000)
    return f"{REQUEST_PREFIX}{millis:012x}{secrets.token_hex(8)}"


def is_request_id(value: str) -> bool:
    return bool(ID_RE.match(value)) and value.startswith(REQUEST_PREFIX)


def is_grant_id(value: str) -> bool:
    return bool(ID_RE.match(value)) and value.startswith(GRANT_PREFIX)


def grant_id_for(request_id: str) -> str:
    """The id of the grant an approval of this request creates."""
    return GRANT_PREFIX + request_id.removeprefix(REQUEST_PREFIX)


def request_id_for(grant_id: str) -> str:
    """The id of the request a grant came from."""
    return REQUEST_PREFIX + grant_id.removeprefix(GRANT_PREFIX)


# ---------------------------------------------------------------- documents <-> domain


def request_document(
    req: domain.Request,
    request_id: str,
    *,
    title: str,
    public_affairs_mode: str,
    filed_by: str,
    filed_at: datetime,
) -> dict[str, Any]:
    """The stored form of a freshly filed request."""
    return {
        "_id": request_id,
        "status": "filed",
        "kind": req.kind,
        "department": req.department,
        "title": title,
        "purpose": req.purpose,
        "tenant": req.tenant,
        "community_id": req.community_id,
        "public_affairs_item_id": req.public_affairs_item_id,
        "public_affairs_mode": public_affairs_mode,
        "funding": {
            "amount_yuan": req.funding.amount_yuan,
            "source": req.funding.source,
            "working_conditions": req.funding.working_conditions,
        },
        "starts_on": req.starts_on.isoformat(),
        "ends_on": req.ends_on.isoformat(),
        "operations": list(req.operations),
        "fields": list(req.fields),
        "tasks": list(req.tasks),
        "quota": req.quota,
        "flags": list(req.flags),
        "filed_by": filed_by,
        "filed_at": filed_at,
        "decision": None,
        "grant_id": None,
        "grant": None,
    }


def request_from_document(doc: Mapping[str, Any]) -> domain.Request:
    """The domain request a stored document holds (to approve it)."""
    funding = doc["funding"]
    return domain.Request(
        kind=doc["kind"],
        department=doc["department"],
        purpose=doc["purpose"],
        tenant=doc["tenant"],
        community_id=doc["community_id"],
        public_affairs_item_id=doc["public_affairs_item_id"],
        funding=domain.Funding(float(funding["amount_yuan"]), funding["source"], funding["working_conditions"]),
        starts_on=date.fromisoformat(doc["starts_on"]),
        ends_on=date.fromisoformat(doc["ends_on"]),
        operations=tuple(doc.get("operations") or ()),
        fields=tuple(doc.get("fields") or ()),
        tasks=tuple(doc.get("tasks") or ()),
        flags=tuple(doc.get("flags") or ()),
        quota=int(doc.get("quota") or 0),
    )


def grant_terms(grant: domain.Grant) -> dict[str, Any]:
    """A grant's terms as stored (in the approved request, and in the grant document)."""
    return {
        "request_id": grant.request_id,
        "department": grant.department,
        "kind": grant.kind,
        "tenant": grant.tenant,
        "community_id": grant.community_id,
        "operations": sorted(grant.operations),
        "fields": sorted(grant.fields),
        "starts_at": grant.starts_at.astimezone(UTC),
        "expires_at": grant.expires_at.astimezone(UTC),
        "quota": grant.quota,
        "tasks": sorted(grant.tasks),
    }


def grant_document(grant_id: str, terms: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
    """A new grant document: the terms, who approved it and when. Its use is counted in grant_uses."""
    return {
        "_id": grant_id,
        **terms,
        "approved_by": decision["by"],
        "approved_at": decision["at"],
        "revoked": False,
        "revocation": None,
    }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def grant_from_document(doc: Mapping[str, Any]) -> domain.Grant:
    return domain.Grant(
        id=doc["_id"],
        request_id=doc["request_id"],
        department=doc["department"],
        kind=doc["kind"],
        tenant=doc["tenant"],
        community_id=doc["community_id"],
        operations=frozenset(doc.get("operations") or ()),
        fields=frozenset(doc.get("fields") or ()),
        starts_at=_utc(doc["starts_at"]),
        expires_at=_utc(doc["expires_at"]),
        quota=int(doc.get("quota") or 0),
        used=int(doc.get("used") or 0),
        revoked=bool(doc.get("revoked")),
        tasks=frozenset(doc.get("tasks") or ()),
    )


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_token: str | None  # the last id of this page when there may be more


# ---------------------------------------------------------------- the store


def slot_id(grant_id: str, n: int) -> str:
    """The _id of use or audit link number n of a grant."""
    return f"{grant_id}:{n:08d}"


class GovernanceStore:
    """Requests, grants, their uses and their audit links in one district-level database."""

    def __init__(self, db: Database[Any]) -> None:
        self.requests = db["requests"]
        self.grants = db["grants"]
        self.claims = db["claims"]
        self.grant_uses = db["grant_uses"]
        self.grant_audit = db["grant_audit"]
        self.counters = db["counters"]

    def _claim(self, claim_id: str, content: Mapping[str, Any]) -> bool:
        """Insert a once-only claim; False when it was taken already."""
        try:
            self.claims.insert_one({"_id": claim_id, **content})
        except pymongo.errors.DuplicateKeyError:
            return False
        return True

    # ------------------------------------------------------------ requests

    def add_request(self, doc: Mapping[str, Any]) -> None:
        self.requests.insert_one(dict(doc))

    def request(self, request_id: str) -> dict[str, Any] | None:
        """A request by id, with its decision (copied again from the decision claim if the copy was lost)."""
        if not is_request_id(request_id):
            return None
        found: dict[str, Any] | None = self.requests.find_one({"_id": request_id})
        if found is None or found["status"] != "filed":
            return found
        claim = self.claims.find_one({"_id": f"decision:{request_id}"})
        if claim is None:
            return found
        log.warning("request %s: decision copied again from its claim", request_id)
        return self._copy_decision(request_id, claim["changes"])

    def requests_page(
        self,
        *,
        tenants: Sequence[str] | None,
        department: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 20,
    ) -> Page:
        """Requests, newest first. `tenants` None: every tenant; `after`: the previous page's token."""
        query: dict[str, Any] = {}
        if tenants is not None:
            query["tenant"] = {"$in": list(tenants)}
        if department is not None:
            query["department"] = department
        if status is not None:
            query["status"] = status
        if after is not None:
            query["_id"] = {"$lt": after}
        return _page(self.requests.find(query, sort=[("_id", pymongo.DESCENDING)], limit=limit + 1), limit)

    def decide(
        self,
        request_id: str,
        *,
        status: str,
        decision: Mapping[str, Any],
        grant: domain.Grant | None = None,
    ) -> dict[str, Any] | None:
        """Decide a filed request once: approved (with its grant's terms) or rejected.

        Returns the decided request, or None when it had been decided already (someone decided first)."""
        if status not in ("approved", "rejected") or (status == "approved") != (grant is not None):
            raise ValueError("approved needs a grant; rejected has none")
        changes: dict[str, Any] = {"status": status, "decision": dict(decision)}
        if grant is not None:
            changes |= {"grant_id": grant.id, "grant": grant_terms(grant)}
        if not self._claim(f"decision:{request_id}", {"request_id": request_id, "changes": changes}):
            return None
        return self._copy_decision(request_id, changes)

    def _copy_decision(self, request_id: str, changes: Mapping[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.requests.find_one_and_update(
            {"_id": request_id}, {"$set": dict(changes)}, return_document=ReturnDocument.AFTER
        )
        return found

    # ------------------------------------------------------------ grants

    def write_grant(self, approved: Mapping[str, Any]) -> dict[str, Any]:
        """The grant document of an approved request, written if it is not there yet (idempotent)."""
        grant_id = approved["grant_id"]
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):  # written already
            self.grants.insert_one(grant_document(grant_id, approved["grant"], approved["decision"]))
        found = self.grant(grant_id)
        if found is None:
            raise RuntimeError(f"grant {grant_id} was written but cannot be read back")
        return found

    def grant(self, grant_id: str, *, trail: bool = True) -> dict[str, Any] | None:
        """A grant by id, with its revocation, how often it was used and (`trail`) its audit link count.

        Written again from its approved request if the grant write was lost."""
        if not is_grant_id(grant_id):
            return None
        found: dict[str, Any] | None = self.grants.find_one({"_id": grant_id})
        if found is None:
            req = self.request(request_id_for(grant_id))
            if req is None or req["status"] != "approved" or req.get("grant_id") != grant_id:
                return None
            log.warning("grant %s was missing; written again from its approved request", grant_id)
            return self.write_grant(req)
        if not found.get("revoked"):
            claim = self.claims.find_one({"_id": f"revocation:{grant_id}"})
            if claim is not None:
                found = self._copy_revocation(grant_id, claim["revocation"]) or found
        found["used"] = self._taken(self.grant_uses, f"uses:{grant_id}", grant_id)
        if trail:
            found["audit_count"] = self._taken(self.grant_audit, f"audit:{grant_id}", grant_id)
        return found

    def grants_page(self, *, tenant: str, after: str | None = None, limit: int = 20, community_id: str = "") -> Page:
        """A tenant's grants (of one community, given `community_id`), newest first, each as grant() shows it."""
        query: dict[str, Any] = {"tenant": tenant}
        if community_id:
            query["community_id"] = community_id
        if after is not None:
            query["_id"] = {"$lt": after}
        page = _page(self.grants.find(query, {"_id": 1}, sort=[("_id", pymongo.DESCENDING)], limit=limit + 1), limit)
        shown = [self.grant(d["_id"]) for d in page.items]
        return Page([g for g in shown if g is not None], page.next_token)

    def revoke(self, grant_id: str, revocation: Mapping[str, Any]) -> dict[str, Any] | None:
        """Revoke a grant once; None when it was revoked already (or does not exist)."""
        if self.grant(grant_id) is None:
            return None
        if not self._claim(f"revocation:{grant_id}", {"grant_id": grant_id, "revocation": dict(revocation)}):
            return None
        self._copy_revocation(grant_id, revocation)
        return self.grant(grant_id)

    def _copy_revocation(self, grant_id: str, revocation: Mapping[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.grants.find_one_and_update(
            {"_id": grant_id},
            {"$set": {"revoked": True, "revocation": dict(revocation)}},
            return_document=ReturnDocument.AFTER,
        )
        return found

    def use(self, grant_id: str, now: datetime | None = None) -> int:
        """Count one use of a grant, once and for all: only while it is in force and below its quota.
        The use's number (1, 2, …), or 0 when none was counted."""
        current = self.grant(grant_id, trail=False)
        at = now or datetime.now(UTC)
        if current is None or current["revoked"] or not _utc(current["starts_at"]) <= at < _utc(current["expires_at"]):
            return 0
        quota = int(current.get("quota") or 0)
        return self._take(self.grant_uses, f"uses:{grant_id}", grant_id, quota, {"at": at}) or 0

    # ------------------------------------------------------------ numbered slots (uses, audit links)

    def _taken(self, slots: Collection[Any], counter_id: str, grant_id: str) -> int:
        """How many numbers are taken: from the counter's hint, stepping forward while the next is taken."""
        hint = self.counters.find_one({"_id": counter_id})
        n = int(hint["n"]) if hint else 0
        while slots.find_one({"_id": slot_id(grant_id, n + 1)}, {"_id": 1}) is not None:
            n += 1
        return n

    def _take(
        self, slots: Collection[Any], counter_id: str, grant_id: str, limit: int, content: Mapping[str, Any]
    ) -> int | None:
        """Take the next free number (at most `limit`; 0 = no limit) by inserting it; None when none is left."""
        n = self._taken(slots, counter_id, grant_id) + 1
        while not limit or n <= limit:
            try:
                slots.insert_one({"_id": slot_id(grant_id, n), "grant_id": grant_id, **content})
            except pymongo.errors.DuplicateKeyError:
                n += 1  # another caller took it
                continue
            with contextlib.suppress(pymongo.errors.DuplicateKeyError):  # the hint is past n already
                self.counters.update_one({"_id": counter_id, "n": {"$lt": n}}, {"$set": {"n": n}}, upsert=True)
            return n
        return None

    # ------------------------------------------------------------ the grants' audit trail

    def link_audit(self, grant_id: str, entry: Entry) -> None:
        """Count this audit entry in the grant's audit_count (call right after appending it). The trail
        itself is read from the audit log's SQL read model by grant_id (services/common/audit_readmodel.py)."""
        self._take(self.grant_audit, f"audit:{grant_id}", grant_id, 0, {"seq": entry.seq})


def _page(cursor: Any, limit: int) -> Page:
    docs: list[dict[str, Any]] = list(cursor)
    more = len(docs) > limit
    docs = docs[:limit]
    return Page(docs, docs[-1]["_id"] if more and docs else None)


def open_store(settings: Any) -> GovernanceStore:
    """The deployment's governance store (district-level database hl_governance)."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.mongo_uri, tz_aware=True)
    return GovernanceStore(client[DATABASE])


# ---------------------------------------------------------------- for grant enforcement


def current_store() -> GovernanceStore:
    """The running gateway app's store (create_app puts it in app.extensions)."""
    store: GovernanceStore = current_app.extensions[STORE_KEY]
    return store


def current_audit() -> AuditLog:
    """The running gateway app's audit log."""
    audit: AuditLog = current_app.extensions[AUDIT_KEY]
    return audit


def grant_for_call(grant_id: str, store: GovernanceStore | None = None) -> domain.Grant | None:
    """The grant a department names for a call, as domain.Grant, or None if there is no such grant.

    Look-ups by _id only (the grant, its revocation claim, its use count), whatever the number of grants.
    The grant comes with `used` and `revoked` as they are now: pass it to
    domain.check(grant, department=..., operation=..., tenant=..., community_id=..., fields=..., now=...)
    which says whether the call fits (period, tenant, community, operation, fields, quota) and, if not,
    what is missing. Without `store`, the current Flask app's store is used.
    """
    doc = (store or current_store()).grant(grant_id, trail=False)
    return grant_from_document(doc) if doc is not None else None


def use_grant(grant_id: str, store: GovernanceStore | None = None, *, now: datetime | None = None) -> bool:
    """Count one call (data access) or one task (assistance) against the grant, atomically.

    True: counted; the call may go ahead. False: the grant does not exist, is revoked, is outside its
    period or its quota is used up (quota 0 = unlimited) — refuse the call. Each use inserts the next
    numbered use document (`<grant id>:<n>`, n <= quota): the insert of a given _id succeeds once, so
    concurrent callers can never together exceed the quota, on MongoDB and on FerretDB alike. Call it
    after domain.check allowed the call, then write the audit entry with record_grant_audit.
    """
    return (store or current_store()).use(grant_id, now) > 0


def record_grant_audit(
    grant_id: str,
    *,
    actor: str,
    role: str,
    action: str,
    outcome: str,
    tenant: str = "",
    target: str = "",
    request_id: str = "",
    detail: Mapping[str, Any] | None = None,
    audit: AuditLog | None = None,
    store: GovernanceStore | None = None,
) -> Entry:
    """Append an audit entry about a grant (a call under it, allowed or refused; a decision) and link it
    to the grant, so the grant's community and subdistrict see it in the grant's trail
    (GET /api/v1/grants/{id}). Detail must carry no personal data. Without `audit`/`store`, the
    current Flask app's are used."""
    audit = audit or current_audit()
    store = store or current_store()
    entry = audit.append(
        actor=actor,
        role=role,
        action=action,
        outcome=outcome,
        tenant=tenant,
        target=target,
        grant_id=grant_id,
        request_id=request_id,
        detail=detail,
    )
    store.link_audit(grant_id, entry)
    return entry
