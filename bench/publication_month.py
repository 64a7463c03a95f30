"""Generating the monthly public board (一月一公示): one community's month with 1,000 handled issues in every
channel, all communities of the 7 tenants for one month, and regeneration byte for byte.

Runs against a running stack (deploy/local/test.sh bench starts a private one).

The load: N issues (default 1,000) reported through the gateway into one community of the bench grid, across
the intake categories, each with a resident's name, phone and address planted in it; each task verified
(TaskVerified on Kafka, as evaluation's relay sends it) and rated by its reporter with the follow-up code, so
every issue is handled, verified and rated through the real services and projected onto the read side.

Then, as the publication service builds a month (services/publication/monthly/build.py, in this process
against the stack's read side and services; the month is the current one, anchored at its start, since the
lifecycle publishes only closed months and this stack's data is all from today):
- one community: seconds to build its content, and to render every channel of it (goal < 5 s for both);
- the whole district: every community of the 7 tenants (the one above and, in each tenant, 3 more with a month of
  60 issues each, loaded the same way), built and rendered, seconds in all (goal < 10 min);
- regeneration: the month built and rendered again; every channel's bytes compared with the first (goal: the
  same), and the planted personal data searched for in every output (goal: absent).

    HONGLING_TEST_PORT_BASE=29500 bash deploy/local/test.sh bench bench/publication_month.py
    HONGLING_BENCH_PUBLICATION_ISSUES=200 (a smaller month), HONGLING_BENCH_PUBLICATION_COMMUNITIES=3 and
    HONGLING_BENCH_PUBLICATION_DISTRICT_ISSUES=60 (the district's other communities)
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import requests
from benchlib import HALF, admin_headers
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev
from kafka import KafkaProducer

from services.common import context
from services.common.events import CloudEvent, record_key, topic_for
from services.common.principal import Principal
from services.common.settings import get_settings
from services.common.tenants import tenant_slugs
from services.org.seed import Rect
from services.publication import channels
from services.publication.anchor import anchor_at
from services.publication.content import canonical
from services.publication.lifecycle.domain import changes
from services.publication.monthly import build

T = TypeVar("T")
settings = get_settings()
GATEWAY = f"http://127.0.0.1:{settings.gateway_port}"
TENANT = "daimiao"
ISSUES = int(os.environ.get("HONGLING_BENCH_PUBLICATION_ISSUES", "1000"))
# The district: this many more communities in every tenant, each with a month of this many issues.
DISTRICT_COMMUNITIES = int(os.environ.get("HONGLING_BENCH_PUBLICATION_COMMUNITIES", "3"))
DISTRICT_ISSUES = int(os.environ.get("HONGLING_BENCH_PUBLICATION_DISTRICT_ISSUES", "60"))
SHANGHAI = ZoneInfo("Asia/Shanghai")
CATEGORIES = ("property_repair", "sanitation", "parking", "greening", "water_supply", "noise", "road_facility")
PLANTED = ("钱秀兰", "13905381234", "幸福路88号3单元502室", "370902198001011234")
POINT = (36.55, 117.55)  # a bench community of its own, away from the other benches' grids
http = admin_headers(settings)
producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)


def until(what: str, fn: Callable[[], T | None], timeout: float = 600.0, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(interval)
    raise SystemExit(f"[bench] gave up waiting for {what} after {timeout:.0f} s")


@dataclass(frozen=True)
class Where:
    tenant: str
    cid: str
    lat: float
    lon: float


def community(tenant: str = TENANT, point: tuple[float, float] = POINT) -> Where:
    """A community with one grid wide enough that the month's reports are not duplicates of each other."""
    lat, lon = point
    base = f"{GATEWAY}/api/v1/tenants/{tenant}/org"
    made = requests.post(f"{base}/communities", json={"name_zh": f"公示基准社区{uuid.uuid4().hex[:6]}"}, headers=http)
    made.raise_for_status()
    cid = str(made.json()["id"])
    grid = {
        "community_id": cid,
        "name_zh": "公示基准网格",
        "boundary_geojson": Rect(lon - HALF, lat - HALF, lon + HALF, lat + HALF).geojson(),
    }
    requests.post(f"{base}/grids", json=grid, headers=http).raise_for_status()
    return Where(tenant, cid, lat, lon)


def verified(where: Where, issue_id: str, task_id: str) -> None:
    tenant, cid = where.tenant, where.cid
    at = datetime.now(UTC)
    stamp = Timestamp()
    stamp.FromDatetime(at)
    vid = f"v-{uuid.uuid4().hex[:12]}"
    msg = eev.TaskVerified(
        verification_id=vid,
        tenant=tenant,
        community_id=cid,
        task_id=task_id,
        issue_id=issue_id,
        call_type="service",
        method="review",
        attempt=1,
        crew_ids=[f"member_unit:bench-unit-{hash(task_id) % 7}"],
        by="bench-convenor",
        verified_at=stamp,
        votes_pass=3,
    )
    ce = CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/evaluation/{tenant}",
        type=msg.DESCRIPTOR.full_name,
        time=at,
        subject=f"tasks/{task_id}/verification",
        tenant=tenant,
        data=msg.SerializeToString(),
    )
    producer.send(topic_for("evaluation"), key=record_key(tenant, vid), value=ce.data, headers=ce.headers())


MAIN: list[str] = []  # the one community's id
TASKS: set[str] = set()  # the month's tasks (a report near an open one of its category joins it: a duplicate)


def one_issue(where: Where, n: int, rng: random.Random) -> None:
    lat, lon = where.lat, where.lon
    body = {
        "title": f"楼道问题{n}，联系{PLANTED[0]}",
        "description": f"住在{PLANTED[2]}，电话{PLANTED[1]}，身份证{PLANTED[3]}",
        "channel": "resident_report",
        "category": CATEGORIES[n % len(CATEGORIES)],
        "location": {
            "lat": round(lat + rng.uniform(-0.9, 0.9) * HALF, 6),
            "lon": round(lon + rng.uniform(-0.9, 0.9) * HALF, 6),
            "address": PLANTED[2],
        },
        "contact": {"name": PLANTED[0], "phone": PLANTED[1]},
    }
    answer = requests.post(f"{GATEWAY}/api/v1/tenants/{where.tenant}/issues", json=body, timeout=30)
    answer.raise_for_status()
    issue, code = answer.json()["issue"], answer.json()["follow_code"]
    url = f"{GATEWAY}/api/v1/tenants/{where.tenant}/issues/{issue['id']}"
    task = until("a task", lambda: requests.get(url, headers=http, timeout=30).json().get("task"))
    if where.cid == MAIN[0]:
        TASKS.add(str(task["id"]))
    verified(where, issue["id"], str(task["id"]))
    follow = {"X-Follow-Code": code}
    until("the verdict", lambda: requests.get(f"{url}/follow", headers=follow, timeout=30).json().get("verified"))
    rated = requests.post(f"{url}/rating", json={"score": 3 + n % 3, "comment": "满意"}, headers=follow, timeout=30)
    if rated.status_code not in (200, 201):
        raise SystemExit(f"[bench] rating refused: {rated.status_code} {rated.text}")


def load(places: list[Where], per_place: int) -> None:
    rng = random.Random(19)
    total = len(places) * per_place
    done = 0
    lock = threading.Lock()
    started = time.monotonic()

    def work(n: int) -> None:
        nonlocal done
        one_issue(places[n // per_place], n % per_place, random.Random(rng.random() + n))
        with lock:
            done += 1
            if done % 100 == 0 or done == total:
                print(f"[bench] load: {done}/{total} issues handled ({time.monotonic() - started:.0f} s)", flush=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(total)))
    producer.flush()


def bound(tenant: str) -> Any:
    return context.bound(tenant=tenant, principal=Principal(sub="bench-publication", role="service", tenants=(tenant,)))


def month() -> tuple[str, datetime]:
    now = datetime.now(SHANGHAI)
    return now.strftime("%Y-%m"), now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def generate(tenant: str, cid: str) -> tuple[float, float, dict[str, bytes], int]:
    """Build the community's month and render every channel: (build s, render s, outputs, issues)."""
    period, start = month()
    with bound(tenant):
        t0 = time.perf_counter()
        c = build.month_content(tenant, cid, period, anchor_at(start))
        t1 = time.perf_counter()
    edition = channels.Edition(f"monthly:{cid}:{period}:v1", 1, draft=False)
    out = {"content": canonical(c).encode()}
    for ch in channels.CHANNELS["monthly"]:
        out[ch] = channels.render(c, ch, edition).data
    return t1 - t0, time.perf_counter() - t1, out, len(c["issues"])


def text_of(name: str, data: bytes) -> str:
    """What a reader of the output sees: the PDF's text as pdfium extracts it, the others as UTF-8."""
    if not name.startswith("pdf"):
        return data.decode("utf-8")
    import pypdfium2

    pdf = pypdfium2.PdfDocument(io.BytesIO(data))
    return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))


def main() -> int:
    print(f"[bench] publication: one community's month with {ISSUES} handled issues, then the district", flush=True)
    main_place = community()
    cid = main_place.cid
    MAIN.append(cid)
    load([main_place], ISSUES)
    until(
        "every task's issue on the read side, verified and rated",
        lambda: (lambda n: n if n >= len(TASKS) else None)(
            sum(1 for i in _issues(cid) if i["rating"] is not None and i["verification"] == "passed")
        ),
        interval=2.0,
    )
    print(f"[bench] {ISSUES} issues, {len(TASKS)} tasks ({ISSUES - len(TASKS)} reports joined an open issue nearby)")
    settle_started = time.monotonic()
    previous = generate(TENANT, cid)[2]["content"]
    while time.monotonic() - settle_started < 300:
        latest = generate(TENANT, cid)[2]["content"]
        if latest == previous:
            break
        moved = changes(json.loads(previous), json.loads(latest))
        print(f"[bench] the month still moves ({len(moved)} changes, e.g. {moved[:2]}); again", flush=True)
        previous = latest
    built, rendered, first, n = generate(TENANT, cid)
    print(
        f"one community ({n} issues): build {built:.2f} s, every channel {rendered:.2f} s "
        f"(total {built + rendered:.2f} s; goal < 5 s)"
    )
    for name, data in first.items():
        print(f"  {name:10} {len(data):>10,} bytes")
    again = generate(TENANT, cid)
    same = [name for name in first if again[2][name] == first[name]]
    print(
        f"regenerated: build {again[0]:.2f} s, channels {again[1]:.2f} s; byte-identical: "
        f"{len(same)}/{len(first)} outputs {'(all)' if len(same) == len(first) else ''}"
    )
    if again[2]["content"] != first["content"]:
        print(f"  content changes: {changes(json.loads(first['content']), json.loads(again[2]['content']))[:5]}")
    leaks = [(name, s) for name, data in first.items() for s in PLANTED if s in text_of(name, data)]
    print(f"planted personal data found in the outputs: {len(leaks)} {leaks[:3] if leaks else ''}")

    places = [
        community(tenant, (POINT[0] + 0.1 * (k + 1), POINT[1] + 0.1 * t))
        for t, tenant in enumerate(tenant_slugs())
        for k in range(DISTRICT_COMMUNITIES)
    ]
    print(f"[bench] the district: {len(places)} more communities, {DISTRICT_ISSUES} issues each", flush=True)
    load(places, DISTRICT_ISSUES)
    total_started = time.perf_counter()
    count = 0
    slowest = 0.0
    for tenant in tenant_slugs():
        with bound(tenant):
            ids = build.communities()
        for one in ids:
            b, r, _, _ = generate(tenant, one)
            slowest = max(slowest, b + r)
            count += 1
        print(f"  {tenant}: {len(ids)} communities", flush=True)
    took = time.perf_counter() - total_started
    print(
        f"whole district: {count} communities of {len(tenant_slugs())} tenants, every channel: {took:.1f} s "
        f"(slowest community {slowest:.2f} s; goal < 600 s)"
    )
    producer.close()
    return 0 if len(same) == len(first) and not leaks else 1


def _issues(cid: str) -> list[dict[str, Any]]:
    period, start = month()
    with bound(TENANT):
        return list(build.month_content(TENANT, cid, period, anchor_at(start))["issues"])  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
