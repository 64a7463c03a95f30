"""Rollups (services/common/rollups.py) as the shared dashboard messages of hongling.common.v1 (stats.proto)."""

from __future__ import annotations

from datetime import date

from hongling.common.v1 import stats_pb2

from services.common import rollups


def days_to_pb(found: dict[date, dict[str, int]], first: date, last: date) -> list[stats_pb2.DayCounts]:
    """Every day of the window, oldest first, with its counts."""
    return [stats_pb2.DayCounts(day=d.isoformat(), counts=c) for d, c in rollups.series(found, first, last)]


def span_to_pb(measure: str, counts: list[int]) -> stats_pb2.SpanHistogram:
    """A histogram with its bounds, total and p50/p90 estimates (unset without spans)."""
    return stats_pb2.SpanHistogram(
        measure=measure,
        upper_bounds_seconds=rollups.UPPER_BOUNDS,
        counts=counts,
        total=sum(counts),
        p50_seconds=rollups.quantile(counts, 0.5),
        p90_seconds=rollups.quantile(counts, 0.9),
    )
