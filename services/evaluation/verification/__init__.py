"""验单: review rounds (集中评议), on-site checks (现场核验), the tenant's verification rules and the
verdicts (TaskVerified / TaskVerificationFailed). Skeleton until its part of the evaluation
issue fills it in.
"""

from __future__ import annotations

import grpc
from hongling.evaluation.v1 import verification_pb2 as pb
from hongling.evaluation.v1 import verification_pb2_grpc as pb_grpc

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_VerificationServiceServicer_to_server(pb_grpc.VerificationServiceServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["VerificationService"].full_name]
