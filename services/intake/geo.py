"""Distances and the duplicate-claim grid: plain arithmetic, no storage.

Duplicate detection must not scan the issues (on the local FerretDB any filter other than _id reads the
whole collection). Instead, each open issue with a point holds a claim keyed by its category, its cell
on a grid of squares about `duplicate_distance_m` wide, and its time bucket (`duplicate_window_hours`
long). A new issue looks up, by _id, the 3×3 cells around its own in its bucket and the one before:
every issue within the distance and the window is in one of those 18 keys.

Why 3×3 is enough: rows are `size` metres of latitude apart, and any two points closer than `size` are
less than `size` apart north-south, so their rows differ by at most one. Columns are `size` metres of
longitude at 60° latitude (LON_SCALE = cos 60°), i.e. wider than `size` anywhere nearer the equator, so
two points closer than `size` differ by at most one column there too (China lies within 18°-54° N;
beyond 60° a duplicate could be missed, never wrongly linked: the distance is always checked).
"""

from __future__ import annotations

import math
from datetime import datetime

EARTH_RADIUS_M = 6_371_000.0
METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180.0
LON_SCALE = 0.5  # cos(60°)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def cell_of(lat: float, lon: float, size_m: int) -> tuple[int, int]:
    """(row, column) of the point on the grid of `size_m` cells."""
    return (
        math.floor(lat * METRES_PER_DEGREE / size_m),
        math.floor(lon * METRES_PER_DEGREE * LON_SCALE / size_m),
    )


def bucket_of(at: datetime, window_hours: int) -> int:
    return math.floor(at.timestamp() / (window_hours * 3600))


def claim_key(category: str, size_m: int, window_hours: int, cell: tuple[int, int], bucket: int) -> str:
    # The grid and window sizes are part of the key: after a tenant changes them, old claims simply
    # stop matching instead of being read on the wrong grid.
    return f"{category}:{size_m}m{window_hours}h:{cell[0]}:{cell[1]}:{bucket}"


def own_key(category: str, lat: float, lon: float, at: datetime, size_m: int, window_hours: int) -> str:
    return claim_key(category, size_m, window_hours, cell_of(lat, lon, size_m), bucket_of(at, window_hours))


def neighbourhood_keys(
    category: str, lat: float, lon: float, at: datetime, size_m: int, window_hours: int
) -> list[str]:
    """The 18 claim keys that can hold an issue within `size_m` and `window_hours` of this one (own first)."""
    row, col = cell_of(lat, lon, size_m)
    bucket = bucket_of(at, window_hours)
    keys = [claim_key(category, size_m, window_hours, (row, col), bucket)]
    for b in (bucket, bucket - 1):
        for dr in (0, -1, 1):
            for dc in (0, -1, 1):
                key = claim_key(category, size_m, window_hours, (row + dr, col + dc), b)
                if key not in keys:
                    keys.append(key)
    return keys
