"""Org persistence schema (per-tenant database hl_org_<tenant>).

Every entity carries id, version, created_at, updated_at and its own pending events (outbox).
Personal data is stored only as *_enc (encrypted), *_masked (for display) and, where uniqueness
matters, *_key (keyed hash).
"""

from __future__ import annotations

from typing import Any, ClassVar

import mongoengine as me

from services.common.mongo import TenantDocument
from services.common.outbox import OutboxDocument


def _meta(collection: str, *indexes: Any) -> dict[str, Any]:
    return {"collection": collection, "indexes": list(indexes)}


class OrgDocument(OutboxDocument):
    meta: ClassVar[dict[str, Any]] = {"abstract": True}

    id = me.StringField(primary_key=True)
    version = me.IntField(required=True, default=1)
    created_at = me.DateTimeField(required=True)
    updated_at = me.DateTimeField(required=True)
    # A deleted record stays as a tombstone until the relay has published its deletion event.
    deleted = me.BooleanField(default=False)


class PointDoc(me.EmbeddedDocument):
    lat = me.FloatField(required=True)
    lon = me.FloatField(required=True)


class AvailabilityDoc(me.EmbeddedDocument):
    weekday = me.IntField(required=True)
    start = me.StringField(required=True)
    end = me.StringField(required=True)


class CommunityDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta("communities", {"fields": ["name_zh"], "unique": True})
    name_zh = me.StringField(required=True)
    name_en = me.StringField(default="")
    address = me.StringField(default="")


class GridDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "grids", "community_id", {"fields": ["community_id", "name_zh"], "unique": True}
    )
    community_id = me.StringField(required=True)
    name_zh = me.StringField(required=True)
    boundary_geojson = me.StringField(required=True)


class CompoundDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "compounds", "grid_id", "community_id", {"fields": ["grid_id", "name_zh"], "unique": True}
    )
    grid_id = me.StringField(required=True)
    community_id = me.StringField(required=True)
    name_zh = me.StringField(required=True)
    address = me.StringField(default="")
    point = me.EmbeddedDocumentField(PointDoc)
    households = me.IntField(default=0)


class GridStationDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta("grid_stations", "grid_id", "community_id")
    grid_id = me.StringField(required=True)
    community_id = me.StringField(required=True)
    name_zh = me.StringField(required=True)
    address = me.StringField(default="")
    point = me.EmbeddedDocumentField(PointDoc)
    services = me.ListField(me.StringField())
    open_hours = me.StringField(default="")


class PartyOrganizationDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "party_organizations", "community_id", {"fields": ["place_id", "kind"], "unique": True}
    )
    kind = me.StringField(required=True)
    place_id = me.StringField(required=True)
    parent_id = me.StringField(default="")
    community_id = me.StringField(required=True)
    name_zh = me.StringField(required=True)
    secretary_id = me.StringField(default="")
    member_ids = me.ListField(me.StringField())


class MemberUnitDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "member_units",
        "community_id",
        "serves_grid_ids",
        "kind",
        {"fields": ["community_id", "name_zh"], "unique": True},
    )
    community_id = me.StringField(required=True)
    name_zh = me.StringField(required=True)
    kind = me.StringField(required=True)
    contact_name = me.StringField(default="")
    contact_phone_enc = me.StringField(default="")
    contact_phone_masked = me.StringField(default="")
    serves_grid_ids = me.ListField(me.StringField())
    serves_compound_ids = me.ListField(me.StringField())
    joined_on = me.StringField(required=True)
    left_on = me.StringField(default="")
    duties_accepted = me.ListField(me.StringField())
    status = me.StringField(required=True)
    public_name = me.StringField(default="")


class PartyMembershipDoc(me.EmbeddedDocument):
    home_community_id = me.StringField(default="")
    work_unit = me.StringField(default="")
    dual_report_registered_on = me.StringField(default="")


class VolunteeringDoc(me.EmbeddedDocument):
    team_id = me.StringField(default="")
    services = me.ListField(me.StringField())
    availability = me.EmbeddedDocumentListField(AvailabilityDoc)


class CommunityWorkerDoc(me.EmbeddedDocument):
    post = me.StringField(required=True)
    grade = me.IntField(required=True)


class PersonDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "people", "community_id", "grid_id", "roles", {"fields": ["id_number_key"], "unique": True}
    )
    community_id = me.StringField(required=True)
    grid_id = me.StringField(default="")
    member_unit_id = me.StringField(default="")  # the member unit the person attends for, "" = none
    name_zh = me.StringField(required=True)
    public_name = me.StringField(default="")
    roles = me.ListField(me.StringField())
    phone_enc = me.StringField(default="")
    phone_masked = me.StringField(default="")
    id_number_enc = me.StringField(default="")
    id_number_masked = me.StringField(default="")
    # Keyed hash of the ID number; people without one get "none:<id>" so the unique index holds.
    id_number_key = me.StringField(required=True)
    party = me.EmbeddedDocumentField(PartyMembershipDoc)
    volunteer = me.EmbeddedDocumentField(VolunteeringDoc)
    worker = me.EmbeddedDocumentField(CommunityWorkerDoc)


class VolunteerTeamDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "volunteer_teams", "community_id", {"fields": ["community_id", "name_zh"], "unique": True}
    )
    community_id = me.StringField(required=True)
    name_zh = me.StringField(required=True)
    leader_id = me.StringField(default="")
    availability = me.EmbeddedDocumentListField(AvailabilityDoc)


class TalentEntryDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "talent_entries", "skill", "community_id", {"fields": ["person_id", "skill"], "unique": True}
    )
    person_id = me.StringField(required=True)
    community_id = me.StringField(required=True)
    skill = me.StringField(required=True)
    level = me.IntField(required=True)
    note = me.StringField(default="")


class TeamServiceEntryDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "team_service_entries", "service", "community_id", {"fields": ["team_id", "service"], "unique": True}
    )
    team_id = me.StringField(required=True)
    community_id = me.StringField(required=True)
    service = me.StringField(required=True)
    capacity = me.IntField(required=True)
    hours_per_week = me.FloatField(default=0)


class UnitResourceEntryDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "unit_resource_entries", "resource", "community_id", {"fields": ["unit_id", "resource"], "unique": True}
    )
    unit_id = me.StringField(required=True)
    community_id = me.StringField(required=True)
    resource = me.StringField(required=True)
    category = me.StringField(required=True)
    quantity = me.FloatField(default=0)
    unit_of_measure = me.StringField(default="")
    conditions = me.StringField(default="")


class ResponsibilityItemDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta("responsibility_items", "domain")
    domain = me.StringField(required=True)
    title_zh = me.StringField(required=True)
    title_en = me.StringField(default="")
    unit_kinds = me.ListField(me.StringField())


class PublicAffairsItemDoc(OrgDocument):
    meta: ClassVar[dict[str, Any]] = _meta(
        "public_affairs_items", "community_id", {"fields": ["community_id", "mode", "title_zh"], "unique": True}
    )
    community_id = me.StringField(required=True)
    mode = me.StringField(required=True)
    title_zh = me.StringField(required=True)
    title_en = me.StringField(default="")
    basis = me.StringField(default="")


class TenantStateDoc(TenantDocument):
    """One document per tenant database (id "state"): a generation number bumped around every write,
    so every org process can tell when its in-memory matching index is stale."""

    meta: ClassVar[dict[str, Any]] = {"collection": "tenant_state"}
    id = me.StringField(primary_key=True)
    generation = me.IntField(default=0)
