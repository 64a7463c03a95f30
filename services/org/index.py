"""In-memory, per-tenant read model for the two hot queries: ResolveLocation and FindCandidates.

Built from the tenant's org database with plain projections and kept until the tenant's generation
(bumped around every org write, by any org process) moves on. A query costs one small read (the
generation) plus dictionary look-ups, whatever the size of the tenant.

Measured at scale (bench/org_candidates.py: 7 tenants, 1,089 grids, 12,000 people) the generation read is
most of a query's time, so it is made with plain pymongo, and trusted for GENERATION_CHECK_SECONDS per
tenant (services/common/recent.py): every issue placed and every call blown asks org, and at tens a
second the read was one database command each. A write in this process forgets the tenant's generation
at once (handlers.bump_generation), so its own next query sees the write; a write by another org process
shows within that half second. The build is bound by the store reading whole documents (people most of
all), so its reads run side by side.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shapely import STRtree
from shapely.geometry import Point, shape

from services.common.context import require_tenant
from services.common.recent import RecentRead
from services.org import documents as d
from services.org import domain

log = logging.getLogger(__name__)
MAX_AGE_SECONDS = 300.0  # a safety net: rebuild at least this often even if no generation change was seen
GENERATION_CHECK_SECONDS = 0.5  # how long a generation read is trusted, per tenant and process
# Reads of one build run side by side: FerretDB decodes every document whole, whatever the projection.
_READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="org-index-read")


@dataclass
class TenantIndex:
    generation: int
    built_at: float
    grids: list[domain.GridShape] = field(default_factory=list)
    grid_names: dict[str, str] = field(default_factory=dict)
    community_names: dict[str, str] = field(default_factory=dict)
    compounds: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # id -> (name, grid, community)
    tree: STRtree | None = None
    helpers: dict[tuple[str, str], domain.Helper] = field(default_factory=dict)
    by_skill: dict[str, list[domain.Helper]] = field(default_factory=lambda: defaultdict(list))
    by_service: dict[str, list[domain.Helper]] = field(default_factory=lambda: defaultdict(list))
    by_resource: dict[str, list[domain.Helper]] = field(default_factory=lambda: defaultdict(list))

    def locate(self, lat: float, lon: float) -> domain.GridShape | None:
        if self.tree is None:
            return None
        p = Point(lon, lat)
        hits = [self.grids[i] for i in self.tree.query(p)]
        return domain.locate(sorted(hits, key=lambda g: g.grid_id), lat, lon)

    def matching(self, need: domain.Need) -> list[domain.Helper]:
        seen: dict[int, domain.Helper] = {}
        for s in need.skills:
            for h in self.by_skill.get(s, ()):
                seen[id(h)] = h
        for s in need.services:
            for h in self.by_service.get(s, ()):
                seen[id(h)] = h
        for r in need.resources:
            for h in self.by_resource.get(r, ()):
                seen[id(h)] = h
        return list(seen.values())


def _coll(doc_cls: type[Any]) -> Any:
    return doc_cls._get_collection()


def _slots(raw: list[dict[str, Any]] | None) -> tuple[tuple[int, str, str], ...]:
    return tuple((int(s["weekday"]), str(s["start"]), str(s["end"])) for s in raw or [])


def generation() -> int:
    """handlers.generation() (the same document and rule) without mongoengine: it runs on every query."""
    state = _coll(d.TenantStateDoc).find_one({"_id": "state"}, {"generation": 1})
    return int(state.get("generation") or 0) if state else 0


RECENT_GENERATION = RecentRead(generation, GENERATION_CHECK_SECONDS)


def forget_generation(tenant: str) -> None:
    """This process changed the tenant: its next query reads the generation again."""
    RECENT_GENERATION.forget(tenant)


LIVE = {"deleted": {"$ne": True}}
# What a build reads: (document class, filter, projection); fetched together, used in this order.
READS: dict[str, tuple[type[Any], dict[str, Any], dict[str, int]]] = {
    "communities": (d.CommunityDoc, LIVE, {"name_zh": 1}),
    "grids": (d.GridDoc, LIVE, {"community_id": 1, "name_zh": 1, "boundary_geojson": 1}),
    "compounds": (d.CompoundDoc, LIVE, {"name_zh": 1, "grid_id": 1, "community_id": 1}),
    "people": (d.PersonDoc, LIVE, {"name_zh": 1, "community_id": 1, "grid_id": 1, "volunteer": 1}),
    "talents": (d.TalentEntryDoc, LIVE, {"person_id": 1, "skill": 1, "level": 1}),
    "teams": (d.VolunteerTeamDoc, LIVE, {"name_zh": 1, "community_id": 1, "availability": 1}),
    "team_services": (d.TeamServiceEntryDoc, LIVE, {"team_id": 1, "service": 1, "capacity": 1}),
    "units": (d.MemberUnitDoc, {**LIVE, "status": "active"}, {"name_zh": 1, "community_id": 1, "serves_grid_ids": 1}),
    "resources": (
        d.UnitResourceEntryDoc,
        LIVE,
        {"unit_id": 1, "resource": 1, "category": 1, "quantity": 1, "unit_of_measure": 1},
    ),
}


def _fetch(coll: Any, flt: dict[str, Any], projection: dict[str, int]) -> list[dict[str, Any]]:
    return list(coll.find(flt, projection))


def _read_all() -> dict[str, list[dict[str, Any]]]:
    """Every read of a build, side by side (collections are resolved here, in the caller's tenant)."""
    futures = {name: _READERS.submit(_fetch, _coll(cls), flt, proj) for name, (cls, flt, proj) in READS.items()}
    return {name: fut.result() for name, fut in futures.items()}


def build() -> TenantIndex:
    started = time.perf_counter()
    # The generation is read before any data: a write during the build moves it on, and the next query rebuilds.
    idx = TenantIndex(generation=generation(), built_at=time.monotonic())
    rows = _read_all()
    for c in rows["communities"]:
        idx.community_names[c["_id"]] = c["name_zh"]
    for g in rows["grids"]:
        idx.grids.append(domain.GridShape(g["_id"], g["community_id"], shape(json.loads(g["boundary_geojson"]))))
        idx.grid_names[g["_id"]] = g["name_zh"]
    idx.tree = STRtree([g.geometry for g in idx.grids]) if idx.grids else None
    for c in rows["compounds"]:
        idx.compounds[c["_id"]] = (c["name_zh"], c["grid_id"], c["community_id"])

    people = {}
    for p in rows["people"]:
        vol = p.get("volunteer") or {}
        h = domain.Helper(
            kind="person",
            id=p["_id"],
            name_zh=p["name_zh"],
            community_id=p["community_id"],
            grids=frozenset([p["grid_id"]]) if p.get("grid_id") else frozenset(),
            services={s: 1 for s in vol.get("services") or []},
            availability=_slots(vol.get("availability")),
        )
        people[h.id] = h
    for t in rows["talents"]:
        person = people.get(t["person_id"])
        if person is not None:
            person.skills[t["skill"]] = int(t["level"])
    teams = {}
    for t in rows["teams"]:
        teams[t["_id"]] = domain.Helper(
            kind="team",
            id=t["_id"],
            name_zh=t["name_zh"],
            community_id=t["community_id"],
            availability=_slots(t.get("availability")),
        )
    for e in rows["team_services"]:
        team = teams.get(e["team_id"])
        if team is not None:
            team.services[e["service"]] = int(e["capacity"])
    units = {}
    for u in rows["units"]:
        units[u["_id"]] = domain.Helper(
            kind="unit",
            id=u["_id"],
            name_zh=u["name_zh"],
            community_id=u["community_id"],
            grids=frozenset(u.get("serves_grid_ids") or []),
        )
    for r in rows["resources"]:
        unit = units.get(r["unit_id"])
        if unit is not None:
            unit.resources[r["resource"]] = (r["category"], float(r.get("quantity") or 0), r.get("unit_of_measure", ""))

    for h in (*people.values(), *teams.values(), *units.values()):
        idx.helpers[(h.kind, h.id)] = h
        for s in h.skills:
            idx.by_skill[s].append(h)
        for s in h.services:
            idx.by_service[s].append(h)
        for name, (category, _q, _u) in h.resources.items():
            idx.by_resource[name].append(h)
            idx.by_resource[category].append(h)
    log.info(
        "org index built: %d grids, %d helpers in %.0f ms",
        len(idx.grids),
        len(idx.helpers),
        (time.perf_counter() - started) * 1000,
    )
    return idx


class IndexCache:
    """One TenantIndex per tenant, rebuilt when the tenant's generation moved on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _locks
        self._locks: dict[str, threading.Lock] = {}  # one per tenant: a rebuild holds up only its own tenant
        self._by_tenant: dict[str, TenantIndex] = {}

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(tenant, threading.Lock())

    def current(self) -> TenantIndex:
        tenant = require_tenant()
        gen = RECENT_GENERATION.get()
        idx = self._by_tenant.get(tenant)
        if idx is not None and idx.generation == gen and time.monotonic() - idx.built_at < MAX_AGE_SECONDS:
            return idx
        with self._tenant_lock(tenant):
            idx = self._by_tenant.get(tenant)
            if idx is None or idx.generation != gen or time.monotonic() - idx.built_at >= MAX_AGE_SECONDS:
                idx = build()
                self._by_tenant[tenant] = idx
            return idx
