"""The adaptive idle wait of the loops that look for unannounced work (services/common/idle.py): short while
there is work, doubling up to its cap while the looks find none, short again at once when work shows."""

from __future__ import annotations

import threading

import pytest

from services.common.idle import IdleBackoff


def test_empty_looks_double_the_wait_up_to_the_cap() -> None:
    idle = IdleBackoff(1.0, 5.0)
    assert [idle.found(False) for _ in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_a_look_that_finds_work_goes_back_to_the_first_wait() -> None:
    idle = IdleBackoff(0.5, 4.0)
    for _ in range(5):
        idle.found(False)
    assert idle.current == 4.0
    assert idle.found(True) == 0.5
    assert idle.found(False) == 0.5  # the first empty look after work waits the short time again
    assert idle.found(False) == 1.0


def test_announced_work_resets_the_wait() -> None:
    idle = IdleBackoff(1.0, 8.0)
    for _ in range(4):
        idle.found(False)
    idle.reset()
    assert idle.found(False) == 1.0


def test_a_cap_equal_to_the_first_wait_keeps_it_fixed() -> None:
    idle = IdleBackoff(2.0, 2.0)
    assert {idle.found(False) for _ in range(4)} == {2.0}


@pytest.mark.parametrize(("first", "cap", "factor"), [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (1.0, 2.0, 0.5)])
def test_nonsense_settings_are_refused(first: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError):
        IdleBackoff(first, cap, factor)


def _asleep(thread: threading.Thread) -> bool:
    """Poll (to a generous deadline) until `thread` is blocked in a wait: a stop set before it got there would
    end it without any wake-up, and the test would prove nothing."""
    import sys
    import time

    until = time.monotonic() + 60
    while time.monotonic() < until:
        frame = sys._current_frames().get(thread.ident or -1)
        while frame is not None:
            if frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith("threading.py"):
                return True
            frame = frame.f_back
        time.sleep(0.01)
    return False


def test_the_relays_idle_wait_ends_when_the_service_stops() -> None:
    """A relay waiting out a long idle backoff must not hold up a SIGTERM: the host sets `stop` and wakes its
    workers (wake_workers), and the wait ends then, not at its end (an hour here)."""
    from services.common.grpc_server import wake_workers
    from services.common.outbox import OutboxRelay, _wait_for_work

    stop = threading.Event()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(_wait_for_work(stop, 3600.0)), daemon=True)
    waiter.start()
    assert _asleep(waiter)
    stop.set()
    wake_workers([OutboxRelay("test", [], "127.0.0.1:9")])
    waiter.join(timeout=60)  # a deadline for "never": it ends at once
    assert not waiter.is_alive() and got == [False]


def test_a_timer_workers_wait_ends_when_the_service_stops() -> None:
    """A timer worker sleeps until its next timer or rescan (15 s and more); a shutdown wakes it at once."""
    import time

    from services.common.clocks import TimerWorker
    from services.common.grpc_server import wake_workers

    worker = TimerWorker(rescan_seconds=3600.0)
    stop = threading.Event()
    sleeper = threading.Thread(target=worker._sleep, args=(stop, time.monotonic() + 3600.0), daemon=True)
    sleeper.start()
    assert _asleep(sleeper)
    stop.set()
    wake_workers([worker, object()])  # a worker without wake() is passed over
    sleeper.join(timeout=60)
    assert not sleeper.is_alive()
