"""OrgService gRPC servicer. This first version serves the tenant registry."""

from __future__ import annotations

import grpc
from hongling.org.v1 import org_pb2 as pb
from hongling.org.v1 import org_pb2_grpc as pb_grpc

from services.common.tenants import all_tenants


class OrgServicer(pb_grpc.OrgServiceServicer):
    def ListTenants(self, request: pb.ListTenantsRequest, context: grpc.ServicerContext) -> pb.ListTenantsResponse:
        return pb.ListTenantsResponse(
            tenants=[pb.Tenant(slug=t.slug, name_zh=t.name_zh, name_en=t.name_en, kind=t.kind) for t in all_tenants()]
        )


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_OrgServiceServicer_to_server(OrgServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["OrgService"].full_name]
