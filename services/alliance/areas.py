"""The alliance service's areas, assembled once: what each registers on the gRPC server, which of its
documents carry events (the outbox relay), which workers it runs and which read models it keeps.

An area is a module with:
    register(server) -> list[str]             # its gRPC services' full names
    OUTBOX_DOCUMENTS: Sequence[type[OutboxDocument]]
    WORKERS: Sequence[Callable[[Settings], Worker]]   # Kafka consumers of its own (optional)
    REFRESH: Mapping[str, Refresh]            # collection -> read-model refresh (optional, its readmodel.py)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import grpc

from services.common.outbox import OutboxDocument
from services.common.projection import Refresh

# The areas' modules, in the order their services register (each area's __init__ holds its wiring).
AREA_MODULES: tuple[str, ...] = (
    "services.alliance.meetings",
    "services.alliance.ledger",
    "services.alliance.posts",
    "services.alliance.activities",
)


def areas() -> list[ModuleType]:
    return [importlib.import_module(name) for name in AREA_MODULES]


def register_all(server: grpc.Server) -> list[str]:
    names: list[str] = []
    for area in areas():
        names.extend(area.register(server))
    return names


def outbox_documents() -> list[type[OutboxDocument]]:
    return [doc for area in areas() for doc in getattr(area, "OUTBOX_DOCUMENTS", ())]


def workers() -> list[Callable[..., Any]]:
    return [w for area in areas() for w in getattr(area, "WORKERS", ())]


def refresh() -> dict[str, Refresh]:
    out: dict[str, Refresh] = {}
    for area in areas():
        found: Sequence[tuple[str, Refresh]] = list(getattr(area, "REFRESH", {}).items())
        for collection, fn in found:
            if collection in out:
                raise RuntimeError(f"two alliance areas project the collection {collection!r}")
            out[collection] = fn
    return out
