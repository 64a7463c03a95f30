"""Precise assignment (精准派单 / 点将): rank the helpers who fit a task.

Two parts:

- the org service's FindCandidates (over gRPC) finds, among the three lists (talent, volunteer and team
  services, unit resources), the helpers who offer something the task needs, and scores their fit, distance
  (serves the grid, same community) and availability at the time — with its reasons;
- dispatch adds what only dispatch knows, from its read model (services.dispatch.helpers_model, fed by
  dispatch and evaluation events): current load (open tasks; at or above a cap a helper ranks far lower)
  and past performance (residents' ratings, completion on time). Every component comes with a reason,
  "中文 / English", and the points it added or took.

The combination (`combine`, `adjust`) is a pure function of the org candidates, the helpers' records and the
weights; `rank_candidates` is the I/O around it. Org returns its best candidates by fit (pool_size: twice the
limit and 10 more, 40 to 100); dispatch re-ranks that pool, so a helper org ranks below the pool is not seen.

Interface used by the dispatch core (keep stable):
    need_for(category, hazards, community_id, grid_id) -> Need
    rank_candidates(need, limit=20) -> (ranked best first, considered)
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.org.v1 import org_pb2, org_pb2_grpc
from prometheus_client import Histogram

from services.common import context
from services.common.errors import HonglingError, InvalidArgument, Unavailable
from services.common.grpc_client import LazyStub
from services.common.principal import Principal
from services.common.settings import Settings

log = logging.getLogger(__name__)

ORG_SERVICE = "hongling.org.v1.OrgService"
NEEDS_FILE = Path(__file__).with_name("data") / "needs.toml"
CATCH_ALL = "other"
# Candidates asked of org before dispatch re-ranks them: twice the limit and 10 more, at least 40, at most org's
# 100. Load and performance move a candidate by at most a few points up (+6) but far down (a full helper -30 and
# more): the pool leaves room for the full ones to drop out.
POOL_MIN = 40
MAX_LIMIT = 100
KINDS = ("person", "team", "unit")

RANKING_SECONDS = Histogram(
    "hongling_dispatch_ranking_seconds",
    "Time to rank candidates for a task (org FindCandidates + load and performance).",
    ["tenant"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


@dataclass(frozen=True)
class Need:
    skills: tuple[str, ...]
    services: tuple[str, ...]
    resources: tuple[str, ...]
    community_id: str
    grid_id: str
    at: datetime | None = None


@dataclass(frozen=True)
class Ranked:
    kind: str  # person, team, unit (as org's lists name them)
    id: str
    name_zh: str
    community_id: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class HelperRecord:
    """What dispatch knows of a helper: open tasks, finished tasks (on time), residents' ratings."""

    load: int = 0
    done: int = 0
    on_time: int = 0
    rating_sum: float = 0.0
    rating_n: int = 0


NO_RECORD = HelperRecord()


@dataclass(frozen=True)
class Weights:
    """How load and performance move a candidate (points on org's scale: a matched skill is 10-20 points,
    a matched service or resource about 8-11, serving the grid +5, same community +2, available +3)."""

    load_step: float = 2.0  # points off per open task
    # Open tasks a helper can carry; at the cap (or above) the helper drops far down the list.
    caps: Mapping[str, int] = field(default_factory=lambda: {"person": 3, "team": 6, "unit": 6})
    full_penalty: float = 30.0
    community_points: float = 2.0  # same community, when the need names no grid (org scores it with a grid)
    # Ratings (1-5 stars) are pulled towards a neutral 3 by `rating_prior_n` imagined ratings, so one 5-star
    # rating does not outweigh a long good record; each star above (below) 3 adds (takes) `rating_points`.
    neutral_rating: float = 3.0
    rating_prior_n: float = 2.0
    rating_points: float = 2.0
    # On-time share with one imagined on-time and one late task (Laplace); 100 % adds on_time_points / 2,
    # 0 % takes as much, 50 % (or no record) nothing.
    on_time_points: float = 4.0

    def cap(self, kind: str) -> int:
        return self.caps.get(kind, 3)


DEFAULT_WEIGHTS = Weights()


# ---------------------------------------------------------------- needs


@dataclass(frozen=True)
class _Terms:
    skills: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()


def term(value: str) -> str:
    """A skill, service or resource as org matches it: trimmed, inner spaces collapsed, Latin letters lower-cased."""
    return " ".join(str(value).split()).lower()


def _terms(raw: Mapping[str, Any]) -> _Terms:
    return _Terms(
        skills=tuple(term(s) for s in raw.get("skills") or [] if term(s)),
        services=tuple(term(s) for s in raw.get("services") or [] if term(s)),
        resources=tuple(term(s) for s in raw.get("resources") or [] if term(s)),
    )


@cache
def needs_table() -> tuple[dict[str, _Terms], dict[str, _Terms]]:
    """(category → terms, hazard → terms), read once from data/needs.toml."""
    data = tomllib.loads(NEEDS_FILE.read_text(encoding="utf-8"))
    categories = {code: _terms(raw) for code, raw in (data.get("category") or {}).items()}
    hazards = {code: _terms(raw) for code, raw in (data.get("hazard") or {}).items()}
    if CATCH_ALL not in categories:
        raise ValueError(f"{NEEDS_FILE}: the catch-all category {CATCH_ALL!r} is missing")
    return categories, hazards


def _merged(*groups: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for g in groups for t in g))


def need_for(category: str, hazards: Sequence[str], community_id: str, grid_id: str) -> Need:
    """What a task of this category (with these hazard flags) needs, at this place.

    An unknown category (a tenant's own) needs what "other" needs; an unknown hazard adds nothing.
    """
    categories, hazard_terms = needs_table()
    base = categories.get(category)
    if base is None:
        log.debug("category %r has no needs of its own: using %r", category, CATCH_ALL)
        base = categories[CATCH_ALL]
    extra = [hazard_terms[h] for h in dict.fromkeys(hazards) if h in hazard_terms]
    return Need(
        skills=_merged(base.skills, *(e.skills for e in extra)),
        services=_merged(base.services, *(e.services for e in extra)),
        resources=_merged(base.resources, *(e.resources for e in extra)),
        community_id=community_id,
        grid_id=grid_id,
    )


# ---------------------------------------------------------------- the combination (pure)


def _signed(points: float) -> str:
    return f"{points:+.1f}" if points else "+0"


def _points(candidate: Ranked, record: HelperRecord, need: Need, weights: Weights, reasons: list[str] | None) -> float:
    """The candidate's score with dispatch's components; the one place they are added up. With reasons=None no
    text is built: combine() scores every candidate but explains only the ones it returns."""
    points = candidate.score
    if reasons is not None:
        s = f"{candidate.score:g}"
        reasons.append(f"匹配得分 {s}（专长·距离·时段） / fit, distance and availability: {s}")
        reasons.extend(candidate.reasons)

    if not need.grid_id and need.community_id and candidate.community_id == need.community_id:
        points += weights.community_points
        if reasons is not None:
            reasons.append(f"同社区 {_signed(weights.community_points)} / same community {need.community_id}")

    load = record.load
    load_off = weights.load_step * load
    cap = weights.cap(candidate.kind)
    if load >= cap:
        load_off += weights.full_penalty
    points -= load_off
    if reasons is not None:
        off = _signed(-load_off)
        if load >= cap:
            reasons.append(f"在办 {load} 件，已达上限 {cap} 件 {off} / {load} open tasks, at the cap of {cap}: {off}")
        elif load:
            reasons.append(f"在办 {load} 件 {off} / {load} open task{'s' if load > 1 else ''}: {off}")
        else:
            reasons.append("当前无在办任务 +0 / no open tasks: +0")

    if record.rating_n:
        pulled = (record.rating_sum + weights.neutral_rating * weights.rating_prior_n) / (
            record.rating_n + weights.rating_prior_n
        )
        bonus = (pulled - weights.neutral_rating) * weights.rating_points
        points += bonus
        if reasons is not None:
            average, n, b = record.rating_sum / record.rating_n, record.rating_n, _signed(bonus)
            reasons.append(
                f"居民评分 平均 {average:.1f} 星（{n} 次）{b} / residents rated {average:.1f} stars on average "
                f"({n} ratings): {b}"
            )
    elif reasons is not None:
        reasons.append("暂无居民评分 +0 / no ratings yet: +0")

    if record.done:
        bonus = ((record.on_time + 1) / (record.done + 2) - 0.5) * weights.on_time_points
        points += bonus
        if reasons is not None:
            on_time, done, b = record.on_time, record.done, _signed(bonus)
            reasons.append(f"按时完成 {on_time}/{done} 件 {b} / finished {on_time} of {done} tasks on time: {b}")
    elif reasons is not None:
        reasons.append("尚无完成记录 +0 / no finished tasks yet: +0")
    return round(points, 2)


def adjust(candidate: Ranked, record: HelperRecord, need: Need, weights: Weights = DEFAULT_WEIGHTS) -> Ranked:
    """Org's candidate with dispatch's components added: the new score and every component's reason."""
    reasons: list[str] = []
    score = _points(candidate, record, need, weights, reasons)
    return Ranked(candidate.kind, candidate.id, candidate.name_zh, candidate.community_id, score, tuple(reasons))


def record_key(kind: str, helper_id: str) -> str:
    """The read model's _id of a helper: "<kind>:<id>" with org's kinds (a member unit is "unit")."""
    return f"{canonical_kind(kind)}:{helper_id}"


def canonical_kind(kind: str) -> str:
    k = kind.strip().lower()
    return "unit" if k in ("member_unit", "unit") else k


def combine(
    candidates: Sequence[Ranked],
    records: Mapping[str, HelperRecord],
    need: Need,
    limit: int,
    weights: Weights = DEFAULT_WEIGHTS,
) -> list[Ranked]:
    """The best `limit` candidates after load and performance, best first; ties by kind, then id (stable).

    Every candidate is scored without reasons; only the ones returned get their reasons written."""
    keyed = []
    for n, c in enumerate(candidates):
        record = records.get(record_key(c.kind, c.id), NO_RECORD)
        keyed.append((-_points(c, record, need, weights, None), c.kind, c.id, n, c, record))
    keyed.sort(key=lambda k: k[:4])
    return [adjust(c, record, need, weights) for *_key, c, record in keyed[:limit]]


# ---------------------------------------------------------------- ranking (I/O)


class OrgCandidates:
    """OrgService.FindCandidates, called as the dispatch service (a "service" principal of the call's tenant)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", ORG_SERVICE, "dispatch", settings)

    def find(self, need: Need, pool: int = POOL_MIN) -> tuple[list[Ranked], int]:
        request = org_pb2.FindCandidatesRequest(
            skills=need.skills, services=need.services, resources=need.resources, grid_id=need.grid_id, limit=pool
        )
        if need.at is not None:
            ts = Timestamp()
            ts.FromDatetime(need.at)
            request.time.CopyFrom(ts)
        tenant = context.require_tenant()
        me = Principal(sub="dispatch", role="service", tenants=(tenant,))
        try:
            with context.bound(principal=me):
                resp = self._org().FindCandidates(request)
        except grpc.RpcError as exc:
            raise _org_error(exc, need) from None
        found = [
            Ranked(
                kind=c.kind,
                id=c.id,
                name_zh=c.name_zh,
                community_id=c.community_id,
                score=c.score,
                reasons=tuple(c.reasons),
            )
            for c in resp.candidates
        ]
        return found, resp.considered


def _org_error(exc: grpc.RpcError, need: Need) -> HonglingError:
    code = exc.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field_name = "grid_id" if need.grid_id and "grid" in (exc.details() or "") else "need"
        return InvalidArgument(f"the candidates cannot be found: {exc.details()} (无法匹配)", field=field_name)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(
            "the organisation service cannot list candidates right now; retry shortly (暂时无法获取候选人，请稍后重试)"
        )
    log.error("org FindCandidates failed: %s %s", code, exc.details())
    return HonglingError("ranking candidates failed; the operators have the details (候选人排序失败)")


_org = OrgCandidates()


def pool_size(limit: int) -> int:
    return min(MAX_LIMIT, max(POOL_MIN, 2 * limit + 10))


def rank_candidates(need: Need, limit: int = 20) -> tuple[list[Ranked], int]:
    """The best `limit` helpers for the need, best first, and how many helpers matched at all (org's count).

    Runs inside a tenant context. A need without any skill, service or resource matches no one.
    """
    if limit < 1 or limit > MAX_LIMIT:
        raise InvalidArgument(f"limit must be 1..{MAX_LIMIT} (候选人数量须在1到{MAX_LIMIT}之间)", field="limit")
    if not (need.skills or need.services or need.resources):
        return [], 0
    from services.dispatch import helpers_model  # the read model (mongo); imported late for pure users

    tenant = context.require_tenant()
    started = time.perf_counter()
    candidates, considered = _org.find(need, pool_size(limit))
    records = helpers_model.records_for([record_key(c.kind, c.id) for c in candidates])
    ranked = combine(candidates, records, need, limit)
    RANKING_SECONDS.labels(tenant).observe(time.perf_counter() - started)
    return ranked, considered
