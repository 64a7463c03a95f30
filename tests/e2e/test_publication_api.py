"""Publications through the gateway: a subdistrict admin drafts a community's closed month, reviews and releases
it; anyone reads the released version without logging in (current and by version, its JSON channel), never a
draft (404 as an unknown id); bad input is a 400 naming the field; the burden ledger is 404 until a report is
released."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from tests.conftest import System, unique, wait_for

T = "taiqian"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def last_month() -> str:
    return (datetime.now(SHANGHAI).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def test_staff_draft_review_and_release_and_the_public_reads_only_what_is_released(system: System) -> None:
    admin = system.auth("subdistrict_admin", T)
    made = requests.post(
        f"{system.gateway}/api/v1/tenants/{T}/org/communities",
        json={"name_zh": f"公示接口社区{unique()}"},
        headers=admin,
        timeout=15,
    )
    assert made.status_code == 201, made.text
    cid, period = str(made.json()["id"]), last_month()
    base = f"{system.gateway}/api/v1/tenants/{T}/publications"
    public = f"{system.gateway}/api/v1/public/tenants/{T}"

    bad = requests.post(base, json={"kind": "monthly", "scope": cid, "period": "2026-13"}, headers=admin, timeout=15)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "period", bad.text
    worker = requests.post(
        base,
        json={"kind": "monthly", "scope": cid, "period": period},
        headers=system.auth("community_worker", T),
        timeout=15,
    )
    assert worker.status_code == 403

    created = requests.post(base, json={"kind": "monthly", "scope": cid, "period": period}, headers=admin, timeout=90)
    assert created.status_code == 201, created.text
    p = created.json()
    pid = f"monthly:{cid}:{period}:v1"
    assert (p["id"], p["status"], p["version"], p["current"]) == (pid, "draft", 1, False)
    assert p["content"]["scope"] == cid and p["content"]["kind"] == "monthly"
    assert created.headers["Location"].endswith(f"/publications/{pid}")
    assert set(p) >= {"audit_anchor", "title_zh", "channels", "changes", "content_sha256", "created_at"}

    # The public: no log-in, and a draft is as missing as an unknown id.
    for path in (f"publications/{pid}", f"publications/monthly:{cid}:{period}", f"publications/{pid}/channels/json"):
        r = requests.get(f"{public}/{path}", timeout=15)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    staff_read = requests.get(f"{base}/{pid}", headers=system.auth("community_worker", T), timeout=15)
    assert staff_read.status_code == 200 and staff_read.json()["status"] == "draft"

    returned = requests.post(f"{base}/{pid}/review", json={"approve": False}, headers=admin, timeout=15)
    assert returned.status_code == 400 and returned.json()["error"]["field"] == "note"
    early = requests.post(f"{base}/{pid}/release", headers=admin, timeout=15)
    assert early.status_code == 409
    reviewed = requests.post(
        f"{base}/{pid}/review", json={"approve": True, "note": "核对无误"}, headers=admin, timeout=15
    )
    assert reviewed.status_code == 200 and reviewed.json()["status"] == "reviewed"
    released = requests.post(f"{base}/{pid}/release", headers=admin, timeout=15)
    assert released.status_code == 200, released.text
    assert (released.json()["status"], released.json()["current"]) == ("released", True)
    assert requests.post(f"{base}/{pid}/release", headers=admin, timeout=15).status_code == 409

    current = requests.get(f"{public}/publications/monthly:{cid}:{period}", timeout=15)
    assert current.status_code == 200 and current.json()["id"] == pid
    assert current.json()["content"] == p["content"]
    rendition = requests.get(f"{public}/publications/{pid}/channels/json", timeout=15)
    assert rendition.status_code == 200 and rendition.headers["Content-Type"].startswith("application/json")
    assert (
        "attachment" in rendition.headers["Content-Disposition"] and ".json" in rendition.headers["Content-Disposition"]
    )
    assert json.loads(rendition.content)["content"] == p["content"]
    unknown_channel = requests.get(f"{public}/publications/{pid}/channels/fax", timeout=15)
    assert unknown_channel.status_code == 404
    wechat = requests.get(f"{public}/publications/{pid}/channels/wechat", timeout=15)
    assert wechat.status_code == 200, wechat.text
    chat = wechat.json()
    assert chat["limit"] > 0 and chat["parts"] and all(len(part) <= chat["limit"] for part in chat["parts"])
    page = requests.get(f"{public}/publications/{pid}/channels/html_a4", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Content-Disposition"].startswith("inline") and "草稿" not in page.text
    not_its = requests.get(f"{public}/publications/{pid}/channels/xlsx", timeout=15)
    assert not_its.status_code == 400 and not_its.json()["error"]["field"] == "channel"  # the report's only
    draft_page = requests.get(f"{base}/{pid}/channels/html_a4", headers=admin, timeout=30)
    assert draft_page.status_code == 200

    listed = wait_for(
        lambda: (
            (r := requests.get(f"{public}/publications", params={"scope": cid}, timeout=15).json())["publications"]
            and r
        ),
        timeout=120,
    )
    assert [x["id"] for x in listed["publications"]] == [pid] and "content" not in listed["publications"][0]
    staff_list = requests.get(base, params={"scope": cid, "status": "released"}, headers=admin, timeout=15).json()
    assert [x["id"] for x in staff_list["publications"]] == [pid] and staff_list["next_page_token"] is None
    for feed in (f"{public}/feed.atom", f"{public}/communities/{cid}/feed.atom"):
        atom = requests.get(feed, timeout=15)
        assert atom.status_code == 200 and atom.headers["Content-Type"].startswith("application/atom+xml")
        assert pid in atom.text, feed
        # an entry opens the version's public page in the portal
        assert f'href="{system.gateway}/portal/public/{T}/publications/{pid}"' in atom.text, atom.text
    other = requests.get(f"{public}/communities/{unique('c-none')}/feed.atom", timeout=15)
    assert other.status_code == 200 and pid not in other.text
    bad_filter = requests.get(f"{public}/publications", params={"period": "2026-3"}, timeout=15)
    assert bad_filter.status_code == 400 and bad_filter.json()["error"]["field"] == "period"


def test_the_ledger_is_404_until_a_report_of_the_month_is_released(system: System) -> None:
    r = requests.get(f"{system.gateway}/api/v1/public/tenants/{T}/ledger", params={"period": "2024-01"}, timeout=15)
    assert r.status_code == 404 and "2024-01" in r.json()["error"]["message"]
    bad = requests.get(f"{system.gateway}/api/v1/public/tenants/{T}/ledger", params={"period": "2024"}, timeout=15)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "period"
    unknown = requests.get(f"{system.gateway}/api/v1/public/tenants/nowhere/ledger?period=2024-01", timeout=15)
    assert unknown.status_code == 404
