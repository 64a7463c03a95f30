"""Organisation-structure rules (组织架构). Plain Python: vocabularies, validation, masking, matching.

Validators take the fields a caller sent (a dict, as protobuf JSON with field names) and return the
cleaned fields to store, or raise InvalidArgument naming the field. Referential checks that need
storage (does this grid exist, which community is it in) live in handlers.py.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from shapely.geometry import Point as ShapelyPoint
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from services.common.errors import InvalidArgument

SHANGHAI = ZoneInfo("Asia/Shanghai")

UNIT_KINDS: dict[str, tuple[str, str]] = {
    "property_company": ("物业服务企业", "property-management company"),
    "owners_committee": ("业委会", "owners' committee"),
    "resident_unit": ("驻地单位", "resident unit"),
    "dual_report_unit": ('"双报到"单位', "dual-report unit"),
    "law_enforcement": ("执法力量", "law-enforcement team"),
    "new_economy_social_org": ('"两新"组织', "new-economy / social organisation"),
    "individual_business": ("个体业户", "individual business"),
    "public_interest_org": ("公益组织", "public-interest organisation"),
    "grassroots_association": ("草根社团", "grassroots association"),
}
DUTIES: dict[str, tuple[str, str]] = {
    "attend_meetings": ("按时参会", "attend meetings on time"),
    "answer_whistle": ("响应吹号", "answer the whistle"),
    "provide_resources": ("提供资源", "provide resources"),
    "claim_posts": ("认领岗位", "claim posts"),
    "join_co_building": ("参与共建", "join co-building"),
}
ROLES: dict[str, tuple[str, str]] = {
    "party_member": ("党员", "party member"),
    "volunteer": ("志愿者", "volunteer"),
    "community_worker": ("专职社区工作者", "full-time community worker"),
    # 居民代表: rates the community's member units every quarter (评单; services/evaluation/ratings).
    "resident_representative": ("居民代表", "resident representative"),
}
# 三岗十八级: three posts, eighteen grades.
POSTS: dict[str, tuple[str, str]] = {
    "community_secretary": ("社区正职", "community head"),
    "community_deputy": ("社区副职", "deputy head"),
    "community_staff": ("社区工作人员", "community staff"),
}
GRADES = range(1, 19)
PARTY_ORG_KINDS: dict[str, tuple[str, str]] = {
    # kind: (Chinese name, the kind of place it sits on)
    "community_committee": ("社区党委", "community"),
    "grid_branch": ("网格党总支", "grid"),
    "compound_branch": ("小区党支部", "compound"),
}
PARENT_ORG_KIND = {"grid_branch": "community_committee", "compound_branch": "grid_branch"}
RESOURCE_CATEGORIES: dict[str, str] = {
    "vehicle": "车辆",
    "venue": "场地",
    "equipment": "设备",
    "funds": "资金",
    "supplies": "物资",
    "other": "其他",
}
RESPONSIBILITY_DOMAINS: dict[str, tuple[str, str]] = {
    "community": ("社区", "community"),
    "self_governance": ("居民自治组织", "residents' self-governing organisations"),
    "property": ("物业服务企业", "property companies"),
    "dual_report_resident_units": ('"双报到"单位和驻地单位', "dual-report and resident units"),
    "law_enforcement": ("执法部门", "law enforcement"),
    "new_economy_social": ('"两新"组织', "new-economy / social organisations"),
}
PUBLIC_AFFAIRS_MODES: dict[str, str] = {"undertake": "承办", "assist": "协办"}

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PHONE_RE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
NAME_MAX = 100
TEXT_MAX = 500
LIST_MAX = 200


# ---------------------------------------------------------------- field checks


def text(data: Mapping[str, Any], name: str, *, required: bool = False, limit: int = NAME_MAX) -> str:
    value = data.get(name)
    value = "" if value is None else str(value).strip()
    if required and not value:
        raise InvalidArgument(f"{name} is required (必填)", field=name)
    if len(value) > limit:
        raise InvalidArgument(f"{name} is {len(value)} characters; at most {limit} (超出长度限制)", field=name)
    return value


RESERVED_IDS = frozenset({"import", "export", "resolve-location", "candidates"})  # words the REST paths use


def entity_id(value: str, name: str = "id") -> str:
    if value.lower() in RESERVED_IDS:
        raise InvalidArgument(f"{name} {value!r} is reserved; choose another", field=name)
    if not ID_RE.match(value):
        raise InvalidArgument(
            f"{name} {value!r} must be 1-64 letters, digits, '-' or '_' and start with a letter or digit", field=name
        )
    return value


def ref(data: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = text(data, name, required=required, limit=64)
    return entity_id(value, name) if value else ""


def refs(data: Mapping[str, Any], name: str) -> list[str]:
    values = [str(v).strip() for v in data.get(name) or [] if str(v).strip()]
    if len(values) > LIST_MAX:
        raise InvalidArgument(f"{name} has {len(values)} entries; at most {LIST_MAX}", field=name)
    for v in values:
        entity_id(v, name)
    return sorted(set(values))


def choice(data: Mapping[str, Any], name: str, allowed: Mapping[str, Any], *, required: bool = True) -> str:
    value = text(data, name, required=required, limit=64)
    if value and value not in allowed:
        raise InvalidArgument(f"{name} {value!r} is not one of: {', '.join(allowed)}", field=name)
    return value


def choices(data: Mapping[str, Any], name: str, allowed: Mapping[str, Any]) -> list[str]:
    values = [str(v).strip() for v in data.get(name) or [] if str(v).strip()]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise InvalidArgument(f"{name}: {', '.join(map(repr, bad))} not among: {', '.join(allowed)}", field=name)
    return sorted(set(values), key=list(allowed).index)


def day(data: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = text(data, name, required=required, limit=10)
    if value:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise InvalidArgument(f"{name} {value!r} is not a date (YYYY-MM-DD)", field=name) from None
    return value


def number(data: Mapping[str, Any], name: str, *, lo: float, hi: float, integer: bool = False) -> float:
    raw = data.get(name, 0)
    try:
        value = float(raw or 0)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} {raw!r} is not a number", field=name) from None
    if math.isnan(value) or not lo <= value <= hi:
        raise InvalidArgument(f"{name} {raw!r} is outside {lo:g}..{hi:g}", field=name)
    if integer and value != int(value):
        raise InvalidArgument(f"{name} {raw!r} is not a whole number", field=name)
    return int(value) if integer else value


def term(value: str) -> str:
    """A skill, service or resource name as matched: trimmed, inner spaces collapsed, Latin letters lower-cased."""
    return " ".join(str(value).split()).lower()


def terms(data: Mapping[str, Any], name: str) -> list[str]:
    values = [term(v) for v in data.get(name) or [] if term(v)]
    if len(values) > LIST_MAX:
        raise InvalidArgument(f"{name} has {len(values)} entries; at most {LIST_MAX}", field=name)
    for v in values:
        if len(v) > 50:
            raise InvalidArgument(f"{name}: {v[:20]!r}… is longer than 50 characters", field=name)
    return sorted(set(values))


def point(data: Mapping[str, Any], name: str = "point", *, required: bool = False) -> dict[str, float] | None:
    raw = data.get(name)
    if not raw:
        if required:
            raise InvalidArgument(f"{name} is required (lat, lon)", field=name)
        return None
    lat = number(raw, "lat", lo=-90, hi=90)
    lon = number(raw, "lon", lo=-180, hi=180)
    return {"lat": lat, "lon": lon}


def phone(value: str, name: str) -> str:
    value = re.sub(r"[\s]", "", value or "")
    if value and not PHONE_RE.match(value):
        raise InvalidArgument(f"{name} is not a Chinese mobile (11 digits) or landline number", field=name)
    return value


ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_number(value: str, name: str = "id_number") -> str:
    """A mainland resident ID number (GB 11643, 18 characters with its check digit)."""
    value = (value or "").strip().upper()
    if not value:
        return ""
    if not re.match(r"^\d{17}[\dX]$", value):
        raise InvalidArgument(f"{name} must be 18 characters: 17 digits and a digit or X", field=name)
    check = ID_CHECK[sum(int(d) * w for d, w in zip(value[:17], ID_WEIGHTS, strict=True)) % 11]
    if value[17] != check:
        raise InvalidArgument(f"{name} check digit is wrong (身份证号码校验位错误)", field=name)
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidArgument(f"{name} holds no valid birth date", field=name) from None
    return value


def mask_phone(value: str) -> str:
    if not value:
        return ""
    return value[:3] + "*" * (len(value) - 7) + value[-4:] if len(value) >= 8 else "*" * len(value)


def mask_id_number(value: str) -> str:
    return value[:4] + "*" * (len(value) - 8) + value[-4:] if value else ""


def is_masked(value: str) -> bool:
    return "*" in (value or "")


def availability(data: Mapping[str, Any], name: str = "availability") -> list[dict[str, Any]]:
    out = []
    for i, slot in enumerate(data.get(name) or []):
        where = f"{name}[{i}]"
        weekday = slot.get("weekday", 0)
        if not isinstance(weekday, int) or not 1 <= weekday <= 7:
            raise InvalidArgument(f"{where}.weekday must be 1 (Monday) … 7 (Sunday)", field=where)
        start, end = str(slot.get("start", "")), str(slot.get("end", ""))
        if not HHMM_RE.match(start) or not HHMM_RE.match(end) or end <= start:
            raise InvalidArgument(f"{where} needs start and end as HH:MM with end after start", field=where)
        out.append({"weekday": weekday, "start": start, "end": end})
    return out


def polygon(value: str, name: str = "boundary_geojson") -> BaseGeometry:
    """A GeoJSON Polygon (lon/lat) that is closed, simple and within WGS-84 bounds."""
    try:
        geo = json.loads(value)
        geom = shape(geo)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidArgument(f"{name} is not a GeoJSON geometry: {exc}", field=name) from None
    if geom.geom_type != "Polygon":
        raise InvalidArgument(f"{name} must be a GeoJSON Polygon, not {geom.geom_type}", field=name)
    if geom.is_empty or not geom.is_valid or geom.area == 0:
        raise InvalidArgument(f"{name} is not a valid polygon (self-intersecting or empty ring)", field=name)
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidArgument(f"{name} has coordinates outside lon -180..180 / lat -90..90", field=name)
    return geom


# ---------------------------------------------------------------- entity validators


def validate_community(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name_zh": text(d, "name_zh", required=True),
        "name_en": text(d, "name_en"),
        "address": text(d, "address", limit=TEXT_MAX),
    }


def validate_grid(d: Mapping[str, Any]) -> dict[str, Any]:
    boundary = text(d, "boundary_geojson", required=True, limit=200_000)
    polygon(boundary)
    return {
        "community_id": ref(d, "community_id"),
        "name_zh": text(d, "name_zh", required=True),
        "boundary_geojson": boundary,
    }


def validate_compound(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "grid_id": ref(d, "grid_id"),
        "name_zh": text(d, "name_zh", required=True),
        "address": text(d, "address", required=True, limit=TEXT_MAX),
        "point": point(d, required=True),
        "households": number(d, "households", lo=0, hi=100_000, integer=True),
    }


def validate_grid_station(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "grid_id": ref(d, "grid_id"),
        "name_zh": text(d, "name_zh", required=True),
        "address": text(d, "address", limit=TEXT_MAX),
        "point": point(d),
        "services": terms(d, "services"),
        "open_hours": text(d, "open_hours"),
    }


def validate_party_organization(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": choice(d, "kind", PARTY_ORG_KINDS),
        "place_id": ref(d, "place_id"),
        "name_zh": text(d, "name_zh", required=True),
        "secretary_id": ref(d, "secretary_id", required=False),
        "member_ids": refs(d, "member_ids"),
    }


def validate_member_unit(d: Mapping[str, Any]) -> dict[str, Any]:
    joined = day(d, "joined_on", required=True)
    left = day(d, "left_on")
    if left and left < joined:
        raise InvalidArgument("left_on is before joined_on", field="left_on")
    return {
        "community_id": ref(d, "community_id"),
        "name_zh": text(d, "name_zh", required=True),
        "kind": choice(d, "kind", UNIT_KINDS),
        "contact_name": text(d, "contact_name"),
        "contact_phone": phone(text(d, "contact_phone", limit=30), "contact_phone")
        if not is_masked(str(d.get("contact_phone", "")))
        else str(d.get("contact_phone")),
        "serves_grid_ids": refs(d, "serves_grid_ids"),
        "serves_compound_ids": refs(d, "serves_compound_ids"),
        "joined_on": joined,
        "left_on": left,
        "duties_accepted": choices(d, "duties_accepted", DUTIES),
        "public_name": text(d, "public_name", limit=50),
    }


def validate_person(d: Mapping[str, Any]) -> dict[str, Any]:
    roles = choices(d, "roles", ROLES)
    if not roles:
        raise InvalidArgument(f"roles needs at least one of: {', '.join(ROLES)}", field="roles")
    raw_phone = str(d.get("phone") or "")
    raw_id = str(d.get("id_number") or "")
    out: dict[str, Any] = {
        "community_id": ref(d, "community_id"),
        "grid_id": ref(d, "grid_id", required=False),
        "member_unit_id": ref(d, "member_unit_id", required=False),
        "name_zh": text(d, "name_zh", required=True, limit=50),
        "public_name": text(d, "public_name", limit=50),
        "roles": roles,
        "phone": raw_phone if is_masked(raw_phone) else phone(raw_phone, "phone"),
        "id_number": raw_id if is_masked(raw_id) else id_number(raw_id),
        "party": None,
        "volunteer": None,
        "worker": None,
    }
    party = d.get("party") or {}
    if "party_member" in roles:
        out["party"] = {
            "home_community_id": ref(party, "home_community_id", required=False),
            "work_unit": text(party, "work_unit"),
            "dual_report_registered_on": day(party, "dual_report_registered_on"),
        }
    elif any(party.values()):
        raise InvalidArgument("party is set but roles has no party_member", field="party")
    vol = d.get("volunteer") or {}
    if "volunteer" in roles:
        out["volunteer"] = {
            "team_id": ref(vol, "team_id", required=False),
            "services": terms(vol, "services"),
            "availability": availability(vol),
        }
    elif any(vol.values()):
        raise InvalidArgument("volunteer is set but roles has no volunteer", field="volunteer")
    worker = d.get("worker") or {}
    if "community_worker" in roles:
        grade = worker.get("grade", 0)
        if grade not in GRADES:
            raise InvalidArgument("worker.grade must be 1..18 (三岗十八级)", field="worker.grade")
        out["worker"] = {"post": choice(worker, "post", POSTS), "grade": grade}
    elif any(worker.values()):
        raise InvalidArgument("worker is set but roles has no community_worker", field="worker")
    return out


def validate_volunteer_team(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "community_id": ref(d, "community_id"),
        "name_zh": text(d, "name_zh", required=True),
        "leader_id": ref(d, "leader_id", required=False),
        "availability": availability(d),
    }


def validate_talent_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    skill = term(text(d, "skill", required=True, limit=50))
    return {
        "person_id": ref(d, "person_id"),
        "skill": skill,
        "level": number(d, "level", lo=1, hi=5, integer=True),
        "note": text(d, "note", limit=TEXT_MAX),
    }


def validate_team_service_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "team_id": ref(d, "team_id"),
        "service": term(text(d, "service", required=True, limit=50)),
        "capacity": number(d, "capacity", lo=1, hi=10_000, integer=True),
        "hours_per_week": number(d, "hours_per_week", lo=0, hi=168),
    }


def validate_unit_resource_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "unit_id": ref(d, "unit_id"),
        "resource": term(text(d, "resource", required=True, limit=50)),
        "category": choice(d, "category", RESOURCE_CATEGORIES),
        "quantity": number(d, "quantity", lo=0, hi=1e12),
        "unit_of_measure": text(d, "unit_of_measure", limit=20),
        "conditions": text(d, "conditions", limit=TEXT_MAX),
    }


def validate_responsibility_item(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "domain": choice(d, "domain", RESPONSIBILITY_DOMAINS),
        "title_zh": text(d, "title_zh", required=True, limit=200),
        "title_en": text(d, "title_en", limit=200),
        "unit_kinds": choices(d, "unit_kinds", UNIT_KINDS),
    }


def validate_public_affairs_item(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "community_id": ref(d, "community_id"),
        "mode": choice(d, "mode", PUBLIC_AFFAIRS_MODES),
        "title_zh": text(d, "title_zh", required=True, limit=200),
        "title_en": text(d, "title_en", limit=200),
        "basis": text(d, "basis", limit=TEXT_MAX),
    }


# ---------------------------------------------------------------- location


@dataclass(frozen=True)
class GridShape:
    grid_id: str
    community_id: str
    geometry: BaseGeometry


def locate(grids: Iterable[GridShape], lat: float, lon: float) -> GridShape | None:
    """The grid whose boundary contains the point (boundary points count as inside)."""
    p = ShapelyPoint(lon, lat)
    for g in grids:
        if g.geometry.covers(p):
            return g
    return None


# ---------------------------------------------------------------- matching (点将)


@dataclass
class Need:
    skills: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    grid_id: str = ""
    community_id: str = ""
    when: datetime | None = None


@dataclass
class Helper:
    kind: str  # person, team, unit
    id: str
    name_zh: str
    community_id: str
    grids: frozenset[str] = frozenset()
    skills: dict[str, int] = field(default_factory=dict)  # skill -> level
    services: dict[str, int] = field(default_factory=dict)  # service -> capacity (1 for a person)
    resources: dict[str, tuple[str, float, str]] = field(default_factory=dict)  # name -> (category, qty, uom)
    availability: tuple[tuple[int, str, str], ...] = ()


@dataclass
class Scored:
    helper: Helper
    score: float
    reasons: list[str]


def _local_slot(when: datetime) -> tuple[int, str]:
    """The weekday (1 = Monday) and HH:MM of a moment in Asia/Shanghai, as availability slots are written."""
    local = when.astimezone(SHANGHAI)
    return local.isoweekday(), local.strftime("%H:%M")


def available(slots: tuple[tuple[int, str, str], ...], when: datetime) -> bool:
    weekday, hhmm = _local_slot(when)
    return any(w == weekday and start <= hhmm < end for w, start, end in slots)


def _points(
    helper: Helper,
    need: Need,
    resources: list[str],
    at: tuple[int, str] | None,
    reasons: list[str] | None,
) -> float | None:
    """The points of a helper for a need, None when nothing it offers is needed; the one place they are added up.

    `resources` is sorted(need.resources) and `at` is _local_slot(need.when) (None without a time), worked
    out once per need. With reasons=None no text is built: rank() adds up every matching helper but explains
    only the ones it returns.
    """
    points = 0.0
    skills = [s for s in need.skills if s in helper.skills]  # needs hold one or two terms: no set, no sort
    if len(skills) > 1:
        skills.sort()
    for skill in skills:
        level = helper.skills[skill]
        points += 10 + 2 * level
        if reasons is not None:
            reasons.append(f"技能 {skill} {level}级 / skill {skill} at level {level}")
    services = [s for s in need.services if s in helper.services]
    if len(services) > 1:
        services.sort()
    for service in services:
        cap = helper.services[service]
        points += 8 + min(cap, 20) * 0.25
        if reasons is not None:
            reasons.append(
                f"服务 {service} / offers {service}"
                + (f"（可派{cap}人 / capacity {cap}）" if helper.kind == "team" else "")
            )
    if helper.resources:
        for res in resources:
            for name, (category, qty, uom) in helper.resources.items():
                if res in (name, category):
                    points += 8 + min(math.log10(qty + 1), 3)
                    if reasons is not None:
                        reasons.append(f"资源 {name} {qty:g}{uom} / has {name} ({qty:g} {uom})".rstrip())
                    break
    if points == 0:
        return None
    if need.grid_id and need.grid_id in helper.grids:
        points += 5
        if reasons is not None:
            reasons.append(f"服务本网格 / serves grid {need.grid_id}")
    elif need.community_id and need.community_id == helper.community_id:
        points += 2
        if reasons is not None:
            reasons.append(f"同社区 / same community {need.community_id}")
    if at is not None and helper.availability:
        weekday, hhmm = at
        if any(w == weekday and start <= hhmm < end for w, start, end in helper.availability):
            points += 3
            if reasons is not None:
                reasons.append("该时段可服务 / available at that time")
        else:
            points -= 6
            if reasons is not None:
                reasons.append("该时段不在服务时间 / not available at that time")
    return points


def score(helper: Helper, need: Need) -> Scored | None:
    """How well a helper fits a need, with the reasons; None when nothing it offers is needed."""
    reasons: list[str] = []
    at = _local_slot(need.when) if need.when is not None else None
    points = _points(helper, need, sorted(need.resources), at, reasons)
    return None if points is None else Scored(helper, round(points, 2), reasons)


def rank(helpers: Iterable[Helper], need: Need, limit: int) -> tuple[list[Scored], int]:
    """The best `limit` helpers for a need, best first (ties by kind, then id), and how many matched at all.

    Every helper is scored without reasons; only the ones returned get their reasons written.
    """
    resources = sorted(need.resources)
    at = _local_slot(need.when) if need.when is not None else None
    keyed: list[tuple[float, str, str, int, Helper]] = []
    for h in helpers:
        points = _points(h, need, resources, at, None)
        if points is not None:
            # The running number keeps equal keys in input order (as a stable sort would) and never
            # lets the comparison reach the Helper itself.
            keyed.append((-round(points, 2), h.kind, h.id, len(keyed), h))
    keyed.sort()
    best = []
    for _neg, _kind, _id, _n, h in keyed[:limit]:
        reasons: list[str] = []
        points = _points(h, need, resources, at, reasons)
        assert points is not None  # it matched a moment ago: the same helper, the same need
        best.append(Scored(h, round(points, 2), reasons))
    return best, len(keyed)
