"""Rotating the secrets without downtime (docs/runbook.md, 轮换密钥), as pure logic: every process accepts the
rotation's other secret while the deployment restarts one process at a time, signs and seals only with its
current one, and refuses the former one once the rotation is over. The same through the running system:
tests/e2e/test_rotation.py; the re-sealing against the real database: tests/integration/test_rotation.py."""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gateway import sessions
from gateway.tokens import AuthError
from gateway.users import Account
from services.common import audit, rekey
from services.common.errors import Unauthenticated
from services.common.principal import Principal, mint, verify
from services.common.protect import Protector
from services.common.settings import Settings, describe_errors

OLD, NEW = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
WORKER = Principal("w-1", "subdistrict_admin", ("taiqian",))


# ---------------------------------------------------------------- the principal secret


def test_the_three_phases_of_a_principal_secret_rotation_never_refuse_a_live_call() -> None:
    """Phase 1: every process signs with OLD and accepts NEW; phase 2: signs with NEW and accepts OLD;
    phase 3: NEW alone. A process in either neighbouring phase accepts what the other signs."""
    phases = [(OLD, ()), (OLD, (NEW,)), (NEW, (OLD,)), (NEW, ())]
    for (sign_a, accept_a), (sign_b, accept_b) in itertools.pairwise(phases):
        from_a, from_b = mint(WORKER, sign_a), mint(WORKER, sign_b)
        assert verify(from_b, sign_a, accept_a) == WORKER
        assert verify(from_a, sign_b, accept_b) == WORKER


def test_after_the_rotation_the_former_principal_secret_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        verify(mint(WORKER, OLD), NEW)
    with pytest.raises(Unauthenticated, match="expired"):  # accepting another secret never lifts the expiry
        verify(mint(WORKER, NEW, ttl_seconds=5, now=time.time() - 60), OLD, (NEW,))


# ---------------------------------------------------------------- the session secret


def test_a_session_signed_before_the_switch_stays_valid_until_the_rotation_ends() -> None:
    now = datetime.now(UTC)
    account = Account("li", "李运维", "ops", ("*",), None, "x", False, 3, now, now)
    token, _claims = sessions.issue(account, OLD, 1800)
    assert sessions.decode(token, NEW, (OLD,)).sub == "li"
    with pytest.raises(AuthError, match="not recognised"):
        sessions.decode(token, NEW)


# ---------------------------------------------------------------- the data key


def test_personal_data_sealed_with_either_key_opens_and_only_the_current_key_seals() -> None:
    before, during, after = Protector(OLD), Protector(NEW, OLD), Protector(NEW)
    sealed_before = before.seal("13800138000")
    assert during.open(sealed_before) == "13800138000"
    sealed_during = during.seal("13900139000")
    assert after.open(sealed_during) == "13900139000"  # sealed with NEW: readable once OLD is gone
    assert during.sealed_with_current(sealed_during) and not during.sealed_with_current(sealed_before)
    with pytest.raises(ValueError, match="HONGLING_DATA_KEY"):
        after.open(sealed_before)  # what the re-sealing missed is refused, not misread


def test_an_id_number_is_found_by_either_key_s_look_up_hash_during_the_rotation() -> None:
    number = "370902199001011234"
    during = Protector(NEW, OLD)
    assert during.lookup_keys(number) == [Protector(NEW).lookup_key(number), Protector(OLD).lookup_key(number)]
    assert Protector(NEW).lookup_keys(number) == [Protector(NEW).lookup_key(number)]


def test_re_sealing_moves_a_document_to_the_current_key_and_its_look_up_hash_with_it() -> None:
    old, new = Protector(OLD), Protector(NEW)
    number = "370902199001011234"
    doc = {"_id": "p-1", "id_number_enc": old.seal(number), "id_number_key": old.lookup_key(number), "n": 1}
    again, n = rekey.reseal(doc, old, new)
    assert n == 1 and new.open(again["id_number_enc"]) == number
    assert again["id_number_key"] == new.lookup_key(number) and again["n"] == 1
    assert rekey.reseal(again, old, new) == (again, 0)  # idempotent: an interrupted run is run again


# ---------------------------------------------------------------- the audit signing key


def _chain(n: int) -> list[audit.Entry]:
    out: list[audit.Entry] = []
    prev = audit.GENESIS
    for seq in range(1, n + 1):
        draft = audit.Entry(seq, f"2026-12-06T00:00:{seq:02d}Z", "ops-1", "ops", "keys.rotate", "done", prev_hash=prev)
        out.append(replace(draft, hash=audit.entry_hash(draft)))
        prev = out[-1].hash
    return out


def test_checkpoints_signed_by_a_retired_audit_key_verify_only_while_it_is_trusted() -> None:
    old_key, new_key = audit.signing_key(OLD), audit.signing_key(NEW)
    entries = _chain(4)
    checkpoints = {
        2: (entries[1].hash, old_key.sign(audit.checkpoint_message(2, entries[1].hash))),
        4: (entries[3].hash, new_key.sign(audit.checkpoint_message(4, entries[3].hash))),
    }
    trusted = audit.trusted_keys(audit.public_key_text(old_key.public_key()))
    result = audit.verify_chain(entries, checkpoints, [new_key.public_key(), *trusted])
    assert result.ok and result.checkpoints == 2
    alone = audit.verify_chain(entries, checkpoints, new_key.public_key())
    assert not alone.ok and alone.first_broken_seq == 2 and alone.reason == "checkpoint signature is invalid"


def test_a_head_published_before_the_rotation_still_verifies_with_the_retired_key_trusted() -> None:
    old_key, new_key = audit.signing_key(OLD), audit.signing_key(NEW)
    digest = _chain(1)[0].hash
    head = {"seq": 1, "hash": digest, "signature": base64.b64encode(old_key.sign(audit.checkpoint_message(1, digest)))}
    head["signature"] = head["signature"].decode()  # type: ignore[union-attr]
    assert audit.published_heads(head, [new_key.public_key(), old_key.public_key()]) == {1: digest}
    with pytest.raises(ValueError, match="not this log's audit key"):
        audit.published_heads(head, new_key.public_key())


# ---------------------------------------------------------------- settings


def test_an_accepted_secret_is_checked_like_a_secret_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONGLING_DATA_KEY_ACCEPTED", "change-me-to-a-long-random-secret-for-this-deployment")
    with pytest.raises(ValidationError) as exc:
        Settings()
    text = describe_errors(exc.value)
    assert "HONGLING_DATA_KEY_ACCEPTED" in text and "change-me-to-a-long" not in text


def test_an_accepted_secret_equal_to_the_current_one_is_a_mistake_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    current = Settings().principal_secret
    monkeypatch.setenv("HONGLING_PRINCIPAL_SECRET_ACCEPTED", current)
    with pytest.raises(ValidationError, match="equals HONGLING_PRINCIPAL_SECRET"):
        Settings()


def test_trusted_audit_keys_must_be_public_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONGLING_AUDIT_TRUSTED_KEYS", "bm90IGEga2V5")
    with pytest.raises(ValidationError, match="not an Ed25519 public key"):
        Settings()
    good = audit.public_key_text(audit.signing_key(OLD).public_key())
    monkeypatch.setenv("HONGLING_AUDIT_TRUSTED_KEYS", f"{good}, {good}")
    assert Settings().audit_trusted_keys
    monkeypatch.delenv("HONGLING_AUDIT_TRUSTED_KEYS")
    monkeypatch.setenv("HONGLING_SESSION_SECRET_ACCEPTED", NEW)
    s = Settings()
    assert s.session_secrets() == (s.session_secret, NEW) and s.principal_secrets() == (s.principal_secret,)
