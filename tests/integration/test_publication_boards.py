"""The quarterly boards' publication fed by evaluation's real BoardsFrozen (no mocks): a community and its member
units made through the gateway (org announces them), verified work of a long-closed quarter on Kafka, evaluation
freezes the quarter; publication's consumer (group publication-boards) stores the set, the `boards` builder makes
its content with each entrant's explanation and the formula; a late event makes evaluation's correction, stored
as the next set, and the content says what changed. The drafts through the lifecycle's REST need the lifecycle
(branch pub-lifecycle) merged."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev
from kafka import KafkaProducer
from sqlalchemy import Column, MetaData, Table, Text, select

from services.common import context, mongo, readside
from services.common.errors import InvalidArgument
from services.common.events import CloudEvent, record_key, topic_for
from services.common.principal import Principal
from services.common.readside import PLACEHOLDER
from services.publication.boards import builder
from services.publication.boards.documents import BoardSetDoc
from services.publication.content import canonical
from tests.conftest import System, unique, wait_for

T = "shanggao"
QUARTER = "2025Q3"
AT = datetime(2025, 8, 10, 2, 0, tzinfo=UTC)  # in 2025Q3: long closed, its grace long past
SERVICE = Principal(sub="service:publication", role="service", tenants=("*",))
RED, LATE = "红叶物业", "青松物业"


@dataclass(frozen=True)
class Quarter:
    community_id: str
    community_zh: str
    units: dict[str, str]  # name -> unit id
    version: int  # the stored set with all three tasks (1, or a correction if evaluation froze mid-stream)


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


@pytest.fixture(scope="module")
def publication_db(system: System) -> Iterator[None]:
    """This process reads publication's stored sets (hl_publication_<tenant>): storage opened as publication,
    whatever module opened it before as another name (one client per process), and closed after."""
    if mongo.service_name() not in ("", "publication"):
        mongo.close()
    mongo.init("publication", system.settings.mongo_uri)
    yield
    mongo.close()


def org_post(system: System, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/org/{path}",
        json=body,
        headers=system.auth("subdistrict_admin", "*"),
        timeout=15,
    )
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


def verified(producer: KafkaProducer, community_id: str, unit_id: str, at: datetime, sent: datetime) -> None:
    task = unique("t")
    stamp = Timestamp()
    stamp.FromDatetime(at)
    msg = eev.TaskVerified(
        verification_id=unique("v"),
        tenant=T,
        community_id=community_id,
        task_id=task,
        attempt=1,
        crew_ids=[f"member_unit:{unit_id}"],
        verified_at=stamp,
    )
    ce = CloudEvent(
        id=uuid.uuid4().hex,
        source=f"/hongling/evaluation/{T}",
        type=msg.DESCRIPTOR.full_name,
        time=sent,
        subject=task,
        tenant=T,
        data=msg.SerializeToString(),
    )
    producer.send(topic_for("evaluation"), key=record_key(T, task), value=ce.data, headers=ce.headers()).get(timeout=15)


def stored(community_id: str, version: int) -> BoardSetDoc | None:
    with context.bound(tenant=T):
        return BoardSetDoc.objects(id=f"{QUARTER}:{community_id}:v{version}").first()


def newest(community_id: str) -> BoardSetDoc | None:
    with context.bound(tenant=T):
        return BoardSetDoc.objects(quarter=QUARTER, community_id=community_id).order_by("-version").first()


def workloads(doc: BoardSetDoc | None) -> list[int]:
    return [int(e["workload"]) for e in (doc.boards or {}).get("red_property", [])] if doc is not None else []


def build(community_id: str) -> dict[str, Any]:
    with context.bound(principal=SERVICE):
        return dict(builder.build(T, community_id, QUARTER))


@pytest.fixture(scope="module")
def frozen(system: System, producer: KafkaProducer, publication_db: None) -> Quarter:
    """A community whose 红叶物业 did three verified tasks in 2025Q3, frozen by evaluation and stored here."""
    name_zh = f"先锋社区{unique()}"
    community = org_post(system, "communities", {"id": unique("c-pub"), "name_zh": name_zh})
    units = {}
    for name in (RED, LATE):
        unit = org_post(
            system,
            "member-units",
            {
                "community_id": community["id"],
                "name_zh": name,
                "kind": "property_company",
                "contact_name": "李经理",
                "contact_phone": f"139{random.randint(10_000_000, 99_999_999)}",
                "joined_on": "2025-03-01",
            },
        )
        units[name] = str(unit["id"])
    # Evaluation hears who the units are (org's UnitJoined) before their facts: wait until it names them.
    subjects = Table("eval_m_subjects", MetaData(schema=PLACEHOLDER), Column("subject", Text, primary_key=True))
    wanted = [f"member_unit:{u}" for u in units.values()]

    def known() -> bool:
        with readside.connect(T) as conn:
            return len(conn.execute(select(subjects.c.subject).where(subjects.c.subject.in_(wanted))).all()) == 2

    wait_for(known, timeout=180)
    for i in range(3):
        verified(producer, community["id"], units[RED], AT + timedelta(days=i), AT)
    # Evaluation may freeze before it counted all three (then corrects): wait for the set that has them.
    full = wait_for(lambda: (doc := newest(community["id"])) is not None and workloads(doc) == [3] and doc, timeout=240)
    return Quarter(community["id"], name_zh, units, int(full.version))


def test_a_frozen_quarter_is_stored_and_its_boards_content_has_four_boards_with_explanations(frozen: Quarter) -> None:
    first = stored(frozen.community_id, 1)
    assert first is not None and first.corrects_version == 0 and first.formula == "2026-1"
    doc = stored(frozen.community_id, frozen.version)
    assert doc is not None and doc.corrects_version == frozen.version - 1
    assert [e["subject_id"] for e in doc.boards["red_property"]] == [frozen.units[RED]]

    content = build(frozen.community_id)
    assert (content["kind"], content["scope"], content["period"]) == ("boards", frozen.community_id, QUARTER)
    assert content["scope_name_zh"] == frozen.community_zh and content["period_zh"] == "2025年第三季度"
    assert content["title_zh"] == f"{frozen.community_zh}2025年第三季度先锋榜"
    assert content["as_of"] == "2025-10-01T00:00:00+08:00"
    assert content["evaluation_version"] == frozen.version
    assert content["evaluation_changes"] == doc.changes and (frozen.version > 1 or doc.changes == "")
    boards = content["boards"]
    assert [b["kind"] for b in boards] == ["red_property", "social_org", "party_member", "volunteer"]
    assert [b["title_zh"] for b in boards] == ["红色物业光荣榜", "社会组织人气榜", "党员先锋榜", "志愿者明星榜"]
    red = boards[0]["entries"]
    assert len(red) == 1 and red[0]["rank"] == 1 and red[0]["workload"] == 3 and red[0]["subject_kind"] == "member_unit"
    assert red[0]["name"] in (RED, frozen.units[RED])  # the name it agreed to show (names.public_names)
    parts = {p["key"]: p for p in red[0]["explanation"]}
    assert "resolution" in parts
    assert all(p["name_zh"] and p["weight"] >= 0 for p in parts.values())
    assert abs(sum(p["points"] for p in parts.values()) - red[0]["score"]) < 0.05
    formula = content["formula"]
    assert formula["version"] == "2026-1" and "收缩" in formula["text_zh"] and "shrunk" in formula["text_en"]
    assert formula["k"] > 0 and set(formula["weights"]) == set(parts)
    assert canonical(build(frozen.community_id)) == canonical(content)  # deterministic


def test_only_a_frozen_quarter_of_a_community_of_the_tenant_is_a_boards_publication(frozen: Quarter) -> None:
    with context.bound(tenant=T, principal=SERVICE):
        builder.check(frozen.community_id, QUARTER)
        builder.check("*", QUARTER)
        for scope, period, field in (
            (frozen.community_id, "2025-09", "period"),
            (frozen.community_id, "2099Q1", "period"),  # not frozen (not even begun)
            ("no-such-community", QUARTER, "scope"),
        ):
            with pytest.raises(InvalidArgument) as err:
                builder.check(scope, period)
            assert err.value.field == field


def test_a_correction_from_evaluation_is_stored_as_the_next_set_and_says_what_changed(
    frozen: Quarter, producer: KafkaProducer
) -> None:
    verified(producer, frozen.community_id, frozen.units[LATE], AT, datetime.now(UTC))
    second = wait_for(
        lambda: (doc := newest(frozen.community_id)) is not None and workloads(doc) == [3, 1] and doc, timeout=240
    )
    assert second.version > frozen.version and second.corrects_version == second.version - 1
    assert LATE in second.changes
    content = build(frozen.community_id)
    assert content["evaluation_version"] == second.version and "新上榜" in content["evaluation_changes"]
    red = content["boards"][0]["entries"]
    assert [e["workload"] for e in red] == [3, 1] and all(e["explanation"] for e in red)
    kept = stored(frozen.community_id, frozen.version)
    assert kept is not None and workloads(kept) == [3]  # the earlier set is kept as it was


def test_each_frozen_set_becomes_a_draft_publication(system: System, frozen: Quarter) -> None:
    """Needs the lifecycle (pub-lifecycle): create_draft(tenant, "boards", scope, quarter, by="evaluation")."""
    base = f"{system.gateway}/api/v1/tenants/{T}/publications"
    staff = system.auth("subdistrict_admin", T)

    def drafts() -> list[dict[str, Any]]:
        resp = requests.get(
            base, params={"kind": "boards", "scope": frozen.community_id, "period": QUARTER}, headers=staff, timeout=15
        )
        assert resp.status_code == 200, resp.text
        return list(resp.json()["publications"])

    found = wait_for(drafts, timeout=240)
    assert {p["kind"] for p in found} == {"boards"} and all(p["created_by"] == "evaluation" for p in found)

    def with_correction() -> dict[str, Any] | None:
        for p in drafts():
            one = requests.get(f"{base}/{p['id']}", headers=staff, timeout=15).json()
            if one.get("content", {}).get("evaluation_version", 0) > frozen.version:
                return dict(one)
        return None

    newest = wait_for(with_correction, timeout=240)
    assert newest["status"] == "draft" and newest["content"]["boards"][0]["kind"] == "red_property"
