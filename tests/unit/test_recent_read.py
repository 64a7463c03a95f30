"""RecentRead (services/common/recent.py): a per-tenant value trusted for a moment, read again after forget()."""

from __future__ import annotations

import pytest

from services.common import context
from services.common import recent as recent_module
from services.common.recent import RecentRead


class Clock:
    """The module's time, moved on by the test: a moment is exactly as long as the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_value_is_read_once_per_tenant_within_its_moment_and_again_after_forget_or_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(recent_module, "time", clock)
    reads: list[str] = []

    def read() -> str:
        tenant = context.require_tenant()
        reads.append(tenant)
        return f"{tenant}-{len(reads)}"

    recent = RecentRead(read, seconds=0.2)
    with context.bound(tenant="taiqian"):
        assert recent.get() == "taiqian-1"
        clock.now += 0.19
        assert recent.get() == "taiqian-1"  # within its moment
    with context.bound(tenant="daimiao"):
        assert recent.get() == "daimiao-2"  # each tenant its own read
    recent.forget("taiqian")
    with context.bound(tenant="taiqian"):
        assert recent.get() == "taiqian-3"
    clock.now += 0.21  # daimiao was read 0.21 s ago: its moment (0.2 s) is over
    with context.bound(tenant="daimiao"):
        assert recent.get() == "daimiao-4"
    assert reads == ["taiqian", "daimiao", "taiqian", "daimiao"]
