import base64
import hashlib
from dataclasses import replace
from typing import Any

import pytest

from services.common.audit import (
    GENESIS,
    Entry,
    checkpoint_message,
    entry_hash,
    placed,
    published_heads,
    signing_key,
    verify_chain,
)

KEY = signing_key("unit-test-audit-signing-key-0123456789")


def chain(n: int) -> list[Entry]:
    out: list[Entry] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        draft = Entry(
            seq=seq,
            time=f"2026-11-27T00:00:{seq % 60:02d}Z",
            actor=f"dept-{seq % 3}",
            role="district_department",
            action="department.call",
            outcome="allowed",
            tenant="taiqian",
            target="org.ListMemberUnits",
            detail={"n": seq},
            prev_hash=prev,
        )
        entry = replace(draft, hash=entry_hash(draft))
        out.append(entry)
        prev = entry.hash
    return out


def sign(entry: Entry) -> tuple[str, bytes]:
    return entry.hash, KEY.sign(checkpoint_message(entry.seq, entry.hash))


def test_intact_chain_verifies_with_its_checkpoints() -> None:
    entries = chain(30)
    result = verify_chain(entries, {10: sign(entries[9]), 20: sign(entries[19])}, KEY.public_key())
    assert result.ok and result.checked == 30 and result.checkpoints == 2


def test_edited_entry_is_named() -> None:
    entries = chain(30)
    entries[12] = replace(entries[12], outcome="refused")
    result = verify_chain(entries, {}, KEY.public_key())
    assert (result.ok, result.first_broken_seq) == (False, 13)
    assert "does not match its hash" in result.reason


def test_rehashed_edit_breaks_the_next_link() -> None:
    entries = chain(30)
    forged = replace(entries[12], target="org.GetPerson")
    entries[12] = replace(forged, hash=entry_hash(forged))
    result = verify_chain(entries, {}, KEY.public_key())
    assert (result.ok, result.first_broken_seq) == (False, 14)


def test_rewritten_tail_is_caught_by_a_signed_checkpoint() -> None:
    entries = chain(30)
    checkpoints = {20: sign(entries[19])}
    # Rebuild the whole chain from entry 15 on: links and hashes are consistent again …
    prev = entries[13].hash
    for i in range(14, 30):
        forged = replace(entries[i], actor="someone-else", prev_hash=prev)
        entries[i] = replace(forged, hash=entry_hash(forged))
        prev = entries[i].hash
    result = verify_chain(entries, checkpoints, KEY.public_key())
    # … but the signed checkpoint at 20 no longer matches.
    assert (result.ok, result.first_broken_seq) == (False, 20)


def test_missing_entry_and_truncated_log_are_named() -> None:
    entries = chain(30)
    del entries[4]
    result = verify_chain(entries, {}, KEY.public_key())
    assert (result.ok, result.first_broken_seq) == (False, 5)
    entries = chain(30)
    result = verify_chain(entries[:25], {30: sign(entries[29])}, KEY.public_key())
    assert (result.ok, result.first_broken_seq) == (False, 26)
    assert "truncated" in result.reason


def test_forged_checkpoint_signature_is_refused() -> None:
    entries = chain(10)
    other = signing_key("another-key-that-is-not-the-deployments")
    bad = {10: (entries[9].hash, other.sign(checkpoint_message(10, entries[9].hash)))}
    result = verify_chain(entries, bad, KEY.public_key())
    assert (result.ok, result.first_broken_seq) == (False, 10)


# ---- heads published on a monthly notice (services/publication/anchor.py)


def published(entry: Entry) -> dict[str, object]:
    return {"seq": entry.seq, "hash": entry.hash, "signature": base64.b64encode(sign(entry)[1]).decode()}


def test_a_rewritten_tail_no_checkpoint_covers_is_caught_by_a_published_head() -> None:
    entries = chain(30)
    notice = {"content": {"audit_anchor": published(entries[27])}}  # as the JSON channel holds it
    heads = published_heads(notice, KEY.public_key())
    assert verify_chain(entries, {}, KEY.public_key(), heads=heads).ok
    # Rewrite entries 25.. consistently (links and hashes agree again): no checkpoint covers them …
    prev = entries[23].hash
    for i in range(24, 30):
        forged = replace(entries[i], detail={"n": "rewritten"}, prev_hash=prev)
        entries[i] = replace(forged, hash=entry_hash(forged))
        prev = entries[i].hash
    assert verify_chain(entries, {}, KEY.public_key()).ok
    # … but the head printed on the notice names the rewrite.
    result = verify_chain(entries, {}, KEY.public_key(), heads=heads)
    assert (result.ok, result.first_broken_seq) == (False, 28)
    assert "published" in result.reason


def test_a_log_cut_short_of_a_published_head_is_named() -> None:
    entries = chain(30)
    heads = published_heads([published(entries[29])], KEY.public_key())
    result = verify_chain(entries[:25], {}, KEY.public_key(), heads=heads)
    assert not result.ok and "published head 30 are missing" in result.reason


def test_a_head_signed_by_another_key_is_refused() -> None:
    entry = chain(3)[2]
    other = signing_key("another-deployment-audit-key-0123456789")
    head = {"seq": 3, "hash": entry.hash, "signature": base64.b64encode(other.sign(b"x")).decode()}
    with pytest.raises(ValueError, match="not this log's audit key"):
        published_heads({"audit_anchor": head}, KEY.public_key())
    with pytest.raises(ValueError, match="no published head"):
        published_heads({"content": {}}, KEY.public_key())


@pytest.mark.parametrize(
    ("tenant", "placed_as", "named"),
    [
        ("taiqian", "taiqian", None),
        ("", "", None),
        ("t", "", "t"),
        ("caiyuan\x00", "", "caiyuan\x00"),
        ("x" * 200, "", "x" * 64),
    ],
)
def test_an_entry_naming_an_unknown_tenant_is_the_districts(tenant: str, placed_as: str, named: str | None) -> None:
    where, detail = placed(tenant, {"door": "http"})
    assert where == placed_as and detail.get("tenant_named") == named and detail["door"] == "http"


# ---------------------------------------------------------------- known answers

# A fixed entry and what it must hash to, written out here (the canonical JSON was hashed with `sha256sum`, apart
# from this code): a change to what the hash covers (a field dropped, renamed or encoded otherwise; detail, tenant
# or time left out; ASCII escapes for Chinese) breaks every chain already written and every published anchor,
# and must fail here first.
KNOWN_ENTRY = Entry(
    seq=7,
    time="2026-12-01T02:03:04.000005Z",
    actor="acct-mzj-01",
    role="district_department",
    action="department.call",
    outcome="refused",
    tenant="taiqian",
    target="/api/v1/tenants/taiqian/member-units",
    grant_id="G-20261201-ab12",
    request_id="R-20261201-ab12",
    detail={"reason": "assessment_task_refused", "marker": "考核", "count": 2},
    prev_hash="9" * 64,
)
KNOWN_CANONICAL = (
    '{"action":"department.call","actor":"acct-mzj-01","detail":{"count":2,"marker":"考核",'
    '"reason":"assessment_task_refused"},"grant_id":"G-20261201-ab12","outcome":"refused",'
    '"prev_hash":"9999999999999999999999999999999999999999999999999999999999999999",'
    '"request_id":"R-20261201-ab12","role":"district_department","seq":7,'
    '"target":"/api/v1/tenants/taiqian/member-units","tenant":"taiqian","time":"2026-12-01T02:03:04.000005Z"}'
)
KNOWN_HASH = "c432709bc52a4fcc0a6316edc80c79e512cffb647c243797b9d754d3e7149799"
# Ed25519 signatures are deterministic: the checkpoint of that entry under a fixed (test-only) secret.
KNOWN_SECRET = "known-answer-test-secret-not-for-use"
KNOWN_SIGNATURE = (
    "b8aa9b1f2b9a79176b392870231d5cbd1da32f3d9b84832c7c82bef743be574e"
    "6deea7af22fbf221c10074b12ba919b09887ed51563e565275078014dff17e0c"
)


def test_the_entry_hash_has_a_known_answer() -> None:
    assert hashlib.sha256(KNOWN_CANONICAL.encode("utf-8")).hexdigest() == KNOWN_HASH
    assert entry_hash(KNOWN_ENTRY) == KNOWN_HASH


@pytest.mark.parametrize(
    "change",
    [
        {"detail": {}},
        {"tenant": ""},
        {"time": "2026-12-01T02:03:04.000006Z"},
        {"prev_hash": GENESIS},
        {"detail": {"reason": "assessment_task_refused", "marker": "考评", "count": 2}},
    ],
)
def test_every_field_the_hash_covers_changes_it(change: dict[str, Any]) -> None:
    assert entry_hash(replace(KNOWN_ENTRY, **change)) != KNOWN_HASH


def test_the_checkpoint_signature_has_a_known_answer() -> None:
    key = signing_key(KNOWN_SECRET)
    assert key.sign(checkpoint_message(7, KNOWN_HASH)).hex() == KNOWN_SIGNATURE
    assert checkpoint_message(7, KNOWN_HASH) == f"hongling-audit-checkpoint:7:{KNOWN_HASH}".encode()
