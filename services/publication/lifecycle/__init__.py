"""The lifecycle every kind shares: drafts (the schedule's or a subdistrict admin's), review, release, immutable
numbered versions (a correction is the next version with a readable diff), the channels rendered from a
version, feeds, and the PublicationReleased / ProgressPublished events: PublicationService
(protos/hongling/publication/v1/publication.proto). Rules: domain.py; writes and reads: handlers.py; the list's
read model: readmodel.py (migration 0012)."""

from __future__ import annotations

import grpc

from services.publication.lifecycle.documents import PublicationDoc
from services.publication.lifecycle.readmodel import REFRESH as REFRESH
from services.publication.lifecycle.servicer import register as _register

OUTBOX_DOCUMENTS: tuple[type, ...] = (PublicationDoc,)
WORKERS: tuple[object, ...] = ()


def register(server: grpc.Server) -> list[str]:
    return _register(server)
