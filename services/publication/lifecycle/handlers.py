"""The lifecycle's commands and reads: drafts, review, release, immutable versions, channels and feeds.

- CreateDraft (a subdistrict admin, the monthly schedule, the boards' BoardsFrozen consumer: `create_draft`):
  the kind checks (scope, period) and builds the content from its sources; stored as canonical JSON with its
  sha256. The series' newest version still unreleased has its draft replaced (same version, reviewed state
  cleared: what was reviewed is no longer what is there); after a release the next version is inserted (the
  insert by _id is the claim) as a correction of the released one, with `changes` (domain.changes). A
  correction that changes nothing is refused.
- Review and release are once-only steps: an insert into publication_claims ("review:<id>:<draft_no>",
  "release:<id>") decides the one winner, then the document's next revision is written through the unit of
  work (services/common/unitofwork.py); a claim whose write then failed is given back. The release carries
  PublicationReleased (and ProgressPublished for monthly) in the same document write (the outbox).
- Reads: a version by _id; "<kind>:<scope>:<period>" is the newest released version, found by _id from v1 up
  (a series' versions are consecutive: the next is only made once the last is released). The public role never
  loads a draft: an unreleased version answers NOT_FOUND in the words an unknown id gets. Lists and feeds come
  from the SQL read model (readmodel.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import mongoengine as me
import pymongo.errors
from hongling.events.v1 import publication_events_pb2 as pev

from services.common import context, unitofwork
from services.common.context import current_principal, require_tenant
from services.common.errors import (
    Aborted,
    FailedPrecondition,
    HonglingError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.principal import Principal
from services.common.times import aware, ts, utcnow
from services.common.unitofwork import UnitOfWork
from services.publication import channels, content
from services.publication.lifecycle import domain, readmodel
from services.publication.lifecycle.documents import ClaimDoc, PublicationDoc

log = logging.getLogger(__name__)
WRITERS = frozenset({"subdistrict_admin", "ops"})
DRAFT_READERS = frozenset({"community_worker", "subdistrict_admin", "ops", "service"})
CLAIM_STALE = timedelta(seconds=30)
PROBE = 8  # versions looked up together by _id
FEED_DEFAULT, FEED_MAX = 50, 200


class NothingChanged(FailedPrecondition):
    """A correction asked for whose content is the released version's: nothing to publish (the BoardsFrozen
    consumer takes it as done — evaluation corrected what does not show on the boards)."""


CONFLICTS = unitofwork.Conflicts(
    stale=lambda i, v, e: Aborted(f"{i!r} is at revision {v}, not {e}: reload and retry (发布已被修改)"),
    raced=lambda i: Aborted(f"{i!r} was changed at the same moment: reload and retry (发布已被同时修改)"),
    busy=lambda i: Aborted(f"{i!r} kept changing: retry shortly (发布正被频繁修改，请重试)"),
)


def caller() -> Principal:
    p = current_principal.get()
    if p is None:
        raise PermissionDenied("no principal (未认证)")
    return p


def require_writer(what: str) -> Principal:
    p = caller()
    if p.role not in WRITERS:
        raise PermissionDenied(f"{p.role} may not {what}: subdistrict_admin only (仅街道管理员可操作)")
    return p


def reads_drafts() -> bool:
    p = current_principal.get()
    return p is not None and p.role in DRAFT_READERS


def _invalid(exc: domain.Invalid) -> InvalidArgument:
    return InvalidArgument(str(exc), field=exc.field)


def _not_found(pub_id: str) -> NotFound:
    return NotFound(f"no publication {pub_id[:120]!r} (发布不存在)")


# ---------------------------------------------------------------- the series


def series(kind: str, scope: str, period: str) -> list[PublicationDoc]:
    """The series' versions v1, v2, … as stored (by _id, PROBE at a time)."""
    found: list[PublicationDoc] = []
    start = 1
    while True:
        ids = [domain.version_id(kind, scope, period, n) for n in range(start, start + PROBE)]
        docs = {d.id: d for d in PublicationDoc.objects(id__in=ids)}
        for i in ids:
            if i not in docs:
                return found
            found.append(docs[i])
        start += PROBE


def newest_released(versions: list[PublicationDoc]) -> PublicationDoc | None:
    done = [d for d in versions if d.status == domain.RELEASED]
    return done[-1] if done else None


def content_of(doc: PublicationDoc) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(doc.content)
    return found


# ---------------------------------------------------------------- drafts


@dataclass(frozen=True)
class Built:
    text: str
    sha: str
    data: dict[str, Any]


def build(kind: str, scope: str, period: str, tenant: str) -> Built:
    try:
        domain.check_series(kind, scope, period)
    except domain.Invalid as exc:
        raise _invalid(exc) from None
    try:
        k = content.kind_of(kind)
    except KeyError:
        raise InvalidArgument(
            f"种类 {kind} 尚不可用 (the kind {kind!r} is not available in this service yet)", field="kind"
        ) from None
    k.check(scope, period)
    data = dict(k.build(tenant, scope, period))
    text = content.canonical(data)
    return Built(text, content.sha256(text), json.loads(text))


def create_draft(tenant: str, kind: str, scope: str, period: str, by: str) -> PublicationDoc:
    """A draft of the series built now (see the module docstring); returns the stored version. Callable from the
    service's own workers (the schedule, the boards' consumer) with `by` naming them."""
    with context.bound(tenant=tenant):
        built = build(kind.strip(), scope.strip(), period.strip(), tenant)
        return _store_draft(kind.strip(), scope.strip(), period.strip(), built, by)


def _store_draft(
    kind: str, scope: str, period: str, built: Built, by: str, uow: UnitOfWork = unitofwork.MONGO
) -> PublicationDoc:
    for _ in range(20):
        versions = series(kind, scope, period)
        latest = versions[-1] if versions else None
        done = newest_released(versions)
        if done is not None and done.content_sha256 == built.sha:
            raise NothingChanged(
                f"nothing changed since version {done.number} was released (内容与已发布版本相同，无需更正)"
            )
        changes = domain.changes(content_of(done), built.data) if done is not None else []
        if latest is not None and latest.status != domain.RELEASED:
            replaced = _replace(latest.id, built, changes, by, uow)
            if replaced is not None:
                return replaced
            continue  # released meanwhile: the next version
        at = utcnow()
        number = latest.number + 1 if latest is not None else 1
        doc = PublicationDoc(
            id=domain.version_id(kind, scope, period, number),
            kind=kind,
            scope=scope,
            period=period,
            number=number,
            status=domain.DRAFT,
            corrects_version=done.number if done is not None else 0,
            changes=changes,
            content=built.text,
            content_sha256=built.sha,
            audit_anchor=built.data.get("audit_anchor") or None,
            title_zh=str(built.data.get("title_zh") or ""),
            title_en=str(built.data.get("title_en") or ""),
            draft_no=1,
            created_at=at,
            created_by=by,
            version=1,
            updated_at=at,
        )
        try:
            doc.save(force_insert=True)
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            continue  # another draft of this version was made at the same moment: replace it
        log.info("publication %s drafted (by %s)", doc.id, by)
        return doc
    raise Aborted("the publication kept changing while drafting: retry shortly (发布正被频繁修改，请重试)")


def _replace(pub_id: str, built: Built, changes: list[str], by: str, uow: UnitOfWork) -> PublicationDoc | None:
    """The unreleased version's draft replaced by this content; None if it was released meanwhile."""

    class _Released(Exception):
        pass

    def mutate(doc: PublicationDoc, at: datetime) -> bool:
        if doc.status == domain.RELEASED:
            raise _Released
        if doc.status == domain.DRAFT and doc.content_sha256 == built.sha and list(doc.changes or []) == changes:
            return False  # the same draft again (a retried schedule): nothing to write
        doc.status = domain.DRAFT
        doc.changes = changes
        doc.content = built.text
        doc.content_sha256 = built.sha
        doc.audit_anchor = built.data.get("audit_anchor") or None
        doc.title_zh = str(built.data.get("title_zh") or "")
        doc.title_en = str(built.data.get("title_en") or "")
        doc.draft_no = int(doc.draft_no or 1) + 1
        doc.created_at = at
        doc.created_by = by
        doc.reviewed_at = None
        doc.reviewed_by = ""
        doc.review_note = ""
        return True

    try:
        changed = unitofwork.change(
            uow, PublicationDoc, f"publication:{pub_id}", pub_id, mutate, conflicts=CONFLICTS, now=utcnow
        )
    except _Released:
        return None
    return changed.doc


def create(kind: str, scope: str, period: str) -> PublicationDoc:
    """CreateDraft from the API: a subdistrict admin (or ops) of the tenant."""
    p = require_writer("create a publication draft")
    return create_draft(require_tenant(), kind, scope, period, p.sub)


# ---------------------------------------------------------------- once-only steps


def _claim(claim_id: str, by: str) -> bool:
    try:
        ClaimDoc(id=claim_id, by=by, at=utcnow()).save(force_insert=True)
        return True
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        return False


def _give_back(claim_id: str) -> None:
    ClaimDoc.objects(id=claim_id).delete()


def _versioned(pub_id: str) -> domain.PubId:
    try:
        pid = domain.parse_id(pub_id)
    except domain.Invalid as exc:
        raise _invalid(exc) from None
    if pid.version == 0:
        raise InvalidArgument("须指明版本，如 …:v1 (the id must name a version, e.g. …:v1)", field="id")
    return pid


def review(pub_id: str, approve: bool, note: str, uow: UnitOfWork = unitofwork.MONGO) -> PublicationDoc:
    p = require_writer("review a publication")
    pid = _versioned(pub_id)
    try:
        note = domain.check_review(approve, note)
    except domain.Invalid as exc:
        raise _invalid(exc) from None
    doc = uow.load(PublicationDoc, pid.of(pid.version))
    if doc is None:
        raise _not_found(pub_id)
    if doc.status != domain.DRAFT:
        raise FailedPrecondition(
            f"only a draft can be reviewed; this version is {doc.status} "
            f"(仅草稿可审核，当前为{domain.STATUS_ZH[doc.status]})"
        )
    draft_no = int(doc.draft_no or 1)
    claim = f"review:{doc.id}:{draft_no}"
    if not _claim(claim, p.sub):
        raise FailedPrecondition("this draft was reviewed at the same moment by someone else (该草稿已被他人审核)")

    def mutate(d: PublicationDoc, at: datetime) -> bool:
        if d.status != domain.DRAFT or int(d.draft_no or 1) != draft_no:
            raise FailedPrecondition("the draft changed while it was reviewed: read it again (草稿已变更，请重新读取)")
        d.status = domain.REVIEWED if approve else domain.RETURNED
        d.reviewed_at = at
        d.reviewed_by = p.sub
        d.review_note = note
        return True

    try:
        changed = unitofwork.change(
            uow, PublicationDoc, f"publication:{doc.id}", doc.id, mutate, conflicts=CONFLICTS, now=utcnow
        )
    except Exception:
        _give_back(claim)
        raise
    assert changed.doc is not None
    return changed.doc


def _events(doc: PublicationDoc, at: datetime) -> None:
    stamp = ts(at)
    anchor = doc.audit_anchor or {}
    kind_channels = channels.CHANNELS.get(doc.kind, ())
    doc.record(
        pev.PublicationReleased(
            publication_id=doc.id,
            tenant=require_tenant(),
            kind=doc.kind,
            scope=doc.scope,
            period=doc.period,
            version=doc.number,
            corrects_version=doc.corrects_version or 0,
            content_sha256=doc.content_sha256,
            channels=list(kind_channels),
            audit_anchor_seq=int(anchor.get("seq") or 0),
            audit_anchor_hash=str(anchor.get("hash") or ""),
            released_at=stamp,
        ),
        f"publications/{doc.id}",
        at=at,
    )
    if doc.kind == "monthly":
        issues = content_of(doc).get("issues") or []
        doc.record(
            pev.ProgressPublished(
                publication_id=doc.id,
                tenant=require_tenant(),
                community_id=doc.scope,
                period=doc.period,
                issue_ids=sorted({str(i.get("ref")) for i in issues if i.get("ref")}),
                published_at=stamp,
            ),
            f"publications/{doc.id}",
            at=at,
        )


def release(pub_id: str, uow: UnitOfWork = unitofwork.MONGO) -> PublicationDoc:
    p = require_writer("release a publication")
    pid = _versioned(pub_id)
    doc = uow.load(PublicationDoc, pid.of(pid.version))
    if doc is None:
        raise _not_found(pub_id)
    if doc.status == domain.RELEASED:
        raise FailedPrecondition(f"{doc.id} is already released (该版本已发布)")
    if doc.status != domain.REVIEWED:
        raise FailedPrecondition(
            f"only a reviewed version can be released; this one is {doc.status} "
            f"(须先审核通过方可发布，当前为{domain.STATUS_ZH[doc.status]})"
        )
    claim = f"release:{doc.id}"
    if not _claim(claim, p.sub):
        held = ClaimDoc.objects(id=claim).first()
        stale = held is not None and utcnow() - (aware(held.at) or utcnow()) > CLAIM_STALE
        if not stale:
            raise FailedPrecondition(f"{doc.id} is already released (该版本已被他人发布)")
        _give_back(claim)  # its releaser died before writing: the release is free again
        if not _claim(claim, p.sub):
            raise FailedPrecondition(f"{doc.id} is already released (该版本已被他人发布)")

    def mutate(d: PublicationDoc, at: datetime) -> bool:
        if d.status != domain.REVIEWED:
            raise FailedPrecondition(f"{d.id} is {d.status}, not reviewed (状态已变更：{domain.STATUS_ZH[d.status]})")
        d.status = domain.RELEASED
        d.released_at = at
        d.released_by = p.sub
        _events(d, at)
        return True

    try:
        changed = unitofwork.change(
            uow, PublicationDoc, f"publication:{doc.id}", doc.id, mutate, conflicts=CONFLICTS, now=utcnow
        )
    except Exception:
        _give_back(claim)
        raise
    assert changed.doc is not None
    log.info("publication %s released", changed.doc.id)
    return changed.doc


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class Found:
    doc: PublicationDoc
    current: bool


def get(pub_id: str) -> Found:
    """A version (or the series' current released one); the public never sees an unreleased one."""
    caller()
    try:
        pid = domain.parse_id(pub_id)
    except domain.Invalid as exc:
        raise _invalid(exc) from None
    drafts = reads_drafts()
    versions = series(pid.kind, pid.scope, pid.period)
    done = newest_released(versions)
    if pid.version == 0:
        if done is None:
            raise _not_found(pub_id)
        return Found(done, True)
    if pid.version > len(versions):
        raise _not_found(pub_id)
    doc = versions[pid.version - 1]
    if doc.status != domain.RELEASED and not drafts:
        raise _not_found(pub_id)
    return Found(doc, done is not None and done.id == doc.id)


def list_page(
    kind: str, scope: str, period: str, status: str, page_size: int, page_token: str
) -> tuple[list[Any], str]:
    caller()
    if kind and not domain.KIND_RE.match(kind):
        raise InvalidArgument(
            "种类应为 monthly、boards 或 report (kind must be monthly, boards or report)", field="kind"
        )
    if period and not domain.PERIOD_RE.match(period):
        raise InvalidArgument("期间格式应为YYYY-MM或YYYYQn (period must be YYYY-MM or YYYYQn)", field="period")
    if status and status not in domain.STATUSES:
        raise InvalidArgument(
            "状态应为 draft、reviewed、returned 或 released (status must be draft, reviewed, returned or released)",
            field="status",
        )
    if not reads_drafts():
        if status and status != domain.RELEASED:
            return [], ""
        status = domain.RELEASED
    return readmodel.list_versions(kind, scope, period, status, page_size, page_token)


class Unimplemented(HonglingError):
    """A channel (or the feed) this build of the channels does not render yet: UNIMPLEMENTED, saying which."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "not_implemented"


def render(pub_id: str, channel: str) -> channels.Rendition:
    found = get(pub_id)
    doc = found.doc
    edition = channels.Edition(
        publication_id=doc.id,
        version=doc.number,
        corrects_version=doc.corrects_version or 0,
        changes=tuple(doc.changes or ()),
        draft=doc.status != domain.RELEASED,
    )
    try:
        return channels.render(content_of(doc), channel.strip(), edition)
    except ValueError as exc:
        raise InvalidArgument(f"{exc} (渠道不正确)", field="channel") from None
    except NotImplementedError as exc:
        raise Unimplemented(f"{exc} (该渠道尚未提供)", field="channel") from None


def feed(scope: str, link_base: str, limit: int) -> bytes:
    """An Atom feed of released versions, newest release first (the tenant's, or one community's)."""
    caller()
    if scope and not domain.SCOPE_RE.match(scope):
        raise InvalidArgument("范围应为社区编号 (scope must be a community id)", field="scope")
    if not 0 <= limit <= FEED_MAX:
        raise InvalidArgument(f"条数应为0..{FEED_MAX} (limit must be 0..{FEED_MAX})", field="limit")
    tenant = require_tenant()
    base = link_base.rstrip("/")
    rows = readmodel.released(scope, limit or FEED_DEFAULT)
    entries = [
        channels.FeedEntry(
            id=r.id,
            title_zh=r.title_zh or r.id,
            period=r.period,
            version=int(r.number),
            released_at=aware(r.released_at).strftime("%Y-%m-%dT%H:%M:%SZ") if r.released_at else "",  # type: ignore[union-attr]
            summary_zh=_summary(r),
            link=f"{base}/publications/{r.id}",
            tenant=tenant,
        )
        for r in rows
    ]
    feed_id = f"urn:hongling:{tenant}:publications" + (f":{scope}" if scope else "")
    title = f"{tenant} 公示" + (f" · {scope}" if scope else "")
    self_link = f"{base}/communities/{scope}/feed.atom" if scope else f"{base}/feed.atom"
    try:
        return channels.feed(feed_id, title, entries, self_link)
    except NotImplementedError as exc:
        raise Unimplemented(f"{exc} (订阅源尚未提供)") from None


def _summary(r: Any) -> str:
    head = f"{r.title_zh or r.id}（第{int(r.number)}版）"
    if r.corrects_version:
        return head + f"，更正第{int(r.corrects_version)}版：" + "；".join(list(r.changes or [])[:20])
    return head
