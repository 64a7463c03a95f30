"""The quarterly boards (四榜 / 先锋榜) of a community or the tenant as content.BoardsContent: the newest board set
of that scope and quarter as evaluation announced it (stored by the consumer, documents.BoardSetDoc), each
entrant's explanation and the formula from evaluation's frozen version of the same set (GetBoards with that
version: frozen sets never change, so the content is the same whenever it is built), names as the entrants
agreed to show them (names.public_names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.common import context
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.principal import Principal
from services.common.tenants import get_tenant
from services.publication.boards.documents import BoardSetDoc
from services.publication.content import SCHEMA, BoardEntryLine, BoardLine, BoardsContent, Explanation, Formula
from services.publication.names import public_names
from services.publication.reports import domain, peers

PRINCIPAL = Principal(sub="service:publication", role="service", tenants=("*",))
ALL = "*"
# The four boards in their published order, with their titles should evaluation not name them.
BOARDS: dict[str, tuple[str, str]] = {
    "red_property": ("红色物业光荣榜", "Red property honour board"),
    "social_org": ("社会组织人气榜", "Social organisations' popularity board"),
    "party_member": ("党员先锋榜", "Party member vanguard board"),
    "volunteer": ("志愿者明星榜", "Volunteer star board"),
}


def _quarter(period: str) -> str:
    if not domain.QUARTER.match(period):
        raise InvalidArgument(
            f"period of the boards must be a quarter YYYYQn (先锋榜的期间应为YYYYQn格式的季度), not {period!r}",
            field="period",
        )
    return period


def check(scope: str, period: str) -> None:
    """scope "*" or a community of the bound tenant; period a quarter whose boards evaluation has frozen."""
    quarter = _quarter(period)
    with context.bound(principal=context.current_principal.get() or PRINCIPAL):
        if scope != ALL and scope not in peers.communities():
            raise InvalidArgument(
                f'scope must be "*" or a community of this tenant (范围应为"*"或本街道/镇的社区), not {scope!r}',
                field="scope",
            )
        found = peers.boards(quarter, "" if scope == ALL else scope, 0, board="red_property")
    if found.status != "frozen":
        raise InvalidArgument(
            f"the boards of {quarter} are not frozen yet (该季度榜单尚未评定冻结)",
            field="period",
        )


def newest_set(scope: str, quarter: str) -> BoardSetDoc:
    doc = BoardSetDoc.objects(quarter=quarter, community_id=scope).order_by("-version").first()
    if doc is None:
        raise FailedPrecondition(
            f"no frozen boards of {quarter} for {scope!r} have arrived from evaluation yet (尚未收到该季度的榜单)",
            field="period",
        )
    return doc


def split_formula(text: str) -> tuple[str, str]:
    """Evaluation's formula text "中文。 (English)" as (zh, en)."""
    zh, sep, en = text.partition(" (")
    if not sep:
        return text, text
    return zh.strip(), en.strip().removesuffix(")")


def explanations(found: Any) -> dict[tuple[str, str], list[Explanation]]:
    """(board, "<kind>:<id>") -> the entry's explanation, from evaluation's frozen set."""
    out: dict[tuple[str, str], list[Explanation]] = {}
    for board in found.boards:
        for e in board.entries:
            out[(board.kind, f"{e.subject_kind}:{e.subject_id}")] = [
                {
                    "key": p.component,
                    "name_zh": p.name_zh,
                    "numerator": p.numerator,
                    "denominator": p.denominator,
                    "mean": round(p.mean, 6),
                    "shrunk": round(p.shrunk, 6),
                    "weight": p.weight,
                    "points": round(p.points, 4),
                }
                for p in e.parts
            ]
    return out


def formula(version: str, text: str, found: Any, settings: Any) -> Formula:
    """The published formula: the weights the frozen set applied (its explanations'), else the tenant's."""
    weights: dict[str, float] = {}
    for board in found.boards:
        for e in board.entries:
            for p in e.parts:
                weights.setdefault(p.component, p.weight)
    if not weights:
        weights = {w.component: w.weight for w in settings.weights}
    zh, en = split_formula(text)
    return {
        "version": version,
        "text_zh": zh,
        "text_en": en,
        "k": float(settings.prior),
        "weights": dict(sorted(weights.items())),
    }


def boards_of(
    doc: BoardSetDoc,
    titles: Mapping[str, tuple[str, str]],
    explained: Mapping[tuple[str, str], list[Explanation]],
    names: Mapping[str, str],
) -> list[BoardLine]:
    out: list[BoardLine] = []
    stored: Mapping[str, Any] = doc.boards or {}
    for kind in [*BOARDS, *sorted(set(stored) - set(BOARDS))]:
        zh, en = titles.get(kind) or BOARDS.get(kind, (kind, kind))
        entries: list[BoardEntryLine] = []
        for e in sorted(stored.get(kind) or [], key=lambda x: int(x["rank"])):
            subject = f"{e['subject_kind']}:{e['subject_id']}"
            entries.append(
                {
                    "rank": int(e["rank"]),
                    "subject_kind": str(e["subject_kind"]),
                    "name": names.get(subject) or str(e.get("name_zh") or ""),
                    "score": round(float(e["score"]), 2),
                    "workload": int(e["workload"]),
                    "explanation": explained.get((kind, subject), []),
                }
            )
        out.append({"kind": kind, "title_zh": zh, "title_en": en, "entries": entries})
    return out


def build(tenant: str, scope: str, period: str) -> BoardsContent:
    """The boards' content of a quarter for a community or the tenant (scope "*")."""
    quarter = _quarter(period)
    with context.bound(tenant=tenant, principal=context.current_principal.get() or PRINCIPAL):
        doc = newest_set(scope, quarter)
        found = peers.whole_boards(quarter, "" if scope == ALL else scope, doc.version)
        settings = peers.weights()
        info = get_tenant(tenant)
        scope_zh = info.name_zh if scope == ALL else peers.communities().get(scope, scope)
        subjects = sorted(
            {f"{e['subject_kind']}:{e['subject_id']}" for entries in (doc.boards or {}).values() for e in entries}
        )
        names = public_names(tenant, subjects)
    titles = {b.kind: (b.name_zh, b.name_en) for b in found.boards if b.name_zh}
    _, end = domain.quarter_bounds(quarter)
    zh = domain.quarter_zh(quarter)
    return {
        "schema": SCHEMA,
        "kind": "boards",
        "tenant": tenant,
        "tenant_name_zh": info.name_zh,
        "scope": scope,
        "scope_name_zh": scope_zh,
        "period": quarter,
        "period_zh": zh,
        "as_of": domain.as_of(end),
        "title_zh": f"{scope_zh}{zh}先锋榜",
        "title_en": f"Vanguard boards of {scope if scope != ALL else info.name_en}, {quarter}",
        "evaluation_version": int(doc.version),
        "evaluation_changes": doc.changes or "",
        "formula": formula(doc.formula or found.formula, found.formula_text, found, settings),
        "boards": boards_of(doc, titles, explanations(found), names),
    }
