"""In-memory, per-tenant read model for the two hot queries: ResolveLocation and FindCandidates.

Built from the tenant's org database with plain projections and kept until the tenant's generation
(bumped around every org write, by any org process) moves on. A query costs one small read (the
generation) plus dictionary look-ups, whatever the size of the tenant.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from shapely import STRtree
from shapely.geometry import Point, shape

from services.common.context import require_tenant
from services.org import documents as d
from services.org import domain, handlers

log = logging.getLogger(__name__)
MAX_AGE_SECONDS = 300.0  # a safety net: rebuild at least this often even if no generation change was seen


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


def build() -> TenantIndex:
    started = time.perf_counter()
    idx = TenantIndex(generation=handlers.generation(), built_at=time.monotonic())
    live = {"deleted": {"$ne": True}}
    for c in _coll(d.CommunityDoc).find(live, {"name_zh": 1}):
        idx.community_names[c["_id"]] = c["name_zh"]
    for g in _coll(d.GridDoc).find(live, {"community_id": 1, "name_zh": 1, "boundary_geojson": 1}):
        idx.grids.append(domain.GridShape(g["_id"], g["community_id"], shape(json.loads(g["boundary_geojson"]))))
        idx.grid_names[g["_id"]] = g["name_zh"]
    idx.tree = STRtree([g.geometry for g in idx.grids]) if idx.grids else None
    for c in _coll(d.CompoundDoc).find(live, {"name_zh": 1, "grid_id": 1, "community_id": 1}):
        idx.compounds[c["_id"]] = (c["name_zh"], c["grid_id"], c["community_id"])

    people = {}
    for p in _coll(d.PersonDoc).find(live, {"name_zh": 1, "community_id": 1, "grid_id": 1, "volunteer": 1}):
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
    for t in _coll(d.TalentEntryDoc).find(live, {"person_id": 1, "skill": 1, "level": 1}):
        person = people.get(t["person_id"])
        if person is not None:
            person.skills[t["skill"]] = int(t["level"])
    teams = {}
    for t in _coll(d.VolunteerTeamDoc).find(live, {"name_zh": 1, "community_id": 1, "availability": 1}):
        teams[t["_id"]] = domain.Helper(
            kind="team",
            id=t["_id"],
            name_zh=t["name_zh"],
            community_id=t["community_id"],
            availability=_slots(t.get("availability")),
        )
    for e in _coll(d.TeamServiceEntryDoc).find(live, {"team_id": 1, "service": 1, "capacity": 1}):
        team = teams.get(e["team_id"])
        if team is not None:
            team.services[e["service"]] = int(e["capacity"])
    units = {}
    unit_fields = {"name_zh": 1, "community_id": 1, "serves_grid_ids": 1}
    for u in _coll(d.MemberUnitDoc).find({**live, "status": "active"}, unit_fields):
        units[u["_id"]] = domain.Helper(
            kind="unit",
            id=u["_id"],
            name_zh=u["name_zh"],
            community_id=u["community_id"],
            grids=frozenset(u.get("serves_grid_ids") or []),
        )
    fields = {"unit_id": 1, "resource": 1, "category": 1, "quantity": 1, "unit_of_measure": 1}
    for r in _coll(d.UnitResourceEntryDoc).find(live, fields):
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
        self._lock = threading.Lock()
        self._by_tenant: dict[str, TenantIndex] = {}

    def current(self) -> TenantIndex:
        tenant = require_tenant()
        gen = handlers.generation()
        idx = self._by_tenant.get(tenant)
        if idx is not None and idx.generation == gen and time.monotonic() - idx.built_at < MAX_AGE_SECONDS:
            return idx
        with self._lock:
            idx = self._by_tenant.get(tenant)
            if idx is None or idx.generation != gen or time.monotonic() - idx.built_at >= MAX_AGE_SECONDS:
                idx = build()
                self._by_tenant[tenant] = idx
            return idx
