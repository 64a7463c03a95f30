"""A small per-tenant value read from the database and trusted for a moment.

Org's index generation and dispatch's member-unit generation are each read on every placement or call; at
tens a second that read was a database command each. A RecentRead keeps the last read per tenant for
`seconds`; the process that changes the value calls forget() so that its own next use reads it again.
Another process sees a change within `seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from services.common.context import require_tenant

T = TypeVar("T")


class RecentRead(Generic[T]):
    def __init__(self, read: Callable[[], T], seconds: float) -> None:
        self._read = read  # reads the value of the current call's tenant
        self.seconds = seconds
        self._seen: dict[str, tuple[T, float]] = {}

    def get(self) -> T:
        """The current tenant's value, read again when the last read is older than `seconds`."""
        tenant = require_tenant()
        seen = self._seen.get(tenant)
        now = time.monotonic()
        if seen is not None and now - seen[1] < self.seconds:
            return seen[0]
        value = self._read()
        self._seen[tenant] = (value, now)
        return value

    def forget(self, tenant: str) -> None:
        """This process changed the tenant's value: the next get() reads it."""
        self._seen.pop(tenant, None)
