"""An append-only audit log that nobody can rewrite unnoticed: hash-chained entries, signed checkpoints.

Each entry holds the hash of the one before it; its own hash covers its content and that link, so
changing, removing or reordering any entry breaks every hash after it. Every `checkpoint_every`
entries (and on demand) a checkpoint records (seq, hash) signed with Ed25519: someone who can write
the database but not the signing key cannot rebuild a consistent chain past a checkpoint.

Storage: one district-level database (not per tenant) — `hl_audit` — with collections `entries`
(_id = seq, 1, 2, 3 …), `checkpoints` (_id = seq) and `meta` (the head hint, so an append costs a few
look-ups by _id, whatever the length of the log). Appends from several processes are serialised
by the unique _id: the loser of a race re-reads the head and tries the next seq. Entries never
carry personal data: who acted (account id and role), what, on which tenant/target, the outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pymongo
import pymongo.errors
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pymongo.database import Database

log = logging.getLogger(__name__)
GENESIS = "0" * 64
DATABASE = "hl_audit"
OUTCOMES = ("allowed", "refused", "done")


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str  # RFC 3339, UTC
    actor: str  # account id (never a name, phone or ID number)
    role: str
    action: str  # e.g. department.call, grant.approve, personal_data.reveal, role.change
    outcome: str  # allowed, refused, done
    tenant: str = ""  # "" = district level
    target: str = ""
    grant_id: str = ""
    request_id: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
        data["detail"] = dict(self.detail)
        return data


def entry_hash(entry: Entry) -> str:
    canonical = json.dumps(entry.body(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def checkpoint_message(seq: int, digest: str) -> bytes:
    return f"hongling-audit-checkpoint:{seq}:{digest}".encode()


def signing_key(secret: str) -> Ed25519PrivateKey:
    """The checkpoint signing key, derived from a secret (HONGLING_AUDIT_SIGNING_KEY)."""
    seed = hashlib.sha256(b"hongling-audit-ed25519:" + secret.encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


@dataclass
class Verification:
    ok: bool
    checked: int
    checkpoints: int
    first_broken_seq: int | None = None
    reason: str = ""

    def summary(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} entries, {self.checkpoints} signed checkpoints verified"
        return f"audit chain BROKEN at entry {self.first_broken_seq}: {self.reason} ({self.checked} entries read)"


def verify_chain(
    entries: Iterable[Entry], checkpoints: Mapping[int, tuple[str, bytes]], public_key: Ed25519PublicKey
) -> Verification:
    """Check links, hashes, continuity and every checkpoint signature; name the first broken entry."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    verified_checkpoints = 0
    for entry in entries:
        checked += 1
        if entry.seq != expected_seq:
            return Verification(
                False,
                checked,
                verified_checkpoints,
                expected_seq,
                f"entry {expected_seq} is missing (next found is {entry.seq})",
            )
        if entry.prev_hash != prev:
            return Verification(False, checked, verified_checkpoints, entry.seq, "link to the previous entry is wrong")
        if entry_hash(entry) != entry.hash:
            return Verification(False, checked, verified_checkpoints, entry.seq, "content does not match its hash")
        cp = checkpoints.get(entry.seq)
        if cp is not None:
            digest, signature = cp
            try:
                public_key.verify(signature, checkpoint_message(entry.seq, digest))
            except InvalidSignature:
                return Verification(False, checked, verified_checkpoints, entry.seq, "checkpoint signature is invalid")
            if digest != entry.hash:
                return Verification(
                    False, checked, verified_checkpoints, entry.seq, "entry hash differs from the signed checkpoint"
                )
            verified_checkpoints += 1
        prev = entry.hash
        expected_seq += 1
    beyond = [s for s in checkpoints if s >= expected_seq]
    if beyond:
        return Verification(
            False,
            checked,
            verified_checkpoints,
            expected_seq,
            f"entries up to signed checkpoint {max(beyond)} are missing (log truncated)",
        )
    return Verification(True, checked, verified_checkpoints)


def _from_doc(doc: Mapping[str, Any]) -> Entry:
    return Entry(
        seq=int(doc["_id"]),
        time=doc["time"],
        actor=doc["actor"],
        role=doc["role"],
        action=doc["action"],
        outcome=doc["outcome"],
        tenant=doc.get("tenant", ""),
        target=doc.get("target", ""),
        grant_id=doc.get("grant_id", ""),
        request_id=doc.get("request_id", ""),
        detail=doc.get("detail") or {},
        prev_hash=doc["prev_hash"],
        hash=doc["hash"],
    )


class AuditLog:
    def __init__(self, db: Database[Any], key: Ed25519PrivateKey, *, checkpoint_every: int = 1000) -> None:
        self.entries = db["entries"]
        self.checkpoints = db["checkpoints"]
        self.meta = db["meta"]
        self.key = key
        self.public_key = key.public_key()
        self.checkpoint_every = checkpoint_every

    def head(self) -> Entry | None:
        """The last entry. The `head` hint document makes this O(1); entries written after the hint
        (a writer that crashed before moving it) are found by stepping forward by _id."""
        hint = self.meta.find_one({"_id": "head"})
        seq = int(hint["seq"]) if hint else 0
        doc = self.entries.find_one({"_id": seq}) if seq else None
        while True:
            nxt = self.entries.find_one({"_id": seq + 1})
            if nxt is None:
                return _from_doc(doc) if doc else None
            doc, seq = nxt, seq + 1

    def _tip(self) -> tuple[int, str]:
        """(seq, hash) of the last entry as the hint knows it: one read of a one-document collection.
        The entries collection itself is not touched on the normal path (on the local FerretDB any
        lookup there scans it, which would make appends slower as the log grows)."""
        hint = self.meta.find_one({"_id": "head"})
        return (int(hint["seq"]), str(hint["hash"])) if hint else (0, GENESIS)

    def _move_head(self, entry: Entry) -> None:
        # A DuplicateKeyError means the hint is already at or past this entry.
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):
            self.meta.update_one(
                {"_id": "head", "seq": {"$lt": entry.seq}},
                {"$set": {"seq": entry.seq, "hash": entry.hash}},
                upsert=True,
            )

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        outcome: str,
        tenant: str = "",
        target: str = "",
        grant_id: str = "",
        request_id: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> Entry:
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {OUTCOMES}")
        last_seq, last_hash = self._tip()
        for _attempt in range(100):
            seq = last_seq + 1
            draft = Entry(
                seq=seq,
                time=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                actor=actor,
                role=role,
                action=action,
                outcome=outcome,
                tenant=tenant,
                target=target,
                grant_id=grant_id,
                request_id=request_id,
                detail=dict(detail or {}),
                prev_hash=last_hash,
            )
            entry = Entry(**{**asdict(draft), "hash": entry_hash(draft)})
            doc = entry.body() | {"hash": entry.hash, "_id": seq}
            doc.pop("seq")
            try:
                self.entries.insert_one(doc)
            except pymongo.errors.DuplicateKeyError:
                # Another writer took this seq (or the hint lagged): chain onto that entry.
                taken = self.entries.find_one({"_id": seq}, {"hash": 1})
                if taken is not None:
                    last_seq, last_hash = seq, taken["hash"]
                continue
            self._move_head(entry)
            if seq % self.checkpoint_every == 0:
                self._sign(entry)
            return entry
        raise RuntimeError("audit log append kept losing the race for 100 attempts")

    def checkpoint(self) -> int | None:
        """Sign the current head now (e.g. on a timer); returns its seq."""
        head = self.head()
        if head is None:
            return None
        self._sign(head)
        return head.seq

    def _sign(self, entry: Entry) -> None:
        signature = self.key.sign(checkpoint_message(entry.seq, entry.hash))
        self.checkpoints.replace_one(
            {"_id": entry.seq},
            {
                "_id": entry.seq,
                "hash": entry.hash,
                "signature": signature,
                "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            },
            upsert=True,
        )

    def iter_entries(self, *, tenant: str | None = None, batch: int = 2000) -> Iterator[Entry]:
        query: dict[str, Any] = {} if tenant is None else {"tenant": tenant}
        cursor = self.entries.find(query, sort=[("_id", pymongo.ASCENDING)], batch_size=batch)
        for doc in cursor:
            yield _from_doc(doc)

    def verify(self) -> Verification:
        checkpoints = {int(c["_id"]): (c["hash"], bytes(c["signature"])) for c in self.checkpoints.find()}
        return verify_chain(self.iter_entries(), checkpoints, self.public_key)


def open_log(settings: Any) -> AuditLog:
    """The deployment's audit log (district-level database) with its signing key."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.mongo_uri, tz_aware=True)
    return AuditLog(client[DATABASE], signing_key(settings.audit_signing_key))


def main(argv: list[str] | None = None) -> int:
    """python -m services.common.audit verify — check the whole chain; exit 1 and name the first broken entry."""
    import argparse
    import time

    from services.common.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m services.common.audit")
    parser.add_argument("command", choices=["verify", "checkpoint"])
    args = parser.parse_args(argv)
    audit = open_log(get_settings())
    if args.command == "checkpoint":
        seq = audit.checkpoint()
        print(f"signed checkpoint at entry {seq}" if seq else "audit log is empty")
        return 0
    started = time.perf_counter()
    result = audit.verify()
    print(f"{result.summary()} in {time.perf_counter() - started:.2f} s")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
