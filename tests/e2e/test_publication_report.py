"""The monthly report upward (services/publication/reports) built from real sources on the test stack: district
departments' requests filed, narrowed, approved, rejected and refused through the gateway, grant uses through
the department door, a resident's rejection of a verified result, and a whistle a unit did not answer (real
CloudEvents on Kafka to evaluation's consumer) — then the report's content, built in this process against the
stack's PostgreSQL, FerretDB and gRPC services, shows each in its place, the same on every build.

The month is the current one (the test cannot make entries in a closed month): the builder is told the month has
closed by its `now` (what the content says does not depend on it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import dispatch_events_pb2 as dev
from kafka import KafkaProducer
from sqlalchemy import select

from gateway.tokens import TokenFile
from services.common import readside
from services.common.events import CloudEvent, record_key, topic_for
from services.publication.content import canonical
from services.publication.reports import builder, domain, sources
from tests.conftest import System, audit_caught_up, unique, wait_for
from tests.rating_builders import Place, follow, place, verified_issue

T = "shanggao"
SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUESTS = "/api/v1/department-requests"
GRANT = "X-Hongling-Grant"


@pytest.fixture(scope="module")
def producer(system: System) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all")
    yield p
    p.close(timeout=10)


def call(system: System, method: str, path: str, headers: dict[str, str], **kw: Any) -> requests.Response:
    return requests.request(method, system.gateway + path, headers=headers, timeout=15, **kw)


def item_of(system: System, community_id: str) -> str:
    """A public-affairs item (承办) of the community: what a department's request relies on."""
    resp = call(
        system,
        "POST",
        f"/api/v1/tenants/{T}/org/public-affairs-items",
        system.auth("subdistrict_admin", "*"),
        json={"community_id": community_id, "mode": "undertake", "title_zh": f"养老服务{unique()}"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def department(system: System) -> dict[str, str]:
    token, _ = TokenFile(system.tokens_file).create(unique("dept"), "district_department", ["*"], days=1)
    return {"Authorization": f"Bearer {token}"}


def request_body(community_id: str, item_id: str, **kw: Any) -> dict[str, Any]:
    today = datetime.now(SHANGHAI).date()
    data: dict[str, Any] = {
        "kind": "data_access",
        "title": "养老服务设施台账核对",
        "purpose": "核对辖区养老服务设施台账",
        "tenant": T,
        "community_id": community_id,
        "public_affairs_item_id": item_id,
        "funding": {"amount_yuan": 5000, "source": "区民政局专项经费", "working_conditions": "派员协助录入"},
        "starts_on": today.isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat(),
        "operations": ["org.read:member-units"],
        "fields": ["name_zh"],
    }
    data.update(kw)
    return data


def file(system: System, dept: dict[str, str], data: dict[str, Any]) -> str:
    resp = call(system, "POST", REQUESTS, dept, json=data)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def decide(system: System, request_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = call(system, "POST", f"{REQUESTS}/{request_id}/{verb}", system.auth("district_approver", "*"), json=body)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def publish_whistle(producer: KafkaProducer, community_id: str, answered: str, silent: str) -> str:
    """A service call to two units of the community, blown now; one of them reports in."""
    now = datetime.now(UTC)
    stamp = Timestamp()
    stamp.FromDatetime(now)
    whistle = unique("w")
    kinds, ids = ("member_unit", "member_unit"), (answered, silent)
    messages = [
        dev.WhistleBlown(
            whistle_id=whistle,
            tenant=T,
            community_id=community_id,
            call_type="service",
            target_kinds=kinds,
            target_ids=ids,
            blown_at=stamp,
        ),
        dev.UnitReportedIn(
            whistle_id=whistle,
            tenant=T,
            responder_kind="member_unit",
            responder_id=answered,
            answer="accept",
            reported_at=stamp,
        ),
    ]
    for msg in messages:
        ce = CloudEvent(
            id=uuid.uuid4().hex,
            source=f"/hongling/dispatch/{T}",
            type=msg.DESCRIPTOR.full_name,
            time=now,
            subject=whistle,
            tenant=T,
            data=msg.SerializeToString(),
        )
        producer.send(topic_for("dispatch"), key=record_key(T, whistle), value=ce.data, headers=ce.headers()).get(
            timeout=15
        )
    return whistle


def this_month() -> tuple[str, datetime]:
    """The current month (Asia/Shanghai) and a moment after its end."""
    today: date = datetime.now(SHANGHAI).date()
    period = f"{today.year:04d}-{today.month:02d}"
    return period, domain.month_bounds(period)[1] + timedelta(seconds=1)


def test_the_report_shows_the_months_burden_ledger_exceptions_and_rankings(
    system: System, producer: KafkaProducer
) -> None:
    admin = system.auth("subdistrict_admin", "*")
    first: Place = place(system, T)  # a community with a grid: residents report there
    made = call(system, "POST", f"/api/v1/tenants/{T}/org/communities", admin, json={"name_zh": f"减负社区{unique()}"})
    assert made.status_code == 201, made.text
    second = str(made.json()["id"])
    item1, item2 = item_of(system, first.community_id), item_of(system, second)

    # The first community: a data request narrowed to a quota of 3 and used twice, an assistance task approved.
    dept = department(system)
    data_request = file(system, dept, request_body(first.community_id, item1))
    grant = decide(system, data_request, "approve", {"quota": 3})
    for _ in range(2):
        used = call(system, "GET", f"/api/v1/tenants/{T}/org/member-units", {**dept, GRANT: grant["id"]})
        assert used.status_code == 200, used.text
    task_request = file(
        system,
        dept,
        request_body(
            first.community_id, item1, kind="assistance_task", operations=None, fields=None, tasks=["燃气安全入户宣传"]
        ),
    )
    decide(system, task_request, "approve", {})
    # The second: a data request rejected, and an assessment task refused outright.
    rejected = file(system, dept, request_body(second, item2))
    decide(system, rejected, "reject", {"reason": "与社区职责清单不符"})
    refused = call(
        system,
        "POST",
        REQUESTS,
        dept,
        json=request_body(
            second, item2, kind="assistance_task", operations=None, fields=None, tasks=["年度社区工作目标责任考核打分"]
        ),
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "assessment_task_refused"

    # A resident rejects a verified result; a unit does not answer a whistle.
    issue, code, task_id, _ = verified_issue(system, first, 1)
    rejection = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/issues/{issue['id']}/result-rejection",
        json={"reason": "灯还是不亮，住在3号楼402的王先生"},
        headers={"X-Follow-Code": code},
        timeout=15,
    )
    assert rejection.status_code == 201, rejection.text
    assert follow(system, T, issue["id"], code).status_code == 200
    answered, silent = unique("u"), unique("u")
    publish_whistle(producer, first.community_id, answered, silent)

    def rejection_projected() -> bool:
        with readside.connect(T) as conn:
            a = sources.ACTS.c
            return conn.execute(select(a.id).where(a.task_id == task_id, a.kind == "rejection")).first() is not None

    def targets_counted() -> dict[str, bool]:
        t = sources.TARGETS.c
        with readside.connect(T) as conn:
            rows = conn.execute(
                select(t.target, t.reported).where(t.target.in_([f"member_unit:{answered}", f"member_unit:{silent}"]))
            ).all()
        return {r.target: r.reported for r in rows}

    wait_for(rejection_projected, timeout=180)
    expected = {f"member_unit:{answered}": True, f"member_unit:{silent}": False}
    try:
        wait_for(lambda: targets_counted() == expected, timeout=180)
    except pytest.fail.Exception:
        pytest.fail(f"evaluation-measures has not counted the whistle's targets: {targets_counted()} (of {expected})")
    audit_caught_up()
    period, closed = this_month()
    report = builder.build(T, "*", period, now=closed)

    assert (report["kind"], report["scope"], report["period"], report["tenant"]) == ("report", "*", period, T)
    assert report["tenant_name_zh"] == "上高街道" and report["title_zh"].startswith("上高街道")
    assert report["as_of"] == domain.as_of(domain.month_bounds(period)[1])
    assert {r["key"] for r in report["measures"]} <= set(domain.RATE_KEYS)

    # Rankings: every community of the tenant, ranked 1..n.
    ranked = report["rankings"]
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    assert {first.community_id, second} <= {r["community_id"] for r in ranked}

    # The burden ledger, per community.
    lines = {line["community_id"]: line for line in report["ledger"]}
    one, two = lines[first.community_id], lines[second]
    assert (one["data_requests"], one["assistance_tasks"], one["approved"], one["narrowed"]) == (1, 1, 2, 1)
    assert (one["rejected"], one["refused"], one["quota_granted"], one["quota_used"]) == (0, 0, 4, 2)
    assert one["reasons"] == [{"reason": "narrowed", "reason_zh": "审核收窄范围或配额", "count": 1}]
    assert (two["data_requests"], two["approved"], two["rejected"], two["refused"]) == (1, 0, 1, 1)
    assert two["assessment_refused"] == 1
    assert two["reasons"] == [
        {"reason": "assessment_task_refused", "reason_zh": "考核任务，拒绝受理", "count": 1},
        {"reason": "rejected", "reason_zh": "区级审核驳回", "count": 1},
    ]
    assert [line["community_id"] for line in report["ledger"]] == sorted(lines)

    # The exceptions: the resident's rejection, the unit that did not answer.
    failed = [f for f in report["exceptions"]["failed_verifications"] if f["ref"] == task_id]
    assert [(f["method_zh"], f["category_zh"]) for f in failed] == [("居民否决", "物业维修")]
    name_zh = next(r["community_name_zh"] for r in ranked if r["community_id"] == first.community_id)
    assert failed[0]["community_name_zh"] == name_zh
    silent_here = [s for s in report["exceptions"]["silent_units"] if s["community_name_zh"] == name_zh]
    assert [(s["whistles"], s["answered"], s["missed"]) for s in silent_here] == [(1, 0, 1)]
    assert answered not in silent_here[0]["name"]
    assert isinstance(report["exceptions"]["overdue_tasks"], list)

    # Anchored, nothing a resident typed, and the same on every build.
    anchor = report["audit_anchor"]
    assert anchor["seq"] > 0 and len(anchor["hash"]) == 64 and anchor["signature"]
    text = canonical(report)
    assert "王先生" not in text and "楼道灯坏了" not in text and "与社区职责清单不符" not in text
    audit_caught_up()
    again = builder.build(T, "*", period, now=closed)
    if again["audit_anchor"]["seq"] == anchor["seq"]:
        assert canonical(again) == text
    else:  # the stack appended to the audit log meanwhile: the open month's head moved, nothing else
        assert canonical({**again, "audit_anchor": anchor}) == text
