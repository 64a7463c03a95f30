"""Measures and boards: reads from the read side (readmodel.py), the tenant's settings, and the boards' freeze
and corrections.

Freezing (四榜 of a closed quarter): the consumer tells `quarters_changed` which quarters its batch changed.
A quarter not frozen yet gets the durable timer "boards:<quarter>" at its end + the tenant's grace
(grace_hours, default 72); a frozen one gets the same timer 30 seconds later (CORRECTION_DELAY_SECONDS,
so that a burst of late events makes one correction). The timer's handler computes the quarter's boards for
the tenant and each community with facts, and for each one whose boards differ from the latest frozen version
(or that has none) writes the next version: the BoardSetDoc with its BoardsFrozen event in one insert (the
outbox), then the same rows in eval_m_board_sets / eval_m_board_entries. A correction states the difference
(`changes`) and the version it corrects; nothing frozen is ever changed in place. The handler is idempotent:
a version already on the write side (a crash before its rows were written) has its rows written, and a set
that has not changed writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import mongoengine as me
import pymongo.errors
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.events.v1 import evaluation_events_pb2 as eev
from hongling.org.v1 import org_pb2, org_pb2_grpc
from sqlalchemy import Connection, and_, select

from services.common import clocks, community, context, readside, unitofwork
from services.common.context import current_principal, require_tenant
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.grpc_client import LazyStub
from services.common.principal import Principal
from services.common.unitofwork import Conflicts, UnitOfWork
from services.evaluation.measures import domain, readmodel
from services.evaluation.measures.documents import BoardSetDoc, MeasureSettingsDoc

log = logging.getLogger(__name__)
BOARDS_KIND = "evaluation.boards"
SETTINGS_ID = "settings"
CORRECTION_DELAY_SECONDS = 30.0
SETTINGS_TTL = 30.0
READERS = frozenset({"community_worker", "subdistrict_admin", "ops", "service"})
ADMINS = frozenset({"subdistrict_admin"})
OPS = frozenset({"ops"})
MAX_PAGE = 200

_org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", "hongling.org.v1.OrgService", "evaluation")


def utcnow() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _caller() -> Principal:
    p = current_principal.get()
    if p is None:
        raise PermissionDenied("no principal (未认证)")
    return p


def require_role(roles: frozenset[str], what: str) -> Principal:
    p = _caller()
    if p.role not in roles:
        raise PermissionDenied(f"{p.role} may not {what} (无权操作)")
    return p


CONFLICTS = Conflicts(
    stale=lambda i, v, e: Aborted(f"the measure settings are at version {v}, not {e}: reload and retry (设置已被修改)"),
    raced=lambda i: Aborted(
        "the measure settings were changed at the same moment: reload and retry (设置已被同时修改)"
    ),
    busy=lambda i: Aborted("the measure settings kept changing: retry shortly (设置正被频繁修改，请重试)"),
)

# ---------------------------------------------------------------- settings (weights)

_settings_cache: dict[str, tuple[float, domain.Settings, int, datetime | None]] = {}
_cache_lock = threading.Lock()


def settings_of(uow: UnitOfWork = unitofwork.MONGO) -> tuple[domain.Settings, int, datetime | None]:
    """The tenant's settings (defaults until set), their version as the API shows it (1: the defaults, never
    set; then the stored document's version + 1, so that every ETag is a positive number) and when last set."""
    tenant = require_tenant()
    with _cache_lock:
        hit = _settings_cache.get(tenant)
        if hit is not None and time.monotonic() - hit[0] < SETTINGS_TTL:
            return hit[1], hit[2], hit[3]
    doc = uow.load(MeasureSettingsDoc, SETTINGS_ID)
    if doc is None:
        found = (domain.Settings(), 1, None)
    else:
        found = (
            domain.Settings(
                {**domain.DEFAULT_WEIGHTS, **{k: float(v) for k, v in (doc.weights or {}).items()}},
                float(doc.prior),
                int(doc.min_workload),
                int(doc.grace_hours),
            ),
            int(doc.version) + 1,
            doc.updated_at,
        )
    with _cache_lock:
        _settings_cache[tenant] = (time.monotonic(), *found)
    return found


def put_settings(
    weights: Mapping[str, float],
    prior: float,
    min_workload: int,
    grace_hours: int,
    expected_version: int,
    uow: UnitOfWork = unitofwork.MONGO,
) -> tuple[domain.Settings, int, datetime | None]:
    p = require_role(ADMINS, "set the measures' weights")
    try:
        checked = domain.check_settings(weights, prior, min_workload, grace_hours)
    except domain.Invalid as exc:
        raise InvalidArgument(str(exc), field=exc.field) from None

    def replace(doc: MeasureSettingsDoc, at: datetime) -> bool:
        doc.weights = dict(checked.weights)
        doc.prior = checked.prior
        doc.min_workload = checked.min_workload
        doc.grace_hours = checked.grace_hours
        doc.updated_by = p.sub
        doc.updated_at = at
        return True

    unitofwork.change(
        uow,
        MeasureSettingsDoc,
        "measure_settings",
        SETTINGS_ID,
        replace,
        conflicts=CONFLICTS,
        now=utcnow,
        expected_version=max(0, expected_version - 1),  # the API's version is the stored one + 1
        fresh=lambda: MeasureSettingsDoc(id=SETTINGS_ID, version=0),
    )
    with _cache_lock:
        _settings_cache.pop(require_tenant(), None)
    return settings_of(uow)


# ---------------------------------------------------------------- names (as org has them)

_names: dict[tuple[str, str], tuple[float, str]] = {}
NAME_TTL = 600.0


def names_of(subjects: Iterable[str], known: Mapping[str, str]) -> dict[str, str]:
    """An entrant's name_zh as org has it (eval_m_subjects for units; org's GetPerson / GetVolunteerTeam for
    people and teams, cached ten minutes); the subject id where org has none."""
    tenant = require_tenant()
    out: dict[str, str] = {}
    for s in subjects:
        if known.get(s):
            out[s] = known[s]
            continue
        hit = _names.get((tenant, s))
        if hit is not None and time.monotonic() - hit[0] < NAME_TTL:
            out[s] = hit[1]
            continue
        kind, _, ident = s.partition(":")
        method = {"member_unit": "GetMemberUnit", "person": "GetPerson", "team": "GetVolunteerTeam"}.get(kind)
        name = ""
        if method:
            try:
                me_ = Principal(sub="evaluation", role="service", tenants=(tenant,))
                with context.bound(principal=me_):
                    name = str(getattr(_org(), method)(org_pb2.GetRequest(id=ident)).name_zh)
            except grpc.RpcError:
                name = ""
        out[s] = name or ident
        _names[(tenant, s)] = (time.monotonic(), out[s])
    return out


# ---------------------------------------------------------------- measures


def _scope(community_id: str) -> str:
    asked = community.list_filter(community_id.strip())
    return asked or domain.ALL


def _period(period: str) -> str:
    text = period.strip() or domain.month_of(utcnow())
    if not domain.is_period(text):
        raise InvalidArgument(
            f"period must be a month YYYY-MM or a quarter YYYYQn (期间格式应为YYYY-MM或YYYYQn), not {period!r}",
            field="period",
        )
    return text.upper() if "q" in text.lower() else text


def _check_subject(subject: str) -> str:
    s = subject.strip()
    kind, _, ident = s.partition(":")
    if s == domain.TENANT_SUBJECT or (kind in (*domain.HELPER_KINDS, "community") and ident):
        return s
    raise InvalidArgument(
        "subject must be member_unit:<id>, person:<id>, team:<id>, community:<id> or tenant "
        f"(评价对象格式不正确), not {subject!r}",
        field="subject",
    )


@dataclass(frozen=True)
class SubjectView:
    subject: str
    name_zh: str
    period: str
    community_id: str
    values: list[domain.Value]
    composite: float | None


def get_measures(subject: str, period: str, community_id: str) -> SubjectView:
    require_role(READERS, "read measures")
    s = _check_subject(subject)
    per = _period(period)
    scope = _scope(community_id)
    if s.startswith("community:"):
        cid = s.split(":", 1)[1]
        if not community.sees(cid):
            raise NotFound(f"未找到该社区 (subject: no community {cid!r})", field="subject")
        scope = cid
    elif s == domain.TENANT_SUBJECT:
        if community.caller() is not None and community.caller().community:  # type: ignore[union-attr]
            raise PermissionDenied("a community worker reads its community's measures (社区工作者只能查看本社区)")
        scope = domain.ALL
    settings, _, _ = settings_of()
    with readside.connect() as conn:
        counts = readmodel.counts_of(conn, scope, per, [s])[s]
        known = readmodel.subjects(conn, [s]).get(s, {})
    name = names_of([s], {s: known.get("name_zh", "")})[s] if s.split(":")[0] in domain.HELPER_KINDS else ""
    return SubjectView(
        s,
        name,
        per,
        "" if scope == domain.ALL else scope,
        domain.measures_of(counts, per),
        domain.composite(counts, settings.weights),
    )


def list_measures(
    period: str, community_id: str, kind: str, page_size: int, token: str
) -> tuple[list[SubjectView], str]:
    require_role(READERS, "read measures")
    per = _period(period)
    scope = _scope(community_id)
    if kind not in domain.HELPER_KINDS:
        raise InvalidArgument(
            f"subject_kind must be one of {', '.join(domain.HELPER_KINDS)} (对象类型不正确)", field="subject_kind"
        )
    size = max(1, min(page_size or 50, MAX_PAGE))
    c = readmodel.COUNTS.c
    settings, _, _ = settings_of()
    with readside.connect() as conn:
        ids = list(
            conn.execute(
                select(c.subject)
                .where(
                    and_(c.scope == scope, c.period == per, c.subject > (token or f"{kind}:"), c.subject < f"{kind};")
                )
                .group_by(c.subject)
                .order_by(c.subject)
                .limit(size + 1)
            ).scalars()
        )
        more = len(ids) > size
        ids = ids[:size]
        counts = readmodel.counts_of(conn, scope, per, ids)
        known = {k: v.get("name_zh", "") for k, v in readmodel.subjects(conn, ids).items()}
    names = names_of(ids, known)
    out = [
        SubjectView(
            s,
            names[s],
            per,
            "" if scope == domain.ALL else scope,
            domain.measures_of(counts[s], per),
            domain.composite(counts[s], settings.weights),
        )
        for s in ids
    ]
    return out, (ids[-1] if more and ids else "")


# ---------------------------------------------------------------- boards


def compute_boards(
    conn: Connection, quarter: str, scope: str, settings: domain.Settings
) -> dict[str, list[domain.Entry]]:
    """A quarter's four boards in a scope, from the counters (the provisional board, and what is frozen)."""
    pool = {
        **readmodel.helpers_in(conn, scope, quarter, domain.UNIT),
        **readmodel.helpers_in(conn, scope, quarter, domain.PERSON),
    }
    info = readmodel.subjects(conn, pool)
    per_board: dict[str, list[tuple[str, Mapping[str, int]]]] = {b: [] for b in domain.BOARDS}
    for subject, counts in pool.items():
        who = info.get(subject, {})
        kind = subject.split(":", 1)[0]
        for board in domain.boards_for(kind, who.get("unit_kind", ""), who.get("roles") or ()):
            per_board[board].append((subject, counts))
    wanted = {s for entries in per_board.values() for s, _ in entries}
    names = names_of(sorted(wanted), {s: info.get(s, {}).get("name_zh", "") for s in wanted})
    return {
        board: domain.rank([domain.Candidate(s, names[s], c) for s, c in found], settings)
        for board, found in per_board.items()
    }


def _entry_dict(e: domain.Entry) -> dict[str, Any]:
    return {
        "rank": e.rank,
        "subject": e.subject,
        "name_zh": e.name_zh,
        "score": e.score,
        "workload": e.workload,
        "explanation": e.explanation(),
        "parts": [p.__dict__ for p in e.parts],
    }


def _entry_of(d: Mapping[str, Any]) -> domain.Entry:
    return domain.Entry(
        int(d["rank"]),
        d["subject"],
        d["name_zh"],
        float(d["score"]),
        int(d["workload"]),
        tuple(domain.Part(**p) for p in d.get("parts") or ()),
        d.get("explanation") or "",
    )


def _frozen_boards(conn: Connection, quarter: str, scope: str, version: int) -> dict[str, list[domain.Entry]]:
    e = readmodel.BOARD_ENTRIES.c
    rows = conn.execute(
        select(readmodel.BOARD_ENTRIES)
        .where(and_(e.quarter == quarter, e.community_id == scope, e.version == version))
        .order_by(e.board, e.rank)
    ).mappings()
    out: dict[str, list[domain.Entry]] = {b: [] for b in domain.BOARDS}
    for r in rows:
        out.setdefault(r["board"], []).append(_entry_of(dict(r)))
    return out


def _write_rows(doc: BoardSetDoc) -> None:
    """The frozen set's rows on the read side (idempotent: a version's rows never change)."""
    from sqlalchemy.dialects.postgresql import insert

    with readside.begin() as conn:
        conn.execute(
            insert(readmodel.BOARD_SETS)
            .values(
                quarter=doc.quarter,
                community_id=doc.community_id,
                version=doc.version,
                corrects_version=doc.corrects_version,
                changes=doc.changes,
                formula=doc.formula,
                frozen_at=domain.aware(doc.frozen_at),
            )
            .on_conflict_do_nothing()
        )
        rows = [
            {
                "quarter": doc.quarter,
                "community_id": doc.community_id,
                "board": board,
                "version": doc.version,
                "rank": int(d["rank"]),
                "subject": d["subject"],
                "name_zh": d["name_zh"],
                "score": float(d["score"]),
                "workload": int(d["workload"]),
                "explanation": d["explanation"],
                "parts": d.get("parts") or [],
            }
            for board, entries in sorted((doc.boards or {}).items())
            for d in entries
        ]
        for start in range(0, len(rows), readmodel.CHUNK):
            conn.execute(
                insert(readmodel.BOARD_ENTRIES).values(rows[start : start + readmodel.CHUNK]).on_conflict_do_nothing()
            )


def _event(doc: BoardSetDoc) -> eev.BoardsFrozen:
    stamp = Timestamp()
    stamp.FromDatetime(domain.aware(doc.frozen_at))
    return eev.BoardsFrozen(
        board_set_id=doc.id,
        tenant=require_tenant(),
        community_id=doc.community_id,
        quarter=doc.quarter,
        version=doc.version,
        corrects_version=doc.corrects_version,
        boards=[
            eev.Board(
                kind=board,
                entries=[
                    eev.BoardEntry(
                        rank=int(d["rank"]),
                        subject_kind=d["subject"].split(":", 1)[0],
                        subject_id=d["subject"].split(":", 1)[1],
                        name_zh=d["name_zh"],
                        score=float(d["score"]),
                        workload=int(d["workload"]),
                    )
                    for d in entries
                ],
            )
            for board, entries in sorted((doc.boards or {}).items())
        ],
        changes=doc.changes,
        formula=doc.formula,
        frozen_at=stamp,
    )


def freeze_scope(quarter: str, scope: str, settings: domain.Settings, *, now: datetime | None = None) -> int:
    """Freeze (or correct) one scope's boards of a closed quarter; returns the version written (0: none)."""
    while True:
        with readside.connect() as conn:
            latest = readmodel.latest_set(conn, quarter, scope)
            version = int(latest["version"]) if latest else 0
            pending = BoardSetDoc.objects(id=f"{quarter}:{scope}:v{version + 1}").first()
            if pending is not None:  # written on the write side, its rows not yet on the read side
                _write_rows(pending)
                continue
            new = compute_boards(conn, quarter, scope, settings)
            old = _frozen_boards(conn, quarter, scope, version) if version else {}
        if version and domain.same_boards(old, new):
            return 0
        at = now or utcnow()
        doc = BoardSetDoc(
            id=f"{quarter}:{scope}:v{version + 1}",
            quarter=quarter,
            community_id=scope,
            version=version + 1,
            corrects_version=version,
            changes=domain.changes(old, new) if version else "",
            formula=domain.FORMULA,
            frozen_at=at,
            boards={b: [_entry_dict(e) for e in entries] for b, entries in new.items()},
        )
        doc.record(_event(doc), f"boards/{doc.id}", at=at)
        try:
            doc.save(force_insert=True)
        except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
            continue  # another freeze wrote this version: write its rows and look again
        _write_rows(doc)
        return doc.version


def scopes_of(quarter: str) -> list[str]:
    c = readmodel.COUNTS.c
    with readside.connect() as conn:
        found = set(conn.execute(select(c.scope).where(c.period == quarter).distinct()).scalars())
        found |= set(
            conn.execute(
                select(readmodel.BOARD_SETS.c.community_id).where(readmodel.BOARD_SETS.c.quarter == quarter)
            ).scalars()
        )
    return sorted(found | {domain.ALL})


def refresh_quarter(quarter: str, *, now: datetime | None = None) -> dict[str, int]:
    """Freeze or correct every scope of a closed quarter (the timer's work); scope -> version written."""
    at = now or utcnow()
    if domain.quarter_end(quarter) > at:
        return {}
    settings, _, _ = settings_of()
    return {scope: freeze_scope(quarter, scope, settings, now=at) for scope in scopes_of(quarter)}


@clocks.handler(BOARDS_KIND)
def on_boards_timer(timer: clocks.Timer) -> None:
    quarter = timer.payload.get("quarter", "")
    try:
        domain.parse_quarter(quarter)
    except ValueError:
        log.error("boards timer %s names no quarter", timer.key)
        return
    refresh_quarter(quarter)


_scheduled: dict[tuple[str, str, bool], datetime] = {}


def quarters_changed(tenant: str, quarters: Iterable[str], *, now: datetime | None = None) -> None:
    """The consumer changed these quarters' counters: freeze them when due, or correct them if frozen."""
    at = now or utcnow()
    with context.bound(
        tenant=tenant, principal=Principal(sub="service:evaluation-measures", role="service", tenants=("*",))
    ):
        settings, _, _ = settings_of()
        with readside.connect() as conn:
            frozen = readmodel.frozen_quarters(conn, quarters)
        for q in sorted(set(quarters)):
            if q in frozen:
                due = at + timedelta(seconds=CORRECTION_DELAY_SECONDS)
            else:
                due = domain.quarter_end(q) + timedelta(hours=settings.grace_hours)
            # A timer this process scheduled for the same purpose (a freeze; a correction of a frozen quarter)
            # is still pending: nothing to do. A freeze that has fired since is no pending correction.
            have = _scheduled.get((tenant, q, q in frozen))
            if have is not None and have >= at:
                continue
            clocks.schedule(f"boards:{q}", BOARDS_KIND, due, {"quarter": q})
            _scheduled[(tenant, q, q in frozen)] = max(due, at + timedelta(seconds=CORRECTION_DELAY_SECONDS))


# A provisional board (the current quarter's, or a closed one not frozen yet) is computed from the counters of
# its scope and kept this long, so that a page of readers does not compute it each: it follows the events
# within PROVISIONAL_TTL seconds.
PROVISIONAL_TTL = 10.0
_provisional: dict[tuple[str, str, str, int], tuple[float, dict[str, list[domain.Entry]]]] = {}


def board_read(quarter: str, community_id: str, board: str, page_size: int, token: str, version: int) -> dict[str, Any]:
    """A quarter's boards (frozen: a page from the table; provisional: computed from the counters)."""
    require_role(READERS, "read the boards")
    q = (quarter.strip() or domain.quarter_of(utcnow())).upper()
    try:
        domain.parse_quarter(q)
    except ValueError:
        raise InvalidArgument(
            f"quarter must be YYYYQn (季度格式应为YYYYQn), not {quarter!r}", field="quarter"
        ) from None
    if board and board not in domain.BOARDS:
        raise InvalidArgument(f"board must be one of {', '.join(domain.BOARDS)} (榜单类型不正确)", field="board")
    if token and not board:
        raise InvalidArgument("page_token needs a board (翻页需指定榜单)", field="page_token")
    scope = _scope(community_id)
    size = max(1, min(page_size or 20, MAX_PAGE))
    try:
        after = int(token or 0)
    except ValueError:
        raise InvalidArgument("page_token is not one this API gave (翻页标记无效)", field="page_token") from None
    kinds = [board] if board else list(domain.BOARDS)
    b = readmodel.BOARD_SETS.c
    e = readmodel.BOARD_ENTRIES.c
    with readside.connect() as conn:
        # Two statements, each a primary-key range: the set's versions (a few rows), and the page of every
        # board asked for (ranks are 1..n without gaps, so a page is a range of ranks).
        sets = {
            int(r["version"]): dict(r)
            for r in conn.execute(
                select(readmodel.BOARD_SETS).where(and_(b.quarter == q, b.community_id == scope)).order_by(b.version)
            ).mappings()
        }
        versions = sorted(sets)
        if versions:
            chosen = version or versions[-1]
            if chosen not in sets:
                raise NotFound(f"未找到该版本 (version: no version {chosen} of {q})", field="version")
            head = sets[chosen]
            found: dict[str, list[domain.Entry]] = {kind: [] for kind in kinds}
            rows = conn.execute(
                select(readmodel.BOARD_ENTRIES)
                .where(
                    and_(
                        e.quarter == q,
                        e.community_id == scope,
                        e.board.in_(kinds),
                        e.version == chosen,
                        e.rank.between(after + 1, after + size + 1),
                    )
                )
                .order_by(e.board, e.rank)
            ).mappings()
            for r in rows:
                found[r["board"]].append(_entry_of(dict(r)))
            boards: dict[str, tuple[list[domain.Entry], Any, bool]] = {
                kind: (entries[:size], None, len(entries) > size) for kind, entries in found.items()
            }
            return {
                "quarter": q,
                "scope": scope,
                "status": "frozen",
                "head": dict(head),
                "boards": boards,
                "versions": versions,
            }
        settings, settings_version, _ = settings_of()
        key = (require_tenant(), q, scope, settings_version)
        hit = _provisional.get(key)
        if hit is not None and time.monotonic() - hit[0] < PROVISIONAL_TTL:
            computed = hit[1]
        else:
            computed = compute_boards(conn, q, scope, settings)
            if len(_provisional) > 1000:
                _provisional.clear()
            _provisional[key] = (time.monotonic(), computed)
    provisional: dict[str, tuple[list[domain.Entry], Any, bool]] = {}
    for kind in kinds:
        entries = [e for e in computed[kind] if e.rank > after]
        provisional[kind] = (entries[:size], None, len(entries) > size)
    return {"quarter": q, "scope": scope, "status": "provisional", "head": None, "boards": provisional, "versions": []}


# ---------------------------------------------------------------- the quarter's rebuild


def rebuild_quarter(quarter: str, apply: bool) -> dict[str, Any]:
    """Recompute a quarter's counters (the quarter and its months) from its fact rows with the same
    contributions the consumer adds, compare with the kept counters, and (apply) replace those that differ."""
    require_role(OPS, "rebuild measures")
    try:
        domain.parse_quarter(quarter)
    except ValueError:
        raise InvalidArgument(
            f"quarter must be YYYYQn (季度格式应为YYYYQn), not {quarter!r}", field="quarter"
        ) from None
    started = time.monotonic()
    periods = domain.periods_of_quarter(quarter)
    expected, rows = recount(quarter)
    c = readmodel.COUNTS.c
    with readside.begin() as conn:
        kept: dict[tuple[str, ...], int] = {
            (r.scope, r.period, r.subject, r.counter): int(r.n)
            for r in conn.execute(select(readmodel.COUNTS).where(c.period.in_(periods)))
        }
        differing = {k for k in set(kept) | set(expected) if kept.get(k, 0) != expected.get(k, 0)}
        if apply and differing:
            readmodel.apply_counts(conn, {k: expected.get(k, 0) - kept.get(k, 0) for k in differing})
    return {
        "quarter": quarter,
        "fact_rows": rows,
        "counters": len(expected),
        "differing": len(differing),
        "applied": bool(apply and differing),
        "seconds": time.monotonic() - started,
    }


def recount(quarter: str) -> tuple[dict[tuple[str, ...], int], int]:
    """The quarter's counters from its fact rows (read with a server-side cursor, by the indexed quarter)."""
    from collections import Counter

    periods = set(domain.periods_of_quarter(quarter))
    tally: Counter[tuple[str, ...]] = Counter()
    rows = 0
    with readside.connect() as conn:
        for kind, table in readmodel.FACTS.items():
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                select(table).where(table.c.quarter == quarter)
            )
            for r in result.mappings():
                rows += 1
                for scope, period, subject, counter, n in domain.contributions(kind, dict(r)):
                    if period in periods:
                        tally[(scope, period, subject, counter)] += n
    return {k: n for k, n in tally.items() if n}, rows


def frozen_at_ts(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    t = Timestamp()
    t.FromDatetime(domain.aware(at))
    return t


__all__ = ["BOARDS_KIND", "FailedPrecondition", "Sequence"]
