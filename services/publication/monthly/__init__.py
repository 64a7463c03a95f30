"""The monthly public board of a community (一月一公示): its sources on the SQL read side, evaluation's measures
and org's public names; the content builder (content.MonthlyContent); the durable schedule after the month closes.
A placeholder until its area fills it in."""

from __future__ import annotations

import grpc

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    return []
