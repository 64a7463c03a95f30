"""The org service over real gRPC, FerretDB and Kafka: rules, integrity, versions, personal data, events."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from hongling.events.v1 import org_events_pb2 as oev
from hongling.org.v1 import org_pb2 as pb
from hongling.org.v1 import org_pb2_grpc
from pymongo import MongoClient

from services.common.events import CloudEvent, topic_for
from tests.conftest import System, call_metadata, read_topic, unique, wait_for

TENANT = "taiqian"


def rect(lon: float, lat: float, size: float = 0.01) -> str:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


class Org:
    def __init__(self, system: System, tenant: str = TENANT, role: str = "subdistrict_admin") -> None:
        self.stub = org_pb2_grpc.OrgServiceStub(system.channel("org"))
        self.md = call_metadata(system.settings, tenant, role=role)

    def __getattr__(self, method: str) -> Callable[[Any], Any]:
        rpc = getattr(self.stub, method)
        return lambda req: rpc(req, metadata=self.md, timeout=10)

    def fails(self, method: str, req: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as exc:
            getattr(self, method)(req)
        return exc.value


@pytest.fixture(scope="module")
def org(system: System) -> Org:
    return Org(system)


@pytest.fixture(scope="module")
def place(org: Org) -> dict[str, Any]:
    """A community with two grids (side by side) and a compound in the first."""
    u = unique("c")
    community = org.CreateCommunity(pb.Community(id=u, name_zh=f"测试社区{u}", address="泰前街道"))
    g1 = org.CreateGrid(pb.Grid(id=f"{u}-g1", community_id=u, name_zh="一网格", boundary_geojson=rect(117.10, 36.30)))
    g2 = org.CreateGrid(pb.Grid(id=f"{u}-g2", community_id=u, name_zh="二网格", boundary_geojson=rect(117.11, 36.30)))
    compound = org.CreateCompound(
        pb.Compound(
            id=f"{u}-x1",
            grid_id=g1.id,
            name_zh="幸福小区",
            address="幸福路1号",
            point=pb.Point(lat=36.305, lon=117.105),
            households=320,
        )
    )
    return {"community": community, "g1": g1, "g2": g2, "compound": compound}


def test_derived_fields_and_versions(org: Org, place: dict[str, Any]) -> None:
    compound = place["compound"]
    assert compound.community_id == place["community"].id  # derived from the grid
    assert compound.version == 1 and compound.meta.version == 1
    moved = org.UpdateCompound(
        pb.Compound(
            id=compound.id,
            version=1,
            grid_id=place["g2"].id,
            name_zh="幸福小区",
            address="幸福路1号",
            point=pb.Point(lat=36.305, lon=117.115),
            households=330,
        )
    )
    assert moved.version == 2 and moved.grid_id == place["g2"].id
    err = org.fails(
        "UpdateCompound",
        pb.Compound(
            id=compound.id,
            version=1,
            grid_id=place["g1"].id,
            name_zh="x",
            address="y",
            point=pb.Point(lat=36.3, lon=117.1),
        ),
    )
    assert err.code() == grpc.StatusCode.ABORTED and "version 2, not 1" in err.details()
    # put it back for the other tests
    org.UpdateCompound(
        pb.Compound(
            id=compound.id,
            version=2,
            grid_id=place["g1"].id,
            name_zh="幸福小区",
            address="幸福路1号",
            point=pb.Point(lat=36.305, lon=117.105),
            households=320,
        )
    )


def test_references_must_exist_in_the_same_tenant(org: Org, place: dict[str, Any], system: System) -> None:
    err = org.fails("CreateGrid", pb.Grid(community_id="no-such-community", name_zh="g", boundary_geojson=rect(1, 1)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "community_id" in err.details()
    # The same community id seen from another tenant does not exist there.
    other = Org(system, tenant="daimiao")
    err = other.fails(
        "CreateGrid", pb.Grid(community_id=place["community"].id, name_zh="g", boundary_geojson=rect(117.0, 36.0))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert other.fails("GetCommunity", pb.GetRequest(id=place["community"].id)).code() == grpc.StatusCode.NOT_FOUND


def test_unit_serves_only_grids_of_its_own_community(org: Org, place: dict[str, Any]) -> None:
    u = unique("c2")
    org.CreateCommunity(pb.Community(id=u, name_zh=f"另一社区{u}"))
    foreign = org.CreateGrid(pb.Grid(id=f"{u}-g", community_id=u, name_zh="外网格", boundary_geojson=rect(117.2, 36.4)))
    err = org.fails(
        "CreateMemberUnit",
        pb.MemberUnit(
            community_id=place["community"].id,
            name_zh="跨界物业",
            kind="property_company",
            joined_on="2021-01-01",
            serves_grid_ids=[foreign.id],
        ),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "another community" in err.details()
    listed = org.ListMemberUnits(pb.ListRequest(filter={"community_id": place["community"].id})).items
    assert "跨界物业" not in {x.name_zh for x in listed}  # nothing half-written


def test_unit_name_is_unique_per_community(org: Org, place: dict[str, Any]) -> None:
    unit = pb.MemberUnit(
        community_id=place["community"].id,
        name_zh=f"泰山物业{unique()}",
        kind="property_company",
        joined_on="2020-05-01",
    )
    org.CreateMemberUnit(unit)
    err = org.fails("CreateMemberUnit", unit)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "单位名称重复" in err.details()


def test_bad_input_names_the_field(org: Org, place: dict[str, Any]) -> None:
    cases = [
        (
            "CreateGrid",
            pb.Grid(
                community_id=place["community"].id, name_zh="g", boundary_geojson='{"type":"Point","coordinates":[1,2]}'
            ),
            "Polygon",
        ),
        (
            "CreateGrid",
            pb.Grid(community_id=place["community"].id, name_zh="g", boundary_geojson="{nope"),
            "not a GeoJSON",
        ),
        (
            "CreatePerson",
            pb.Person(
                community_id=place["community"].id,
                name_zh="李四",
                roles=["party_member"],
                id_number="110105194912310021",
            ),
            "check digit",
        ),
        ("CreatePerson", pb.Person(community_id=place["community"].id, name_zh="李四", roles=[]), "roles"),
        (
            "CreatePerson",
            pb.Person(
                community_id=place["community"].id,
                name_zh="李四",
                roles=["community_worker"],
                worker=pb.CommunityWorker(post="community_staff", grade=19),
            ),
            "1..18",
        ),
        (
            "CreateMemberUnit",
            pb.MemberUnit(community_id=place["community"].id, name_zh="u", kind="bank", joined_on="2020-01-01"),
            "kind",
        ),
        ("CreateTalentEntry", pb.TalentEntry(person_id="nobody", skill="水电维修", level=3), "person_id"),
    ]
    for method, req, needle in cases:
        err = org.fails(method, req)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.details())
        assert needle in err.details(), (method, err.details())


def test_personal_data_is_encrypted_masked_and_revealed_only_to_handlers(
    org: Org, place: dict[str, Any], system: System, mongo_client: MongoClient[Any]
) -> None:
    pid = unique("p")
    person = org.CreatePerson(
        pb.Person(
            id=pid,
            community_id=place["community"].id,
            name_zh="王五",
            roles=["party_member"],
            phone="13812345678",
            id_number="11010519491231002X",
        )
    )
    assert (person.phone, person.id_number) == ("138****5678", "1101**********002X")
    stored = mongo_client[f"hl_org_{TENANT}"]["people"].find_one({"_id": pid})
    assert "13812345678" not in json.dumps(stored, default=str)
    assert "11010519491231002X" not in json.dumps(stored, default=str)
    assert org.GetPerson(pb.GetRequest(id=pid, reveal=True)).phone == "13812345678"
    public = Org(system, role="public")
    err = public.fails("GetPerson", pb.GetRequest(id=pid, reveal=True))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    department = Org(system, role="district_department")
    assert department.fails("GetPerson", pb.GetRequest(id=pid)).code() == grpc.StatusCode.PERMISSION_DENIED
    resident = Org(system, role="resident")
    err = resident.fails(
        "CreatePerson", pb.Person(community_id=place["community"].id, name_zh="x", roles=["volunteer"])
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "may not change" in err.details()
    # Sending the masked value back keeps the stored one.
    same = org.UpdatePerson(
        pb.Person(
            id=pid,
            version=1,
            community_id=place["community"].id,
            name_zh="王五",
            roles=["party_member"],
            phone=person.phone,
            id_number=person.id_number,
        )
    )
    assert org.GetPerson(pb.GetRequest(id=pid, reveal=True)).id_number == "11010519491231002X"
    assert same.version == 2
    dup = org.fails(
        "CreatePerson",
        pb.Person(
            community_id=place["community"].id, name_zh="冒名", roles=["volunteer"], id_number="11010519491231002X"
        ),
    )
    assert dup.code() == grpc.StatusCode.ALREADY_EXISTS and "身份证号重复" in dup.details()


def test_resolve_location_by_point_and_compound(org: Org, place: dict[str, Any]) -> None:
    hit = org.ResolveLocation(pb.ResolveLocationRequest(point=pb.Point(lat=36.305, lon=117.115)))
    assert (hit.grid_id, hit.community_id) == (place["g2"].id, place["community"].id)
    assert hit.grid_name_zh == "二网格"
    by_compound = org.ResolveLocation(pb.ResolveLocationRequest(compound_id=place["compound"].id))
    assert (by_compound.grid_id, by_compound.compound_name_zh) == (place["g1"].id, "幸福小区")
    err = org.fails("ResolveLocation", pb.ResolveLocationRequest(point=pb.Point(lat=10.0, lon=10.0)))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "outside every grid" in err.details()


def test_find_candidates_ranks_with_reasons(org: Org, place: dict[str, Any]) -> None:
    c, g1, g2 = place["community"].id, place["g1"].id, place["g2"].id
    skill = f"管道疏通{unique()}"
    near = org.CreatePerson(
        pb.Person(
            community_id=c,
            grid_id=g1,
            name_zh="近处的师傅",
            roles=["volunteer"],
            volunteer=pb.Volunteering(availability=[pb.Availability(weekday=6, start="08:00", end="12:00")]),
        )
    )
    far = org.CreatePerson(pb.Person(community_id=c, grid_id=g2, name_zh="远处的专家", roles=["volunteer"]))
    org.CreateTalentEntry(pb.TalentEntry(person_id=near.id, skill=skill, level=3))
    org.CreateTalentEntry(pb.TalentEntry(person_id=far.id, skill=skill, level=5))
    req = pb.FindCandidatesRequest(skills=[skill], grid_id=g1)
    req.time.FromJsonString("2026-11-28T01:30:00Z")  # Saturday 09:30 in Asia/Shanghai
    resp = org.FindCandidates(req)
    assert [x.id for x in resp.candidates] == [near.id, far.id]
    assert resp.considered == 2
    assert any("serves grid" in r for r in resp.candidates[0].reasons)
    assert any("available at that time" in r for r in resp.candidates[0].reasons)
    assert any("level 5" in r for r in resp.candidates[1].reasons)
    err = org.fails("FindCandidates", pb.FindCandidatesRequest(grid_id=g1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_changes_are_published_as_events(org: Org, place: dict[str, Any], system: System) -> None:
    unit = org.CreateMemberUnit(
        pb.MemberUnit(
            community_id=place["community"].id,
            name_zh=f"嘉德业委会{unique()}",
            kind="owners_committee",
            joined_on="2022-03-01",
            serves_grid_ids=[place["g1"].id],
        )
    )
    org.UpdateMemberUnit(
        pb.MemberUnit(
            id=unit.id,
            version=1,
            community_id=unit.community_id,
            name_zh=unit.name_zh,
            kind=unit.kind,
            joined_on="2022-03-01",
            left_on="2026-11-01",
        )
    )

    def mine() -> list[CloudEvent]:
        records = read_topic(system.settings.kafka_bootstrap, topic_for("org"))
        return [CloudEvent.from_record(r.headers, r.value) for r in records if r.key == f"{TENANT}:{unit.id}".encode()]

    events = wait_for(lambda: len(mine()) >= 4 and mine())
    types = [e.type for e in events]
    assert types.count("hongling.events.v1.UnitJoined") == 1 and types.count("hongling.events.v1.UnitLeft") == 1
    joined = next(e for e in events if e.type.endswith("UnitJoined")).decode(oev.UnitJoined)
    assert joined.serves_grid_ids == [place["g1"].id]  # type: ignore[attr-defined]
    left = org.GetMemberUnit(pb.GetRequest(id=unit.id))
    assert left.status == "left"


def test_list_entries_delete_and_lists_page(org: Org, place: dict[str, Any]) -> None:
    c = place["community"].id
    ids = [
        org.CreatePublicAffairsItem(
            pb.PublicAffairsItem(community_id=c, mode="assist", title_zh=f"协办事项{i}{unique()}")
        ).id
        for i in range(5)
    ]
    seen: list[str] = []
    token = ""
    while True:
        page = org.ListPublicAffairsItems(pb.ListRequest(page_size=2, page_token=token, filter={"community_id": c}))
        seen += [x.id for x in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    org.DeletePublicAffairsItem(pb.DeleteRequest(id=ids[0], version=1))
    assert org.fails("GetPublicAffairsItem", pb.GetRequest(id=ids[0])).code() == grpc.StatusCode.NOT_FOUND
    err = org.fails("DeletePublicAffairsItem", pb.DeleteRequest(id=ids[1], version=7))
    assert err.code() == grpc.StatusCode.ABORTED


def test_concurrent_updates_of_one_version_let_exactly_one_through(org: Org, place: dict[str, Any]) -> None:
    import threading

    c = org.CreateCommunity(pb.Community(id=unique("race"), name_zh=f"竞争社区{unique()}"))
    outcomes: list[str] = []

    def writer(i: int) -> None:
        try:
            org.UpdateCommunity(pb.Community(id=c.id, version=1, name_zh=f"{c.name_zh}-{i}"))
            outcomes.append("ok")
        except grpc.RpcError as exc:
            outcomes.append(exc.code().name)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) - {"ok"} == {"ABORTED"}
    assert org.GetCommunity(pb.GetRequest(id=c.id)).version == 2


def test_the_writers_next_query_sees_each_write(org: Org, place: dict[str, Any]) -> None:
    """Org applies its own writes to its in-memory index at once: no call made after a write misses it."""
    c, g1, g2 = place["community"].id, place["g1"].id, place["g2"].id
    skill, service = f"疏通{unique()}", f"陪诊{unique()}"

    def found(**need: Any) -> dict[str, list[str]]:
        resp = org.FindCandidates(pb.FindCandidatesRequest(grid_id=g1, **need))
        return {x.id: list(x.reasons) for x in resp.candidates}

    person = org.CreatePerson(pb.Person(community_id=c, grid_id=g1, name_zh="新登记的志愿者", roles=["volunteer"]))
    entry = org.CreateTalentEntry(pb.TalentEntry(person_id=person.id, skill=skill, level=2))
    assert list(found(skills=[skill])) == [person.id]
    assert any(f"serves grid {g1}" in r for r in found(skills=[skill])[person.id])

    entry = org.UpdateTalentEntry(pb.TalentEntry(id=entry.id, version=1, person_id=person.id, skill=skill, level=5))
    assert any("at level 5" in r for r in found(skills=[skill])[person.id])
    moved = org.UpdatePerson(
        pb.Person(
            id=person.id,
            version=person.meta.version,
            community_id=c,
            grid_id=g2,
            name_zh="搬了家的志愿者",
            roles=["volunteer"],
            volunteer=pb.Volunteering(services=[service]),
        )
    )
    assert moved.grid_id == g2
    reasons = found(skills=[skill])[person.id]
    assert not any("serves grid" in r for r in reasons) and any("same community" in r for r in reasons)
    assert list(found(services=[service])) == [person.id]
    org.DeleteTalentEntry(pb.DeleteRequest(id=entry.id, version=entry.meta.version))
    assert found(skills=[skill]) == {}

    unit = org.CreateMemberUnit(
        pb.MemberUnit(
            community_id=c,
            name_zh=f"物业{unique()}",
            kind="property_company",
            joined_on="2024-01-01",
            serves_grid_ids=[g1],
        )
    )
    resource = f"抽水泵{unique()}"
    org.CreateUnitResourceEntry(
        pb.UnitResourceEntry(unit_id=unit.id, resource=resource, category="equipment", quantity=2)
    )
    assert list(found(resources=[resource])) == [unit.id]
    org.UpdateMemberUnit(
        pb.MemberUnit(
            id=unit.id,
            version=unit.meta.version,
            community_id=c,
            name_zh=unit.name_zh,
            kind=unit.kind,
            joined_on="2024-01-01",
            left_on="2026-01-01",
            serves_grid_ids=[g1],
        )
    )
    assert found(resources=[resource]) == {}

    lon, lat = 118.0 + random.uniform(0, 0.9), 37.0 + random.uniform(0, 0.9)  # a place no other test draws
    grid = org.CreateGrid(pb.Grid(community_id=c, name_zh=f"新网格{unique()}", boundary_geojson=rect(lon, lat, 0.001)))
    hit = org.ResolveLocation(pb.ResolveLocationRequest(point=pb.Point(lat=lat + 0.0005, lon=lon + 0.0005)))
    assert hit.grid_id == grid.id
    compound = org.CreateCompound(
        pb.Compound(
            grid_id=grid.id,
            name_zh=f"新小区{unique()}",
            address="新路1号",
            point=pb.Point(lat=lat + 0.0005, lon=lon + 0.0005),
            households=10,
        )
    )
    by_compound = org.ResolveLocation(pb.ResolveLocationRequest(compound_id=compound.id))
    assert (by_compound.grid_id, by_compound.community_id) == (grid.id, c)


def test_a_write_by_another_org_process_shows_once_org_sees_the_generation_move(
    org: Org, place: dict[str, Any], mongo_client: MongoClient[Any]
) -> None:
    """Another org process's write reaches this one through the generation (read at most every half second)
    and an index built beside the current one: it shows a moment later, without a call waiting for it."""
    c, g1 = place["community"].id, place["g1"].id
    skill = f"修锁{unique()}"
    person = org.CreatePerson(pb.Person(community_id=c, grid_id=g1, name_zh="别处登记的师傅", roles=["volunteer"]))
    request = pb.FindCandidatesRequest(skills=[skill], grid_id=g1)
    assert list(org.FindCandidates(request).candidates) == []
    # What another org process's CreateTalentEntry leaves in the database: the record, and the generation moved on.
    db = mongo_client[f"hl_org_{TENANT}"]
    now = datetime.now(UTC)
    db["talent_entries"].insert_one(
        {
            "_id": unique("te"),
            "person_id": person.id,
            "community_id": c,
            "skill": skill,
            "level": 3,
            "note": "",
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "deleted": False,
            "outbox": [],
        }
    )
    db["tenant_state"].update_one({"_id": "state"}, {"$inc": {"generation": 1}}, upsert=True)
    listed = wait_for(lambda: [x.id for x in org.FindCandidates(request).candidates])
    assert listed == [person.id]
