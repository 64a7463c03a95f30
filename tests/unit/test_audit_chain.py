from dataclasses import replace

from services.common.audit import GENESIS, Entry, checkpoint_message, entry_hash, signing_key, verify_chain

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
