"""`python -m services.org.seed demo --tenant taiqian` against the running org service (real gRPC,
FerretDB and Kafka): 嘉德社区's alliance, points resolving to their grids, events, and a second run
that changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hongling.org.v1 import org_pb2 as pb
from hongling.org.v1 import org_pb2_grpc as pb_grpc

from services.common.events import topic_for
from services.org import seed
from services.org.servicer import ENTITIES
from tests.conftest import REPO, System, call_metadata, read_topic, wait_for

TENANT = "taiqian"


def run_demo(tenant: str = TENANT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.org.seed", "demo", "--tenant", tenant],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def seeded(system: System) -> str:
    done = run_demo()
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def org(system: System) -> pb_grpc.OrgServiceStub:
    return pb_grpc.OrgServiceStub(system.channel("org"))


def list_all(
    method: Callable[..., Any],
    md: list[tuple[str, str]] | Callable[[], list[tuple[str, str]]],
    **filters: str,
) -> list[Any]:
    """Every page; `md` may mint the metadata for each page (a long listing outlasts one principal's minute)."""
    items: list[Any] = []
    token = ""
    while True:
        meta = md() if callable(md) else md
        resp = method(pb.ListRequest(page_size=500, page_token=token, filter=filters), metadata=meta, timeout=10)
        items.extend(resp.items)
        token = resp.next_page_token
        if not token:
            return items


def versions(
    org: pb_grpc.OrgServiceStub, md: list[tuple[str, str]] | Callable[[], list[tuple[str, str]]]
) -> dict[tuple[str, str], int]:
    """The version of every record the demo data set of the tenant holds."""
    wanted = {(kind, r["id"]) for kind, records in seed.demo_dataset(TENANT).records.items() for r in records}
    found = {}
    for kind, (_msg, plural, _resp) in ENTITIES.items():
        for item in list_all(getattr(org, f"List{plural}"), md):
            if (kind, item.id) in wanted:
                found[(kind, item.id)] = item.meta.version
    assert set(found) == wanted, f"missing: {sorted(wanted - set(found))[:10]}"
    return found


def test_progress_is_reported_per_tenant_and_kind(seeded: str) -> None:
    assert f"[seed 1/1] {TENANT} (泰前街道): loading" in seeded
    assert f"[seed 1/1] {TENANT} · member units:" in seeded
    assert "[seed] demo done: 1 tenant(s)" in seeded
    assert "NOT LOADED" not in seeded and "WARNING" not in seeded  # a fresh database takes every record


def test_jiade_alliance_has_7_property_companies_and_5_owners_committees(
    seeded: str, system: System, org: pb_grpc.OrgServiceStub
) -> None:
    md = call_metadata(system.settings, TENANT)
    community = org.GetCommunity(pb.GetRequest(id="jiade"), metadata=md, timeout=10)
    assert community.name_zh == "嘉德社区"
    companies = list_all(org.ListMemberUnits, md, community_id="jiade", kind="property_company")
    committees = list_all(org.ListMemberUnits, md, community_id="jiade", kind="owners_committee")
    assert len(companies) == 7
    assert len(committees) == 5
    assert all(u.status == "active" and "*" in u.contact_phone for u in (*companies, *committees))
    assert all(u.name_zh.endswith("业主委员会") and len(u.serves_compound_ids) == 1 for u in committees)


def test_compound_points_resolve_to_their_grid(seeded: str, system: System, org: pb_grpc.OrgServiceStub) -> None:
    md = call_metadata(system.settings, TENANT)
    compounds = list_all(org.ListCompounds, md, community_id="jiade")
    assert len(compounds) == 8
    for c in compounds:
        where = org.ResolveLocation(pb.ResolveLocationRequest(point=c.point), metadata=md, timeout=10)
        assert (where.grid_id, where.community_id) == (c.grid_id, "jiade"), c.id
        assert where.community_name_zh == "嘉德社区"
        assert where.grid_name_zh.startswith("嘉德社区第")


def test_party_tree_and_team_leaders(seeded: str, system: System, org: pb_grpc.OrgServiceStub) -> None:
    md = call_metadata(system.settings, TENANT)
    orgs = {o.id: o for o in list_all(org.ListPartyOrganizations, md, community_id="jiade")}
    assert orgs["jiade-pc"].kind == "community_committee"
    assert orgs["jiade-g01-pb"].parent_id == "jiade-pc"
    assert orgs["jiade-g01-c1-pb"].parent_id == "jiade-g01-pb"
    teams = list_all(org.ListVolunteerTeams, md, community_id="jiade")
    assert teams and all(t.leader_id for t in teams)


def test_demo_writes_emit_events(seeded: str, system: System) -> None:
    def registered() -> bool:
        records = read_topic(system.settings.kafka_bootstrap, topic_for("org"))
        subjects = {dict(r.headers).get("ce_subject") for r in records if r.key == f"{TENANT}:jiade-p001".encode()}
        return b"person/jiade-p001" in subjects

    wait_for(registered, timeout=30, interval=1)


def test_a_second_run_changes_nothing(seeded: str, system: System, org: pb_grpc.OrgServiceStub) -> None:
    def md() -> list[tuple[str, str]]:  # a principal per page: on a busy machine the listing outlasts one
        return call_metadata(system.settings, TENANT)

    before = versions(org, md)
    again = run_demo()
    assert again.returncode == 0, again.stdout + again.stderr
    assert " 0 created," in again.stdout and "team leaders set" not in again.stdout, again.stdout
    assert versions(org, md) == before


def test_records_clashing_with_existing_data_are_left_out_with_a_warning(
    system: System, org: pb_grpc.OrgServiceStub
) -> None:
    """`make up` runs the demo on every start: data already there under the demo's names must not stop it."""
    tenant = "shengzhuang"
    md = call_metadata(system.settings, tenant)
    org.CreateCommunity(pb.Community(id="shila-by-hand", name_zh="石腊社区"), metadata=md, timeout=10)
    done = run_demo(tenant)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{tenant} · communities: 3 (2 created, 0 existing, 1 NOT LOADED)" in done.stdout, done.stdout
    assert "warning: community shila: ALREADY_EXISTS" in done.stdout
    assert "[seed] WARNING:" in done.stdout
    # The other communities are complete.
    assert len(list_all(org.ListGrids, md, community_id="dongyanglou")) == 3
    assert not list_all(org.ListGrids, md, community_id="shila")
