"""EvaluationService gRPC servicer (skeleton: health, reflection and metrics until its issue adds methods)."""

from __future__ import annotations

import grpc
from hongling.evaluation.v1 import evaluation_pb2 as pb
from hongling.evaluation.v1 import evaluation_pb2_grpc as pb_grpc


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_EvaluationServiceServicer_to_server(pb_grpc.EvaluationServiceServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name]
