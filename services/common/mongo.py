"""Per-service, per-tenant databases for mongoengine documents.

A TenantDocument resolves its collection from the tenant bound to the current call
(context.current_tenant), in the database hl_<service>_<tenant>. Handlers never hold a database
handle: a call bound to taiqian can only ever reach hl_<service>_taiqian, and code running with no
tenant bound fails loudly instead of reading some default database.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import mongoengine
from pymongo import MongoClient, monitoring
from pymongo.collection import Collection

from services.common import groupcommit, metrics
from services.common.context import require_tenant
from services.common.tenants import get_tenant

_lock = threading.Lock()
_state: dict[str, Any] = {"client": None, "service": None}
_collections: dict[tuple[type, str], Collection[Any]] = {}
# Commands whose first field names the collection; the rest (hello, endSessions, ...) count under "".
_ON_COLLECTION = frozenset(
    ("find", "insert", "update", "delete", "aggregate", "count", "distinct", "findAndModify", "createIndexes")
)


class _CommandCounter(monitoring.CommandListener):
    """Counts every command by name and collection (hongling_mongo_commands_total): the database work an
    event or request costs shows on /metrics, and the benchmarks print it per operation."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        target = event.command.get(name) if name in _ON_COLLECTION else ""
        metrics.MONGO_COMMANDS.labels(name, target if isinstance(target, str) else "").inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


def init(service: str, uri: str, **client_options: Any) -> MongoClient[Any]:
    """Open the process's one client (a connection pool) for this service's tenant databases."""
    with _lock:
        if _state["client"] is None:
            client: MongoClient[Any] = MongoClient(
                uri,
                tz_aware=True,
                serverSelectionTimeoutMS=client_options.pop("serverSelectionTimeoutMS", 5000),
                uuidRepresentation="standard",
                event_listeners=[_CommandCounter(), *client_options.pop("event_listeners", [])],
                **client_options,
            )
            _state["client"] = client
            _state["service"] = service
            _collections.clear()
        elif _state["service"] != service:
            raise RuntimeError(f"mongo already initialised for {_state['service']}, not {service}")
        return _state["client"]


def close() -> None:
    with _lock:
        if _state["client"] is not None:
            _state["client"].close()
        _state["client"] = None
        _state["service"] = None
        _collections.clear()


def current_client() -> MongoClient[Any] | None:
    """The process's client (init), or None before init: its health check pings on it (dependencies.py)."""
    return _state["client"]


def service_name() -> str:
    """The service this process initialised storage for (init), e.g. "dispatch"; "" before init."""
    return str(_state.get("service") or "")


def database_name(service: str, tenant: str) -> str:
    return f"hl_{service}_{tenant}"


def tenant_database(tenant: str) -> Any:
    """The database of the given tenant for this process's service (admin and relay use)."""
    client = _state["client"]
    if client is None:
        raise RuntimeError("mongo.init() was not called")
    get_tenant(tenant)
    return client[database_name(_state["service"], tenant)]


def service_collection(service: str, collection: str) -> Collection[Any]:
    """A collection of the call tenant's database of `service`, whatever this process's service is: the
    projector (services/projector) reads the aggregates of the services whose read models it keeps."""
    client = _state["client"]
    if client is None:
        raise RuntimeError("mongo.init() was not called")
    return client[database_name(service, require_tenant())][collection]


class TenantDocument(mongoengine.Document):
    """A document stored in the current call's tenant database."""

    meta: ClassVar[dict[str, Any]] = {"abstract": True}

    @classmethod
    def _get_db(cls) -> Any:
        return tenant_database(require_tenant())

    @classmethod
    def _get_collection(cls) -> Collection[Any]:
        tenant = require_tenant()
        key = (cls, tenant)
        coll = _collections.get(key)
        if coll is None:
            coll = tenant_database(tenant)[cls._get_collection_name()]
            _collections[key] = coll
            if cls._meta.get("auto_create_index", True):
                cls.ensure_indexes()
        return coll

    def _save_create(self, doc: dict[str, Any], force_insert: bool, write_concern: Any) -> Any:
        """A new document (save(force_insert=True)) shares its insert with concurrent ones (groupcommit)."""
        if force_insert and not write_concern and "_id" in doc:
            return groupcommit.insert(self._get_collection(), doc)
        return super()._save_create(doc, force_insert, write_concern)
