"""The intake service over real gRPC, with the real org service, FerretDB and Kafka: placement,
classification, duplicates, reclassification, personal data, attachments, search and per-tenant rules."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.common.v1 import location_pb2
from hongling.events.v1 import intake_events_pb2 as iev
from hongling.intake.v1 import intake_pb2 as pb
from hongling.intake.v1 import intake_pb2_grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc
from pymongo import MongoClient

from services.common.events import CloudEvent, topic_for
from services.common.grpc_server import ERROR_FIELD_KEY, TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from tests.conftest import System, read_topic, unique, wait_for

T = "xujialou"
RULES_TENANT = "shengzhuang"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
M_PER_DEG = 111_195.0


def metadata(
    system: System, tenant: str, role: str = "subdistrict_admin", sub: str = "", community: str | None = None
) -> list[tuple[str, str]]:
    """A principal of this role on the tenant; a community worker's works for `community` (required)."""
    who = Principal(sub=sub or f"itest-{role}", role=role, tenants=(tenant,), community=community)
    return [(METADATA_KEY, mint(who, system.settings.principal_secret)), (TENANT_KEY, tenant)]


class Stub:
    """Calls one service as a given role on one tenant (a community worker: of `community`)."""

    def __init__(
        self, stub: Any, system: System, tenant: str, role: str, sub: str = "", community: str | None = None
    ) -> None:
        self.stub, self.who = stub, (system, tenant, role, sub, community)
        self.principal: Principal | None = None  # calls as this principal instead, when set

    @property
    def md(self) -> list[tuple[str, str]]:
        """A principal minted for this call, as the gateway does: one minted once would expire (its minute)
        during a test that waits long on a busy machine."""
        if self.principal is not None:
            system, tenant = self.who[0], self.who[1]
            return [(METADATA_KEY, mint(self.principal, system.settings.principal_secret)), (TENANT_KEY, tenant)]
        return metadata(*self.who)

    def __getattr__(self, method: str) -> Callable[[Any], Any]:
        rpc = getattr(self.stub, method)
        return lambda req: rpc(req, metadata=self.md, timeout=15)

    def fails(self, method: str, req: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as exc:
            getattr(self, method)(req)
        return exc.value


def intake(
    system: System, tenant: str = T, role: str = "subdistrict_admin", sub: str = "", community: str | None = None
) -> Stub:
    return Stub(intake_pb2_grpc.IntakeServiceStub(system.channel("intake")), system, tenant, role, sub, community)


def field_of(err: grpc.RpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(ERROR_FIELD_KEY)  # type: ignore[attr-defined]


def rect(lon: float, lat: float, size: float) -> str:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


@dataclass(frozen=True)
class Area:
    """A community with two side-by-side grids (0.01° squares) and a compound in the first, in an area
    of its own (random, so grids made by other tests never overlap it)."""

    tenant: str
    community_id: str
    community_name: str
    g1: str
    g2: str
    compound: str
    lat: float  # south-west corner of g1
    lon: float

    def point(self, grid: int = 1, north_m: float = 0.0, east_m: float = 0.0) -> location_pb2.Location:
        lat = self.lat + 0.005 + north_m / M_PER_DEG
        lon = self.lon + 0.005 + (0.01 if grid == 2 else 0.0) + east_m / (M_PER_DEG * 0.8)
        return location_pb2.Location(lat=lat, lon=lon, address="测试路1号")


def make_area(system: System, tenant: str) -> Area:
    org = Stub(org_pb2_grpc.OrgServiceStub(system.channel("org")), system, tenant, "subdistrict_admin")
    u = unique("ic")
    rnd = random.Random(u)
    lat, lon = round(35.5 + rnd.random() * 0.4, 4), round(116.3 + rnd.random() * 0.4, 4)
    name = f"测试社区{u[-4:]}"
    org.CreateCommunity(org_pb2.Community(id=u, name_zh=name, address="测试"))
    org.CreateGrid(org_pb2.Grid(id=f"{u}-g1", community_id=u, name_zh="一网格", boundary_geojson=rect(lon, lat, 0.01)))
    org.CreateGrid(
        org_pb2.Grid(id=f"{u}-g2", community_id=u, name_zh="二网格", boundary_geojson=rect(lon + 0.01, lat, 0.01))
    )
    org.CreateCompound(
        org_pb2.Compound(
            id=f"{u}-x1",
            grid_id=f"{u}-g1",
            name_zh="幸福小区",
            address="幸福路1号",
            point=org_pb2.Point(lat=lat + 0.002, lon=lon + 0.002),
            households=200,
        )
    )
    return Area(tenant, u, name, f"{u}-g1", f"{u}-g2", f"{u}-x1", lat, lon)


@pytest.fixture(scope="module")
def area(system: System) -> Area:
    return make_area(system, T)


def new_issue(loc: location_pb2.Location, **kw: Any) -> pb.CreateIssueRequest:
    fields: dict[str, Any] = {
        "title": "楼道灯不亮",
        "description": "3号楼2单元楼道灯坏了一周",
        "channel": "resident_report",
        "category": "property_repair",
        "location": loc,
    }
    fields.update(kw)
    return pb.CreateIssueRequest(**fields)


def events_of(system: System, tenant: str, issue_id: str) -> list[tuple[str, Message]]:
    """(type, payload) of the issue's events on hongling.intake.v1, in order."""
    classes = {
        c.DESCRIPTOR.full_name: c
        for c in (
            iev.IssueReceived,
            iev.IssueClassified,
            iev.IssueReclassified,
            iev.IssueMarkedDuplicate,
            iev.IssueStatusChanged,
        )
    }
    out = []
    for r in read_topic(system.settings.kafka_bootstrap, topic_for("intake")):
        if r.key == f"{tenant}:{issue_id}".encode():
            ce = CloudEvent.from_record(r.headers, r.value)
            out.append((ce.type.rsplit(".", 1)[-1], ce.decode(classes[ce.type])))
    return out


def kinds(events: list[tuple[str, Message]]) -> list[str]:
    return [k for k, _ in events]


def blown(svc: Stub, issue_id: str) -> pb.Issue:
    """The issue once dispatch blew its call (whistle_blown: its next version), so a test's own change of it
    does not race that one."""
    return wait_for(lambda: (i := svc.GetIssue(pb.GetIssueRequest(id=issue_id))).status == "whistle_blown" and i)  # type: ignore[no-any-return]


def own(events: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
    """Intake's events of its own making: without IssueStatusChanged, the lifecycle steps dispatch's events
    bring (whistle_blown as soon as dispatch blows the call)."""
    return [(k, m) for k, m in events if k != "IssueStatusChanged"]


def counts(mongo: MongoClient[Any], tenant: str) -> tuple[int, int, int]:
    db = mongo[f"hl_intake_{tenant}"]
    return (
        db["issues"].count_documents({}),
        db["attachments"].count_documents({}),
        db["duplicate_claims"].count_documents({}),
    )


# ---------------------------------------------------------------- create


def test_a_point_is_placed_classified_and_announced(system: System, area: Area, mongo_client: MongoClient[Any]) -> None:
    worker = intake(system, role="community_worker", sub="worker-7", community=area.community_id)
    req = new_issue(
        area.point(2),
        title="单元门口闻到煤气味",
        channel="household_visit",
        hazards=["gas"],
        affected_households=3,
        contact=pb.Contact(name="王小明", phone="13812345678"),
        attachments=[pb.AttachmentUpload(filename="门口.png", content_type="image/png", content=PNG)],
    )
    issue = worker.CreateIssue(req)
    assert (issue.place.community_id, issue.place.grid_id) == (area.community_id, area.g2)
    assert (issue.place.community_name_zh, issue.place.grid_name_zh) == (area.community_name, "二网格")
    assert issue.urgency == "urgent" and issue.status == "classified" and issue.open311_status == "open"
    assert "隐患：燃气 → 紧急 (hazard gas → urgent)" in issue.urgency_reasons
    assert issue.urgency_reasons[0] == "类别「物业维修」默认：日常 (category property_repair default: routine)"
    assert (issue.created_by, issue.channel, issue.category_zh) == ("worker-7", "household_visit", "物业维修")
    assert abs(issue.created_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    assert [h.kind for h in issue.history] == ["received", "classified"]
    assert issue.history[0].note_zh == "已受理（入户走访）" and issue.history[1].note_en == "classified as urgent"
    assert (issue.contact.name, issue.contact.phone) == ("王*", "138****5678")  # masked in every answer
    [att] = issue.attachments
    assert (att.filename, att.content_type, att.size) == ("门口.png", "image/png", len(PNG))
    assert issue.version == 1 and list(issue.hazards) == ["gas"] and issue.affected_households == 3

    # Stored: the contact sealed, never in plain text; the file in its own collection.
    raw = mongo_client[f"hl_intake_{T}"]["issues"].find_one({"_id": issue.id})
    assert "13812345678" not in json.dumps(raw, default=str) and "王小明" not in json.dumps(raw, default=str)
    got = worker.GetAttachment(pb.GetAttachmentRequest(issue_id=issue.id, attachment_id=att.id))
    assert got.content == PNG and got.attachment.sha256 == att.sha256
    err = worker.fails("GetAttachment", pb.GetAttachmentRequest(issue_id="another", attachment_id=att.id))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    events = own(wait_for(lambda: len(e := own(events_of(system, T, issue.id))) >= 2 and e))
    assert kinds(events) == ["IssueReceived", "IssueClassified"]
    received, classified = events[0][1], events[1][1]
    assert isinstance(received, iev.IssueReceived) and isinstance(classified, iev.IssueClassified)
    assert (received.community_id, received.grid_id, received.channel) == (
        area.community_id,
        area.g2,
        "household_visit",
    )
    assert (classified.urgency, classified.grid_id, list(classified.hazards)) == ("urgent", area.g2, ["gas"])
    assert "王小明" not in str(received) + str(classified)  # events carry no personal data


def test_a_compound_alone_is_placed_by_its_compound(system: System, area: Area) -> None:
    issue = intake(system, role="resident").CreateIssue(
        new_issue(location_pb2.Location(compound_id=area.compound), category="", channel="online")
    )
    assert (issue.place.grid_id, issue.place.compound_id) == (area.g1, area.compound)
    # No category named: the one its words suggest (楼道灯 → 物业维修), with the reason, not the catch-all.
    assert issue.category == "property_repair" and issue.category_zh == "物业维修"
    assert list(issue.category_reasons) == [
        "类别建议：含关键词「楼道灯」 → 物业维修 (suggested by keyword 「楼道灯」: property_repair)"
    ]
    assert intake(system).GetIssue(pb.GetIssueRequest(id=issue.id)).place.grid_id == area.g1


@pytest.mark.parametrize(
    ("location", "field", "words"),
    [
        (location_pb2.Location(lat=1.5, lon=2.5), "location", "outside every grid of 徐家楼街道"),
        (location_pb2.Location(address="徐家楼街道某小区"), "location", "give a point (lat, lon) or a compound id"),
        (location_pb2.Location(compound_id="no-such-compound"), "location.compound_id", "no compound"),
        (location_pb2.Location(lat=95.0, lon=117.0), "location.lat", "outside -90..90"),
        (location_pb2.Location(lat=36.0), "location", "both lat and lon"),
    ],
)
def test_unplaceable_locations_are_refused_and_nothing_is_stored(
    system: System, area: Area, mongo_client: MongoClient[Any], location: location_pb2.Location, field: str, words: str
) -> None:
    before = counts(mongo_client, T)
    err = intake(system).fails(
        "CreateIssue",
        new_issue(
            location, attachments=[pb.AttachmentUpload(filename="a.jpg", content_type="image/jpeg", content=JPEG)]
        ),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in err.details() and field_of(err) == field
    assert counts(mongo_client, T) == before


def test_unknown_category_is_refused_listing_the_valid_ones(
    system: System, area: Area, mongo_client: MongoClient[Any]
) -> None:
    before = counts(mongo_client, T)
    err = intake(system).fails("CreateIssue", new_issue(area.point(), category="dragons"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err) == "category"
    assert "property_repair" in err.details() and "gas_safety" in err.details()
    err = intake(system).fails("CreateIssue", new_issue(area.point(), hazards=["volcano"]))
    assert field_of(err) == "hazards[0]"
    err = intake(system).fails("CreateIssue", new_issue(area.point(), contact=pb.Contact(name="李", phone="12345")))
    assert field_of(err) == "contact.phone"
    assert counts(mongo_client, T) == before


@pytest.mark.parametrize(
    ("uploads", "field", "words"),
    [
        ([("big.jpg", "image/jpeg", JPEG + b"\x00" * (5 * 1024 * 1024))], "attachments[0]", "at most 5242880"),
        ([("ok.png", "image/png", PNG), ("fake.png", "image/png", JPEG)], "attachments[1]", "content is image/jpeg"),
        ([("virus.exe", "application/pdf", b"MZ\x90\x00" * 50)], "attachments[0]", "not an accepted file type"),
        ([("a.png", "image/png", PNG)] * 6, "attachments", "at most 5 attachments"),
    ],
)
def test_oversize_or_wrong_type_attachments_store_nothing(
    system: System,
    area: Area,
    mongo_client: MongoClient[Any],
    uploads: list[tuple[str, str, bytes]],
    field: str,
    words: str,
) -> None:
    before = counts(mongo_client, T)
    req = new_issue(
        area.point(), attachments=[pb.AttachmentUpload(filename=f, content_type=t, content=c) for f, t, c in uploads]
    )
    err = intake(system).fails("CreateIssue", req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(err) == field and words in err.details()
    assert counts(mongo_client, T) == before


def test_the_idempotency_key_returns_the_first_issue(system: System, area: Area) -> None:
    key = unique("key")
    first = intake(system).CreateIssue(new_issue(area.point(north_m=-300), category="greening", idempotency_key=key))
    again = intake(system).CreateIssue(new_issue(area.point(north_m=-300), category="greening", idempotency_key=key))
    assert again.id == first.id and again.status in ("classified", "whistle_blown") and not again.duplicate_of


# ---------------------------------------------------------------- duplicates


def test_a_near_recent_report_of_the_same_category_is_linked_as_a_duplicate(system: System, area: Area) -> None:
    svc = intake(system)
    first = svc.CreateIssue(new_issue(area.point(1, north_m=200), category="sanitation", title="垃圾桶满了没人清"))
    assert first.status == "classified"
    dup = svc.CreateIssue(
        new_issue(area.point(1, north_m=230, east_m=20), category="sanitation", title="垃圾堆在路边", channel="online")
    )
    # (whistle_blown already, mirrored from its original, if dispatch blew the original's call first)
    assert (
        dup.status in ("duplicate", "whistle_blown") and dup.duplicate_of == first.id and dup.open311_status == "open"
    )
    assert [h.kind for h in dup.history][:2] == ["received", "marked_duplicate"]
    assert first.id in dup.history[1].note_zh
    original = svc.GetIssue(pb.GetIssueRequest(id=first.id))
    # One version per step after the creation (duplicate_linked, and whistle_blown once dispatch blew its call).
    assert list(original.duplicates) == [dup.id] and original.version == len(original.history) - 1
    # Dispatch may blow the original's call before or after the duplicate is linked: either order is right.
    linked = [h for h in original.history if h.kind == "duplicate_linked"]
    assert len(linked) == 1 and dup.id in linked[0].note_zh
    assert {h.kind for h in original.history[2:]} <= {"duplicate_linked", "whistle_blown"}
    # Another category at the same spot, and the same category 500 m away, start issues of their own.
    other = svc.CreateIssue(new_issue(area.point(1, north_m=230), category="parking", title="车堵门"))
    far = svc.CreateIssue(new_issue(area.point(1, north_m=-300, east_m=300), category="sanitation"))
    assert other.status == far.status == "classified" and not other.duplicate_of and not far.duplicate_of

    dup_events = own(wait_for(lambda: len(e := own(events_of(system, T, dup.id))) >= 2 and e))
    assert kinds(dup_events) == ["IssueReceived", "IssueMarkedDuplicate"]  # no IssueClassified: no second whistle
    marked = dup_events[1][1]
    assert isinstance(marked, iev.IssueMarkedDuplicate)
    assert marked.duplicate_of == first.id and 25 <= marked.distance_m <= 45


def test_simultaneous_reports_at_one_spot_make_one_original(system: System, area: Area) -> None:
    """Six reports of one problem at once: the duplicate claim lets exactly one start an issue, and every
    other is linked to it (each link a claimed version of the original: none is lost)."""
    svc = intake(system)
    spot = area.point(2, north_m=-200, east_m=-200)

    def report(i: int) -> pb.Issue:
        return svc.CreateIssue(new_issue(spot, category="road_facility", title=f"井盖丢了（第{i}位居民）"))  # type: ignore[no-any-return]

    with ThreadPoolExecutor(6) as pool:
        made = list(pool.map(report, range(6)))
    [original] = [m for m in made if m.status == "classified"]
    dups = [m for m in made if m.id != original.id]
    # A duplicate follows its original's status: whistle_blown already if dispatch blew the original's call first.
    assert all(d.status in ("duplicate", "whistle_blown") and d.duplicate_of == original.id for d in dups)
    linked = wait_for(lambda: len((o := svc.GetIssue(pb.GetIssueRequest(id=original.id))).duplicates) == 5 and o)
    assert sorted(linked.duplicates) == sorted(d.id for d in dups)
    assert [h.kind for h in linked.history].count("duplicate_linked") == 5
    assert linked.version == len(linked.history) - 1  # one version per step: each link, whistle_blown


# ---------------------------------------------------------------- reclassify


def test_a_community_worker_reclassifies_with_a_reason(system: System, area: Area) -> None:
    worker = intake(system, role="community_worker", sub="worker-9", community=area.community_id)
    issue = worker.CreateIssue(new_issue(area.point(2, north_m=-400), category="noise", title="楼上半夜有声音"))
    assert (issue.urgency, issue.version) == ("routine", 1)
    v = blown(worker, issue.id).version
    changed = worker.ReclassifyIssue(
        pb.ReclassifyIssueRequest(
            id=issue.id, urgency="urgent", category="public_safety", reason="现场核实有打斗", version=v
        )
    )
    assert (changed.urgency, changed.category, changed.version) == ("urgent", "public_safety", v + 1)
    assert changed.history[-1].kind == "reclassified" and changed.history[-1].by == "worker-9"
    assert "重新分类为紧急事项" in changed.history[-1].note_zh and "现场核实有打斗" in changed.history[-1].note_zh
    assert changed.urgency_reasons[-1].startswith("人工重新分类为紧急：现场核实有打斗")

    stale = worker.fails(
        "ReclassifyIssue", pb.ReclassifyIssueRequest(id=issue.id, urgency="major", reason="再改", version=v)
    )
    assert stale.code() == grpc.StatusCode.ABORTED and field_of(stale) == "version"
    for req, code, field in [
        (pb.ReclassifyIssueRequest(id=issue.id, urgency="major", version=v + 1), "INVALID_ARGUMENT", "reason"),
        (
            pb.ReclassifyIssueRequest(id=issue.id, category="dragons", reason="x", version=v + 1),
            "INVALID_ARGUMENT",
            "category",
        ),
        (pb.ReclassifyIssueRequest(id="nope", urgency="major", reason="x", version=1), "NOT_FOUND", "id"),
    ]:
        err = worker.fails("ReclassifyIssue", req)
        assert (err.code().name, field_of(err)) == (code, field)
    resident = intake(system, role="resident").fails(
        "ReclassifyIssue", pb.ReclassifyIssueRequest(id=issue.id, urgency="major", reason="x", version=v + 1)
    )
    assert resident.code() == grpc.StatusCode.PERMISSION_DENIED

    events = own(wait_for(lambda: "IssueReclassified" in kinds(e := events_of(system, T, issue.id)) and e))
    assert kinds(events) == ["IssueReceived", "IssueClassified", "IssueReclassified"]
    re = events[2][1]
    assert isinstance(re, iev.IssueReclassified)
    assert (re.from_urgency, re.to_urgency, re.from_category, re.to_category, re.by) == (
        "routine",
        "urgent",
        "noise",
        "public_safety",
        "worker-9",
    )


def test_simultaneous_reclassifications_one_wins_the_rest_are_aborted(system: System, area: Area) -> None:
    worker = intake(system)
    issue = worker.CreateIssue(new_issue(area.point(2, north_m=-450, east_m=300), category="noise"))
    v = blown(worker, issue.id).version

    def reclassify(urgency: str) -> str:
        try:
            worker.ReclassifyIssue(
                pb.ReclassifyIssueRequest(id=issue.id, urgency=urgency, reason=f"改为{urgency}", version=v)
            )
            return "ok"
        except grpc.RpcError as exc:
            return exc.code().name  # type: ignore[no-any-return]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(reclassify, ["major", "urgent"] * 4))
    assert sorted(outcomes) == ["ABORTED"] * 7 + ["ok"]
    final = worker.GetIssue(pb.GetIssueRequest(id=issue.id))
    assert final.version == v + 1 and [h.kind for h in final.history].count("reclassified") == 1


# ---------------------------------------------------------------- personal data


def test_contact_is_revealed_to_a_community_worker_and_logged(
    system: System, area: Area, mongo_client: MongoClient[Any]
) -> None:
    issue = intake(system, role="resident").CreateIssue(
        new_issue(
            area.point(2, north_m=300), category="elderly_care", contact=pb.Contact(name="赵大娘", phone="0538-6281234")
        )
    )
    assert (issue.contact.name, issue.contact.phone) == ("赵*", "053*****1234")
    shown = intake(system, role="community_worker", sub="worker-reveal", community=area.community_id).RevealContact(
        pb.RevealContactRequest(id=issue.id)
    )
    assert (shown.name, shown.phone) == ("赵大娘", "0538-6281234")
    entries = list(
        mongo_client["hl_audit"]["entries"].find(
            {"action": "personal_data.reveal", "target": f"issues/{issue.id}/contact"}
        )
    )
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["actor"], entry["role"], entry["tenant"], entry["outcome"]) == (
        "worker-reveal",
        "community_worker",
        T,
        "done",
    )
    assert "6281234" not in json.dumps(entry, default=str) and "赵大娘" not in json.dumps(entry, default=str)
    for role in ("resident", "public", "service"):
        err = intake(system, role=role).fails("RevealContact", pb.RevealContactRequest(id=issue.id))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert intake(system, role="resident").GetIssue(pb.GetIssueRequest(id=issue.id)).contact.phone == "053*****1234"


# ---------------------------------------------------------------- search


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def test_search_by_status_category_grid_time_and_text_with_paging(
    system: System, mongo_client: MongoClient[Any]
) -> None:
    mine = make_area(system, T)  # a fresh community: its grids hold only this test's issues
    svc = intake(system)
    tag = uuid.uuid4().hex[:6].upper()
    made = []
    for i in range(5):
        made.append(
            svc.CreateIssue(
                new_issue(
                    mine.point(1, north_m=-400 + i * 200, east_m=-400 + i * 200),
                    category="greening" if i % 2 else "road_facility",
                    title=f"检查{i}号 {tag}" if i < 4 else "路面坑洼",
                    description="树枝挡住路灯" if i == 3 else "需要处理",
                )
            )
        )
    late = datetime.now(UTC)
    made.append(svc.CreateIssue(new_issue(mine.point(2), category="greening", title=f"新的 {tag.lower()}")))

    def ids(**kw: Any) -> list[str]:
        out, token = [], ""
        while True:
            resp = svc.ListIssues(pb.ListIssuesRequest(page_size=2, page_token=token, **kw))
            assert len(resp.issues) <= 2
            out += [i.id for i in resp.issues]
            token = resp.next_page_token
            if not token:
                return out

    newest_first = [i.id for i in reversed(made)]
    # Lists come from the SQL read model, which the projector brings up to date just after each write.
    wait_for(lambda: ids(community_id=mine.community_id) == newest_first)
    assert ids(grid_id=mine.g1) == newest_first[1:]
    assert ids(grid_id=mine.g1, category="greening") == [made[3].id, made[1].id]
    assert ids(community_id=mine.community_id, text=tag.lower()) == [i.id for i in reversed(made) if i.id != made[4].id]
    assert ids(community_id=mine.community_id, text="树枝") == [made[3].id]  # in the description
    assert ids(community_id=mine.community_id, created_from=ts(late)) == [made[5].id]
    assert ids(community_id=mine.community_id, created_to=ts(late)) == newest_first[1:]
    assert ids(ids=[made[0].id, made[2].id, "nope"]) == [made[2].id, made[0].id]
    assert ids(community_id=mine.community_id, status="duplicate") == []
    # Classified, then whistle_blown as soon as dispatch blows their calls.
    wait_for(
        lambda: (
            ids(community_id=mine.community_id, status="whistle_blown", urgency="routine", channel="resident_report")
            == newest_first
        )
    )

    first = svc.ListIssues(pb.ListIssuesRequest(page_size=2, community_id=mine.community_id))
    for req, field in [
        (pb.ListIssuesRequest(page_token="garbage!"), "page_token"),
        (pb.ListIssuesRequest(page_token=first.next_page_token, grid_id=mine.g2), "page_token"),  # other filters
        (pb.ListIssuesRequest(page_size=101), "page_size"),
        (pb.ListIssuesRequest(status="lost"), "status"),
        (pb.ListIssuesRequest(category="dragons"), "category"),
        (pb.ListIssuesRequest(created_from=ts(late), created_to=ts(late - timedelta(days=1))), "created_to"),
        (pb.ListIssuesRequest(created_from=Timestamp(seconds=0, nanos=2_000_000_000)), "created_from"),
    ]:
        err = svc.fails("ListIssues", req)
        assert (err.code(), field_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    err = intake(system, role="resident").fails("ListIssues", pb.ListIssuesRequest())
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- rules


def test_rules_are_per_tenant_and_versioned(system: System) -> None:
    admin = intake(system, tenant=RULES_TENANT, role="subdistrict_admin")
    current = admin.GetClassificationRules(pb.GetClassificationRulesRequest())
    assert current.version == 0 and current.catch_all_category == "other" and len(current.categories) >= 12
    original = pb.ClassificationRules()
    original.CopyFrom(current)

    wanted = pb.ClassificationRules()
    wanted.CopyFrom(current)
    wanted.categories.append(
        pb.Category(code="snow_removal", name_zh="除雪", name_en="Snow removal", group="市政", default_urgency="major")
    )
    wanted.major_households = 5
    stored = admin.PutClassificationRules(wanted)
    assert stored.version == 1 and stored.categories[-1].code == "snow_removal"
    assert admin.GetClassificationRules(pb.GetClassificationRulesRequest()) == stored

    stale = admin.fails("PutClassificationRules", wanted)  # still version 0
    assert stale.code() == grpc.StatusCode.ABORTED and field_of(stale) == "version"
    bad = pb.ClassificationRules()
    bad.CopyFrom(stored)
    bad.urgent_households = 2
    err = admin.fails("PutClassificationRules", bad)
    assert (err.code(), field_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "urgent_households")
    bad.CopyFrom(stored)
    bad.categories.append(pb.Category(code="snow_removal", name_zh="重复", default_urgency="routine"))
    assert field_of(admin.fails("PutClassificationRules", bad)) == f"categories[{len(stored.categories)}].code"
    bad.CopyFrom(stored)
    bad.catch_all_category = "nothing"
    assert field_of(admin.fails("PutClassificationRules", bad)) == "catch_all_category"
    for role, community in (("community_worker", "any-community"), ("resident", None)):
        stub = intake(system, tenant=RULES_TENANT, role=role, community=community)
        err = stub.fails("PutClassificationRules", stored)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    # The tenant's new category classifies by its own default; another tenant does not know it.
    place = make_area(system, RULES_TENANT)
    issue = admin.CreateIssue(new_issue(place.point(), category="snow_removal", title="路面结冰"))
    assert issue.urgency == "major" and issue.category_zh == "除雪"
    err = intake(system, tenant=T).fails("CreateIssue", new_issue(place.point(), category="snow_removal"))
    assert field_of(err) == "category"
    assert intake(system, tenant=T).GetClassificationRules(pb.GetClassificationRulesRequest()).version == 0

    # Back to the defaults' content (as a new version), for whatever runs next on this stack.
    original.version = 1
    assert admin.PutClassificationRules(original).version == 2
