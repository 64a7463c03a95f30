"""A service made of areas: one process whose parts each have a service's shape (domain, documents,
handlers, servicer, readmodel) and register what they bring here, so the composition root stays one line
per concern. Used by alliance (meetings, ledger, posts, activities) and evaluation (verification, ratings,
measures).

An area is a module with:
    register(server) -> list[str]             # its gRPC services' full names
    OUTBOX_DOCUMENTS: Sequence[type[OutboxDocument]]
    WORKERS: Sequence[Callable[[Settings], Worker]]   # Kafka consumers of its own (optional)
    REFRESH: Mapping[str, Refresh]            # collection -> read-model refresh (optional, its readmodel.py)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc

from services.common.outbox import OutboxDocument
from services.common.projection import Refresh


@dataclass(frozen=True)
class Areas:
    service: str
    modules: tuple[str, ...]  # in the order their gRPC services register

    def areas(self) -> list[ModuleType]:
        return [importlib.import_module(name) for name in self.modules]

    def register_all(self, server: grpc.Server) -> list[str]:
        names: list[str] = []
        for area in self.areas():
            names.extend(area.register(server))
        return names

    def outbox_documents(self) -> list[type[OutboxDocument]]:
        return [doc for area in self.areas() for doc in getattr(area, "OUTBOX_DOCUMENTS", ())]

    def workers(self) -> list[Callable[..., Any]]:
        return [w for area in self.areas() for w in getattr(area, "WORKERS", ())]

    def refresh(self) -> dict[str, Refresh]:
        out: dict[str, Refresh] = {}
        for area in self.areas():
            found: Sequence[tuple[str, Refresh]] = list(getattr(area, "REFRESH", {}).items())
            for collection, fn in found:
                if collection in out:
                    raise RuntimeError(f"two {self.service} areas project the collection {collection!r}")
                out[collection] = fn
        return out
