"""Audit log at 100,000 entries: verification of the whole chain, appends, and the admin reads.

Writes a scratch database (hl_audit_bench), so it never touches the deployment's log:
the 100,000-entry chain is built with the real hashing and inserted in batches, with a signed
checkpoint every 1,000 entries exactly as AuditLog.append would leave them; then AuditLog.verify()
reads and checks it end to end. Appends are measured with AuditLog.append itself: latency one at a
time, and the rate with several writers racing for the next seq; and an export's pass over the whole
log (gateway/routes_audit.py). The API's pages come from the SQL read model: bench/audit_read_scale.py.

    HONGLING_BENCH_AUDIT_ENTRIES=100000 make bench
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from pymongo import MongoClient

from services.common.audit import GENESIS, AuditLog, Entry, checkpoint_message, entry_hash, signing_key
from services.common.settings import get_settings

N = int(os.environ.get("HONGLING_BENCH_AUDIT_ENTRIES", "100000"))
APPENDS = 500
WRITERS = 4
APPENDS_PER_WRITER = 250
DB = "hl_audit_bench"


def main() -> int:
    settings = get_settings()
    client: MongoClient[Any] = MongoClient(settings.mongo_uri, tz_aware=True)
    client.drop_database(DB)
    key = signing_key(settings.audit_signing_key)
    audit = AuditLog(client[DB], key, checkpoint_every=1000)
    started = time.perf_counter()
    prev = GENESIS
    batch: list[dict[str, Any]] = []
    for seq in range(1, N + 1):
        draft = Entry(
            seq=seq,
            time="2026-11-27T03:00:00.000000Z",
            actor=f"dept-{seq % 17}",
            role="district_department",
            action="department.call",
            outcome="allowed" if seq % 5 else "refused",
            tenant="taiqian",
            target="org.ListMemberUnits",
            request_id=f"r{seq}",
            detail={"fields": ["name_zh", "kind"]},
            prev_hash=prev,
        )
        entry = replace(draft, hash=entry_hash(draft))
        prev = entry.hash
        doc = entry.body() | {"hash": entry.hash, "_id": seq}
        doc.pop("seq")
        batch.append(doc)
        if seq % 1000 == 0:
            audit.entries.insert_many(batch)
            batch.clear()
            audit.checkpoints.insert_one(
                {"_id": seq, "hash": entry.hash, "signature": key.sign(checkpoint_message(seq, entry.hash))}
            )
        if seq % 20000 == 0:
            print(f"[bench] written {seq}/{N} entries", flush=True)
    if batch:
        audit.entries.insert_many(batch)
    audit.meta.insert_one({"_id": "head", "seq": N, "hash": prev})  # as the last append leaves it
    print(f"[bench] chain of {N} entries written in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    result = audit.verify()
    elapsed = time.perf_counter() - started
    print(
        f"audit verify            n={result.checked} checkpoints={result.checkpoints} ok={result.ok} "
        f"time={elapsed:.2f} s ({result.checked / elapsed:,.0f} entries/s)"
    )
    if not result.ok:
        print(result.summary(), file=sys.stderr)
        return 1

    latencies = []
    started = time.perf_counter()
    for i in range(APPENDS):
        t0 = time.perf_counter()
        audit.append(actor="bench", role="ops", action="bench.append", outcome="done", target=str(i))
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    print(
        f"audit append            n={APPENDS} p50={latencies[len(latencies) // 2]:.1f} ms "
        f"p99={latencies[int(len(latencies) * 0.99) - 1]:.1f} ms mean={statistics.fmean(latencies):.1f} ms "
        f"rate={APPENDS / elapsed:,.0f}/s (one writer, log at {N:,}+ entries)"
    )

    def writer(w: int) -> None:
        for i in range(APPENDS_PER_WRITER):
            audit.append(actor=f"bench-{w}", role="ops", action="bench.append", outcome="done", target=str(i))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    total = WRITERS * APPENDS_PER_WRITER
    print(f"audit append racing     writers={WRITERS} n={total} time={elapsed:.2f} s rate={total / elapsed:,.0f}/s")

    t0 = time.perf_counter()
    exported = sum(1 for _ in audit.iter_entries())
    elapsed = time.perf_counter() - t0
    print(f"audit export pass       n={exported} time={elapsed:.2f} s ({exported / elapsed:,.0f} entries/s)")
    final = audit.verify()
    print(f"audit verify after      {final.summary()}")
    client.drop_database(DB)
    return 0 if final.ok else 1


if __name__ == "__main__":
    sys.exit(main())
