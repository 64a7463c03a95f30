"""Issues through the gateway, as portals and residents use them: report with photos and contact, read the
history and class, search, reclassify with If-Match, reveal the contact (handlers only), attachments by
URL, the tenant's rules, and a district department reading issues only under its grant."""

from __future__ import annotations

import base64
import io
import json
import random
from typing import Any

import requests
from pymongo import MongoClient

from tests.conftest import TEST_COMMUNITY, TEST_POINT, System, unique, wait_for
from tests.e2e.test_governance import Place, approver, body, call, department, file

T = "caiyuan"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def url(system: System, path: str = "", tenant: str = T) -> str:
    return f"{system.gateway}/api/v1/tenants/{tenant}/issues{path}"


def report(**kw: Any) -> dict[str, Any]:
    lat, lon = TEST_POINT
    return {
        "title": f"楼道漏水{unique()}",
        "description": "5号楼顶层漏水，渗到楼道。",
        "channel": "resident_report",
        "category": "property_repair",
        "location": {"lat": lat + 0.001, "lon": lon - 0.001, "address": "测试社区5号楼"},
        **kw,
    }


def stored(mongo: MongoClient[Any], tenant: str = T) -> int:
    return int(mongo[f"hl_intake_{tenant}"]["issues"].count_documents({}))


def test_report_with_photos_and_contact_then_read_it_back(system: System) -> None:
    resident = system.auth("resident", T)
    data = report(
        category="water_supply",  # no other report of this file is of it: not a duplicate
        contact={"name": "王秀英", "phone": "13912345678"},
        hazards=["flooding"],
        affected_households=12,
        attachments=[
            {"filename": "漏水.png", "content_type": "image/png", "content_base64": base64.b64encode(PNG).decode()}
        ],
    )
    resp = requests.post(url(system), json=data, headers=resident, timeout=15)
    assert resp.status_code == 201, resp.text
    issue = resp.json()["issue"]
    assert issue["place"]["community_id"] == TEST_COMMUNITY and issue["place"]["grid_id"] == f"{TEST_COMMUNITY}-g"
    assert issue["urgency"] in ("major", "urgent") and issue["urgency_reasons"]  # flooding, 12 households
    assert issue["contact"] == {"name": "王*", "phone": "139****5678"}
    assert issue["status"] == "classified" and issue["status_zh"] == "已分类"
    assert [h["kind"] for h in issue["history"]][:2] == ["received", "classified"]
    assert issue["open311_status"] == "open"
    [photo] = issue["attachments"]
    got = requests.get(system.gateway + photo["url"], headers=resident, timeout=15)
    assert got.status_code == 200 and got.content == PNG and got.headers["Content-Type"] == "image/png"
    assert "13912345678" not in resp.text and "王秀英" not in resp.text

    # Multipart: the issue as JSON in `issue`, files in `attachments`.
    files = [("attachments", ("a.jpg", io.BytesIO(JPEG), "image/jpeg"))]
    multi = requests.post(url(system), data={"issue": json.dumps(report())}, files=files, headers=resident, timeout=15)
    assert multi.status_code == 201, multi.text
    assert [a["content_type"] for a in multi.json()["issue"]["attachments"]] == ["image/jpeg"]

    # The reporter's contact: only those handling the issue, and every reveal is in the audit log.
    contact = url(system, f"/{issue['id']}/contact")
    shown = requests.get(contact, headers=system.auth("community_worker", T), timeout=15)
    assert shown.status_code == 200 and shown.json() == {"name": "王秀英", "phone": "13912345678"}
    for role in ("resident", "district_approver"):
        assert requests.get(contact, headers=system.auth(role, T), timeout=15).status_code == 403
    assert requests.get(contact, timeout=15).status_code == 401


def test_bad_reports_are_400_naming_the_field_and_store_nothing(system: System, mongo_client: MongoClient[Any]) -> None:
    h = system.auth("resident", T)
    before = stored(mongo_client)
    big = base64.b64encode(PNG + b"\x00" * (5 * 1024 * 1024)).decode()
    cases = [
        (report(location={"lat": 95.0, "lon": 117.0}), "location.lat"),
        (report(location={"lat": 1.0, "lon": 2.0}), "location"),  # outside every grid of the tenant
        (report(category="no_such_category"), "category"),
        (report(attachments=[{"content_type": "image/png", "content_base64": big}]), "attachments[0]"),
        (
            report(attachments=[{"content_type": "image/png", "content_base64": base64.b64encode(b"MZ..").decode()}]),
            "attachments[0]",
        ),
        (report(attachments=[{"content_type": "image/png", "content_base64": "%%%"}]), "attachments[0]"),
        (report(contact={"phone": "12"}), "contact.phone"),
    ]
    for data, field in cases:
        resp = requests.post(url(system), json=data, headers=h, timeout=30)
        assert resp.status_code == 400, (field, resp.text)
        assert resp.json()["error"]["field"] == field, resp.text
    assert stored(mongo_client) == before


def test_search_reclassify_with_if_match_and_history(system: System) -> None:
    staff = system.auth("community_worker", T)
    word = unique("词")
    made = [
        requests.post(
            url(system), json=report(title=f"路灯不亮{word}", category="road_facility"), headers=staff, timeout=15
        ).json()["issue"]
        for _ in range(3)
    ]
    # Searches come from the SQL read model: the three show there once the projector has them.
    search = {"text": word, "grid_id": f"{TEST_COMMUNITY}-g"}
    wait_for(lambda: len(requests.get(url(system), params=search, headers=staff, timeout=15).json()["issues"]) == 3)
    found = requests.get(url(system), params={"text": word, "page_size": "2"}, headers=staff, timeout=15).json()
    assert len(found["issues"]) == 2 and found["next_page_token"]
    rest = requests.get(
        url(system),
        params={"text": word, "page_size": "2", "page_token": found["next_page_token"]},
        headers=staff,
        timeout=15,
    ).json()
    assert {i["id"] for i in found["issues"] + rest["issues"]} == {i["id"] for i in made}
    by_grid = requests.get(
        url(system), params={"grid_id": f"{TEST_COMMUNITY}-g", "text": word}, headers=staff, timeout=15
    ).json()
    assert len(by_grid["issues"]) == 3
    bad_time = requests.get(url(system), params={"created_from": "yesterday"}, headers=staff, timeout=15)
    assert bad_time.status_code == 400 and bad_time.json()["error"]["field"] == "created_from"

    original = made[0]
    target = url(system, f"/{original['id']}/reclassify")
    change = {"urgency": "urgent", "reason": "灯杆倾斜，有倒伏危险"}
    assert requests.post(target, json=change, headers=staff, timeout=15).status_code == 428

    def blown() -> requests.Response | None:
        # The call dispatch blows for the issue changes it too (WhistleBlown, asynchronously): read the
        # version after that, or a reclassification racing it would rightly be refused as stale.
        got = requests.get(url(system, f"/{original['id']}"), headers=staff, timeout=15)
        return got if got.json()["issue"]["status"] == "whistle_blown" else None

    etag = wait_for(blown).headers["ETag"]
    ok = requests.post(target, json=change, headers={**staff, "If-Match": etag}, timeout=15)
    assert ok.status_code == 200, ok.text
    after = ok.json()["issue"]
    assert after["urgency"] == "urgent" and after["history"][-1]["kind"] == "reclassified"
    stale = requests.post(target, json=change, headers={**staff, "If-Match": etag}, timeout=15)
    assert stale.status_code == 412, stale.text
    resident = system.auth("resident", T)
    assert (
        requests.post(target, json=change, headers={**resident, "If-Match": ok.headers["ETag"]}, timeout=15).status_code
        == 403
    )


def test_categories_are_public_and_set_by_subdistrict_admins(system: System) -> None:
    rules_url = f"{system.gateway}/api/v1/tenants/{T}/classification-rules"
    got = requests.get(rules_url, timeout=15)
    assert got.status_code == 200
    rules = got.json()
    assert any(c["code"] == "property_repair" and c["name_zh"] for c in rules["categories"])
    admin = system.auth("subdistrict_admin", T)
    assert (
        requests.put(rules_url, json=rules, headers=system.auth("community_worker", T), timeout=15).status_code == 403
    )
    assert requests.put(rules_url, json=rules, headers=admin, timeout=15).status_code == 428
    changed = {**rules, "duplicate_distance_m": 150}
    put = requests.put(rules_url, json=changed, headers={**admin, "If-Match": got.headers["ETag"]}, timeout=15)
    assert put.status_code == 200, put.text
    assert put.json()["duplicate_distance_m"] == 150
    stale = requests.put(rules_url, json=changed, headers={**admin, "If-Match": got.headers["ETag"]}, timeout=15)
    assert stale.status_code == 412
    back = {**rules, "duplicate_distance_m": rules["duplicate_distance_m"]}
    restored = requests.put(rules_url, json=back, headers={**admin, "If-Match": put.headers["ETag"]}, timeout=15)
    assert restored.status_code == 200, restored.text


def test_a_department_reads_issues_only_under_its_grant(system: System) -> None:
    staff = system.auth("community_worker", T)
    issue = requests.post(url(system), json=report(), headers=staff, timeout=15).json()["issue"]
    item = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/org/public-affairs-items",
        json={"community_id": TEST_COMMUNITY, "mode": "assist", "title_zh": f"民情分析{unique()}"},
        headers=system.auth("subdistrict_admin", T),
        timeout=15,
    ).json()
    _sub, h = department(system)
    filed = file(
        system,
        h,
        body(
            Place(TEST_COMMUNITY, item["id"], "", ""),
            tenant=T,
            operations=["intake.read:issues"],
            fields=["title", "category", "status"],
        ),
    )
    resp = call(system, "POST", f"/api/v1/department-requests/{filed['id']}/approve", approver(system), json={})
    assert resp.status_code == 200, resp.text
    gid = resp.json()["id"]
    g = {**h, "X-Hongling-Grant": gid}
    one = requests.get(url(system, f"/{issue['id']}"), headers=g, timeout=15)
    assert one.status_code == 200, one.text
    assert set(one.json()) == {"id", "title", "category", "status"}  # no contact, no place, no history
    page = requests.get(url(system), params={"category": "property_repair"}, headers=g, timeout=15)
    assert page.status_code == 200 and all(
        set(i) == {"id", "title", "category", "status"} for i in page.json()["issues"]
    )
    assert requests.get(url(system), params={"text": "漏水"}, headers=g, timeout=15).json()["error"]["field"] == (
        "fields:description"
    )
    assert requests.get(url(system, f"/{issue['id']}"), headers=h, timeout=15).status_code == 403  # no grant named


def test_a_report_without_a_category_gets_the_one_its_words_suggest_with_the_reason(system: System) -> None:
    staff = system.auth("community_worker", T)
    lat, lon = TEST_POINT
    spot = {"lat": lat - 0.003 - random.uniform(0, 0.001), "lon": lon + 0.003, "address": "测试社区9号楼"}  # alone
    lamp = report(title=f"楼道灯不亮{unique()[-4:]}", description="3号楼2单元楼道灯坏了", category="", location=spot)
    issue = requests.post(url(system), json=lamp, timeout=15).json()["issue"]
    assert (issue["category"], issue["category_zh"]) == ("property_repair", "物业维修")  # not 其他
    assert issue["category_reasons"] == [
        "类别建议：含关键词「楼道灯」 → 物业维修 (suggested by keyword 「楼道灯」: property_repair)"
    ]
    vague = requests.post(
        url(system), json=report(title="有个事想反映", description="请联系我", category=""), timeout=15
    )
    assert vague.json()["issue"]["category"] == "other"
    assert "no category keyword found" in vague.json()["issue"]["category_reasons"][0]
    chosen = requests.post(url(system), json=report(title="楼道灯不亮", category="sanitation"), timeout=15).json()
    assert chosen["issue"]["category"] == "sanitation"  # the reporter's choice stands
    assert chosen["issue"]["category_reasons"] == [
        "上报时选定类别「环境卫生」 (category chosen when reported: sanitation)"
    ]
    # A worker changes it as before; the change and its reason join the reasons. (Its whistle first: dispatch's
    # call moves the issue to its next version, which a change sent with the first one would race.)
    blown = wait_for(
        lambda: (
            (got := requests.get(url(system, f"/{issue['id']}"), timeout=15)).json()["issue"]["status"]
            == "whistle_blown"
            and got
        )
    )
    moved = requests.post(
        url(system, f"/{issue['id']}/reclassify"),
        json={"category": "power_supply", "reason": "实为楼道供电线路故障"},
        headers={**staff, "If-Match": blown.headers["ETag"]},
        timeout=15,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["issue"]["category_reasons"][-1].startswith("人工改为「")
    assert "实为楼道供电线路故障" in moved.json()["issue"]["category_reasons"][-1]
