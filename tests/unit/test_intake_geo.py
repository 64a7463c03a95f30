"""Distances and the duplicate-claim grid: every issue within the distance lies in one of the 18 keys."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from services.intake import geo


def test_haversine_known_distances() -> None:
    assert geo.haversine_m(36.2, 117.1, 36.2, 117.1) == 0
    # One degree of latitude on the 6,371 km sphere.
    assert geo.haversine_m(36.0, 117.0, 37.0, 117.0) == pytest.approx(111_195, rel=1e-4)
    # One degree of longitude at 36° N is cos(36°) of that.
    assert geo.haversine_m(36.0, 117.0, 36.0, 118.0) == pytest.approx(111_195 * math.cos(math.radians(36)), rel=2e-3)
    # About 100 m in Tai'an.
    assert 95 < geo.haversine_m(36.1876, 117.1296, 36.1885, 117.1296) < 105


def offset(lat: float, lon: float, metres: float, bearing: float) -> tuple[float, float]:
    dlat = metres * math.cos(bearing) / geo.METRES_PER_DEGREE
    dlon = metres * math.sin(bearing) / (geo.METRES_PER_DEGREE * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


@pytest.mark.parametrize("size", [30, 100, 500])
def test_every_point_within_the_distance_is_in_the_neighbourhood(size: int) -> None:
    rnd = random.Random(size)
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    for _ in range(2000):
        lat, lon = rnd.uniform(18, 54), rnd.uniform(73, 135)  # anywhere in China
        lat2, lon2 = offset(lat, lon, rnd.uniform(0, size * 0.999), rnd.uniform(0, 2 * math.pi))
        if geo.haversine_m(lat, lon, lat2, lon2) > size:
            continue
        earlier = at - timedelta(hours=rnd.uniform(0, 72))
        theirs = geo.own_key("sanitation", lat2, lon2, earlier, size, 72)
        assert theirs in geo.neighbourhood_keys("sanitation", lat, lon, at, size, 72)


def test_neighbourhood_is_18_keys_own_first_and_of_one_category() -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    keys = geo.neighbourhood_keys("parking", 36.19, 117.13, at, 100, 72)
    assert len(keys) == len(set(keys)) == 18
    assert keys[0] == geo.own_key("parking", 36.19, 117.13, at, 100, 72)
    assert all(k.startswith("parking:100m72h:") for k in keys)


def test_buckets_follow_the_window() -> None:
    t = datetime(2025, 6, 1, tzinfo=UTC)
    assert geo.bucket_of(t, 72) == math.floor(t.timestamp() / (72 * 3600))
    assert geo.bucket_of(t + timedelta(hours=72), 72) == geo.bucket_of(t, 72) + 1
