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

Reading here: `iter_entries` (seq order, a seq range, some tenants) and `verify` (the whole chain): the
log is the source of truth for the chain. Pages (newest first, by tenant, action, actor or grant) are
read from its SQL read model, services/common/audit_readmodel.py, which the projector keeps. An
export (`export_record`, one JSON object per entry with the exact UTC time the hash covers) can be
checked offline: `python -m services.common.audit verify-file`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pymongo
import pymongo.errors
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pymongo.database import Database

from services.common import metrics
from services.common.tenants import tenant_slugs

log = logging.getLogger(__name__)
GENESIS = "0" * 64
DATABASE = "hl_audit"
OUTCOMES = ("allowed", "refused", "done")
# How long a writer that lost a seq waits for the winner to move the head hint before reading the log.
HINT_WAIT_SECONDS = 0.5


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


def public_key_text(key: Ed25519PublicKey) -> str:
    """A public key as `audit public-key` prints it and HONGLING_AUDIT_TRUSTED_KEYS takes it (base64, 32 bytes)."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def trusted_keys(text: str) -> list[Ed25519PublicKey]:
    """The public keys of HONGLING_AUDIT_TRUSTED_KEYS (settings check their form)."""
    return [
        Ed25519PublicKey.from_public_bytes(base64.b64decode(part.strip())) for part in text.split(",") if part.strip()
    ]


Keys = Ed25519PublicKey | Sequence[Ed25519PublicKey]


def _keys(public_key: Keys | None) -> list[Ed25519PublicKey]:
    if public_key is None:
        return []
    return [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)


def signed_by_any(keys: Sequence[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    """Whether any of the keys made this signature: the current audit key, or a retired (or next) one a
    rotation trusts (docs/runbook.md, 轮换密钥)."""
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def verify_chain(
    entries: Iterable[Entry],
    checkpoints: Mapping[int, tuple[str, bytes]],
    public_key: Keys | None,
    *,
    start_seq: int = 1,
    start_hash: str = GENESIS,
    heads: Mapping[int, str] | None = None,
) -> Verification:
    """Check links, hashes, continuity and every checkpoint signature; name the first broken entry.

    `heads` (seq -> hash) are heads of the chain published elsewhere (printed on a monthly notice:
    services/publication/anchor.py), their signatures checked before (published_heads): each entry they
    name must still have that hash, and the log must reach them.

    The chain is expected to start at `start_seq`, linked to `start_hash` (the whole log: 1 and GENESIS;
    an exported range: its first entry's seq and prev_hash, which only the full log can confirm).
    `public_key` (or several: the current key and those a rotation trusts) may be None only when there are
    no checkpoints to check."""
    keys = _keys(public_key)
    if checkpoints and not keys:
        raise ValueError("checking signed checkpoints needs the public key")
    prev = start_hash
    expected_seq = start_seq
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
            if not signed_by_any(keys, signature, checkpoint_message(entry.seq, digest)):
                return Verification(False, checked, verified_checkpoints, entry.seq, "checkpoint signature is invalid")
            if digest != entry.hash:
                return Verification(
                    False, checked, verified_checkpoints, entry.seq, "entry hash differs from the signed checkpoint"
                )
            verified_checkpoints += 1
        published = (heads or {}).get(entry.seq)
        if published is not None and published != entry.hash:
            return Verification(
                False, checked, verified_checkpoints, entry.seq, "entry hash differs from the head published for it"
            )
        prev = entry.hash
        expected_seq += 1
    beyond_heads = [s for s in (heads or {}) if s >= expected_seq]
    if beyond_heads:
        return Verification(
            False,
            checked,
            verified_checkpoints,
            expected_seq,
            f"entries up to published head {max(beyond_heads)} are missing (log truncated)",
        )
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


def _anchors_in(doc: Any) -> Iterator[Mapping[str, Any]]:
    """Every published head in a JSON document: an object with seq, hash and signature, at any depth (a
    publication's JSON channel holds it at content.audit_anchor; a list of heads is fine too)."""
    if isinstance(doc, Mapping):
        if {"seq", "hash", "signature"} <= doc.keys():
            yield doc
            return
        for value in doc.values():
            yield from _anchors_in(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _anchors_in(value)


def published_heads(doc: Any, public_key: Keys) -> dict[int, str]:
    """seq -> hash of the heads published in a JSON document (see _anchors_in), each signature checked
    with the audit key: ValueError naming the head whose signature is not the key's, or when there is none.
    A head at seq 0 (the log was empty then) has nothing to check against and is left out."""
    heads: dict[int, str] = {}
    found = 0
    for anchor in _anchors_in(doc):
        found += 1
        try:
            seq, digest = int(anchor["seq"]), str(anchor["hash"])
            signature = base64.b64decode(str(anchor["signature"]), validate=True)
        except (TypeError, ValueError, binascii.Error):
            raise ValueError(f"published head {anchor.get('seq')!r} is not a head (seq, hash, signature)") from None
        if not signed_by_any(_keys(public_key), signature, checkpoint_message(seq, digest)):
            raise ValueError(f"published head {seq}: the signature is not this log's audit key") from None
        if seq > 0:
            heads[seq] = digest
    if not found:
        raise ValueError("no published head (seq, hash, signature) in the file")
    return heads


def export_record(entry: Entry) -> dict[str, Any]:
    """An entry as one line of an ndjson export: every field the hash covers, as hashed (time in UTC)."""
    return entry.body() | {"hash": entry.hash}


def entry_from_record(record: Mapping[str, Any]) -> Entry:
    """An entry read back from an export line (export_record, or the gateway's export, which adds
    display fields: the UTC time the hash covers is `time_utc` there)."""
    return Entry(
        seq=int(record["seq"]),
        time=str(record.get("time_utc") or record["time"]),
        actor=record["actor"],
        role=record["role"],
        action=record["action"],
        outcome=record["outcome"],
        tenant=record.get("tenant") or "",
        target=record.get("target") or "",
        grant_id=record.get("grant_id") or "",
        request_id=record.get("request_id") or "",
        detail=record.get("detail") or {},
        prev_hash=record["prev_hash"],
        hash=record["hash"],
    )


def verify_export(entries: Iterable[Entry], *, contiguous: bool = True) -> Verification:
    """Check an exported file offline (no key, no database).

    `contiguous` (a whole log or a seq range): hashes, links and that no entry is missing, from the first
    entry (whose own link only the full log can confirm). Otherwise (a tenant's entries, gaps expected):
    each entry's hash, and the links where seqs follow each other. Signed checkpoints are not in an
    export: only `verify` on the log itself checks them."""
    items = iter(entries)
    first = next(items, None)
    if first is None:
        return Verification(True, 0, 0)
    if contiguous:
        start_hash = GENESIS if first.seq == 1 else first.prev_hash
        return verify_chain(_chain_from(first, items), {}, None, start_seq=first.seq, start_hash=start_hash)
    checked = 0
    prev: Entry | None = None
    for entry in _chain_from(first, items):
        checked += 1
        if entry_hash(entry) != entry.hash:
            return Verification(False, checked, 0, entry.seq, "content does not match its hash")
        if prev is not None and entry.seq <= prev.seq:
            return Verification(False, checked, 0, entry.seq, f"out of order (after entry {prev.seq})")
        if prev is not None and entry.seq == prev.seq + 1 and entry.prev_hash != prev.hash:
            return Verification(False, checked, 0, entry.seq, "link to the previous entry is wrong")
        if entry.seq == 1 and entry.prev_hash != GENESIS:
            return Verification(False, checked, 0, entry.seq, "link to the previous entry is wrong")
        prev = entry
    return Verification(True, checked, 0)


def _chain_from(first: Entry, rest: Iterator[Entry]) -> Iterator[Entry]:
    yield first
    yield from rest


def entry_from_doc(doc: Mapping[str, Any]) -> Entry:
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


TENANT_NAMED_MAX = 64  # characters of an unknown tenant kept in an entry's detail


def placed(tenant: str, detail: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Where an entry belongs: a known tenant's, or the district level's. A caller may name any tenant (a
    refused call to `/api/v1/tenants/t/...`); such an entry is the district's, the name it gave kept in the
    detail as `tenant_named`, so that every entry's tenant is one with a place on the read side."""
    out = dict(detail or {})
    if tenant and tenant not in tenant_slugs():
        out["tenant_named"] = tenant[:TENANT_NAMED_MAX]
        tenant = ""
    return tenant, out


class AuditLog:
    def __init__(
        self,
        db: Database[Any],
        key: Ed25519PrivateKey,
        *,
        checkpoint_every: int = 1000,
        trusted: Sequence[Ed25519PublicKey] = (),
    ) -> None:
        self.entries = db["entries"]
        self.checkpoints = db["checkpoints"]
        self.meta = db["meta"]
        self.key = key
        self.public_key = key.public_key()
        # What a checkpoint or a published head may be signed with: this key, then the keys a rotation trusts.
        self.public_keys = [self.public_key, *trusted]
        self.checkpoint_every = checkpoint_every

    def ensure_indexes(self) -> None:
        """The index for a tenant's export (its entries in seq order). MongoDB uses it; the local FerretDB
        creates but does not use it for such filters. (Pages are read from the SQL read model.) Best
        effort: a log that cannot be reached now is still opened (appends say so when they fail)."""
        try:
            self.entries.create_index([("tenant", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)])
        except pymongo.errors.PyMongoError as exc:
            log.warning("audit log indexes not created now: %s", exc)

    def head(self) -> Entry | None:
        """The last entry: from the `head` hint on, in one query (entries written after the hint, by a
        writer that stopped before moving it, are in it). On the local FerretDB that query scans the
        collection (integer _ids are not pushed down): for the last seq alone, last_seq() is O(1)."""
        found = self._last_from(self._tip()[0] or 1)
        return entry_from_doc(found) if found is not None else None

    def last_seq(self) -> int:
        """The seq of the last entry as the head hint knows it (0: empty): one read of a one-document
        collection. An entry whose writer stopped between its insert and moving the hint is not counted."""
        return self._tip()[0]

    def _last_from(self, seq: int, projection: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The last of the consecutive entries from the first at or after `seq` (None: there is none)."""
        last: dict[str, Any] | None = None
        cursor = self.entries.find({"_id": {"$gte": seq}}, projection, sort=[("_id", pymongo.ASCENDING)])
        with cursor:
            for doc in cursor:
                if last is not None and int(doc["_id"]) != int(last["_id"]) + 1:
                    break
                last = doc
        return last

    def _tip(self) -> tuple[int, str]:
        """(seq, hash) of the last entry as the hint knows it: one read of a one-document collection.
        The entries collection itself is not touched on the normal path (on the local FerretDB any
        lookup there scans it, which would make appends slower as the log grows)."""
        hint = self.meta.find_one({"_id": "head"})
        return (int(hint["seq"]), str(hint["hash"])) if hint else (0, GENESIS)

    def _move_head(self, seq: int, digest: str) -> None:
        # A DuplicateKeyError means the hint is already at or past this entry.
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):
            self.meta.update_one(
                {"_id": "head", "seq": {"$lt": seq}},
                {"$set": {"seq": seq, "hash": digest}},
                upsert=True,
            )

    def _taken(self, seq: int) -> tuple[int, str]:
        """(seq, hash) to chain onto after losing `seq` to another writer.

        The winner moves the head hint right after its insert: wait for that (reads of the one-document
        meta collection) rather than read the entry, which on the local FerretDB scans the whole log
        (measured: 13-18 s per look-up at 100,000 entries, so racing writers never caught up). Only when
        the hint does not move (its writer stopped between insert and hint, or the hint fell behind)
        are the entries read from `seq` on, once, and the hint repaired."""
        deadline = time.monotonic() + HINT_WAIT_SECONDS
        while True:
            hint_seq, hint_hash = self._tip()
            if hint_seq >= seq:
                return hint_seq, hint_hash
            if time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        last = self._last_from(seq, {"hash": 1})
        if last is None:  # lost, yet not there (deleted?): start again from the hint (attempts are capped)
            return self._tip()
        self._move_head(int(last["_id"]), str(last["hash"]))
        return int(last["_id"]), str(last["hash"])

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
        tenant, detail = placed(tenant, detail)
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
                # Another writer took this seq (or the hint lagged): chain onto the entry it wrote.
                last_seq, last_hash = self._taken(seq)
                continue
            self._move_head(entry.seq, entry.hash)
            metrics.AUDIT_ENTRIES.labels(metrics.tenant_label(tenant), outcome).inc()
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
                "key": public_key_text(self.public_key),  # which key signed it (a rotation's log shows both)
                "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            },
            upsert=True,
        )

    @staticmethod
    def _query(
        *,
        tenant: str | None = None,
        tenants: Collection[str] | None = None,
        seqs: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """The entries filter: one tenant ("" = district level), or any of `tenants`; `seqs` a range on
        _id such as {"$gte": 500}. None: no condition."""
        query: dict[str, Any] = {}
        if tenant is not None:
            query["tenant"] = tenant
        elif tenants is not None:
            query["tenant"] = {"$in": sorted(set(tenants))}
        if seqs:
            query["_id"] = dict(seqs)
        return query

    def iter_entries(
        self,
        *,
        tenant: str | None = None,
        tenants: Collection[str] | None = None,
        from_seq: int | None = None,
        to_seq: int | None = None,
        batch: int = 2000,
    ) -> Iterator[Entry]:
        """Entries in seq order, optionally from_seq..to_seq (inclusive) and of one tenant or some.

        One cursor, read `batch` documents at a time: the local FerretDB scans the collection per query,
        so one query for the whole range is far cheaper than a query per page."""
        seqs: dict[str, int] = {}
        if from_seq is not None:
            seqs["$gte"] = from_seq
        if to_seq is not None:
            seqs["$lte"] = to_seq
        query = self._query(tenant=tenant, tenants=tenants, seqs=seqs)
        cursor = self.entries.find(query, sort=[("_id", pymongo.ASCENDING)], batch_size=batch)
        try:
            for doc in cursor:
                yield entry_from_doc(doc)
        finally:
            cursor.close()

    def verify(self, heads: Mapping[int, str] | None = None) -> Verification:
        """The whole chain, its signed checkpoints and any published heads (seq -> hash, signatures checked)."""
        checkpoints = {int(c["_id"]): (c["hash"], bytes(c["signature"])) for c in self.checkpoints.find()}
        return verify_chain(self.iter_entries(), checkpoints, self.public_keys, heads=heads)


def open_log(settings: Any, **client_options: Any) -> AuditLog:
    """The deployment's audit log (district-level database) with its signing key."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.mongo_uri, tz_aware=True, **client_options)
    audit = AuditLog(
        client[DATABASE],
        signing_key(settings.audit_signing_key),
        trusted=trusted_keys(getattr(settings, "audit_trusted_keys", "")),
    )
    # Best effort and in the background: opening the log (a gateway starting) never waits for the database.
    threading.Thread(target=audit.ensure_indexes, name="audit-indexes", daemon=True).start()
    metrics.init_tenant_series(metrics.AUDIT_ENTRIES, "refused")  # a refusal rate from 0
    return audit


_shared_lock = threading.Lock()
_shared: dict[str, AuditLog] = {}


def shared_log() -> AuditLog:
    """This process's audit log, opened on first use (services that append now and then, e.g. the org
    service recording reveals). Server selection gives up after 3 s, so a caller that must not go on
    without its entry (a reveal) fails within a gRPC deadline instead of hanging."""
    with _shared_lock:
        found = _shared.get("log")
        if found is None:
            from services.common.settings import get_settings

            found = _shared["log"] = open_log(get_settings(), serverSelectionTimeoutMS=3000, connectTimeoutMS=3000)
        return found


def read_export(lines: Iterable[str]) -> Iterator[Entry]:
    """The entries of an ndjson export, line by line (blank lines skipped)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield entry_from_record(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number} is not an exported audit entry: {exc!r}") from None


def main(argv: list[str] | None = None) -> int:
    """python -m services.common.audit verify — check the whole chain; exit 1 and name the first broken entry.

    `verify --heads FILE.json` also checks the chain against heads published in a monthly publication (its
    JSON channel, or any JSON holding {seq, hash, signature} objects): each signature must be the audit
    key's, and each entry named must still have the published hash.

    `verify-file FILE.ndjson [--partial]` checks an export offline (no database, no key): `--partial` for
    a tenant's export, where entries of other tenants are missing by design."""
    import argparse

    from services.common.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m services.common.audit")
    parser.add_argument("command", choices=["verify", "checkpoint", "verify-file", "public-key"])
    parser.add_argument("file", nargs="?", help="verify-file: the ndjson export to check")
    parser.add_argument("--partial", action="store_true", help="verify-file: a tenant's export (gaps expected)")
    parser.add_argument(
        "--heads", action="append", default=[], metavar="FILE", help="verify: published heads to check (JSON)"
    )
    args = parser.parse_args(argv)
    if args.command == "verify-file":
        if not args.file:
            parser.error("verify-file needs the export file")
        with open(args.file, encoding="utf-8") as fh:
            try:
                checked = verify_export(read_export(fh), contiguous=not args.partial)
            except ValueError as exc:
                print(f"{args.file}: {exc}")
                return 2
        print(f"{args.file}: {checked.summary()}")
        return 0 if checked.ok else 1
    if args.command == "public-key":
        # The public key of HONGLING_AUDIT_SIGNING_KEY, for HONGLING_AUDIT_TRUSTED_KEYS during a rotation and for
        # whoever checks published heads. Needs no database.
        print(public_key_text(signing_key(get_settings().audit_signing_key).public_key()))
        return 0
    audit = open_log(get_settings())
    if args.command == "checkpoint":
        seq = audit.checkpoint()
        print(f"signed checkpoint at entry {seq}" if seq else "audit log is empty")
        return 0
    heads: dict[int, str] = {}
    for name in args.heads:
        try:
            with open(name, encoding="utf-8") as fh:
                found = published_heads(json.load(fh), audit.public_keys)
        except (OSError, ValueError) as exc:
            print(f"{name}: {exc}")
            return 2
        for seq, digest in found.items():
            if heads.setdefault(seq, digest) != digest:
                print(f"{name}: published head {seq} has a hash another file gives differently")
                return 1
    started = time.perf_counter()
    result = audit.verify(heads)
    against = f", {len(heads)} published head(s) matched" if heads and result.ok else ""
    print(f"{result.summary()}{against} in {time.perf_counter() - started:.2f} s")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
