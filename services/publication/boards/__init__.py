"""The quarterly boards (先锋榜) per community and per tenant, published when evaluation freezes a quarter
(BoardsFrozen, consumer group publication-boards); a correction from evaluation makes the next version.
A placeholder until its area fills it in."""

from __future__ import annotations

import grpc

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    return []
