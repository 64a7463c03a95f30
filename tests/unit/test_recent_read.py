"""RecentRead (services/common/recent.py): a per-tenant value trusted for a moment, read again after forget()."""

from __future__ import annotations

import time

from services.common import context
from services.common.recent import RecentRead


def test_a_value_is_read_once_per_tenant_within_its_moment_and_again_after_forget_or_expiry() -> None:
    reads: list[str] = []

    def read() -> str:
        tenant = context.require_tenant()
        reads.append(tenant)
        return f"{tenant}-{len(reads)}"

    recent = RecentRead(read, seconds=0.2)
    with context.bound(tenant="taiqian"):
        assert recent.get() == recent.get() == "taiqian-1"
    with context.bound(tenant="daimiao"):
        assert recent.get() == "daimiao-2"  # each tenant its own read
    recent.forget("taiqian")
    with context.bound(tenant="taiqian"):
        assert recent.get() == "taiqian-3"
    time.sleep(0.25)
    with context.bound(tenant="daimiao"):
        assert recent.get() == "daimiao-4"
    assert reads == ["taiqian", "daimiao", "taiqian", "daimiao"]
