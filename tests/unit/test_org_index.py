"""Org's in-memory index: a change applied to it equals a build from the records after the change, and the
cache answers from the index it has while a new one is built beside it, keeping this process's writes."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from services.common import context
from services.common.recent import RecentRead
from services.org import domain, index

TENANT = "taiqian"


def rect(lon: float, lat: float) -> str:
    ring = [[lon, lat], [lon + 0.01, lat], [lon + 0.01, lat + 0.01], [lon, lat + 0.01], [lon, lat]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def rec(ident: str, version: int = 1, **fields: Any) -> dict[str, Any]:
    return {"_id": ident, "version": version, **fields}


def slots() -> list[dict[str, Any]]:
    return [{"weekday": 6, "start": "08:00", "end": "12:00"}]


def records() -> dict[str, dict[str, dict[str, Any]]]:
    """Every record by entity and id, as stored (tombstones and units that left included)."""
    rs: dict[str, list[dict[str, Any]]] = {
        "community": [rec("c1", name_zh="一社区")],
        "grid": [
            rec("g1", community_id="c1", name_zh="一网格", boundary_geojson=rect(117.10, 36.30)),
            rec("g2", community_id="c1", name_zh="二网格", boundary_geojson=rect(117.11, 36.30)),
        ],
        "compound": [rec("x1", name_zh="幸福小区", grid_id="g1", community_id="c1")],
        "person": [
            rec(
                "p1",
                name_zh="甲",
                community_id="c1",
                grid_id="g1",
                volunteer={"services": ["陪护"], "availability": slots()},
            ),
            rec("p2", name_zh="乙", community_id="c1", grid_id="g1"),
        ],
        "talent_entry": [
            rec("t1", person_id="p1", skill="电工", level=3),
            rec("t2", person_id="p2", skill="电工", level=5),
        ],
        "volunteer_team": [rec("tm1", name_zh="助老队", community_id="c1", availability=slots())],
        "team_service_entry": [rec("s1", team_id="tm1", service="助老", capacity=10)],
        "member_unit": [
            rec("u1", name_zh="物业", community_id="c1", serves_grid_ids=["g1"], status="active"),
            rec("u2", name_zh="医院", community_id="c1", serves_grid_ids=["g2"], status="left"),
        ],
        "unit_resource_entry": [
            rec("r1", unit_id="u1", resource="货车", category="vehicle", quantity=2, unit_of_measure="辆"),
            rec("r2", unit_id="u2", resource="会议室", category="venue", quantity=1, unit_of_measure="间"),
        ],
    }
    return {entity: {r["_id"]: r for r in rows} for entity, rows in rs.items()}


def rows_of(recs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """What a build reads: the filters of index.READS."""
    out = {}
    for entity, by_id in recs.items():
        live = [r for r in by_id.values() if not r.get("deleted")]
        out[entity] = [r for r in live if r.get("status") == "active"] if entity == "member_unit" else live
    return out


def view(idx: index.TenantIndex) -> dict[str, Any]:
    """Everything a query reads, in a form two indexes can be compared by."""

    def helper(h: domain.Helper) -> tuple[Any, ...]:
        return (h.name_zh, h.community_id, h.grids, h.skills, h.services, h.resources, h.availability)

    def table(t: dict[str, list[domain.Helper]]) -> dict[str, set[tuple[str, str]]]:
        return {term: {(h.kind, h.id) for h in hs} for term, hs in t.items() if hs}

    held = idx.helpers
    assert all(
        held[(h.kind, h.id)] is h
        for t in (idx.by_skill, idx.by_service, idx.by_resource)
        for hs in t.values()
        for h in hs
    )
    return {
        "helpers": {k: helper(h) for k, h in held.items()},
        "by_skill": table(idx.by_skill),
        "by_service": table(idx.by_service),
        "by_resource": table(idx.by_resource),
        "grids": sorted((g.grid_id, g.community_id, g.geometry.wkt) for g in idx.grids),
        "grid_names": idx.grid_names,
        "community_names": idx.community_names,
        "compounds": idx.compounds,
        "located": [getattr(idx.locate(36.305, lon), "grid_id", None) for lon in (117.105, 117.115, 117.125)],
    }


CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("talent_entry", rec("t3", person_id="p1", skill="水管", level=4)),
    ("talent_entry", rec("t1", 2, person_id="p1", skill="电工", level=5)),
    ("talent_entry", rec("t2", 2, person_id="p2", skill="电工", level=5, deleted=True)),
    ("person", rec("p2", 2, name_zh="乙二", community_id="c1", grid_id="g2", volunteer={"services": ["助浴"]})),
    ("person", rec("p3", name_zh="丙", community_id="c1", grid_id="")),
    ("talent_entry", rec("t4", person_id="p3", skill="电工", level=2)),
    ("talent_entry", rec("t4", 2, person_id="p1", skill="焊工", level=1)),  # moved to another person and skill
    ("member_unit", rec("u1", 2, name_zh="物业", community_id="c1", serves_grid_ids=["g1"], status="left")),
    ("member_unit", rec("u2", 2, name_zh="医院", community_id="c1", serves_grid_ids=["g2", "g1"], status="active")),
    ("unit_resource_entry", rec("r1", 2, unit_id="u1", resource="货车", category="vehicle", quantity=3, deleted=True)),
    ("unit_resource_entry", rec("r3", unit_id="u2", resource="救护车", category="vehicle", quantity=1)),
    ("team_service_entry", rec("s2", team_id="tm1", service="陪诊", capacity=4)),
    ("volunteer_team", rec("tm1", 2, name_zh="助老服务队", community_id="c1", availability=[])),
    ("community", rec("c1", 2, name_zh="一社区（新）")),
    ("grid", rec("g3", community_id="c1", name_zh="三网格", boundary_geojson=rect(117.12, 36.30))),
    ("grid", rec("g1", 2, community_id="c1", name_zh="一网格（改）", boundary_geojson=rect(117.10, 36.30))),
    ("compound", rec("x2", name_zh="和平小区", grid_id="g3", community_id="c1")),
    ("talent_entry", rec("t1", 1, person_id="p1", skill="电工", level=3)),  # late news of an older version: ignored
    ("grid_station", rec("gs1", grid_id="g1")),  # not in the index
]


def test_each_change_gives_the_index_a_build_after_it_would_give() -> None:
    recs = records()
    idx = index.assemble(7, rows_of(recs))
    for entity, doc in CHANGES:
        before = view(idx)
        changed = index.apply(idx, index.Change(entity, doc))
        assert view(idx) == before, f"{entity} {doc['_id']}: the index queries were reading changed under them"
        held = recs.setdefault(entity, {}).get(doc["_id"])
        if held is None or held["version"] < doc["version"]:
            recs[entity][doc["_id"]] = doc
        assert view(changed) == view(index.assemble(7, rows_of(recs))), f"after {entity} {doc['_id']} v{doc['version']}"
        assert changed.generation == 7
        idx = changed
    assert idx.helpers[("unit", "u2")].resources == {"会议室": ("venue", 1.0, "间"), "救护车": ("vehicle", 1.0, "")}
    assert ("unit", "u1") not in idx.helpers and "货车" not in idx.by_resource
    assert idx.helpers[("person", "p1")].skills == {"电工": 5, "水管": 4, "焊工": 1}


class FakeStore:
    """Stands for the database under the cache: the generation, and builds that wait until let go."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.generation = 1
        self.recs = records()
        self.builds = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = False
        monkeypatch.setattr(index, "RECENT_GENERATION", RecentRead(lambda: self.generation, 0.0))
        monkeypatch.setattr(index, "build", self.build)

    def build(self) -> index.TenantIndex:
        gen, rows = self.generation, rows_of(self.recs)  # read when the build starts, like the real one
        self.builds += 1
        self.started.set()
        self.release.wait()
        if self.fail:
            raise RuntimeError("database unavailable")
        return index.assemble(gen, rows)


def join_builds() -> None:
    for t in threading.enumerate():
        if t.name == f"org-index-{TENANT}":
            t.join()


def skilled(cache: index.IndexCache, skill: str) -> set[str]:
    return {h.id for h in cache.current().by_skill.get(skill, ())}


def test_queries_never_wait_for_a_rebuild_and_keep_this_process_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore(monkeypatch)
    cache = index.IndexCache()
    with context.bound(tenant=TENANT):
        assert skilled(cache, "电工") == {"p1", "p2"} and store.builds == 1  # cold: built inside the first call

        # This process writes: its next query sees it, from the index it has (a build then runs beside it).
        t5 = rec("t5", person_id="p2", skill="水管", level=2)
        store.recs["talent_entry"]["t5"] = t5
        store.generation = 2
        cache.note_write(TENANT, "talent_entry", t5)
        assert skilled(cache, "水管") == {"p2"}
        join_builds()
        assert store.builds == 2 and cache.current().generation == 2

        # Another process writes: queries are answered from the index there is while one is built beside it.
        store.release.clear()
        store.recs["talent_entry"]["t7"] = rec("t7", person_id="p1", skill="油漆", level=2)
        store.generation = 3
        first = cache.current()
        store.started.wait()
        assert store.builds == 3 and cache.current() is first and skilled(cache, "油漆") == set()

        # A write of this process during that build (which read the records before it) ...
        t6 = rec("t6", person_id="p1", skill="焊工", level=3)
        store.recs["talent_entry"]["t6"] = t6
        store.generation = 4
        cache.note_write(TENANT, "talent_entry", t6)
        assert skilled(cache, "焊工") == {"p1"}
        store.release.set()
        join_builds()
        # ... is in the index that replaced it, which is checked again at once (generation -1): the next
        # build waits here, so what is asserted is that index.
        store.release.clear()
        assert cache.current() is not first
        assert (skilled(cache, "油漆"), skilled(cache, "焊工"), skilled(cache, "水管")) == ({"p1"}, {"p1"}, {"p2"})
        assert cache.current().generation == -1
        store.release.set()
        join_builds()
        assert store.builds == 4 and cache.current().generation == 4 and skilled(cache, "焊工") == {"p1"}

        # A build that fails leaves the current index in place.
        store.fail = True
        store.generation = 5
        kept = cache.current()
        join_builds()
        assert cache.current() is kept and store.builds == 5
