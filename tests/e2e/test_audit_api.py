"""The audit log through the running gateway: who reads which entries, pages, exports that verify
offline, verification of the whole chain, an entry edited in the database named by the endpoint and
the command, and every reveal of personal data recorded (without the data)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from pymongo import MongoClient

from services.common.audit import DATABASE, open_log, read_export, verify_chain, verify_export
from tests.conftest import REPO, TEST_COMMUNITY, System, audit_caught_up
from tests.e2e.test_org_api import T, id_number, new_person, org, phone

OTHER = "shengzhuang"
AUDIT = "/api/v1/audit"
WORKER_SUB = f"test-community_worker-{T}"


def get(system: System, path: str, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
    return requests.get(system.gateway + path, headers=headers or {}, timeout=30, **kw)


def error(resp: requests.Response, status: int, code: str | None = None, field: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["request_id"] == resp.headers["X-Request-Id"] and err["message"]
    if code is not None:
        assert err["code"] == code, err
    if field is not None:
        assert err.get("field") == field, err


def reveals(system: System, n: int) -> tuple[str, str, str, list[str]]:
    """A person with a phone and ID number in the community of T's community worker, revealed n times by
    that worker: (person id, phone, ID number, the X-Request-Id of each reveal)."""
    mobile, number = phone(), id_number()
    pid = new_person(system, TEST_COMMUNITY, phone=mobile, id_number=number)["id"]
    request_ids = []
    for _ in range(n):
        resp = org(system, "GET", f"people/{pid}?reveal=true", role="community_worker", scope=T)
        assert resp.status_code == 200 and resp.json()["phone"] == mobile, resp.text
        request_ids.append(resp.headers["X-Request-Id"])
    audit_caught_up()  # the pages read the log's read model, a moment behind the log
    return pid, mobile, number, request_ids


def pages(system: System, path: str, headers: dict[str, str], limit: int, max_pages: int) -> list[dict[str, Any]]:
    """Up to max_pages pages of an audit list, following next_before_seq."""
    out: list[dict[str, Any]] = []
    before = None
    for _ in range(max_pages):
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&before_seq={before}" if before else "")
        resp = get(system, url, headers)
        assert resp.status_code == 200, resp.text
        assert resp.headers["Cache-Control"] == "no-store"
        page = resp.json()
        assert len(page["entries"]) <= limit
        out.extend(page["entries"])
        before = page["next_before_seq"]
        if before is None:
            break
        assert before == page["entries"][-1]["seq"]
    return out


# ---------------------------------------------------------------- reading


def test_an_approver_reads_the_log_newest_first_page_by_page(system: System) -> None:
    pid, _, _, _ = reveals(system, 5)
    approver = system.auth("district_approver", "*")
    seen = pages(system, f"{AUDIT}?tenant={T}&action=personal_data.reveal", approver, limit=2, max_pages=3)
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs) >= 5
    ours = [e for e in seen if e["target"] == f"person/{pid}"]
    assert len(ours) == 5 and seen[:5] == ours  # the five newest reveals on T are ours
    for e in ours:
        assert (e["tenant"], e["action"], e["actor"], e["role"]) == (
            T,
            "personal_data.reveal",
            WORKER_SUB,
            "community_worker",
        )
        assert e["time"].endswith("+08:00") and len(e["hash"]) == 64 and e["detail"] == {}
    # Filters combine: the actor, and paging from a seq.
    by_actor = get(system, f"{AUDIT}?actor={WORKER_SUB}&limit=3", approver).json()["entries"]
    assert by_actor and all(e["actor"] == WORKER_SUB for e in by_actor)
    below = get(system, f"{AUDIT}?before_seq={ours[2]['seq']}&limit=5", approver).json()["entries"]
    assert below and all(e["seq"] < ours[2]["seq"] for e in below)
    # No filter: the whole district (every tenant and the district-level entries) for a '*' token.
    everything = get(system, f"{AUDIT}?limit=500", approver).json()["entries"]
    assert ours[0] in everything


def test_the_token_scope_limits_what_an_approver_sees(system: System) -> None:
    reveals(system, 1)
    scoped = system.auth("district_approver", T)
    entries = get(system, f"{AUDIT}?limit=500", scoped).json()["entries"]
    assert entries and {e["tenant"] for e in entries} <= {T, ""}
    error(get(system, f"{AUDIT}?tenant={OTHER}", scoped), 403, "tenant_out_of_scope", "tenant")
    ops = get(system, f"{AUDIT}?tenant={T}&limit=1", system.auth("ops", "*"))
    assert ops.status_code == 200 and ops.json()["entries"][0]["tenant"] == T


def test_bad_parameters_are_400_naming_the_field(system: System) -> None:
    approver = system.auth("district_approver", "*")
    for query, field in (
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("before_seq=0", "before_seq"),
        ("before_seq=x", "before_seq"),
        ("tenant=gotham", "tenant"),
        ("action=" + "a" * 200, "action"),
    ):
        error(get(system, f"{AUDIT}?{query}", approver), 400, "invalid_argument", field)
    for query, field in (("format=xlsx", "format"), ("from_seq=5&to_seq=2", "to_seq"), ("from_seq=-1", "from_seq")):
        error(get(system, f"{AUDIT}/export?{query}", approver), 400, "invalid_argument", field)


def test_a_subdistrict_admin_reads_its_own_tenant_only(system: System) -> None:
    pid, _, _, _ = reveals(system, 1)
    own = get(system, f"/api/v1/tenants/{T}/audit?limit=50", system.auth("subdistrict_admin", T))
    assert own.status_code == 200, own.text
    entries = own.json()["entries"]
    assert entries and {e["tenant"] for e in entries} == {T}
    assert entries[0]["target"] == f"person/{pid}"
    error(
        get(system, f"/api/v1/tenants/{OTHER}/audit", system.auth("subdistrict_admin", T)), 403, "tenant_out_of_scope"
    )
    error(get(system, f"/api/v1/tenants/{T}/audit", system.auth("community_worker", T)), 403, "forbidden")
    error(get(system, f"{AUDIT}?tenant={T}", system.auth("subdistrict_admin", T)), 403, "forbidden")
    error(get(system, f"/api/v1/tenants/{T}/audit"), 401, "unauthenticated")


# ---------------------------------------------------------------- personal data revealed


def test_every_reveal_is_in_the_tenants_audit_log_without_the_personal_data(system: System) -> None:
    pid, mobile, number, request_ids = reveals(system, 2)
    masked = org(system, "GET", f"people/{pid}", role="community_worker", scope=T)  # not a reveal
    assert masked.status_code == 200 and masked.json()["phone"] != mobile
    admin = system.auth("subdistrict_admin", T)
    resp = get(system, f"/api/v1/tenants/{T}/audit?action=personal_data.reveal&limit=10", admin)
    assert resp.status_code == 200, resp.text
    ours = [e for e in resp.json()["entries"] if e["target"] == f"person/{pid}"]
    assert len(ours) == 2  # two reveals, two entries; the masked read none
    for e in ours:
        assert (e["actor"], e["role"], e["tenant"], e["outcome"]) == (WORKER_SUB, "community_worker", T, "done")
    export = get(system, f"/api/v1/tenants/{T}/audit/export?format=ndjson&from_seq={ours[-1]['seq']}", admin)
    assert export.status_code == 200, export.text
    exported = [json.loads(line) for line in export.text.splitlines() if line]
    assert sorted(r["request_id"] for r in exported if r["target"] == f"person/{pid}") == sorted(request_ids)
    for text in (resp.text, export.text):
        assert mobile not in text and number not in text


# ---------------------------------------------------------------- export


def test_exports_stream_in_seq_order_and_verify_offline(system: System, tmp_path: Path) -> None:
    reveals(system, 1)
    approver = system.auth("district_approver", "*")
    whole = get(system, f"{AUDIT}/export?format=ndjson", approver)
    assert whole.status_code == 200, whole.text
    assert whole.headers["Content-Type"].startswith("application/x-ndjson")
    assert whole.headers["Content-Disposition"].startswith("attachment; filename=")
    last = int(whole.headers["X-Audit-To-Seq"])
    entries = list(read_export(whole.text.splitlines()))
    assert [e.seq for e in entries] == list(range(1, last + 1))
    assert verify_chain(entries, {}, None).ok  # every link and hash recomputes from the file alone
    assert entries == list(open_log(system.settings).iter_entries(to_seq=last))  # exactly what is stored
    path = tmp_path / "audit.ndjson"
    path.write_text(whole.text, "utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "services.common.audit", "verify-file", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and "intact" in checked.stdout, checked.stdout + checked.stderr

    lo, hi = max(1, last - 4), last
    part = get(system, f"{AUDIT}/export?format=ndjson&from_seq={lo}&to_seq={hi}", approver)
    ranged = list(read_export(part.text.splitlines()))
    assert [e.seq for e in ranged] == list(range(lo, hi + 1)) and verify_export(ranged).ok

    admin = system.auth("subdistrict_admin", T)
    tenant = get(system, f"/api/v1/tenants/{T}/audit/export?format=ndjson", admin)
    mine = list(read_export(tenant.text.splitlines()))
    assert mine and {e.tenant for e in mine} == {T} and verify_export(mine, contiguous=False).ok

    sheet = get(system, f"/api/v1/tenants/{T}/audit/export?format=csv&to_seq={last}", admin)
    assert sheet.status_code == 200 and sheet.headers["Content-Type"].startswith("text/csv")
    assert sheet.content.startswith(b"\xef\xbb\xbf")  # a BOM: Excel opens the Chinese correctly
    assert sheet.headers["Content-Disposition"] == f'attachment; filename="hongling-audit-{T}-1-{last}.csv"'
    rows = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["序号 seq", "时间 time", "操作人 actor"] and rows[0][-1] == "哈希 hash"
    assert [int(r[0]) for r in rows[1:]] == [e.seq for e in mine if e.seq <= last]
    assert {r[6] for r in rows[1:]} == {T}


# ---------------------------------------------------------------- verification


def test_the_verify_endpoint_checks_the_whole_chain(system: System) -> None:
    for role in ("district_approver", "ops"):
        resp = requests.post(f"{system.gateway}{AUDIT}/verify", headers=system.auth(role, "*"), timeout=120)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["ok"] is True and body["first_broken_seq"] is None and body["reason"] == ""
        assert body["checked"] >= 1 and body["seconds"] >= 0 and "intact" in body["summary"]
    error(
        requests.post(f"{system.gateway}{AUDIT}/verify", headers=system.auth("subdistrict_admin", "*"), timeout=10), 403
    )
    error(requests.post(f"{system.gateway}{AUDIT}/verify", timeout=10), 401)


def test_an_entry_edited_in_the_database_is_named_by_the_endpoint_and_the_command(
    system: System, mongo_client: MongoClient[Any]
) -> None:
    pid, _, _, _ = reveals(system, 3)
    approver = system.auth("district_approver", "*")
    ours = get(
        system, f"/api/v1/tenants/{T}/audit?action=personal_data.reveal&limit=3", system.auth("subdistrict_admin", T)
    )
    seq = ours.json()["entries"][1]["seq"]  # the middle one of the three: entries after it stay as they were
    entries = mongo_client[DATABASE]["entries"]
    original = entries.find_one({"_id": seq})
    assert original is not None and original["target"] == f"person/{pid}"
    try:
        # Someone with database access rewrites who revealed the data.
        entries.update_one({"_id": seq}, {"$set": {"actor": "nobody-in-particular"}})
        resp = requests.post(f"{system.gateway}{AUDIT}/verify", headers=approver, timeout=120)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["ok"], body["first_broken_seq"]) == (False, seq), body
        assert body["reason"] == "content does not match its hash" and f"entry {seq}" in body["summary"]
        assert chain_broken_signal(system) == 1.0  # the HonglingAuditChainBroken alert's input
        command = subprocess.run(
            [sys.executable, "-m", "services.common.audit", "verify"],
            cwd=REPO,
            env=os.environ.copy(),  # the test stack's settings (HONGLING_PORT_BASE, ...)
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert command.returncode == 1, command.stdout + command.stderr
        assert f"audit chain BROKEN at entry {seq}: content does not match its hash" in command.stdout
        # An export taken now is caught offline too.
        exported = get(system, f"{AUDIT}/export?format=ndjson", approver)
        assert verify_export(read_export(exported.text.splitlines())).first_broken_seq == seq
    finally:
        entries.replace_one({"_id": seq}, original)
    assert entries.find_one({"_id": seq}) == original
    restored = requests.post(f"{system.gateway}{AUDIT}/verify", headers=approver, timeout=120).json()
    assert restored["ok"] is True, restored
    assert chain_broken_signal(system) == 0.0


def chain_broken_signal(system: System) -> float:
    """The gateway's hongling_audit_chain_broken, as Prometheus scrapes it (set by the last full verification)."""
    text = requests.get(f"{system.gateway}/metrics", timeout=10).text
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("hongling_audit_chain_broken "))
