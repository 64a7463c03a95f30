"""In-memory, per-tenant read model for the two hot queries: ResolveLocation and FindCandidates.

Built from the tenant's org database with plain projections. A query costs one small read (the
generation, bumped around every org write by any org process) plus dictionary look-ups, whatever the
size of the tenant, and it never waits for a build, except a tenant's very first (cold start):

- A write in this process (handlers.create/update/delete) is applied to the tenant's index at once, as
  a change of the one entity it wrote (note_write): its own next query sees it. A published index is
  never mutated: a change makes a new TenantIndex that shares everything it did not touch, and
  replaces the current one in one assignment, so a query reading the old one is never disturbed.
- When the generation moved on (another org process wrote, a seed or a bulk load bumped it) or the
  index is older than MAX_AGE_SECONDS, queries keep being answered from the current index while a new
  one is built beside it in a background thread; it replaces the current one when it is complete.
  Writes of this process made while it was being built are applied to it again before that (the
  build may have read the database before them), so a rebuild never loses a write this process made.

Measured at scale (bench/org_candidates.py: 7 tenants, 1,089 grids, 12,000 people) the generation read is
most of a query's time, so it is made with plain pymongo, and trusted for GENERATION_CHECK_SECONDS per
tenant (services/common/recent.py): every issue placed and every call blown asks org, and at tens a
second the read was one database command each. A write in this process forgets the tenant's generation
at once (handlers.bump_generation), so the rebuild it sets off starts on the next query; a write by
another org process is seen within that half second plus one build. The build is bound by the store
reading whole documents (people most of all), so its reads run side by side.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram
from shapely import STRtree
from shapely.geometry import Point, shape

from services.common import context
from services.common.context import require_tenant
from services.common.recent import RecentRead
from services.org import documents as d
from services.org import domain

log = logging.getLogger(__name__)
MAX_AGE_SECONDS = 300.0  # a safety net: rebuild at least this often even if no generation change was seen
GENERATION_CHECK_SECONDS = 0.5  # how long a generation read is trusted, per tenant and process
RETRY_SECONDS = 1.0  # after a failed build beside, queries go on with the current index this long before the next try
# Reads of one build run side by side: FerretDB decodes every document whole, whatever the projection.
_READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="org-index-read")
BUILD_SECONDS = Histogram(
    "hongling_org_index_build_seconds",
    "Builds of a tenant's in-memory index: cold (inside a tenant's first query) or beside (in the background).",
    ["tenant", "mode"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)

# What an entity contributes to a helper. Owners are the helpers themselves (person, team, active unit);
# entries hang a term on their owner: entity -> (helper kind, owner field, term field, helper attribute).
OWNERS: dict[str, tuple[str, str]] = {"person": ("person", "skills"), "volunteer_team": ("team", "services")}
OWNERS["member_unit"] = ("unit", "resources")
ENTRIES: dict[str, tuple[str, str, str, str]] = {
    "talent_entry": ("person", "person_id", "skill", "skills"),
    "team_service_entry": ("team", "team_id", "service", "services"),
    "unit_resource_entry": ("unit", "unit_id", "resource", "resources"),
}
INDEXED = frozenset({"community", "grid", "compound", *OWNERS, *ENTRIES})  # entities the index reads
NO_SOURCE: tuple[int, str, str, Any] = (0, "", "", None)


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
    # Every record the index holds, by (entity, id): (version, owner id, term, value) for entries, (version,
    # "", "", None) for the rest; a change older than what is held is ignored. Only the tenant's writers
    # touch it, under its lock (IndexCache), and each index built has its own.
    sources: dict[tuple[str, str], tuple[int, str, str, Any]] = field(default_factory=dict)

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


# ---------------------------------------------------------------- records -> index parts (build and change alike


def _grid(g: Mapping[str, Any]) -> domain.GridShape:
    return domain.GridShape(g["_id"], g["community_id"], shape(json.loads(g["boundary_geojson"])))


def _person(p: Mapping[str, Any], skills: dict[str, int]) -> domain.Helper:
    vol = p.get("volunteer") or {}
    return domain.Helper(
        kind="person",
        id=p["_id"],
        name_zh=p["name_zh"],
        community_id=p["community_id"],
        grids=frozenset([p["grid_id"]]) if p.get("grid_id") else frozenset(),
        skills=skills,
        services={s: 1 for s in vol.get("services") or []},
        availability=_slots(vol.get("availability")),
    )


def _team(t: Mapping[str, Any], services: dict[str, int]) -> domain.Helper:
    return domain.Helper(
        kind="team",
        id=t["_id"],
        name_zh=t["name_zh"],
        community_id=t["community_id"],
        services=services,
        availability=_slots(t.get("availability")),
    )


def _unit(u: Mapping[str, Any], resources: dict[str, tuple[str, float, str]]) -> domain.Helper:
    return domain.Helper(
        kind="unit",
        id=u["_id"],
        name_zh=u["name_zh"],
        community_id=u["community_id"],
        grids=frozenset(u.get("serves_grid_ids") or []),
        resources=resources,
    )


HELPER_OF: dict[str, Callable[[Mapping[str, Any], Any], domain.Helper]] = {
    "person": _person,
    "volunteer_team": _team,
    "member_unit": _unit,
}


def _entry_value(entity: str, e: Mapping[str, Any]) -> Any:
    if entity == "unit_resource_entry":
        return (e["category"], float(e.get("quantity") or 0), e.get("unit_of_measure", ""))
    return int(e["level"] if entity == "talent_entry" else e["capacity"])


def _live(entity: str, doc: Mapping[str, Any]) -> bool:
    """Whether the record belongs in the index (what the build's filter in READS selects)."""
    if doc.get("deleted"):
        return False
    return doc.get("status") == "active" if entity == "member_unit" else True


def _resource_terms(h: domain.Helper) -> set[str]:
    return {*h.resources, *(category for category, _q, _u in h.resources.values())}


TERMS: dict[str, Callable[[domain.Helper], Any]] = {
    "by_skill": lambda h: h.skills,
    "by_service": lambda h: h.services,
    "by_resource": _resource_terms,
}


LIVE = {"deleted": {"$ne": True}}
# What a build reads: (entity, document class, filter, projection); fetched together.
READS: dict[str, tuple[type[Any], dict[str, Any], dict[str, int]]] = {
    "community": (d.CommunityDoc, LIVE, {"name_zh": 1, "version": 1}),
    "grid": (d.GridDoc, LIVE, {"community_id": 1, "name_zh": 1, "boundary_geojson": 1, "version": 1}),
    "compound": (d.CompoundDoc, LIVE, {"name_zh": 1, "grid_id": 1, "community_id": 1, "version": 1}),
    "person": (d.PersonDoc, LIVE, {"name_zh": 1, "community_id": 1, "grid_id": 1, "volunteer": 1, "version": 1}),
    "talent_entry": (d.TalentEntryDoc, LIVE, {"person_id": 1, "skill": 1, "level": 1, "version": 1}),
    "volunteer_team": (d.VolunteerTeamDoc, LIVE, {"name_zh": 1, "community_id": 1, "availability": 1, "version": 1}),
    "team_service_entry": (d.TeamServiceEntryDoc, LIVE, {"team_id": 1, "service": 1, "capacity": 1, "version": 1}),
    "member_unit": (
        d.MemberUnitDoc,
        {**LIVE, "status": "active"},
        {"name_zh": 1, "community_id": 1, "serves_grid_ids": 1, "version": 1},
    ),
    "unit_resource_entry": (
        d.UnitResourceEntryDoc,
        LIVE,
        {"unit_id": 1, "resource": 1, "category": 1, "quantity": 1, "unit_of_measure": 1, "version": 1},
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
    # The generation is read before any data: a write during the build moves it on, and a query then
    # starts the next build.
    idx = assemble(generation(), _read_all())
    log.info(
        "org index built: %d grids, %d helpers in %.0f ms",
        len(idx.grids),
        len(idx.helpers),
        (time.perf_counter() - started) * 1000,
    )
    return idx


def assemble(gen: int, rows: Mapping[str, list[dict[str, Any]]]) -> TenantIndex:
    """The index of these records (READS' rows by entity), as read at generation `gen`."""
    idx = TenantIndex(generation=gen, built_at=time.monotonic())
    for entity, docs in rows.items():
        if entity not in ENTRIES:
            for r in docs:
                idx.sources[(entity, r["_id"])] = (int(r.get("version") or 0), "", "", None)
    for c in rows["community"]:
        idx.community_names[c["_id"]] = c["name_zh"]
    for g in rows["grid"]:
        idx.grids.append(_grid(g))
        idx.grid_names[g["_id"]] = g["name_zh"]
    idx.tree = STRtree([g.geometry for g in idx.grids]) if idx.grids else None
    for c in rows["compound"]:
        idx.compounds[c["_id"]] = (c["name_zh"], c["grid_id"], c["community_id"])

    terms: dict[str, dict[str, dict[str, Any]]] = {entity: defaultdict(dict) for entity in ENTRIES}
    for entity, (_kind, owner_field, term_field, _attr) in ENTRIES.items():
        for e in rows[entity]:
            value = _entry_value(entity, e)
            idx.sources[(entity, e["_id"])] = (int(e.get("version") or 0), e[owner_field], e[term_field], value)
            terms[entity][e[owner_field]][e[term_field]] = value
    owner_entries = {"person": "talent_entry", "volunteer_team": "team_service_entry"}
    owner_entries["member_unit"] = "unit_resource_entry"
    for entity, (kind, _attr) in OWNERS.items():
        for r in rows[entity]:
            idx.helpers[(kind, r["_id"])] = HELPER_OF[entity](r, terms[owner_entries[entity]].get(r["_id"], {}))
    for h in idx.helpers.values():
        for s in h.skills:
            idx.by_skill[s].append(h)
        for s in h.services:
            idx.by_service[s].append(h)
        for name, (category, _q, _u) in h.resources.items():
            idx.by_resource[name].append(h)
            idx.by_resource[category].append(h)
    return idx


# ---------------------------------------------------------------- a change of one record


@dataclass(frozen=True)
class Change:
    """One record as a write of this process stored it (raw fields, with _id, version and deleted)."""

    entity: str
    doc: Mapping[str, Any]


def _put_helper(idx: TenantIndex, key: tuple[str, str], helper: domain.Helper | None) -> None:
    """Put `helper` in the (already copied) index in place of the one under `key`, or remove it."""
    old = idx.helpers.get(key)
    if old is None and helper is None:
        return
    idx.helpers = dict(idx.helpers)
    if helper is None:
        del idx.helpers[key]
    else:
        idx.helpers[key] = helper
    for attr, terms_of in TERMS.items():
        before = set(terms_of(old)) if old is not None else set()
        after = set(terms_of(helper)) if helper is not None else set()
        if not (before or after):
            continue
        table = dict(getattr(idx, attr))
        for t in before | after:
            kept = [h for h in table.get(t, ()) if h is not old]
            if t in after:
                kept.append(helper)  # after is empty when helper is None
            if kept:
                table[t] = kept
            else:
                table.pop(t, None)
        setattr(idx, attr, table)


def _apply_owner(idx: TenantIndex, ch: Change) -> None:
    kind, attr = OWNERS[ch.entity]
    key = (kind, ch.doc["_id"])
    held = idx.helpers.get(key)
    if held is not None:
        own = dict(getattr(held, attr))
    elif int(ch.doc.get("version") or 0) <= 1:
        own = {}  # just made here: nothing hangs on it yet
    else:  # not held (a unit back after it had left; made by another process): its entries as the index holds them
        entry = next(e for e, spec in ENTRIES.items() if spec[0] == kind)
        own = {t: v for (e, _i), (_ver, owner, t, v) in idx.sources.items() if e == entry and owner == key[1]}
    _put_helper(idx, key, HELPER_OF[ch.entity](ch.doc, own) if _live(ch.entity, ch.doc) else None)


def _apply_entry(idx: TenantIndex, ch: Change, version: int) -> None:
    kind, owner_field, term_field, attr = ENTRIES[ch.entity]
    key = (ch.entity, ch.doc["_id"])
    _v, old_owner, old_term, _old = idx.sources.get(key, NO_SOURCE)
    live = _live(ch.entity, ch.doc)
    new_owner, new_term = (ch.doc[owner_field], ch.doc[term_field]) if live else ("", "")
    value = _entry_value(ch.entity, ch.doc) if live else None
    idx.sources[key] = (version, new_owner, new_term, value)
    for owner in {old_owner, new_owner} - {""}:
        held = idx.helpers.get((kind, owner))
        if held is None:
            continue  # not in the index (a unit that left; a person another process made: the rebuild brings it)
        own = dict(getattr(held, attr))
        if owner == old_owner:
            own.pop(old_term, None)
        if owner == new_owner:
            own[new_term] = value
        changed: dict[str, Any] = {attr: own}
        _put_helper(idx, (kind, owner), dataclasses.replace(held, **changed))


def _apply_place(idx: TenantIndex, ch: Change) -> None:
    doc, ident = ch.doc, ch.doc["_id"]
    if ch.entity == "community":
        idx.community_names = {**idx.community_names, ident: doc["name_zh"]}
    elif ch.entity == "compound":
        idx.compounds = {**idx.compounds, ident: (doc["name_zh"], doc["grid_id"], doc["community_id"])}
    else:
        idx.grids = [g for g in idx.grids if g.grid_id != ident] + [_grid(doc)]
        idx.grid_names = {**idx.grid_names, ident: doc["name_zh"]}
        idx.tree = STRtree([g.geometry for g in idx.grids])


def apply(idx: TenantIndex, ch: Change) -> TenantIndex:
    """The index with this record as written: a new TenantIndex sharing every part the change leaves alone
    (idx itself is not changed, except its `sources`). A change no newer than the record held is ignored."""
    key = (ch.entity, ch.doc["_id"])
    version = int(ch.doc.get("version") or 0)
    if ch.entity not in INDEXED or idx.sources.get(key, NO_SOURCE)[0] >= version:
        return idx
    new = copy.copy(idx)
    if ch.entity in ENTRIES:
        _apply_entry(new, ch, version)
        return new
    if ch.entity in OWNERS:
        _apply_owner(new, ch)
    else:
        _apply_place(new, ch)
    new.sources[key] = (version, "", "", None)
    return new


# ---------------------------------------------------------------- the cache


@dataclass
class _Slot:
    """One tenant's index, and the build under way beside it."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # held briefly: a change, a swap, a build's start
    cold: threading.Lock = field(default_factory=threading.Lock)  # one cold build at a time; the others wait for it
    index: TenantIndex | None = None
    building: bool = False
    journal: list[Change] = field(default_factory=list)  # this process's writes since the build under way began
    retry_at: float = 0.0


class IndexCache:
    """One TenantIndex per tenant. Queries read the current one; it is replaced, never changed in place."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _slots
        self._slots: dict[str, _Slot] = {}

    def _slot(self, tenant: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(tenant, _Slot())

    def current(self) -> TenantIndex:
        tenant = require_tenant()
        slot = self._slot(tenant)
        idx = slot.index
        if idx is None:
            return self._cold(tenant, slot)
        gen = RECENT_GENERATION.get()
        if idx.generation != gen or time.monotonic() - idx.built_at >= MAX_AGE_SECONDS:
            self._build_beside(tenant, slot)
        return idx

    def note_write(self, tenant: str, entity: str, doc: Mapping[str, Any]) -> None:
        """A write of this process, done: into the tenant's current index now, and into the one being built."""
        if entity not in INDEXED:
            return
        slot = self._slot(tenant)
        ch = Change(entity, doc)
        with slot.lock:
            if slot.building:
                slot.journal.append(ch)
            if slot.index is not None:
                slot.index = apply(slot.index, ch)

    def _begin(self, slot: _Slot) -> bool:
        """Claims the tenant's next build (the database is read after this, so the journal starts here)."""
        with slot.lock:
            if slot.building:
                return False
            slot.building, slot.journal = True, []
            return True

    def _install(self, slot: _Slot, idx: TenantIndex) -> TenantIndex:
        with slot.lock:
            for ch in slot.journal:
                idx = apply(idx, ch)
            if slot.journal:
                # Replayed writes may race with what the build read; the next query builds once more after them.
                idx.generation = -1
            slot.index, slot.building, slot.journal = idx, False, []
            return idx

    def _abandon(self, slot: _Slot) -> None:
        with slot.lock:
            slot.building, slot.journal = False, []
            slot.retry_at = time.monotonic() + RETRY_SECONDS

    def _cold(self, tenant: str, slot: _Slot) -> TenantIndex:
        with slot.cold:
            if slot.index is not None:
                return slot.index
            self._begin(slot)  # nothing else builds without an index: this claim always succeeds
            started = time.perf_counter()
            try:
                idx = build()
            except BaseException:
                self._abandon(slot)
                raise
            BUILD_SECONDS.labels(tenant, "cold").observe(time.perf_counter() - started)
            return self._install(slot, idx)

    def _build_beside(self, tenant: str, slot: _Slot) -> None:
        if time.monotonic() < slot.retry_at or not self._begin(slot):
            return
        threading.Thread(
            target=self._build_in_background, args=(tenant, slot), name=f"org-index-{tenant}", daemon=True
        ).start()

    def _build_in_background(self, tenant: str, slot: _Slot) -> None:
        started = time.perf_counter()
        try:
            with context.bound(tenant=tenant):
                idx = build()
        except Exception:
            log.exception("org index of %s not rebuilt: queries keep the current one and try again", tenant)
            self._abandon(slot)
            return
        BUILD_SECONDS.labels(tenant, "beside").observe(time.perf_counter() - started)
        self._install(slot, idx)


CACHE = IndexCache()  # the process's indexes: the servicer reads them, handlers.note_write feeds them
