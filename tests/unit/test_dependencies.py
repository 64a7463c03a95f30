"""A database that is down: which errors say so (UNAVAILABLE, 503 + Retry-After, not INTERNAL/502), how the
dependency monitor turns health NOT_SERVING and back, and the reconnect backoff of every channel the project
opens (a restarted service is used again within about a second). The real stack's side: tests/e2e/test_resilience.py."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import mongoengine
import psycopg
import pymongo.errors
import pytest
import sqlalchemy.exc

from gateway.errors import from_rpc_error, storage_unavailable
from gateway.readiness import check_stores, readiness
from services.common import dependencies
from services.common.dependencies import Check, DependencyMonitor, is_unavailable, unavailable_error
from services.common.errors import Unavailable
from services.common.grpc_client import channel_options, make_channel

# FerretDB's answer while the PostgreSQL under it is stopped (seen on the local stack, FerretDB v1.24).
FERRETDB_PG_DOWN = pymongo.errors.OperationFailure(
    "[msg_find.go:344 handler.handleMaxTimeMSError] [collection.go:109 postgresql.(*collection).Query] failed to "
    "connect to `user=hongling database=ferretdb`: 127.0.0.1:22032 (127.0.0.1): dial error: dial tcp "
    "127.0.0.1:22032: connect: connection refused",
    code=1,
)


@pytest.mark.parametrize(
    "exc",
    [
        pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:17017: [Errno 111] Connection refused"),
        pymongo.errors.AutoReconnect("connection closed"),
        pymongo.errors.NetworkTimeout("timed out"),
        pymongo.errors.NotPrimaryError("not primary"),
        FERRETDB_PG_DOWN,
        pymongo.errors.OperationFailure("interrupted at shutdown", code=11600),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 8 overflow 8 reached"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_store_that_cannot_be_reached_is_unavailable(exc: BaseException) -> None:
    assert is_unavailable(exc)
    mapped = unavailable_error(exc)
    assert isinstance(mapped, Unavailable) and mapped.code == grpc.StatusCode.UNAVAILABLE
    assert "retry" in mapped.message and "数据库暂不可用" in mapped.message


@pytest.mark.parametrize(
    "exc",
    [
        pymongo.errors.DuplicateKeyError("E11000 duplicate key", code=11000),
        pymongo.errors.OperationFailure("unknown operator: $foo", code=2),
        pymongo.errors.OperationFailure("some internal error of another kind", code=1),
        sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg.IntegrityError("duplicate key")),
        ValueError("a bug"),
        KeyError("x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_not_mistaken_for_an_outage(exc: BaseException) -> None:
    assert not is_unavailable(exc) and unavailable_error(exc) is None


def test_an_outage_wrapped_by_mongoengine_or_a_handler_is_still_one() -> None:
    try:
        try:
            raise pymongo.errors.ServerSelectionTimeoutError("no servers")
        except pymongo.errors.PyMongoError as err:
            raise mongoengine.OperationError(f"Could not save document ({err})") from err
    except mongoengine.OperationError as wrapped:
        assert is_unavailable(wrapped)
    try:
        try:
            raise FERRETDB_PG_DOWN
        except pymongo.errors.PyMongoError:
            raise RuntimeError("while saving the issue") from None  # context kept, cause suppressed
    except RuntimeError as hidden:
        assert is_unavailable(hidden)


class Flaky:
    """A ping that fails while `down` is set."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.down:
            raise pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:1: [Errno 111] Connection refused")
        return {"ok": 1.0}


def test_the_monitor_reports_each_change_once_and_names_what_is_down() -> None:
    db, reads = Flaky(), Flaky()
    seen: list[bool] = []
    monitor = DependencyMonitor([Check("database", db), Check("read_side", reads, gates_calls=False)], seen.append)
    assert monitor.check_now() and seen == [True]  # the first verdict is always reported
    assert monitor.check_now() and seen == [True]  # no change, no report
    reads.down = True
    assert monitor.check_now() and seen == [True]  # one failed ping is not an outage (a busy machine)
    assert not monitor.check_now() and seen == [True, False]  # two in a row are
    assert set(monitor.down()) == {"read_side"} and "Connection refused" in monitor.down()["read_side"]
    monitor.refuse_if_down()  # the read side down refuses no call: writes work without it
    db.down = True
    assert not monitor.check_now() and seen == [True, False]  # still down: nothing new to report
    monitor.refuse_if_down()  # the database failed once: calls still go through
    monitor.check_now()
    with pytest.raises(Unavailable):
        monitor.refuse_if_down()  # the database down: every call is refused at once
    db.down = reads.down = False
    assert monitor.check_now() and seen == [True, False, True] and monitor.down() == {}
    monitor.refuse_if_down()


def test_the_monitor_starts_with_the_truth_and_checks_again_when_poked() -> None:
    db = Flaky()
    db.down = True
    seen: list[bool] = []
    stop = threading.Event()
    monitor = DependencyMonitor([Check("database", db)], seen.append, interval=3600)
    try:
        monitor.start(stop)
        assert seen == [False]  # NOT_SERVING from the start: the database was down when the service started
        with pytest.raises(Unavailable):
            dependencies.refuse_if_down()  # the process's monitor, as the server interceptor asks it
        db.down = False
        assert unavailable_error(pymongo.errors.AutoReconnect("reset")) is not None  # a failed call pokes it
        event = threading.Event()
        monitor.on_change = lambda ok: (seen.append(ok), event.set())
        assert event.wait(30), "a poke did not make the monitor check again"
        assert seen == [False, True]
        dependencies.refuse_if_down()
    finally:
        stop.set()
        monitor.poke()
        dependencies._current = None


def test_the_gateway_answers_an_unreachable_service_or_a_late_one_with_503_and_retry_after() -> None:
    class Failed(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return "the database is not answering right now"

        def trailing_metadata(self) -> Any:
            return ()

    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        err = from_rpc_error(Failed(code))
        assert err.status == 503 and err.headers["Retry-After"] == "2" and err.code == "service_unavailable"
    down = storage_unavailable(FERRETDB_PG_DOWN)
    assert down is not None and down.status == 503 and down.headers["Retry-After"]
    assert storage_unavailable(ValueError("a bug")) is None


def test_readiness_names_what_is_down() -> None:
    ready, body = readiness({"org": "SERVING", "intake": "SERVING"}, {"database": "ok"})
    assert ready and body == {
        "status": "ready",
        "services": {"org": "SERVING", "intake": "SERVING"},
        "stores": {"database": "ok"},
    }
    db = Flaky()
    db.down = True
    stores = check_stores([Check("database", db), Check("read_side", Flaky())])
    assert stores["read_side"] == "ok" and stores["database"].startswith("ServerSelectionTimeoutError")
    ready, body = readiness({"org": "NOT_SERVING", "intake": "UNAVAILABLE"}, stores)
    assert not ready and body["status"] == "not_ready"
    assert body["down"] == ["service:org", "service:intake", "store:database"]


def test_every_channel_reconnects_within_a_second_of_a_peer_coming_back() -> None:
    """gRPC's default reconnect backoff grows to 120 s: after a 90 s outage intake was not used again for 14 s.
    Every channel the project opens comes from make_channel (gateway/clients.py and grpc_client.LazyStub)."""
    options = dict(channel_options(["hongling.intake.v1.IntakeService"]))
    assert options["grpc.initial_reconnect_backoff_ms"] == 1000
    assert options["grpc.min_reconnect_backoff_ms"] == 1000
    assert options["grpc.max_reconnect_backoff_ms"] == 1000
    assert options["grpc.enable_retries"] == 1 and "retryPolicy" in str(options["grpc.service_config"])
    channel = make_channel("127.0.0.1:1", ["x.Y"], secret="s" * 40, caller="unit")  # the options are accepted
    channel.close()


def test_a_consumer_does_not_dead_letter_an_event_while_the_database_is_down() -> None:
    """An event whose handler fails because the database is away is not poison: after its retries it stays
    uncommitted (handle_record raises; the worker restarts and it comes again), where a real failure goes to
    the dead-letter topic."""
    from collections import namedtuple
    from datetime import UTC, datetime

    from hongling.events.v1 import intake_events_pb2 as iev

    from services.common.consumer import EventConsumer
    from services.common.events import CloudEvent

    Record = namedtuple("Record", "topic partition offset key value headers")
    event = CloudEvent(
        "ev-1", "intake", iev.IssueClassified.DESCRIPTOR.full_name, datetime.now(UTC), "i-1", "taiqian", b""
    )
    record = Record("t", 0, 7, b"taiqian:i-1", b"", event.headers())
    failure: list[BaseException] = []

    def handler(_event: Any, _payload: Any) -> None:
        raise failure[0]

    lettered: list[str] = []

    class Watched(EventConsumer):
        def _dead_letter(self, record: Any, dlq: Any, reason: str, *, tenant: str, type_: str) -> None:
            lettered.append(reason)

    consumer = Watched(
        "g", ["t"], {iev.IssueClassified: handler}, "127.0.0.1:1", idempotent=(iev.IssueClassified,), retry_backoff=0
    )
    failure.append(pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:1: [Errno 111] Connection refused"))
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
        consumer.handle_record(record, dlq=None)
    assert lettered == []
    failure[0] = ValueError("a bug in the handler")
    assert consumer.handle_record(record, dlq=None) == "dead_lettered"
    assert len(lettered) == 1 and "a bug" in lettered[0]
