"""IntakeService gRPC servicer: protobuf <-> commands, nothing else."""

from __future__ import annotations

import grpc
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.intake.v1 import intake_pb2 as pb
from hongling.intake.v1 import intake_pb2_grpc as pb_grpc

from services.common.context import current_principal, require_tenant
from services.intake import handlers
from services.intake.documents import IssueDoc
from services.intake.domain import Location, validate_new_issue


def issue_to_pb(doc: IssueDoc) -> pb.Issue:
    loc = doc.location
    out = pb.Issue(
        id=doc.id,
        tenant=require_tenant(),
        title=doc.title,
        description=doc.description,
        channel=doc.channel,
        category=doc.category,
        location=common_pb2.Location(
            lat=loc.lat,
            lon=loc.lon,
            address=loc.address or "",
            compound_id=loc.compound_id or "",
        ),
        status=doc.status,
        created_by=doc.created_by,
    )
    out.created_at.FromDatetime(doc.created_at)
    return out


class IntakeServicer(pb_grpc.IntakeServiceServicer):
    def CreateIssue(self, request: pb.CreateIssueRequest, context: grpc.ServicerContext) -> pb.Issue:
        loc = request.location
        new = validate_new_issue(
            request.title,
            request.description,
            request.channel,
            request.category,
            Location(
                lat=loc.lat if loc.HasField("lat") else None,
                lon=loc.lon if loc.HasField("lon") else None,
                address=loc.address,
                compound_id=loc.compound_id,
            ),
        )
        principal = current_principal.get()
        assert principal is not None  # the interceptor refuses calls without one
        return issue_to_pb(handlers.create_issue(new, principal, request.idempotency_key))

    def GetIssue(self, request: pb.GetIssueRequest, context: grpc.ServicerContext) -> pb.Issue:
        return issue_to_pb(handlers.get_issue(request.id))

    def ListIssues(self, request: pb.ListIssuesRequest, context: grpc.ServicerContext) -> pb.ListIssuesResponse:
        docs, token = handlers.list_issues(request.page_size, request.page_token)
        return pb.ListIssuesResponse(issues=[issue_to_pb(d) for d in docs], next_page_token=token)


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_IntakeServiceServicer_to_server(IntakeServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["IntakeService"].full_name]
