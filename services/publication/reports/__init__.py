"""The monthly report upward of a subdistrict (measures, rankings of communities, exceptions) and the community
burden ledger (减负: district departments' requests, from the audit log's read model), as content.ReportContent.
A placeholder until its area fills it in."""

from __future__ import annotations

import grpc

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    return []
