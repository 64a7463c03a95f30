"""PublicationService gRPC servicer: protobuf <-> handlers, nothing else."""

from __future__ import annotations

from typing import Any

import grpc
from hongling.publication.v1 import publication_pb2 as pb
from hongling.publication.v1 import publication_pb2_grpc as pb_grpc

from services.common.context import require_tenant
from services.publication import channels
from services.publication.lifecycle import domain, handlers
from services.publication.lifecycle.documents import PublicationDoc

SERVICE = "hongling.publication.v1.PublicationService"


def _anchor(raw: Any) -> pb.AuditAnchor | None:
    if not raw:
        return None
    return pb.AuditAnchor(
        seq=int(raw.get("seq") or 0),
        hash=str(raw.get("hash") or ""),
        at=str(raw.get("at") or ""),
        signature=str(raw.get("signature") or ""),
        public_key=str(raw.get("public_key") or ""),
    )


def publication(src: Any, current: bool, *, with_content: bool = False) -> pb.Publication:
    """A version as the API shows it, from its document or its read-model row (the same names)."""
    number = int(src.number)
    out = pb.Publication(
        id=src.id,
        tenant=require_tenant(),
        kind=src.kind,
        scope=src.scope,
        period=src.period,
        version=number,
        status=src.status,
        corrects_version=int(src.corrects_version or 0),
        changes=list(src.changes or []),
        content_sha256=src.content_sha256,
        audit_anchor=_anchor(src.audit_anchor),
        title_zh=src.title_zh or "",
        title_en=src.title_en or "",
        created_at=handlers.ts(src.created_at),
        created_by=src.created_by or "",
        reviewed_at=handlers.ts(src.reviewed_at),
        reviewed_by=src.reviewed_by or "",
        review_note=src.review_note or "",
        released_at=handlers.ts(src.released_at),
        released_by=src.released_by or "",
        current=current,
        channels=list(channels.CHANNELS.get(src.kind, ())),
    )
    if with_content and isinstance(src, PublicationDoc):
        out.content_json = src.content
    return out


class PublicationServicer(pb_grpc.PublicationServiceServicer):
    def CreateDraft(self, request: pb.CreateDraftRequest, context: grpc.ServicerContext) -> pb.Publication:
        doc = handlers.create(request.kind.strip(), request.scope.strip(), request.period.strip())
        return publication(doc, False, with_content=True)

    def ReviewPublication(self, request: pb.ReviewPublicationRequest, context: grpc.ServicerContext) -> pb.Publication:
        return publication(handlers.review(request.id, request.approve, request.note), False)

    def ReleasePublication(
        self, request: pb.ReleasePublicationRequest, context: grpc.ServicerContext
    ) -> pb.Publication:
        return publication(handlers.release(request.id), True)

    def GetPublication(self, request: pb.GetPublicationRequest, context: grpc.ServicerContext) -> pb.Publication:
        found = handlers.get(request.id)
        return publication(found.doc, found.current, with_content=request.with_content)

    def ListPublications(
        self, request: pb.ListPublicationsRequest, context: grpc.ServicerContext
    ) -> pb.ListPublicationsResponse:
        rows, token = handlers.list_page(
            request.kind.strip(),
            request.scope.strip(),
            request.period.strip(),
            request.status.strip(),
            request.page_size,
            request.page_token,
        )
        return pb.ListPublicationsResponse(
            publications=[publication(r, bool(r.current) and r.status == domain.RELEASED) for r in rows],
            next_page_token=token,
        )

    def RenderPublication(self, request: pb.RenderPublicationRequest, context: grpc.ServicerContext) -> pb.Rendition:
        r = handlers.render(request.id, request.channel)
        limit = channels.WECHAT_LIMIT if request.channel.strip() == "wechat" else 0
        return pb.Rendition(
            content_type=r.content_type, filename=r.filename, data=r.data, parts=list(r.parts), limit=limit
        )

    def GetFeed(self, request: pb.GetFeedRequest, context: grpc.ServicerContext) -> pb.Feed:
        data = handlers.feed(request.scope.strip(), request.link_base, request.limit)
        return pb.Feed(content_type="application/atom+xml; charset=utf-8", data=data)


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_PublicationServiceServicer_to_server(PublicationServicer(), server)
    return [SERVICE]
