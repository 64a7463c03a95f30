"""Rollups: counts kept beside the read models' rows, so that a dashboard never reads the rows.

A dashboard figure (issues received per day, the time from an issue's receipt to its whistle, ...) that
counted issue or task rows at request time would read more rows as the data grows. Instead each projection
(services/common/projection.py) keeps the figures as it writes the rows, in the same transaction, by the
technique intake's status counts use:

- A row's *contributions* are a pure function of the row (its "fact" columns: when it was received, blown,
  first answered, done, ...): one count per rollup row it adds to, e.g. "1 issue received on 2026-12-05 in
  community c" (and, the same, in the all-communities rollup "*"). `Tally` collects them.
- When a state replaces a row, the projection adds the new row's contributions and takes away the old
  row's (`Tally.update(..., sign=-1)`), then `apply` adds the difference to the rollup tables. A row is
  replaced only by a newer version (the projection skips a re-delivered or older state before it gets
  here), and the facts are those of the aggregate's own history (the first whistle, the first time
  done), which a newer state keeps; so each event contributes exactly once, when the first state holding
  it arrives, and is moved, never counted again, when a fact the key names changes (a category, a status).

Two generic tables live here (each service's readmodel.py keeps its own current counts next to its rows):

- `rollup_days` (community_id, measure, day, n): events per day in Asia/Shanghai (the local date is
  stored), per community and "*", e.g. measure `issues_received`.
- `rollup_durations` (community_id, measure, day, bucket, n): spans (an issue's receipt to its whistle,
  ...) as histograms with fixed buckets (BUCKETS: ≤5 min … ≤7 d, >7 d), on the local day the span ended.
  Counts per bucket give p50/p90 estimates (`quantile`) without reading a row.

At 100x the data: the rollup tables grow with communities × measures × days (× 11 buckets), not with issues;
a dashboard over a window reads at most window-days × measures (× buckets) rows of one community through
the primary key, the same at 10,000 issues as at 1,000,000. Each projected state adds one small upsert per
rollup row it changes (a few rows: its day, its buckets, each for its community and "*"), sorted by key so
that two projector transactions take the rows' locks in the same order. `python -m services.projector
--rebuild` rebuilds them with the rows from the state topics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Column, Connection, Date, SmallInteger, Table, Text, and_, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from services.common import readside
from services.common.errors import InvalidArgument

SHANGHAI = ZoneInfo("Asia/Shanghai")
ALL_COMMUNITIES = "*"  # the rollup of every community of the tenant
MAX_DAYS = 366  # the longest window a dashboard asks for


def counts_table(name: str, *keys: Column[Any]) -> Table:
    """A table of counts kept by `Tally`/`apply`: (community_id, *keys) as its primary key, and n. Each key
    column is made part of the primary key here."""
    for key in keys:
        key.primary_key = True
    return Table(
        name,
        readside.METADATA,
        Column("community_id", Text, primary_key=True),
        *keys,
        Column("n", BigInteger, nullable=False),
    )


DAYS = counts_table("rollup_days", Column("measure", Text), Column("day", Date))  # day: local date (Shanghai)
DURATIONS = counts_table(
    "rollup_durations",
    Column("measure", Text),
    Column("day", Date),  # the local date the span ended
    Column("bucket", SmallInteger),  # index into BUCKETS
)


@dataclass(frozen=True)
class Bucket:
    """One histogram bucket: spans up to `le_seconds` (None: the open last bucket) and above the previous."""

    le_seconds: int | None
    label_zh: str
    label_en: str


_MIN, _HOUR, _DAY = 60, 3600, 86400
BUCKETS: tuple[Bucket, ...] = (
    Bucket(5 * _MIN, "≤5分钟", "≤5 min"),
    Bucket(15 * _MIN, "≤15分钟", "≤15 min"),
    Bucket(30 * _MIN, "≤30分钟", "≤30 min"),
    Bucket(_HOUR, "≤1小时", "≤1 h"),
    Bucket(2 * _HOUR, "≤2小时", "≤2 h"),
    Bucket(4 * _HOUR, "≤4小时", "≤4 h"),
    Bucket(8 * _HOUR, "≤8小时", "≤8 h"),
    Bucket(_DAY, "≤1天", "≤1 d"),
    Bucket(3 * _DAY, "≤3天", "≤3 d"),
    Bucket(7 * _DAY, "≤7天", "≤7 d"),
    Bucket(None, ">7天", ">7 d"),
)
UPPER_BOUNDS: tuple[int, ...] = tuple(b.le_seconds for b in BUCKETS if b.le_seconds is not None)


def aware(at: datetime) -> datetime:
    """A stored time as an aware one (naive = UTC, as the write side hands some back)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def month_of(at: datetime) -> date:
    """The first day of the local month (Asia/Shanghai) of `at`."""
    return local_day(at).replace(day=1)


def local_day(at: datetime) -> date:
    """The date in Asia/Shanghai of a stored time."""
    return aware(at).astimezone(SHANGHAI).date()


def bucket_of(seconds: float) -> int:
    """The index of the bucket a span falls in; a negative span (clocks apart) counts as the first."""
    for i, le in enumerate(UPPER_BOUNDS):
        if seconds <= le:
            return i
    return len(UPPER_BOUNDS)


def quantile(counts: Iterable[int], q: float) -> float | None:
    """An estimate of the q-quantile (0 < q <= 1) in seconds of the spans a histogram counts (None: none).

    As Prometheus' histogram_quantile: the bucket holding the q-th span, linear inside it (the first from
    0). In the open last bucket (>7 d) the estimate is its lower bound: the spans there are at least that."""
    found = list(counts)
    total = sum(found)
    if total <= 0:
        return None
    target = q * total
    below = 0
    for i, n in enumerate(found):
        if n > 0 and below + n >= target:
            lower = float(UPPER_BOUNDS[i - 1]) if i > 0 else 0.0
            if i >= len(UPPER_BOUNDS):
                return lower
            return lower + (UPPER_BOUNDS[i] - lower) * max(0.0, target - below) / n
        below += n
    return float(UPPER_BOUNDS[-1])


# ---------------------------------------------------------------- contributions


class Tally:
    """Contributions to rollup tables: table -> its primary key's values (in column order) -> count.

    A projection tallies a new row's contributions, takes away its old row's, and applies the difference."""

    def __init__(self) -> None:
        self.rows: dict[Table, Counter[tuple[Any, ...]]] = {}

    def add(self, table: Table, key: tuple[Any, ...], n: int = 1) -> None:
        self.rows.setdefault(table, Counter())[key] += n

    def count(self, table: Table, community_id: str, *key: Any) -> None:
        """One for the community and one for the all-communities rollup ("*")."""
        self.add(table, (community_id, *key))
        self.add(table, (ALL_COMMUNITIES, *key))

    def day(self, community_id: str, measure: str, at: datetime) -> None:
        """One event of `measure` on the local day of `at`."""
        self.count(DAYS, community_id, measure, local_day(at))

    def span(self, community_id: str, measure: str, start: datetime, end: datetime) -> None:
        """One span of `measure` from start to end, on the local day it ended."""
        seconds = (aware(end) - aware(start)).total_seconds()
        self.count(DURATIONS, community_id, measure, local_day(end), bucket_of(seconds))

    def update(self, other: Tally, sign: int = 1) -> None:
        """Add (sign 1) or take away (sign -1) another tally's contributions."""
        for table, counts in other.rows.items():
            mine = self.rows.setdefault(table, Counter())
            for key, n in counts.items():
                mine[key] += sign * n

    def changes(self) -> list[tuple[Table, list[tuple[tuple[Any, ...], int]]]]:
        """The non-zero changes, tables by name and keys sorted (one lock order for every transaction)."""
        out = []
        for table in sorted(self.rows, key=lambda t: t.name):
            found = sorted((k, n) for k, n in self.rows[table].items() if n)
            if found:
                out.append((table, found))
        return out

    def only(self, *tables: Table) -> Tally:
        """The contributions to these tables alone (a migration that adds one table counts only it)."""
        out = Tally()
        for table in tables:
            if table in self.rows:
                out.rows[table] = Counter(self.rows[table])
        return out

    def of(self, table: Table) -> dict[tuple[Any, ...], int]:
        """The non-zero counts of one table (tests, checks)."""
        return {k: n for k, n in self.rows.get(table, Counter()).items() if n}


def apply(conn: Connection, tally: Tally, *, chunk: int = 1000) -> int:
    """Add a tally's changes to their tables (n = n + change; a new key starts at 0) inside the caller's
    transaction; returns the rollup rows touched."""
    touched = 0
    for table, found in tally.changes():
        keys = [c.name for c in table.primary_key.columns]
        for start in range(0, len(found), chunk):
            part = found[start : start + chunk]
            stmt = insert(table).values([{**dict(zip(keys, key, strict=True)), "n": n} for key, n in part])
            conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_={"n": table.c.n + stmt.excluded.n}))
            touched += len(part)
    return touched


def forget(conn: Connection, measures: Iterable[str]) -> None:
    """Drop every rollup row of these measures (before they are counted again from the rows)."""
    wanted = list(measures)
    for table in (DAYS, DURATIONS):
        conn.execute(delete(table).where(table.c.measure.in_(wanted)))


# ---------------------------------------------------------------- reads


def check_window(first: str, last: str) -> tuple[date, date]:
    """A window of local days from the request's `from_day` and `to_day` (YYYY-MM-DD, both inclusive), at
    most MAX_DAYS long; INVALID_ARGUMENT naming the field otherwise."""
    days: list[date] = []
    for name, value in (("from_day", first), ("to_day", last)):
        try:
            days.append(date.fromisoformat(value.strip()))
        except ValueError:
            raise InvalidArgument(
                f"{name} must be a date YYYY-MM-DD (日期格式应为YYYY-MM-DD), not {value!r}", field=name
            ) from None
    lo, hi = days
    if hi < lo:
        raise InvalidArgument("to_day is before from_day (结束日期早于开始日期)", field="to_day")
    if (hi - lo).days + 1 > MAX_DAYS:
        raise InvalidArgument(f"at most {MAX_DAYS} days at once (最多{MAX_DAYS}天)", field="from_day")
    return lo, hi


def window(days: int, today: date) -> tuple[date, date]:
    """The last `days` local days up to and including `today`."""
    return today - timedelta(days=days - 1), today


def today() -> date:
    return datetime.now(SHANGHAI).date()


def day_counts(
    conn: Connection, community_id: str, measures: Iterable[str], first: date, last: date
) -> dict[date, dict[str, int]]:
    """Events per local day and measure of one community ("": the whole tenant), days without any left out;
    one primary-key range per measure (at most MAX_DAYS rows each)."""
    c = DAYS.c
    rows = conn.execute(
        select(c.day, c.measure, c.n).where(
            and_(
                c.community_id == (community_id or ALL_COMMUNITIES),
                c.measure.in_(list(measures)),
                c.day.between(first, last),
                c.n != 0,
            )
        )
    )
    out: dict[date, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r.day, {})[r.measure] = int(r.n)
    return out


def histograms(
    conn: Connection, community_id: str, measures: Iterable[str], first: date, last: date
) -> dict[str, list[int]]:
    """Each measure's histogram (one count per bucket of BUCKETS) over the window, of one community ("":
    the whole tenant); reads at most window-days × buckets rows per measure, through the primary key."""
    wanted = list(measures)
    c = DURATIONS.c
    rows = conn.execute(
        select(c.measure, c.bucket, func.sum(c.n).label("n"))
        .where(
            and_(
                c.community_id == (community_id or ALL_COMMUNITIES),
                c.measure.in_(wanted),
                c.day.between(first, last),
            )
        )
        .group_by(c.measure, c.bucket)
    )
    out = {m: [0] * len(BUCKETS) for m in wanted}
    for r in rows:
        if 0 <= r.bucket < len(BUCKETS):
            out[r.measure][r.bucket] += int(r.n)
    return out


def series(found: dict[date, dict[str, int]], first: date, last: date) -> list[tuple[date, dict[str, int]]]:
    """Every day of the window, oldest first, with its counts (empty for a day without any)."""
    return [
        (first + timedelta(days=i), found.get(first + timedelta(days=i), {})) for i in range((last - first).days + 1)
    ]
