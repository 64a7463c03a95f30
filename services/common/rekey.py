"""python -m services.common.rekey — re-seal data written with the former built-in keys, once; and
`python -m services.common.rekey rotate`, the re-sealing step of a key rotation (docs/runbook.md, 轮换密钥),
which moves what HONGLING_DATA_KEY_ACCEPTED sealed and what a HONGLING_AUDIT_TRUSTED_KEYS key signed to the
current keys while the services run (each rewrite compares and sets, so a concurrent change wins).

Before secrets were generated per state dir (deploy/local/secrets.sh), every process fell back on keys
written in the code (services.common.settings.FORMER_BUILT_IN): published, so data they protected is
readable and forgeable by anyone with the database and this repository's history. A state dir from then
holds personal data sealed with the former data key and audit checkpoints signed with the former audit
key. This run moves them to the current keys (HONGLING_DATA_KEY, HONGLING_AUDIT_SIGNING_KEY):

- every string, anywhere in a hl_* database but the audit log, that opens with the former data key is
  sealed again with the current one; a person's ID-number lookup key (id_number_key, a keyed hash that
  keeps ID numbers unique and finds a person on a spreadsheet import) is recomputed from the number;
- every audit checkpoint whose signature verifies with the former audit key and whose entry is intact in
  the hash chain is signed again with the current key. One at or after a break in the chain is left as
  it is, so `python -m services.common.audit verify` still names the break. The entries themselves are
  never touched (their hashes cover them, not any key). The run is recorded in the audit log.

The former keys are only ever used to open and to verify here, never to seal or sign. A value already
sealed or signed with the current key does not open or verify with the former one and is left alone, so
the run is idempotent: an interrupted run is simply run again. Run it with the services stopped
(deploy/local/services.sh start does, once, when secrets.sh created secrets for a state dir in which
services had run). A deployment that ran with the former keys runs it once after setting its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymongo
import pymongo.errors
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pymongo.database import Database

from services.common import audit
from services.common.protect import Protector, protector
from services.common.settings import FORMER_BUILT_IN, Settings, get_settings

# A Fernet token is the base64url of a 0x80 version byte and a timestamp: it always starts so.
_FERNET_PREFIX = "gAAAAA"
# Keyed look-up hashes stored beside a sealed value: {hash field: sealed field} (services/org/handlers.py).
LOOKUP_FIELDS = {"id_number_key": "id_number_enc"}


@dataclass
class Counts:
    values: int = 0  # sealed values re-sealed
    documents: int = 0  # documents rewritten
    checkpoints: int = 0  # audit checkpoints signed again
    checkpoints_left: int = 0  # former-key checkpoints at or after a break in the chain, left as they are
    conflicts: int = 0  # documents left: their new look-up hash is another's (two people, one ID number)

    def summary(self) -> str:
        text = (
            f"re-sealed {self.values} personal values in {self.documents} documents; "
            f"re-signed {self.checkpoints} audit checkpoints"
        )
        if self.checkpoints_left:
            text += (
                f"; left {self.checkpoints_left} checkpoints signed with the former key, at or after a break in "
                "the audit chain (python -m services.common.audit verify names it)"
            )
        if self.conflicts:
            text += (
                f"; left {self.conflicts} documents whose ID number another person already has (a duplicate "
                "registered during the rotation: merge or delete one in the org data, then run this again)"
            )
        return text


def _reseal_str(value: str, old: Protector, new: Protector) -> str | None:
    """The value sealed with `new`, if it is a token that opens with `old`; else None."""
    if not value.startswith(_FERNET_PREFIX):
        return None
    try:
        plain = old.open(value)
    except ValueError:
        return None  # not sealed with the former key (already re-sealed, or not a token of ours)
    return new.seal(plain)


def reseal(value: Any, old: Protector, new: Protector) -> tuple[Any, int]:
    """`value` (a document, or any part of one) with every former-key token sealed again with the new key,
    and the look-up hashes beside re-sealed values recomputed; and how many values were re-sealed."""
    if isinstance(value, str):
        again = _reseal_str(value, old, new)
        return (value, 0) if again is None else (again, 1)
    if isinstance(value, list):
        out_list, total = [], 0
        for item in value:
            item, n = reseal(item, old, new)
            out_list.append(item)
            total += n
        return out_list, total
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        total = 0
        changed: set[str] = set()
        for key, item in value.items():
            item, n = reseal(item, old, new)
            out[key] = item
            if n:
                total += n
                changed.add(key)
        for hash_field, sealed_field in LOOKUP_FIELDS.items():
            stored = out.get(hash_field)
            # "none:<id>" marks a person without an ID number (unique by construction): not a hash.
            if sealed_field in changed and isinstance(stored, str) and stored and not stored.startswith("none:"):
                out[hash_field] = new.lookup_key(new.open(out[sealed_field]))
        return out, total
    return value, 0


def rekey_database(
    db: Database[Any], old: Protector, new: Protector, progress: Callable[[str], None] | None = None
) -> Counts:
    """Re-seal every `old`-key value in one database, document by document, while the services may run.

    Each rewrite sets only the fields that held such a value, and only if they still hold what was read
    (compare and set): a service that changed the document meanwhile wins, and the document is read again. A
    look-up hash the unique index already holds for another document (two people with one ID number, stored
    on either side of the rotation) is left for a person to settle: counted in `conflicts`, never merged."""
    counts = Counts()
    for name in sorted(db.list_collection_names()):
        if name.startswith("system."):
            continue
        collection = db[name]
        done = 0
        for doc in collection.find({}):
            n = _reseal_one(collection, doc, old, new, counts)
            if n:
                done += 1
        if done and progress is not None:
            progress(f"{db.name}.{name}: {done} documents re-sealed")
    return counts


def _duplicate_key(exc: pymongo.errors.OperationFailure) -> bool:
    """A unique index refused the write. MongoDB says so with code 11000 (DuplicateKeyError); FerretDB 1.24 on
    PostgreSQL answers an update that breaks a unique index with InternalError carrying PostgreSQL's
    unique_violation, SQLSTATE 23505 (an insert gets 11000 there too)."""
    return isinstance(exc, pymongo.errors.DuplicateKeyError) or "SQLSTATE 23505" in str(exc)


def _reseal_one(collection: Any, doc: Mapping[str, Any], old: Protector, new: Protector, counts: Counts) -> int:
    for _attempt in range(20):
        again, n = reseal(doc, old, new)
        if not n:
            return 0
        changed = [k for k in again if again[k] != doc.get(k)]
        try:
            result = collection.update_one(
                {"_id": doc["_id"], **{k: doc.get(k) for k in changed}}, {"$set": {k: again[k] for k in changed}}
            )
        except pymongo.errors.OperationFailure as exc:
            if not _duplicate_key(exc):
                raise
            counts.conflicts += 1
            return 0
        if result.matched_count:
            counts.values += n
            counts.documents += 1
            return n
        fresh = collection.find_one({"_id": doc["_id"]})
        if fresh is None:
            return 0  # deleted meanwhile: nothing left to re-seal
        doc = fresh
    raise RuntimeError(f"document {doc['_id']!r} in {collection.name} kept changing; run the rekey again")


def resign_checkpoints(log: audit.AuditLog, former: Sequence[Ed25519PublicKey]) -> tuple[int, int]:
    """Sign again, with the log's (current) key, every checkpoint that verifies with a former key (and not the
    current one) and whose entry is intact in the chain; returns (signed again, left as they are)."""
    former_public = [k for k in former if k.public_bytes_raw() != log.public_key.public_bytes_raw()]
    signed_before: dict[int, tuple[str, bytes]] = {}
    for cp in log.checkpoints.find({}):
        seq, digest, signature = int(cp["_id"]), str(cp["hash"]), bytes(cp["signature"])
        if not audit.signed_by_any(former_public, signature, audit.checkpoint_message(seq, digest)):
            continue  # signed with the current key already, or broken: verify() judges it
        signed_before[seq] = (digest, signature)
    if not signed_before:
        return 0, 0
    checked = audit.verify_chain(log.iter_entries(to_seq=max(signed_before)), signed_before, former_public)
    intact_below = None if checked.ok else checked.first_broken_seq
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    signed = left = 0
    for seq, (digest, _signature) in sorted(signed_before.items()):
        if intact_below is not None and seq >= intact_below:
            left += 1
            continue
        log.checkpoints.update_one(
            {"_id": seq},
            {
                "$set": {
                    "signature": log.key.sign(audit.checkpoint_message(seq, digest)),
                    "key": audit.public_key_text(log.public_key),
                    "resigned_at": now,
                }
            },
        )
        signed += 1
    return signed, left


def rekey(client: pymongo.MongoClient[Any], settings: Settings) -> Counts:
    """Move every hl_* database of this deployment from the former built-in keys to the settings' keys."""
    old, new = protector(FORMER_BUILT_IN["data_key"]), protector(settings.data_key)
    counts = Counts()
    for name in sorted(client.list_database_names()):
        if name.startswith("hl_") and name != audit.DATABASE:
            found = rekey_database(client[name], old, new)
            counts.values += found.values
            counts.documents += found.documents
    log = audit.AuditLog(client[audit.DATABASE], audit.signing_key(settings.audit_signing_key))
    counts.checkpoints, counts.checkpoints_left = resign_checkpoints(
        log, [audit.signing_key(FORMER_BUILT_IN["audit_signing_key"]).public_key()]
    )
    if counts.values or counts.checkpoints or counts.checkpoints_left:
        log.append(
            actor="cli:rekey",
            role="ops",
            action="keys.rekey",
            outcome="done",
            detail={
                "from": "former built-in keys",
                "values_resealed": counts.values,
                "documents": counts.documents,
                "checkpoints_resigned": counts.checkpoints,
                "checkpoints_left": counts.checkpoints_left,
            },
        )
    return counts


def rotate(client: pymongo.MongoClient[Any], settings: Settings, progress: Callable[[str], None] = print) -> Counts:
    """The second step of a key rotation (docs/runbook.md, 轮换密钥), run while the services serve: re-seal
    with HONGLING_DATA_KEY every value HONGLING_DATA_KEY_ACCEPTED sealed, and sign again with
    HONGLING_AUDIT_SIGNING_KEY every checkpoint a key of HONGLING_AUDIT_TRUSTED_KEYS signed. Idempotent."""
    counts = Counts()
    if settings.data_key_accepted:
        old, new = protector(settings.data_key_accepted), protector(settings.data_key)
        names = [n for n in sorted(client.list_database_names()) if n.startswith("hl_") and n != audit.DATABASE]
        for i, name in enumerate(names, 1):
            found = rekey_database(client[name], old, new, progress)
            counts.values += found.values
            counts.documents += found.documents
            counts.conflicts += found.conflicts
            progress(f"[rekey {i}/{len(names)}] {name}: {found.values} values in {found.documents} documents")
    log = audit.open_log(settings)
    trusted = audit.trusted_keys(settings.audit_trusted_keys)
    if trusted:
        counts.checkpoints, counts.checkpoints_left = resign_checkpoints(log, trusted)
        progress(f"[rekey] audit: {counts.checkpoints} checkpoints signed again with the current key")
    log.append(
        actor="cli:rekey",
        role="ops",
        action="keys.rotate",
        outcome="done",
        detail={
            "values_resealed": counts.values,
            "documents": counts.documents,
            "conflicts": counts.conflicts,
            "checkpoints_resigned": counts.checkpoints,
            "checkpoints_left": counts.checkpoints_left,
            "audit_key": audit.public_key_text(log.public_key),
        },
    )
    return counts


def main(argv: list[str] | None = None) -> int:
    """`python -m services.common.rekey` — once, from the former built-in keys (services stopped);
    `python -m services.common.rekey rotate` — a rotation's re-sealing, services running (docs/runbook.md)."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["rotate"]):
        print("usage: python -m services.common.rekey [rotate]", file=sys.stderr)
        return 2
    settings = get_settings()  # refuses to start without secrets of its own, or with a published one
    if args == ["rotate"] and not (settings.data_key_accepted or settings.audit_trusted_keys):
        print(
            "rekey rotate: nothing to rotate from: set HONGLING_DATA_KEY_ACCEPTED to the former data key and/or "
            "HONGLING_AUDIT_TRUSTED_KEYS to the former audit key's public key (docs/runbook.md, 轮换密钥)",
            file=sys.stderr,
        )
        return 2
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10000
    )
    try:
        counts = rotate(client, settings) if args else rekey(client, settings)
    except pymongo.errors.PyMongoError as exc:
        print(f"rekey: cannot reach the database at {settings.mongo_uri}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"rekey: {counts.summary()}")
    return 1 if counts.conflicts else 0


if __name__ == "__main__":
    raise SystemExit(main())
