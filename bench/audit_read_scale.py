"""The audit log's pages from the SQL read model at 10,000 and at 1,000,000 entries of one tenant.

Rows go straight into the read model (services/common/audit_readmodel.py, table audit_entries) with COPY:
the measured tenant gets the given number, the other tenants and the district level a tenth as many
between them, interleaved in seq order as a real log would be. Their seqs start far above the log's
(SEQ_BASE), so the running projector's rows are untouched, and they are deleted at the end. Hashes are
placeholders (the reads never check them; the chain is verified on the write side). After each load,
ANALYZE; then p50/p99 of the reads the API makes (audit_readmodel.page, as gateway/routes_audit.py and
the grant trail in gateway/routes_governance.py call it):

  first page      the tenant's newest 50            deep page    50 below a seq 90 % of the way back
  action          the tenant's newest 50 of a 1 % action        actor        one account's newest 50
  grant           a grant's trail (every schema, as GET /api/v1/grants/{id})
  district        the newest 50 of every tenant (an approver's unfiltered page, UNION ALL of 8 schemas)

    HONGLING_TEST_PORT_BASE=24000 bash deploy/local/test.sh bench bench/audit_read_scale.py
    HONGLING_BENCH_AUDIT_STAGES=10000,1000000 HONGLING_BENCH_AUDIT_RUNS=200   (the defaults)

bench/read_scale.py may import `load`, `measure`, `report` and `cleanup` from here.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from benchlib import percentile
from sqlalchemy import text

from services.common import audit_readmodel, readside
from services.common.tenants import tenant_slugs

TENANT = os.environ.get("HONGLING_BENCH_AUDIT_TENANT", "xujialou")
STAGES = [int(s) for s in os.environ.get("HONGLING_BENCH_AUDIT_STAGES", "10000,1000000").split(",")]
RUNS = int(os.environ.get("HONGLING_BENCH_AUDIT_RUNS", "200"))
LIMIT = 50
SEQ_BASE = 10**12
ACTORS = 2000
GRANTS = 500
# Actions by weight (per 1,000 entries), as a district's log looks: mostly department calls and reveals.
ACTIONS = {
    "department.call": 550,
    "personal_data.reveal": 250,
    "assistance_task.hand_over": 60,
    "request.file": 40,
    "request.approve": 30,
    "account.login": 30,
    "role.change": 20,
    "grant.revoke": 10,
    "request.reject": 10,
}
RARE_ACTION = "grant.revoke"
CHUNK = 50_000
COLUMNS = "seq, at, actor, role, action, outcome, target, grant_id, request_id, detail, time, prev_hash, hash"


class Loader:
    """Appends bench rows to the read model, continuing the seq and time from the last call."""

    def __init__(self, seed: int = 15) -> None:
        self.rng = random.Random(seed)
        self.next_seq = SEQ_BASE
        self.at = datetime(2025, 1, 1, tzinfo=UTC)
        self.held: dict[str, int] = {}
        self.others = [t for t in (*tenant_slugs(), readside.DISTRICT) if t != TENANT]
        self.actions = list(ACTIONS)
        self.weights = list(ACTIONS.values())

    def row(self, seq: int, tenant: str) -> tuple[Any, ...]:
        rng = self.rng
        self.at += timedelta(milliseconds=rng.randint(1, 3000))
        action = rng.choices(self.actions, self.weights)[0]
        granted = action in ("department.call", "assistance_task.hand_over")
        grant = f"gr-{tenant or 'district'}-{rng.randrange(GRANTS):06d}" if granted else ""
        time_text = self.at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        detail = json.dumps({"door": "http", "community_id": f"c-{rng.randrange(60)}"}, separators=(",", ":"))
        return (
            seq,
            self.at,
            f"bench-actor-{rng.randrange(ACTORS):05d}",
            "district_department" if grant else "community_worker",
            action,
            rng.choice(("allowed", "allowed", "allowed", "refused", "done")),
            f"thing/{seq}",
            grant,
            f"req-{seq:x}",
            detail,
            time_text,
            f"{seq - 1:064x}",
            f"{seq:064x}",
        )

    def load(self, tenant_rows: int) -> float:
        """Bring the measured tenant to `tenant_rows` bench rows (others: a tenth as many); returns seconds."""
        started = time.perf_counter()
        wanted = tenant_rows - self.held.get(TENANT, 0)
        if wanted <= 0:
            return 0.0
        raw = readside.engine().raw_connection()
        try:
            cur = raw.cursor()
            placed = 0
            while placed < wanted:  # in chunks of CHUNK rows, so memory stays flat
                per_schema: dict[str, list[tuple[Any, ...]]] = {}
                for _ in range(CHUNK):
                    if placed >= wanted:
                        break
                    tenant = TENANT if self.rng.random() < 10 / 11 else self.rng.choice(self.others)
                    per_schema.setdefault(tenant, []).append(self.row(self.next_seq, tenant))
                    self.next_seq += 1
                    placed += tenant == TENANT
                for tenant, rows in per_schema.items():
                    schema = readside.schema_for(tenant)
                    with cur.copy(f"COPY {schema}.audit_entries ({COLUMNS}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                        for r in rows:
                            copy.write_row(r)
                    self.held[tenant] = self.held.get(tenant, 0) + len(rows)
                raw.commit()
            for _tenant, schema in readside.all_schemas():
                cur.execute(f"ANALYZE {schema}.audit_entries")
            raw.commit()
        finally:
            raw.close()
        return time.perf_counter() - started


def cleanup() -> None:
    """Delete every bench row (seq >= SEQ_BASE) from every schema."""
    with readside.engine().begin() as conn:
        for _tenant, schema in readside.all_schemas():
            conn.execute(text(f"DELETE FROM {schema}.audit_entries WHERE seq >= :base"), {"base": SEQ_BASE})


def _timed(read: Callable[[], Any], runs: int) -> tuple[float, float, int]:
    read()  # warm: the plan, the pool, the pages
    times: list[float] = []
    shown = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        entries, _ = read()
        times.append((time.perf_counter() - t0) * 1000)
        shown = len(entries)
    return percentile(times, 50), percentile(times, 99), shown


def measure(runs: int = RUNS) -> dict[str, tuple[float, float, int]]:
    """p50 and p99 (ms) and entries shown, per read, at the read model's current size."""
    table = f"{readside.schema_for(TENANT)}.audit_entries"
    with readside.engine().connect() as conn:
        bounds = text(f"SELECT min(seq), max(seq) FROM {table} WHERE seq >= :base")
        lo, hi = conn.execute(bounds, {"base": SEQ_BASE}).one()
        deep = int(hi - (hi - lo) * 0.9)
        # A typical grant: the one with the median number of entries in this tenant.
        grants = conn.execute(
            text(
                f"SELECT grant_id, count(*) AS n FROM {table} WHERE grant_id <> '' AND seq >= :base "
                "GROUP BY grant_id ORDER BY n"
            ),
            {"base": SEQ_BASE},
        ).all()
    grant = grants[len(grants) // 2].grant_id
    actor = "bench-actor-00042"
    page = audit_readmodel.page
    reads: dict[str, Callable[[], Any]] = {
        "first page": lambda: page(tenant=TENANT, limit=LIMIT),
        "deep page": lambda: page(tenant=TENANT, before=deep, limit=LIMIT),
        f"action={RARE_ACTION}": lambda: page(tenant=TENANT, action=RARE_ACTION, limit=LIMIT),
        "action deep": lambda: page(tenant=TENANT, action=RARE_ACTION, before=deep, limit=LIMIT),
        "actor": lambda: page(tenant=TENANT, actor=actor, limit=LIMIT),
        "grant trail": lambda: page(grant_id=grant, limit=LIMIT),
        "district page": lambda: page(limit=LIMIT),
    }
    return {name: _timed(read, runs) for name, read in reads.items()}


def report(rows: int, results: dict[str, tuple[float, float, int]]) -> None:
    for name, (p50, p99, shown) in results.items():
        print(f"audit read {rows:>9,} rows  {name:<22} p50={p50:7.2f} ms  p99={p99:7.2f} ms  shown={shown}")


def main() -> int:
    loader = Loader()
    cleanup()
    try:
        for stage in STAGES:
            seconds = loader.load(stage)
            total = sum(loader.held.values())
            print(
                f"audit load  {TENANT}={loader.held.get(TENANT, 0):,} rows, every schema {total:,} "
                f"(COPY + ANALYZE {seconds:.1f} s)",
                flush=True,
            )
            report(loader.held.get(TENANT, 0), measure())
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
