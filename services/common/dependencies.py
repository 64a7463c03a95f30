"""Whether the stores a process needs answer, and what a caller sees while one does not.

Two things live here, both about a database that is down (stopped, restarting, unreachable):

- `unavailable_error(exc)` tells a store's "cannot reach it" apart from a real failure: pymongo's
  connection errors (server selection timed out, connection refused or reset, network timeout), FerretDB's
  answer when the PostgreSQL under it is down (OperationFailure code 1 "failed to connect to ..."), and the
  read side's lost connections (SQLAlchemy OperationalError and friends). Such an error reaches the caller as
  UNAVAILABLE ("retry shortly"), which the gateway answers as 503 with Retry-After, instead of INTERNAL (a
  502 "a back-end service failed" that tells an operator nothing and a client not to retry).
- `DependencyMonitor` pings each store the process needs every few seconds on the clients it already holds
  (no new connection per check) and reports the verdict to the gRPC health service, so `/readyz`, a
  Kubernetes probe or grpc_health_probe see NOT_SERVING while the database is down and SERVING once it is
  back. While the write side's database is down, calls are refused at once (`refuse_if_down`) instead of
  each waiting out pymongo's 5 s server selection and the caller's deadline. Kafka is not watched: the
  outbox keeps accepted writes until the broker is back, so a service takes writes without it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pymongo
import pymongo.errors
from pymongo import MongoClient

from services.common.errors import Unavailable

log = logging.getLogger(__name__)

# One ping per store every CHECK_INTERVAL seconds while all is well: about two cheap round trips a second
# for the whole stack at rest (idle CPU matters: the stack's goal is < 3 % of a core); a call that fails to
# reach a store makes the monitor check at once (poke). While a store is down, every DOWN_INTERVAL seconds, so
# that calls are taken again within about a second of its return. Never two checks within MIN_GAP seconds
# (every failing call pokes). A ping that takes longer than PING_TIMEOUT fails. A store is down after
# FAILURES_TO_DOWN failed pings in a row (the first verdict at start excepted): on a busy machine one slow ping
# must not make a service refuse its calls.
CHECK_INTERVAL = 10.0
DOWN_INTERVAL = 1.0
MIN_GAP = 0.5
PING_TIMEOUT = 5.0
FAILURES_TO_DOWN = 2

# A call refused before it ran changed nothing; one whose store went away under it may or may not have been
# applied (a write the server took before the connection broke), so that message does not promise.
DATABASE_DOWN = (
    "the database is not answering right now; nothing was changed, retry shortly (数据库暂不可用，请稍后重试)"
)
DATABASE_LOST = "the database is not answering right now; retry shortly (数据库暂不可用，请稍后重试)"

# MongoDB's codes for "this server cannot serve now" (network, shutdown, elections, time limits), which
# pymongo raises as OperationFailure when it does not map them to a ConnectionFailure itself.
_UNAVAILABLE_CODES = frozenset({6, 7, 89, 91, 189, 262, 10107, 11600, 11602, 13435, 13436})
# FerretDB answers code 1 (InternalError) with its PostgreSQL driver's message when PostgreSQL is down.
_BACKEND_DOWN_WORDS = (
    "failed to connect",
    "connection refused",
    "dial error",
    "connection reset",
    "broken pipe",
    "unexpected eof",
    "server closed the connection",
    "the database system is shutting down",
    "the database system is starting up",
    "terminating connection",
)


def _is_store_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, pymongo.errors.ConnectionFailure):  # AutoReconnect, NetworkTimeout, ServerSelection...
        return True
    if isinstance(exc, pymongo.errors.OperationFailure):
        if exc.code in _UNAVAILABLE_CODES:
            return True
        text = str(exc).lower()
        return exc.code in (1, None) and any(w in text for w in _BACKEND_DOWN_WORDS)
    if isinstance(exc, pymongo.errors.PyMongoError) and exc.timeout:
        return True  # a client-side timeout (pymongo.timeout) ran out waiting for the server
    try:
        import psycopg
        import sqlalchemy.exc
    except ImportError:  # pragma: no cover - both ship with the project
        return False
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.TimeoutError | psycopg.OperationalError):
        return True  # connection refused/lost, server shutting down, pool exhausted
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)


def is_unavailable(exc: BaseException) -> bool:
    """Whether the error (or one it was raised from: mongoengine and handlers wrap them) says a store could
    not be reached, as opposed to a bug or a refusal."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        if _is_store_unreachable(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def unavailable_error(exc: BaseException) -> Unavailable | None:
    """Unavailable (with what to do) when the error says a store could not be reached; else None. Tells the
    monitor too, so health turns NOT_SERVING now rather than at the next scheduled check."""
    if not is_unavailable(exc):
        return None
    monitor = _current
    if monitor is not None:
        monitor.poke()
    return Unavailable(DATABASE_LOST, reason="database_unavailable")


@dataclass(frozen=True)
class Check:
    """One store to ping. `gates_calls`: while it is down every call is refused at once (the write side's
    database: nothing works without it); otherwise it only turns health NOT_SERVING (the read side: writes
    still succeed without it)."""

    name: str
    ping: Callable[[], object]
    gates_calls: bool = True


def mongo_check(client: MongoClient[Any], name: str = "database", timeout: float = PING_TIMEOUT) -> Check:
    """A ping on the process's own client. On FerretDB a ping asks PostgreSQL too (so it fails while
    PostgreSQL is down although FerretDB still answers); pymongo.timeout bounds server selection as well."""

    def ping() -> object:
        with pymongo.timeout(timeout):
            return client.admin.command("ping")

    return Check(name, ping)


def readside_check() -> Check:
    """`SELECT 1` on a pooled connection of the read side's engine (services/common/readside.py)."""

    def ping() -> object:
        from sqlalchemy import text

        from services.common import readside

        with readside.engine().connect() as conn:
            return conn.execute(text("SELECT 1")).scalar()

    return Check("read_side", ping, gates_calls=False)


class DependencyMonitor:
    """Pings its checks every `interval` seconds in one daemon thread; calls on_change(ok) whenever the
    verdict (every check passes) changes, and once at start. Thread-safe reads of the verdict."""

    name = "dependencies"

    def __init__(
        self,
        checks: Sequence[Check],
        on_change: Callable[[bool], object] = lambda _ok: None,
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = list(checks)
        self.on_change = on_change
        self.interval = interval
        self.clock = clock
        self._down: dict[str, str] = {}  # check name -> why, for those down (FAILURES_TO_DOWN failed pings)
        self._failures: dict[str, int] = {}  # check name -> failed pings in a row
        self._ok: bool | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def ok(self) -> bool:
        return not self._down

    def down(self) -> dict[str, str]:
        """The stores that failed their last ping, with the error (for logs and /readyz)."""
        with self._lock:
            return dict(self._down)

    def check_now(self) -> bool:
        """Ping every store now; record and report the verdict. Returns whether all answered."""
        failed: dict[str, str] = {}
        for check in self.checks:
            try:
                check.ping()
            except Exception as exc:  # any failure of a ping means "not ready"; logged on the change below
                failed[check.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        with self._lock:
            first = self._ok is None
            self._failures = {name: self._failures.get(name, 0) + 1 for name in failed}
            needed = 1 if first else FAILURES_TO_DOWN
            down = {name: why for name, why in failed.items() if self._failures[name] >= needed}
            changed = set(down) != set(self._down)
            self._down = down
            ok = not down
            flipped = self._ok is not None and self._ok != ok
            self._ok = ok
        if changed and down:
            log.warning("not serving: %s", "; ".join(f"{k} is down ({v})" for k, v in sorted(down.items())))
        elif changed and not first:
            log.warning("serving again: every dependency answers")
        if first or flipped:
            self.on_change(ok)
        return ok

    def refuse_if_down(self) -> None:
        """Raise Unavailable while a store that every call needs is down (the caller retries; nothing ran)."""
        if not self._down:  # the common case, without the lock
            return
        gating = {c.name for c in self.checks if c.gates_calls}
        if gating & set(self.down()):
            raise Unavailable(DATABASE_DOWN, reason="database_unavailable")

    def poke(self) -> None:
        """Check again now (a call just failed to reach a store), not at the next tick."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """The loop: a check every `interval` seconds (DOWN_INTERVAL while down; sooner when poked), until
        `stop` is set."""
        last = self.clock()
        while not stop.is_set():
            suspect = bool(self._failures)  # down, or a ping just failed: look again soon
            self._wake.wait(min(self.interval, DOWN_INTERVAL) if suspect else self.interval)
            self._wake.clear()
            rest = MIN_GAP - (self.clock() - last)
            if rest > 0:
                stop.wait(rest)
            if stop.is_set():
                return
            self.check_now()
            last = self.clock()

    def start(self, stop: threading.Event) -> None:
        """A first check now (so health is right from the start), then the loop in a daemon thread; becomes
        the process's monitor for refuse_if_down() and unavailable_error()."""
        global _current
        _current = self
        self.check_now()
        self._thread = threading.Thread(target=self._loop, args=(stop,), name=self.name, daemon=True)
        self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run(stop)
            except Exception:  # never let health stop reporting
                log.exception("dependency monitor failed; restarting in 1 s")
                stop.wait(1.0)


_current: DependencyMonitor | None = None


def refuse_if_down() -> None:
    """The process's monitor's refuse_if_down(); nothing when none runs (tools, tests in process)."""
    monitor = _current
    if monitor is not None:
        monitor.refuse_if_down()


# The services that serve lists, pages and counts from the SQL read side (services/common/readside.py), and the
# projector that keeps it: they are not ready without it. The org service reads only its own database.
READ_SIDE_USERS = frozenset({"intake", "dispatch", "evaluation", "publication", "alliance", "projector"})


def checks_for(service: str) -> list[Check]:
    """What `service` needs to serve: its database (the process's mongo client, if it opened one) and, for the
    services that read from it, the read side."""
    from services.common import mongo

    checks = []
    client = mongo.current_client()
    if client is not None:
        checks.append(mongo_check(client))
    if service in READ_SIDE_USERS:
        checks.append(readside_check())
    return checks
