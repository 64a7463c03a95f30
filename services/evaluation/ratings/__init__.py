"""评单: residents' ratings with their follow-up code, the quarterly unit ratings (IssueRated,
UnitRated). Skeleton until its part of the evaluation issue fills it in.
"""

from __future__ import annotations

import grpc
from hongling.evaluation.v1 import ratings_pb2 as pb
from hongling.evaluation.v1 import ratings_pb2_grpc as pb_grpc

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_RatingServiceServicer_to_server(pb_grpc.RatingServiceServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["RatingService"].full_name]
