"""Org commands: validate, check references inside the tenant, save state and events in one write.

One generic engine serves every entity; what differs per entity is its EntitySpec: the validator,
the reference checks that fill derived fields, the filters a list accepts, and the events a change
emits. Updates are conditional on the version the caller read (lost-update protection) and are a
single atomic document write together with their events.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mongoengine as me
import pymongo.errors
from google.protobuf.message import Message
from hongling.events.v1 import org_events_pb2 as oev

from services.common import community, unitofwork
from services.common.context import current_principal, require_tenant
from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.protect import Protector
from services.common.unitofwork import Conflicts, UnitOfWork
from services.org import documents as d
from services.org import domain, index

log = logging.getLogger(__name__)
PAGE_DEFAULT = 50
PAGE_MAX = 500
# Roles that handle people directly and may see their personal data unmasked (each reveal is logged).
REVEAL_ROLES = frozenset({"community_worker", "subdistrict_admin"})
# The service checks roles again behind the gateway's policy table (defence in depth): who may change
# org data, and who may read it (a district department only under a grant the gateway checked).
WRITE_ROLES = frozenset({"community_worker", "subdistrict_admin", "service"})
READ_ROLES = WRITE_ROLES | {"district_department"}


def require_role(write: bool) -> None:
    principal = current_principal.get()
    role = principal.role if principal else "none"
    allowed = WRITE_ROLES if write else READ_ROLES
    if principal is None or role not in allowed:
        raise PermissionDenied(
            f"role {role!r} may not {'change' if write else 'read'} organisation data "
            f"(allowed: {', '.join(sorted(allowed))})",
            reason="role_not_allowed",
        )
    if role == "district_department" and not principal.grant_id:
        raise PermissionDenied(
            "a district department reads community data only under an approved grant", reason="grant_required"
        )


Prepare = Callable[[dict[str, Any], "d.OrgDocument | None", "Context"], None]


@dataclass
class Context:
    protector: Protector


@dataclass(frozen=True)
class EntitySpec:
    name: str
    doc: type[d.OrgDocument]
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    filters: Mapping[str, str]  # filter key -> stored field
    prepare: Prepare | None = None
    deletable: bool = False
    unique_message: str = "a record with the same name already exists here"
    personal: tuple[str, ...] = ()
    events: Callable[[str, d.OrgDocument, d.OrgDocument | None], list[Message]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- reference checks


def _must(doc_cls: type[d.OrgDocument], ident: str, what: str, field_name: str) -> Any:
    found = doc_cls.objects(id=ident).first() if ident else None
    if found is None:
        raise InvalidArgument(
            f"{field_name}: no {what} {ident!r} in this tenant (引用的{what}不存在)", field=field_name
        )
    return found


def _community(data: dict[str, Any], _old: Any, _ctx: Context) -> None:
    _must(d.CommunityDoc, data["community_id"], "community", "community_id")


def _grid_child(data: dict[str, Any], _old: Any, _ctx: Context) -> None:
    grid = _must(d.GridDoc, data["grid_id"], "grid", "grid_id")
    data["community_id"] = grid.community_id


def _people_of(community_id: str, ids: list[str], field_name: str) -> None:
    if not ids:
        return
    found = {p.id: p for p in d.PersonDoc.objects(id__in=ids).only("id", "community_id", "roles")}
    for ident in ids:
        p = found.get(ident)
        if p is None:
            raise InvalidArgument(f"{field_name}: no person {ident!r} in this tenant", field=field_name)
        if p.community_id != community_id:
            raise InvalidArgument(f"{field_name}: person {ident!r} belongs to another community", field=field_name)


def _party_org(data: dict[str, Any], _old: Any, _ctx: Context) -> None:
    kind = data["kind"]
    place_kind = domain.PARTY_ORG_KINDS[kind][1]
    place_cls = {"community": d.CommunityDoc, "grid": d.GridDoc, "compound": d.CompoundDoc}[place_kind]
    place = _must(place_cls, data["place_id"], place_kind, "place_id")
    data["community_id"] = place.id if place_kind == "community" else place.community_id
    data["parent_id"] = ""
    if kind in domain.PARENT_ORG_KIND:
        parent_place = place.community_id if place_kind == "grid" else place.grid_id
        parent = d.PartyOrganizationDoc.objects(place_id=parent_place, kind=domain.PARENT_ORG_KIND[kind]).first()
        if parent is None:
            raise FailedPrecondition(
                f"create the {domain.PARENT_ORG_KIND[kind]} of {parent_place!r} first (请先建立上级党组织)",
                field="place_id",
            )
        data["parent_id"] = parent.id
    _people_of(data["community_id"], [data["secretary_id"]] if data["secretary_id"] else [], "secretary_id")
    _people_of(data["community_id"], data["member_ids"], "member_ids")


def _member_unit(data: dict[str, Any], old: Any, ctx: Context) -> None:
    community_id = data["community_id"]
    _must(d.CommunityDoc, community_id, "community", "community_id")
    if old is not None and old.community_id != community_id:
        raise FailedPrecondition(
            "a unit cannot move to another community; register it there anew", field="community_id"
        )
    for gid in data["serves_grid_ids"]:
        grid = _must(d.GridDoc, gid, "grid", "serves_grid_ids")
        if grid.community_id != community_id:
            raise InvalidArgument(
                f"serves_grid_ids: grid {gid!r} is in another community (只能服务本社区网格)", field="serves_grid_ids"
            )
    for cid in data["serves_compound_ids"]:
        compound = _must(d.CompoundDoc, cid, "compound", "serves_compound_ids")
        if compound.community_id != community_id:
            raise InvalidArgument(
                f"serves_compound_ids: compound {cid!r} is in another community", field="serves_compound_ids"
            )
    data["status"] = "left" if data["left_on"] else "active"
    _protect(data, old, ctx, "contact_phone", domain.mask_phone)


def _person(data: dict[str, Any], old: Any, ctx: Context) -> None:
    community_id = data["community_id"]
    _must(d.CommunityDoc, community_id, "community", "community_id")
    if data["grid_id"]:
        grid = _must(d.GridDoc, data["grid_id"], "grid", "grid_id")
        if grid.community_id != community_id:
            raise InvalidArgument(f"grid_id: grid {data['grid_id']!r} is in another community", field="grid_id")
    if data["member_unit_id"]:
        unit = _must(d.MemberUnitDoc, data["member_unit_id"], "member unit", "member_unit_id")
        if unit.community_id != community_id:
            raise InvalidArgument(
                f"member_unit_id: unit {data['member_unit_id']!r} is in another community (该成员单位属于其他社区)",
                field="member_unit_id",
            )
    if data["volunteer"] and data["volunteer"]["team_id"]:
        team = _must(d.VolunteerTeamDoc, data["volunteer"]["team_id"], "volunteer team", "volunteer.team_id")
        if team.community_id != community_id:
            raise InvalidArgument("volunteer.team_id: the team is in another community", field="volunteer.team_id")
    if data["party"] and data["party"]["home_community_id"]:
        _must(d.CommunityDoc, data["party"]["home_community_id"], "community", "party.home_community_id")
    _protect(data, old, ctx, "phone", domain.mask_phone)
    _protect(data, old, ctx, "id_number", domain.mask_id_number)


def _protect(data: dict[str, Any], old: Any, ctx: Context, name: str, mask: Callable[[str], str]) -> None:
    """Replace a plain personal field by its encrypted, masked (and for ID numbers, keyed) forms."""
    value = data.pop(name)
    if domain.is_masked(value):
        if old is None or value != getattr(old, f"{name}_masked"):
            raise InvalidArgument(f"{name} looks masked; send the full value or leave it as read", field=name)
        return  # unchanged
    data[f"{name}_enc"] = ctx.protector.seal(value)
    data[f"{name}_masked"] = mask(value)
    if name == "id_number":
        data["id_number_key"] = ctx.protector.lookup_key(value)
        _unique_across_rotation(value, old, ctx)


def _unique_across_rotation(id_number: str, old: Any, ctx: Context) -> None:
    """During a data key rotation, a person stored before the re-sealing reached it carries the former key's
    look-up hash, which the unique index cannot match with the current one: look for it by that hash."""
    former = ctx.protector.lookup_keys(id_number)[1:]
    if not former:
        return
    query = d.PersonDoc.objects(id_number_key__in=former, deleted__ne=True)
    if old is not None:
        query = query.filter(id__ne=old.id)
    if query.first() is not None:
        raise AlreadyExists(
            "a person with this id_number is already registered in this tenant (身份证号重复)", field="id_number"
        )


def _via(parent_cls: type[d.OrgDocument], ref_field: str, what: str) -> Prepare:
    def prepare(data: dict[str, Any], old: Any, _ctx: Context) -> None:
        parent = _must(parent_cls, data[ref_field], what, ref_field)
        data["community_id"] = parent.community_id
        if old is not None and old.community_id != parent.community_id:
            raise FailedPrecondition(f"{ref_field} cannot move the entry to another community", field=ref_field)

    return prepare


def _team(data: dict[str, Any], old: Any, ctx: Context) -> None:
    _community(data, old, ctx)
    if data["leader_id"]:
        _people_of(data["community_id"], [data["leader_id"]], "leader_id")


def _grid(data: dict[str, Any], old: Any, ctx: Context) -> None:
    _community(data, old, ctx)
    if old is not None and old.community_id != data["community_id"]:
        raise FailedPrecondition("a grid cannot move to another community", field="community_id")


# ---------------------------------------------------------------- events


def _changed(entity: str) -> Callable[[str, d.OrgDocument, d.OrgDocument | None], list[Message]]:
    def events(op: str, doc: d.OrgDocument, old: d.OrgDocument | None) -> list[Message]:
        return [
            oev.OrgEntityChanged(
                entity=entity,
                id=doc.id,
                op=op,
                community_id=str(getattr(doc, "community_id", "") or ""),
                version=doc.version,
            )
        ]

    return events


def _unit_events(op: str, doc: Any, old: Any) -> list[Message]:
    out = _changed("member_unit")(op, doc, old)
    if op == "created" and doc.status == "active":
        out.append(
            oev.UnitJoined(
                unit_id=doc.id,
                community_id=doc.community_id,
                name_zh=doc.name_zh,
                kind=doc.kind,
                serves_grid_ids=doc.serves_grid_ids,
                version=doc.version,
            )
        )
    if doc.status == "left" and (old is None or old.status != "left"):
        out.append(
            oev.UnitLeft(unit_id=doc.id, community_id=doc.community_id, left_on=doc.left_on, version=doc.version)
        )
    return out


def _person_events(op: str, doc: Any, old: Any) -> list[Message]:
    out = _changed("person")(op, doc, old)
    if op == "created":
        out.append(
            oev.PersonRegistered(
                person_id=doc.id,
                community_id=doc.community_id,
                roles=doc.roles,
                grid_id=doc.grid_id,
                version=doc.version,
            )
        )
    return out


# ---------------------------------------------------------------- the specs

SPECS: dict[str, EntitySpec] = {
    s.name: s
    for s in (
        EntitySpec(
            "community",
            d.CommunityDoc,
            domain.validate_community,
            {},
            None,
            unique_message="a community with this name_zh already exists in this tenant",
        ),
        EntitySpec(
            "grid",
            d.GridDoc,
            domain.validate_grid,
            {"community_id": "community_id"},
            _grid,
            unique_message="a grid with this name_zh already exists in the community",
        ),
        EntitySpec(
            "compound",
            d.CompoundDoc,
            domain.validate_compound,
            {"grid_id": "grid_id", "community_id": "community_id"},
            _grid_child,
            unique_message="a compound with this name_zh already exists in the grid",
        ),
        EntitySpec(
            "grid_station",
            d.GridStationDoc,
            domain.validate_grid_station,
            {"grid_id": "grid_id", "community_id": "community_id"},
            _grid_child,
        ),
        EntitySpec(
            "party_organization",
            d.PartyOrganizationDoc,
            domain.validate_party_organization,
            {"community_id": "community_id", "kind": "kind", "place_id": "place_id", "parent_id": "parent_id"},
            _party_org,
            unique_message="this place already has a party organisation of that kind",
        ),
        EntitySpec(
            "member_unit",
            d.MemberUnitDoc,
            domain.validate_member_unit,
            {"community_id": "community_id", "kind": "kind", "status": "status", "serves_grid_id": "serves_grid_ids"},
            _member_unit,
            unique_message="a unit with this name_zh is already registered in the community (单位名称重复)",
            personal=("contact_phone",),
            events=_unit_events,
        ),
        EntitySpec(
            "person",
            d.PersonDoc,
            domain.validate_person,
            {"community_id": "community_id", "grid_id": "grid_id", "role": "roles"},
            _person,
            unique_message="a person with this id_number is already registered in this tenant (身份证号重复)",
            personal=("phone", "id_number"),
            events=_person_events,
        ),
        EntitySpec(
            "volunteer_team",
            d.VolunteerTeamDoc,
            domain.validate_volunteer_team,
            {"community_id": "community_id"},
            _team,
            unique_message="a team with this name_zh already exists in the community",
        ),
        EntitySpec(
            "talent_entry",
            d.TalentEntryDoc,
            domain.validate_talent_entry,
            {"person_id": "person_id", "skill": "skill", "community_id": "community_id"},
            _via(d.PersonDoc, "person_id", "person"),
            deletable=True,
            unique_message="this person already has an entry for that skill",
        ),
        EntitySpec(
            "team_service_entry",
            d.TeamServiceEntryDoc,
            domain.validate_team_service_entry,
            {"team_id": "team_id", "service": "service", "community_id": "community_id"},
            _via(d.VolunteerTeamDoc, "team_id", "volunteer team"),
            deletable=True,
            unique_message="this team already has an entry for that service",
        ),
        EntitySpec(
            "unit_resource_entry",
            d.UnitResourceEntryDoc,
            domain.validate_unit_resource_entry,
            {"unit_id": "unit_id", "resource": "resource", "category": "category", "community_id": "community_id"},
            _via(d.MemberUnitDoc, "unit_id", "member unit"),
            deletable=True,
            unique_message="this unit already has an entry for that resource",
        ),
        EntitySpec(
            "responsibility_item",
            d.ResponsibilityItemDoc,
            domain.validate_responsibility_item,
            {"domain": "domain", "unit_kind": "unit_kinds"},
            None,
            deletable=True,
        ),
        EntitySpec(
            "public_affairs_item",
            d.PublicAffairsItemDoc,
            domain.validate_public_affairs_item,
            {"community_id": "community_id", "mode": "mode"},
            _community,
            deletable=True,
            unique_message="the community already lists this item in that mode",
        ),
    )
}


# ---------------------------------------------------------------- the engine


def spec(name: str) -> EntitySpec:
    try:
        return SPECS[name]
    except KeyError:
        raise InvalidArgument(f"unknown entity {name!r}; use one of: {', '.join(SPECS)}", field="entity") from None


def _conflicts(sp: EntitySpec, stale_suffix: str) -> Conflicts:
    return Conflicts(
        stale=lambda ident, version, expected: Aborted(
            f"{sp.name} {ident!r} is at version {version}, not {expected}{stale_suffix}", field="version"
        ),
        raced=lambda ident: Aborted(
            f"{sp.name} {ident!r} was changed by someone else at the same moment: reload and retry",
            field="version",
        ),
        busy=lambda ident: Aborted(
            f"{sp.name} {ident!r} kept changing under this change: reload and retry", field="version"
        ),
    )


def bump_generation() -> None:
    try:
        d.TenantStateDoc.objects(id="state").update_one(inc__generation=1, upsert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        # Two first writes of a fresh tenant both tried to create the counter; it exists now.
        d.TenantStateDoc.objects(id="state").update_one(inc__generation=1)
    index.forget_generation(require_tenant())  # this process's next query sees the write


def note_write(sp: EntitySpec, doc: d.OrgDocument) -> None:
    """The write is done: this process's in-memory index takes it at once (its next query sees it)."""
    if sp.name not in index.INDEXED:
        return
    try:
        index.CACHE.note_write(require_tenant(), sp.name, doc.to_mongo().to_dict())
    except Exception:
        # The write stands (and moved the generation on, so the index is rebuilt beside); never report it failed.
        log.exception("org index: %s %s not applied in memory; it shows with the next rebuild", sp.name, doc.id)


def generation() -> int:
    state = d.TenantStateDoc.objects(id="state").first()
    return int(state.generation) if state else 0


def _record(sp: EntitySpec, doc: d.OrgDocument, op: str, old: d.OrgDocument | None) -> list[Any]:
    """Pending events for this change, as outbox entries (not yet saved)."""
    messages = (sp.events or _changed(sp.name))(op, doc, old)
    before = len(doc.outbox)
    for m in messages:
        doc.record(m, subject=f"{sp.name}/{doc.id}")
    return list(doc.outbox[before:])


# ---------------------------------------------------------------- community scope (services/common/community.py)


def tenant_level(sp: EntitySpec) -> bool:
    """Records that belong to the tenant, not to one community (the responsibility list of the 6 domains)."""
    return sp.name != "community" and "community_id" not in sp.doc._fields


def community_of(sp: EntitySpec, record: Any) -> str:
    """The community a record (a document, or the values it is about to be stored with) belongs to: a
    community is its own; "" for a tenant-level record."""
    if sp.name == "community":
        return str(record.id if isinstance(record, d.OrgDocument) else record.get("id") or "")
    if tenant_level(sp):
        return ""
    value = getattr(record, "community_id", "") if isinstance(record, d.OrgDocument) else record.get("community_id")
    return str(value or "")


def visible(sp: EntitySpec, doc: d.OrgDocument) -> bool:
    """Whether the caller may see this record: tenant-level records everyone who reads org data; another
    community's record not a community worker (to whom it is NOT_FOUND, as a missing one)."""
    return tenant_level(sp) or community.sees(community_of(sp, doc))


def _require_community_writer(sp: EntitySpec) -> None:
    """A community worker changes its own community's records, never the tenant's own (nor new communities)."""
    caller = community.caller()
    if caller is None or caller.community is None:
        return
    if tenant_level(sp):
        raise PermissionDenied(
            f"{sp.name} records are the whole tenant's: subdistrict admins change them; {caller.sub!r} works for "
            f"community {caller.community!r} (本街道/镇的清单由街道管理员维护) (无权访问该社区数据)",
            reason=community.REASON,
        )


def list_filters(sp: EntitySpec, filters: Mapping[str, str]) -> dict[str, str]:
    """A list's (or export's) filters as the caller may have them: a community worker's limited to its
    community (naming another is PERMISSION_DENIED `community_out_of_scope`)."""
    out = dict(filters)
    if "community_id" in sp.filters:
        forced = community.list_filter(out.get("community_id", ""))
        if forced:
            out["community_id"] = forced
    return out


def _query_scope(sp: EntitySpec, query: dict[str, Any]) -> None:
    """Communities have no community_id to filter on: a community worker's list holds its own only."""
    caller = community.caller()
    if sp.name == "community" and caller is not None and caller.community is not None:
        query["id"] = caller.community


def _clean(sp: EntitySpec, data: Mapping[str, Any], old: d.OrgDocument | None, ctx: Context) -> dict[str, Any]:
    _require_community_writer(sp)
    if old is not None and not visible(sp, old):
        raise _not_found(sp, old.id)  # another community's record: as if it did not exist
    cleaned = sp.validate(data)
    if sp.prepare is not None:
        sp.prepare(cleaned, old, ctx)
    caller = community.caller()
    if old is None and sp.name == "community" and caller is not None and caller.community is not None:
        raise PermissionDenied(
            f"{caller.sub!r} works for community {caller.community!r}: a new community is set up by subdistrict "
            "admins (新建社区须由街道管理员办理) (无权访问该社区数据)",
            reason=community.REASON,
        )
    if not tenant_level(sp) and sp.name != "community":  # a community is its own (old, checked above)
        community.require_placed_in_scope(community_of(sp, cleaned))  # its own, or one derived from a parent
    return cleaned


def check(sp: EntitySpec, data: Mapping[str, Any], old: d.OrgDocument | None, ctx: Context) -> dict[str, Any]:
    """Validate and run the reference checks as create (old None) or update (old = stored) would; writes nothing.

    Returns the fields as they would be stored (personal data sealed, derived fields filled in).
    """
    return _clean(sp, data, old, ctx)


def _embedded(sp: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
    """Turn nested dicts into the document's embedded documents."""
    out = {}
    for name, value in values.items():
        fld = sp.doc._fields.get(name)
        if isinstance(fld, me.EmbeddedDocumentField) and isinstance(value, dict):
            value = _embed(fld.document_type, value)
        elif isinstance(fld, me.EmbeddedDocumentListField):
            value = [_embed(fld.field.document_type, v) for v in value]
        out[name] = value
    return out


def _embed(cls: Any, value: dict[str, Any]) -> Any:
    kwargs = {}
    for name, v in value.items():
        fld = cls._fields.get(name)
        if isinstance(fld, me.EmbeddedDocumentListField):
            v = [_embed(fld.field.document_type, x) for x in v]
        kwargs[name] = v
    return cls(**kwargs)


def create(sp: EntitySpec, data: Mapping[str, Any], ctx: Context) -> d.OrgDocument:
    ident = str(data.get("id") or "").strip() or uuid.uuid4().hex[:16]
    domain.entity_id(ident)
    values = _clean(sp, data, None, ctx)
    now = datetime.now(UTC)
    if values.get("id_number_key") == "":
        values["id_number_key"] = f"none:{ident}"  # no ID number: unique by construction
    doc = sp.doc(id=ident, version=1, created_at=now, updated_at=now, **_embedded(sp, values))
    _record(sp, doc, "created", None)
    bump_generation()
    try:
        doc.save(force_insert=True)
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        if sp.doc.objects(id=ident).first() is not None:
            raise AlreadyExists(f"{sp.name} {ident!r} already exists (编号已存在)", field="id") from None
        raise AlreadyExists(sp.unique_message, field="name_zh" if "name_zh" in values else "id") from None
    bump_generation()
    note_write(sp, doc)
    return doc


def _not_found(sp: EntitySpec, ident: str) -> NotFound:
    return NotFound(community.not_found_message(sp.name, ident), field="id")


def update(
    sp: EntitySpec, data: Mapping[str, Any], ctx: Context, *, uow: UnitOfWork = unitofwork.MONGO
) -> d.OrgDocument:
    ident = str(data.get("id") or "")
    expected = int(data.get("version") or 0)
    if expected <= 0:
        raise InvalidArgument("version is required: send the version you read (防止覆盖他人修改)", field="version")
    unique_field = "id"

    def apply(doc: d.OrgDocument, _now: datetime) -> bool:
        nonlocal unique_field
        old = sp.doc._from_son(doc.to_mongo())
        values = _clean(sp, data, old, ctx)
        if values.get("id_number_key") == "":
            values["id_number_key"] = f"none:{ident}"
        unique_field = "name_zh" if "name_zh" in values else "id"
        for name, value in _embedded(sp, values).items():
            setattr(doc, name, value)
        doc.version = old.version + 1  # what its events carry (the unit of work writes that version)
        _record(sp, doc, "updated", old)
        bump_generation()
        return True

    try:
        done = unitofwork.change(
            uow,
            sp.doc,
            f"{sp.name}:{ident}",
            ident,
            apply,
            conflicts=_conflicts(sp, ": reload and retry"),
            now=lambda: datetime.now(UTC),
            expected_version=expected,
            exists=lambda doc: not doc.deleted and visible(sp, doc),
        )
    except (me.NotUniqueError, pymongo.errors.DuplicateKeyError):
        raise AlreadyExists(sp.unique_message, field=unique_field) from None
    if done.doc is None:
        raise _not_found(sp, ident)
    bump_generation()
    note_write(sp, done.doc)
    return done.doc


def delete(sp: EntitySpec, ident: str, expected: int, *, uow: UnitOfWork = unitofwork.MONGO) -> None:
    if not sp.deletable:
        raise FailedPrecondition(f"{sp.name} records are not deleted; update them instead")
    _require_community_writer(sp)

    def tombstone(doc: d.OrgDocument, _now: datetime) -> bool:
        # The deletion event must survive the document: it is written as a tombstone (one write), and the
        # relay removes tombstones once their events are out.
        _record(sp, doc, "deleted", doc)
        doc.deleted = True
        bump_generation()
        return True

    done = unitofwork.change(
        uow,
        sp.doc,
        f"{sp.name}:{ident}",
        ident,
        tombstone,
        conflicts=_conflicts(sp, ""),
        now=lambda: datetime.now(UTC),
        expected_version=expected or None,
        exists=lambda doc: not doc.deleted and visible(sp, doc),
    )
    if done.doc is None:
        raise _not_found(sp, ident)
    bump_generation()
    note_write(sp, done.doc)


def get(sp: EntitySpec, ident: str) -> d.OrgDocument:
    # By _id alone (FerretDB answers that from its primary key; any extra condition means a scan).
    doc = sp.doc.objects(id=ident).first() if ident else None
    if doc is None or doc.deleted or not visible(sp, doc):
        raise _not_found(sp, ident)
    return doc


def list_(sp: EntitySpec, filters: Mapping[str, str], page_size: int, token: str) -> tuple[list[Any], str]:
    """Keyset pages ordered by id; filters are exact matches on the fields the spec allows."""
    if page_size < 0 or page_size > PAGE_MAX:
        raise InvalidArgument(f"page_size must be 1..{PAGE_MAX}", field="page_size")
    size = page_size or PAGE_DEFAULT
    query: dict[str, Any] = {"deleted__ne": True}
    filters = list_filters(sp, filters)
    _query_scope(sp, query)
    for key, value in filters.items():
        if key not in sp.filters:
            allowed = ", ".join(sp.filters) or "none"
            raise InvalidArgument(f"cannot filter {sp.name} by {key!r}; filters: {allowed}", field=f"filter.{key}")
        query[sp.filters[key]] = value
    if token:
        query["id__gt"] = token
    docs = list(sp.doc.objects(**query).order_by("id").limit(size + 1))
    return docs[:size], (docs[size - 1].id if len(docs) > size else "")


def may_reveal(reveal: bool, sp: EntitySpec, ident: str) -> bool:
    """Whether personal data is shown unmasked; refuses roles without the need, records every reveal.

    Each reveal is appended to the hash-chained audit log (who, which record; never the data itself)
    before anything is shown: when the entry cannot be written (the database is down), the reveal is
    refused (UNAVAILABLE `audit_unavailable`: HTTP 503 with Retry-After) and the record can still be read
    masked."""
    if not reveal:
        return False
    principal = current_principal.get()
    if principal is None or principal.role not in REVEAL_ROLES:
        raise PermissionDenied(
            f"role {principal.role if principal else 'none'!r} may not see personal data unmasked",
            reason="reveal_not_allowed",
        )
    from services.common.audit import shared_log  # opened once per process, on the first reveal
    from services.common.context import current_request_id, current_tenant

    try:
        shared_log().append(
            actor=principal.sub,
            role=principal.role,
            action="personal_data.reveal",
            outcome="done",
            tenant=current_tenant.get() or "",
            target=f"{sp.name}/{ident}",
            request_id=current_request_id.get() or "",
        )
    except Exception:
        log.exception(
            "personal data NOT revealed: %s %s to %s: the audit log is unavailable", sp.name, ident, principal.sub
        )
        raise Unavailable(
            "personal data cannot be shown right now: the audit log could not record the reveal; retry later, "
            "or read the record masked (审计日志暂不可用，无法显示个人信息)",
            reason="audit_unavailable",
        ) from None
    log.info("personal data revealed: %s %s to %s (%s)", sp.name, ident, principal.sub, principal.role)
    return True
