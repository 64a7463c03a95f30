"""The quarterly boards (先锋榜) per community and per tenant, published when evaluation freezes a quarter
(BoardsFrozen, consumer group publication-boards: consumer.py stores the set and asks the lifecycle for the
draft); a correction from evaluation makes the next version. The `boards` kind: scope "*" or a community,
period a frozen quarter "YYYYQn"; its builder (builder.py) makes content.BoardsContent."""

from __future__ import annotations

import grpc

from services.publication import content
from services.publication.boards import builder
from services.publication.boards.consumer import build_consumer
from services.publication.channels import CHANNELS

KIND = content.register(
    content.Kind(name="boards", channels=CHANNELS["boards"], check=builder.check, build=builder.build, anchored=False)
)

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS = (build_consumer,)
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    """No gRPC service of its own: the lifecycle's PublicationService builds it through the kinds' registry."""
    return []
