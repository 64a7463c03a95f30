"""The lifecycle every kind shares: drafts (the schedule's or a subdistrict admin's), review, release, immutable
numbered versions (a correction is the next version with a readable diff), the channels rendered from a
released version, feeds, and the PublicationReleased / ProgressPublished events: PublicationService
(protos/hongling/publication/v1/publication.proto). A placeholder until its area fills it in."""

from __future__ import annotations

import grpc
from hongling.publication.v1 import publication_pb2 as pb
from hongling.publication.v1 import publication_pb2_grpc as pb_grpc

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_PublicationServiceServicer_to_server(pb_grpc.PublicationServiceServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["PublicationService"].full_name]
