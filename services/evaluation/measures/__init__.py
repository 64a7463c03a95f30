"""Measures (响应率, 解决率, 满意率, five duties), the quarterly boards (四榜, BoardsFrozen), weights and
rebuild. Skeleton until its part of the evaluation issue fills it in.
"""

from __future__ import annotations

import grpc
from hongling.evaluation.v1 import evaluation_pb2 as pb
from hongling.evaluation.v1 import evaluation_pb2_grpc as pb_grpc

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_EvaluationServiceServicer_to_server(pb_grpc.EvaluationServiceServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name]
