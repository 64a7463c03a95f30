"""The publication lifecycle through the real PublicationService (gRPC), FerretDB, the projector's read model
and Kafka: a monthly board drafted from a closed month, reviewed, released once (also under a race), read by the
public only once released, immutable, and corrected as the next version stating what changed; the monthly
schedule's durable timer drafts every community's board of a closed month; the monthly sources' columns exist
in the migrated schema."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from hongling.events.v1 import publication_events_pb2 as pev
from hongling.org.v1 import org_pb2, org_pb2_grpc
from hongling.publication.v1 import publication_pb2 as pb
from hongling.publication.v1 import publication_pb2_grpc as pb_grpc
from pymongo import MongoClient
from sqlalchemy import inspect

from services.common import readside
from services.common.events import topic_for
from services.publication.monthly import sources
from tests.conftest import System, call_metadata, read_topic, unique, wait_for

T = "taiqian"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def last_month() -> str:
    first = datetime.now(SHANGHAI).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def stub(system: System) -> pb_grpc.PublicationServiceStub:
    return pb_grpc.PublicationServiceStub(system.channel("publication"))


def md(system: System, role: str = "subdistrict_admin") -> list[tuple[str, str]]:
    return call_metadata(system.settings, T, role=role)


def new_community(system: System, name: str) -> str:
    org = org_pb2_grpc.OrgServiceStub(system.channel("org"))
    cid = unique("c-pub")
    org.CreateCommunity(org_pb2.Community(id=cid, name_zh=name), metadata=md(system), timeout=15)
    return cid


def rename(system: System, cid: str, name: str) -> None:
    org = org_pb2_grpc.OrgServiceStub(system.channel("org"))
    found = org.GetCommunity(org_pb2.GetRequest(id=cid), metadata=md(system), timeout=15)
    found.name_zh = name
    org.UpdateCommunity(found, metadata=md(system), timeout=15)


def code_of(fn: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    return caught.value.code()  # type: ignore[no-any-return]


def ready(system: System, cid: str, period: str) -> pb.Publication:
    """A reviewed v1 of the community's month."""
    s = stub(system)
    draft = s.CreateDraft(
        pb.CreateDraftRequest(kind="monthly", scope=cid, period=period), metadata=md(system), timeout=60
    )
    return s.ReviewPublication(pb.ReviewPublicationRequest(id=draft.id, approve=True), metadata=md(system), timeout=15)


def test_a_month_is_drafted_reviewed_released_once_and_the_public_reads_only_the_released(system: System) -> None:
    s, period = stub(system), last_month()
    cid = new_community(system, "公示测试社区")
    draft = s.CreateDraft(
        pb.CreateDraftRequest(kind="monthly", scope=cid, period=period), metadata=md(system), timeout=60
    )
    assert (draft.id, draft.status, draft.version, draft.corrects_version) == (
        f"monthly:{cid}:{period}:v1",
        "draft",
        1,
        0,
    )
    content = json.loads(draft.content_json)
    assert draft.content_sha256 == hashlib.sha256(draft.content_json.encode()).hexdigest()
    assert (content["kind"], content["scope"], content["period"], content["scope_name_zh"]) == (
        "monthly",
        cid,
        period,
        "公示测试社区",
    )
    assert content["summary"]["issues_received"] == 0 and content["issues"] == []
    assert draft.audit_anchor.hash == content["audit_anchor"]["hash"] and draft.audit_anchor.signature
    assert "json" in draft.channels and "pdf_a4" in draft.channels

    public = md(system, "public")
    unknown = code_of(
        lambda: s.GetPublication(pb.GetPublicationRequest(id=f"monthly:{cid}:{period}:v9"), metadata=public)
    )
    for pid in (draft.id, f"monthly:{cid}:{period}"):
        assert code_of(lambda p=pid: s.GetPublication(pb.GetPublicationRequest(id=p), metadata=public)) == unknown
    assert unknown == grpc.StatusCode.NOT_FOUND
    staff = s.GetPublication(pb.GetPublicationRequest(id=draft.id), metadata=md(system, "community_worker"))
    assert staff.status == "draft"
    assert (
        code_of(
            lambda: s.CreateDraft(
                pb.CreateDraftRequest(kind="monthly", scope=cid, period=period), metadata=md(system, "community_worker")
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )

    # Release needs a review; returning needs a note; the month that has not closed cannot be drafted.
    rel = pb.ReleasePublicationRequest(id=draft.id)
    assert code_of(lambda: s.ReleasePublication(rel, metadata=md(system))) == grpc.StatusCode.FAILED_PRECONDITION
    back = pb.ReviewPublicationRequest(id=draft.id, approve=False)
    assert code_of(lambda: s.ReviewPublication(back, metadata=md(system))) == grpc.StatusCode.INVALID_ARGUMENT
    now = datetime.now(SHANGHAI).strftime("%Y-%m")
    open_month = pb.CreateDraftRequest(kind="monthly", scope=cid, period=now)
    assert code_of(lambda: s.CreateDraft(open_month, metadata=md(system))) == grpc.StatusCode.INVALID_ARGUMENT

    # Returned, redrafted (same version), approved, released.
    returned = s.ReviewPublication(
        pb.ReviewPublicationRequest(id=draft.id, approve=False, note="请核对经费"), metadata=md(system)
    )
    assert (returned.status, returned.review_note) == ("returned", "请核对经费")
    again = s.CreateDraft(
        pb.CreateDraftRequest(kind="monthly", scope=cid, period=period), metadata=md(system), timeout=60
    )
    assert (again.id, again.status, again.review_note) == (draft.id, "draft", "")
    s.ReviewPublication(pb.ReviewPublicationRequest(id=draft.id, approve=True, note="同意"), metadata=md(system))
    done = s.ReleasePublication(rel, metadata=md(system))
    assert (done.status, done.current, done.released_by) == ("released", True, "test-admin")
    assert code_of(lambda: s.ReleasePublication(rel, metadata=md(system))) == grpc.StatusCode.FAILED_PRECONDITION
    again_review = pb.ReviewPublicationRequest(id=draft.id, approve=True)
    assert (
        code_of(lambda: s.ReviewPublication(again_review, metadata=md(system))) == grpc.StatusCode.FAILED_PRECONDITION
    )

    seen = s.GetPublication(pb.GetPublicationRequest(id=f"monthly:{cid}:{period}", with_content=True), metadata=public)
    assert (seen.id, seen.status, seen.current) == (draft.id, "released", True)
    assert seen.content_json == draft.content_json
    rendered = s.RenderPublication(pb.RenderPublicationRequest(id=draft.id, channel="json"), metadata=public)
    assert json.loads(rendered.data)["draft"] is False and rendered.filename.endswith(".json")

    # Nothing changed: no correction. The community renamed: version 2 corrects 1 and says what changed.
    same = pb.CreateDraftRequest(kind="monthly", scope=cid, period=period)
    assert code_of(lambda: s.CreateDraft(same, metadata=md(system), timeout=60)) == grpc.StatusCode.FAILED_PRECONDITION
    rename(system, cid, "公示更名社区")
    v2 = s.CreateDraft(same, metadata=md(system), timeout=60)
    assert (v2.id, v2.version, v2.corrects_version, v2.status) == (f"monthly:{cid}:{period}:v2", 2, 1, "draft")
    assert any("公示测试社区" in line and "公示更名社区" in line for line in v2.changes), list(v2.changes)
    kept = s.GetPublication(pb.GetPublicationRequest(id=draft.id, with_content=True), metadata=public)
    assert kept.content_sha256 == draft.content_sha256 and kept.content_json == draft.content_json
    assert code_of(lambda: s.GetPublication(pb.GetPublicationRequest(id=v2.id), metadata=public)) == unknown
    current = s.GetPublication(pb.GetPublicationRequest(id=f"monthly:{cid}:{period}"), metadata=public)
    assert current.id == draft.id  # v2 is a draft: v1 is still the current version

    # The list (the read model): staff see both versions, newest first; the public only the released one.
    def listed(role: str) -> list[str]:
        page = s.ListPublications(pb.ListPublicationsRequest(scope=cid), metadata=md(system, role))
        return [p.id for p in page.publications]

    wait_for(lambda: listed("subdistrict_admin") == [v2.id, draft.id], timeout=120)
    assert listed("public") == [draft.id]

    # PublicationReleased and ProgressPublished, from the same write.
    def released() -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for r in read_topic(system.settings.kafka_bootstrap, topic_for("publication")):
            kind = dict(r.headers or []).get("ce_type", b"").decode()
            if kind.endswith("PublicationReleased"):
                msg: Any = pev.PublicationReleased()
            elif kind.endswith("ProgressPublished"):
                msg = pev.ProgressPublished()
            else:
                continue
            msg.ParseFromString(r.value)
            if msg.publication_id == draft.id:
                out.append((kind.rsplit(".", 1)[-1], msg))
        return out if len(out) >= 2 else []

    found = dict(wait_for(released, timeout=120))
    assert found["PublicationReleased"].content_sha256 == draft.content_sha256
    assert found["PublicationReleased"].audit_anchor_hash == content["audit_anchor"]["hash"]
    assert (found["ProgressPublished"].community_id, found["ProgressPublished"].period) == (cid, period)


def test_two_concurrent_releases_and_reviews_have_one_winner(system: System) -> None:
    s, period = stub(system), last_month()
    cid = new_community(system, "并发测试社区")
    draft = s.CreateDraft(
        pb.CreateDraftRequest(kind="monthly", scope=cid, period=period), metadata=md(system), timeout=60
    )

    def race(call: Any, n: int = 6) -> list[Any]:
        results: list[Any] = []
        lock, gate = threading.Lock(), threading.Barrier(n)

        def one() -> None:
            gate.wait()
            try:
                got: Any = call()
            except grpc.RpcError as exc:
                got = exc.code()
            with lock:
                results.append(got)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    reviews = race(
        lambda: s.ReviewPublication(
            pb.ReviewPublicationRequest(id=draft.id, approve=True), metadata=md(system), timeout=60
        )
    )
    assert sum(isinstance(r, pb.Publication) for r in reviews) == 1, reviews
    assert all(isinstance(r, pb.Publication) or r == grpc.StatusCode.FAILED_PRECONDITION for r in reviews), reviews
    releases = race(
        lambda: s.ReleasePublication(pb.ReleasePublicationRequest(id=draft.id), metadata=md(system), timeout=60)
    )
    winners = [r for r in releases if isinstance(r, pb.Publication)]
    assert len(winners) == 1 and winners[0].status == "released", releases
    assert all(isinstance(r, pb.Publication) or r == grpc.StatusCode.FAILED_PRECONDITION for r in releases), releases
    final = s.GetPublication(pb.GetPublicationRequest(id=draft.id), metadata=md(system))
    assert final.released_at == winners[0].released_at


def test_the_schedule_drafts_every_community_of_a_closed_month(system: System, mongo_client: MongoClient[Any]) -> None:
    cid = new_community(system, "排程测试社区")
    timers = mongo_client[f"hl_publication_{T}"]["timers"]
    now = datetime.now(SHANGHAI).strftime("%Y-%m")
    armed = wait_for(lambda: timers.find_one({"_id": f"publication.monthly:{now}"}), timeout=120)
    assert armed["kind"] == "publication.monthly"
    # The month closes and its grace passes: the timer of last month comes due (the others' timer tests' travel).
    period = last_month()
    past = datetime.now(UTC) - timedelta(seconds=1)
    timers.update_one(
        {"_id": f"publication.monthly:{now}"},
        {"$set": {"payload": {"period": period}, "due_at": past, "next_at": past}},
    )
    s = stub(system)

    def drafted() -> pb.Publication | None:
        try:
            return s.GetPublication(pb.GetPublicationRequest(id=f"monthly:{cid}:{period}:v1"), metadata=md(system))
        except grpc.RpcError:
            return None

    found = wait_for(drafted, timeout=300, interval=1.0)
    assert (found.created_by, found.status) == ("schedule", "draft")
    # and it armed the month after the one it drafted
    assert wait_for(lambda: timers.find_one({"_id": f"publication.monthly:{now}"}), timeout=60)


def test_the_monthly_sources_columns_exist_in_the_migrated_schema(system: System) -> None:
    with readside.connect(T) as conn:
        schema = readside.schema_for(T)
        found = {(t.name, c["name"]) for t in sources.TABLES for c in inspect(conn).get_columns(t.name, schema=schema)}
    missing = set(sources.columns()) - found
    assert not missing, missing
