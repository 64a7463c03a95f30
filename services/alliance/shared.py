"""What the alliance's areas share besides their process: times as stored and as sent, and the conflict answers
of the one write path (services/common/unitofwork.py). Plain helpers, no area's rules."""

from __future__ import annotations

from services.common.errors import Aborted
from services.common.times import aware, ts, utcnow  # noqa: F401  (the areas import them from here)
from services.common.unitofwork import Conflicts


def conflicts(noun: str, noun_zh: str = "记录") -> Conflicts:
    """The ABORTED answers of a record of this kind changed under a change: stale, raced or busy."""
    return Conflicts(
        stale=lambda i, v, e: Aborted(f"{noun} {i!r} is at version {v}, not {e}: reload and retry ({noun_zh}已被修改)"),
        raced=lambda i: Aborted(
            f"{noun} {i!r} was changed at the same moment: reload and retry ({noun_zh}已被同时修改)"
        ),
        busy=lambda i: Aborted(
            f"{noun} {i!r} kept changing under this change: retry shortly ({noun_zh}正被频繁修改，请重试)"
        ),
    )
