"""Adaptive idle waits for the loops that look for work nobody announced (another process's writes).

A loop that must notice work written elsewhere (the outbox relay's full marker scan, the audit projection's
look at the log) has no signal to wait on, so it looks again after a while. Looking every half second or
second kept an idle stack busy: six relays scanning eight tenants each second, the audit tail twice a
second, each look a round trip through FerretDB to PostgreSQL (issue 20 measured 12.6 % of a core for the
whole stack at rest). So the wait starts short and doubles while the looks find nothing, up to a cap, and
goes back to the start as soon as a look finds work or the process itself signals some: a burst of work is
followed as closely as before, and a quiet stack looks a few times a minute.

The work this process announces itself (its own writes, handed to its relay; timers it schedules) never
waits for these looks: those loops wake on an event at once.
"""

from __future__ import annotations


class IdleBackoff:
    """The next wait of a loop that polls for unannounced work: ``first`` seconds after a look that found
    work (or after ``reset``), then ``factor`` times longer after each look that found none, at most ``cap``."""

    def __init__(self, first: float, cap: float, factor: float = 2.0) -> None:
        if first <= 0 or cap < first or factor < 1:
            raise ValueError("IdleBackoff needs 0 < first <= cap and factor >= 1")
        self.first = first
        self.cap = cap
        self.factor = factor
        self._next = first

    def found(self, work: bool) -> float:
        """After a look: the seconds to wait before the next one (``first`` if it found work)."""
        if work:
            self._next = self.first
            return self.first
        wait = self._next
        self._next = min(self.cap, self._next * self.factor)
        return wait

    def reset(self) -> None:
        """Work was announced (a signal, a write of this process): look again soon after it."""
        self._next = self.first

    @property
    def current(self) -> float:
        """The wait the next look that finds nothing would get."""
        return self._next


__all__ = ["IdleBackoff"]
