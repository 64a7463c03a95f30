"""OrgService gRPC servicer: protobuf <-> the generic entity engine, location and matching queries.

The CRUD methods are attached from one table (ENTITIES), so every entity gets the same behaviour:
Create<E>, Update<E>, Get<E>, List<Es> and, for list entries, Delete<E>.

Community scope (社区范围, services/common/community.py), applied by the handlers for every entity: a
community worker lists, exports, reads and changes its own community's records only (another's is
NOT_FOUND; a list or new record naming another community is PERMISSION_DENIED `community_out_of_scope`),
reads but never changes the tenant-level responsibility list, and sets up no new community.
ResolveLocation and FindCandidates answer for the whole tenant: which community a place lies in, and the
helpers that fit a need wherever they are registered (点将 may pick a neighbouring community's unit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from hongling.org.v1 import org_pb2 as pb
from hongling.org.v1 import org_pb2_grpc as pb_grpc

from services.common.errors import InvalidArgument, NotFound
from services.common.protect import Protector
from services.common.tenants import all_tenants
from services.org import domain, handlers, jobs, sheets
from services.org import index as org_index
from services.org.documents import OrgDocument

# spec name -> (message, List method suffix, list response)
ENTITIES: dict[str, tuple[type[Message], str, type[Message]]] = {
    "community": (pb.Community, "Communities", pb.ListCommunitiesResponse),
    "grid": (pb.Grid, "Grids", pb.ListGridsResponse),
    "compound": (pb.Compound, "Compounds", pb.ListCompoundsResponse),
    "grid_station": (pb.GridStation, "GridStations", pb.ListGridStationsResponse),
    "party_organization": (pb.PartyOrganization, "PartyOrganizations", pb.ListPartyOrganizationsResponse),
    "member_unit": (pb.MemberUnit, "MemberUnits", pb.ListMemberUnitsResponse),
    "person": (pb.Person, "People", pb.ListPeopleResponse),
    "volunteer_team": (pb.VolunteerTeam, "VolunteerTeams", pb.ListVolunteerTeamsResponse),
    "talent_entry": (pb.TalentEntry, "TalentEntries", pb.ListTalentEntriesResponse),
    "team_service_entry": (pb.TeamServiceEntry, "TeamServiceEntries", pb.ListTeamServiceEntriesResponse),
    "unit_resource_entry": (pb.UnitResourceEntry, "UnitResourceEntries", pb.ListUnitResourceEntriesResponse),
    "responsibility_item": (pb.ResponsibilityItem, "ResponsibilityItems", pb.ListResponsibilityItemsResponse),
    "public_affairs_item": (pb.PublicAffairsItem, "PublicAffairsItems", pb.ListPublicAffairsItemsResponse),
}
INTERNAL_FIELDS = ("_id", "outbox", "deleted", "created_at", "updated_at", "version")


def message_to_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def doc_to_dict(sp: handlers.EntitySpec, doc: OrgDocument, protector: Protector, reveal: bool) -> dict[str, Any]:
    """The stored record as the API shows it: personal data masked (or revealed), internals dropped."""
    raw = doc.to_mongo().to_dict()
    out = {k: v for k, v in raw.items() if k not in INTERNAL_FIELDS and v is not None}
    for name in sp.personal:
        enc = out.pop(f"{name}_enc", "")
        masked = out.pop(f"{name}_masked", "")
        out[name] = protector.open(enc) if reveal else masked
    out.pop("id_number_key", None)
    out["id"] = doc.id
    out["version"] = doc.version
    return out


def to_message(sp: handlers.EntitySpec, doc: OrgDocument, protector: Protector, reveal: bool = False) -> Message:
    msg_cls = ENTITIES[sp.name][0]
    msg = json_format.ParseDict(doc_to_dict(sp, doc, protector, reveal), msg_cls(), ignore_unknown_fields=True)
    meta = msg.meta  # type: ignore[attr-defined]
    meta.version = doc.version
    meta.created_at.FromDatetime(doc.created_at)
    meta.updated_at.FromDatetime(doc.updated_at)
    return msg


class OrgServicer(pb_grpc.OrgServiceServicer):
    """Entity methods are attached below from ENTITIES; the rest are written out."""

    def __init__(self, protector: Protector) -> None:
        self.protector = protector
        self.ctx = handlers.Context(protector)
        self.index = org_index.CACHE  # shared with handlers, which give it this process's writes

    def ListTenants(self, request: pb.ListTenantsRequest, context: grpc.ServicerContext) -> pb.ListTenantsResponse:
        return pb.ListTenantsResponse(
            tenants=[pb.Tenant(slug=t.slug, name_zh=t.name_zh, name_en=t.name_en, kind=t.kind) for t in all_tenants()]
        )

    def ResolveLocation(
        self, request: pb.ResolveLocationRequest, context: grpc.ServicerContext
    ) -> pb.ResolveLocationResponse:
        idx = self.index.current()
        which = request.WhichOneof("where")
        if which == "compound_id":
            found = idx.compounds.get(request.compound_id)
            if found is None:
                raise NotFound(f"compound {request.compound_id!r} not found in this tenant", field="compound_id")
            name, grid_id, community_id = found
            return pb.ResolveLocationResponse(
                community_id=community_id,
                community_name_zh=idx.community_names.get(community_id, ""),
                grid_id=grid_id,
                grid_name_zh=idx.grid_names.get(grid_id, ""),
                compound_id=request.compound_id,
                compound_name_zh=name,
            )
        if which != "point":
            raise InvalidArgument("give a point (lat, lon) or a compound_id", field="where")
        domain.point({"point": {"lat": request.point.lat, "lon": request.point.lon}}, required=True)
        grid = idx.locate(request.point.lat, request.point.lon)
        if grid is None:
            raise NotFound(
                f"({request.point.lat}, {request.point.lon}) lies outside every grid of this tenant (不在本辖区网格内)",
                field="point",
                reason="outside_grids",
            )
        return pb.ResolveLocationResponse(
            community_id=grid.community_id,
            community_name_zh=idx.community_names.get(grid.community_id, ""),
            grid_id=grid.grid_id,
            grid_name_zh=idx.grid_names.get(grid.grid_id, ""),
        )

    def FindCandidates(
        self, request: pb.FindCandidatesRequest, context: grpc.ServicerContext
    ) -> pb.FindCandidatesResponse:
        if request.limit < 0 or request.limit > 100:
            raise InvalidArgument("limit must be 1..100", field="limit")
        need = domain.Need(
            skills={domain.term(s) for s in request.skills if domain.term(s)},
            services={domain.term(s) for s in request.services if domain.term(s)},
            resources={domain.term(s) for s in request.resources if domain.term(s)},
            grid_id=request.grid_id,
            when=request.time.ToDatetime(tzinfo=domain.SHANGHAI) if request.HasField("time") else None,
        )
        if not (need.skills or need.services or need.resources):
            raise InvalidArgument("name at least one skill, service or resource", field="skills")
        idx = self.index.current()
        if need.grid_id:
            if need.grid_id not in idx.grid_names:
                raise InvalidArgument(f"grid_id {need.grid_id!r} not found in this tenant", field="grid_id")
            need.community_id = next(g.community_id for g in idx.grids if g.grid_id == need.grid_id)
        ranked, considered = domain.rank(idx.matching(need), need, request.limit or 20)
        return pb.FindCandidatesResponse(
            candidates=[
                pb.Candidate(
                    kind=s.helper.kind,
                    id=s.helper.id,
                    name_zh=s.helper.name_zh,
                    community_id=s.helper.community_id,
                    score=s.score,
                    reasons=s.reasons,
                )
                for s in ranked
            ],
            considered=considered,
        )

    def ImportSheet(self, request: pb.ImportSheetRequest, context: grpc.ServicerContext) -> pb.ImportSheetResponse:
        handlers.require_role(write=True)
        result = sheets.import_sheet(request.entity, request.format, request.content, request.dry_run, self.ctx)
        return pb.ImportSheetResponse(
            rows=result.rows,
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged,
            errors=[pb.RowError(row=e.row, column=e.column, reason=e.reason) for e in result.errors],
            dry_run=request.dry_run,
        )

    def StartImportJob(self, request: pb.StartImportJobRequest, context: grpc.ServicerContext) -> pb.ImportJob:
        handlers.require_role(write=True)
        job = jobs.start(
            request.entity, request.format, request.content, request.dry_run, request.filename, self.protector
        )
        return jobs.to_message(job)

    def GetImportJob(self, request: pb.GetImportJobRequest, context: grpc.ServicerContext) -> pb.ImportJob:
        handlers.require_role(write=True)  # the people who import: never a district department's grant
        job, errors = jobs.get(request.id)
        return jobs.to_message(job, errors)

    def ListImportJobs(
        self, request: pb.ListImportJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListImportJobsResponse:
        handlers.require_role(write=True)
        found, token = jobs.list_jobs(request.page_size, request.page_token)
        return pb.ListImportJobsResponse(items=[jobs.to_message(j) for j in found], next_page_token=token)

    def ExportSheet(self, request: pb.ExportSheetRequest, context: grpc.ServicerContext) -> pb.ExportSheetResponse:
        handlers.require_role(write=True)
        out = sheets.export_sheet(request.entity, request.format, dict(request.filter), self.protector)
        return pb.ExportSheetResponse(
            filename=out.filename, content_type=out.content_type, content=out.content, rows=out.rows
        )


def _attach(name: str, msg_cls: type[Message], plural: str, list_cls: Callable[..., Message]) -> None:
    # list_cls is a generated list response class (fields items, next_page_token): protobuf's typing
    # of Message.__init__ takes no fields, so it is typed as the constructor it is used as.
    sp = handlers.SPECS[name]
    camel = msg_cls.DESCRIPTOR.name

    def create(self: OrgServicer, request: Message, context: grpc.ServicerContext) -> Message:
        handlers.require_role(write=True)
        return to_message(sp, handlers.create(sp, message_to_dict(request), self.ctx), self.protector)

    def update(self: OrgServicer, request: Message, context: grpc.ServicerContext) -> Message:
        handlers.require_role(write=True)
        return to_message(sp, handlers.update(sp, message_to_dict(request), self.ctx), self.protector)

    def get(self: OrgServicer, request: pb.GetRequest, context: grpc.ServicerContext) -> Message:
        handlers.require_role(write=False)
        doc = handlers.get(sp, request.id)
        return to_message(sp, doc, self.protector, handlers.may_reveal(request.reveal, sp, request.id))

    def list_(self: OrgServicer, request: pb.ListRequest, context: grpc.ServicerContext) -> Message:
        handlers.require_role(write=False)
        docs, token = handlers.list_(sp, dict(request.filter), request.page_size, request.page_token)
        return list_cls(items=[to_message(sp, x, self.protector) for x in docs], next_page_token=token)

    def delete(self: OrgServicer, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        handlers.require_role(write=True)
        handlers.delete(sp, request.id, request.version)
        return pb.DeleteResponse(id=request.id)

    methods: dict[str, Callable[..., Any]] = {
        f"Create{camel}": create,
        f"Update{camel}": update,
        f"Get{camel}": get,
        f"List{plural}": list_,
    }
    if sp.deletable:
        methods[f"Delete{camel}"] = delete
    for method, fn in methods.items():
        fn.__name__ = method
        setattr(OrgServicer, method, fn)


for _name, (_msg, _plural, _list) in ENTITIES.items():
    _attach(_name, _msg, _plural, _list)


def register(server: grpc.Server, protector: Protector) -> list[str]:
    servicer = OrgServicer(protector)  # type: ignore[abstract]  # entity methods are attached from ENTITIES
    pb_grpc.add_OrgServiceServicer_to_server(servicer, server)
    return [pb.DESCRIPTOR.services_by_name["OrgService"].full_name]
