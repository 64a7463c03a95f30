"""PublicationService gRPC servicer (skeleton: health, reflection and metrics until its issue adds methods)."""

from __future__ import annotations

import grpc
from hongling.publication.v1 import publication_pb2 as pb
from hongling.publication.v1 import publication_pb2_grpc as pb_grpc


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_PublicationServiceServicer_to_server(pb_grpc.PublicationServiceServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["PublicationService"].full_name]
