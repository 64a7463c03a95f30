"""验单: review rounds (集中评议), on-site checks (现场核验), the tenant's verification rules and the verdicts
(TaskVerified / TaskVerificationFailed): VerificationService (protos/hongling/evaluation/v1/verification.proto).

The rules are in domain.py; the writes and their atomic primitives in handlers.py; dispatch applies the verdicts
(services/dispatch/handlers.py, on_task_verified / on_task_verification_failed).
"""

from __future__ import annotations

import grpc

from services.evaluation.verification.documents import CheckDoc, RoundDoc
from services.evaluation.verification.readmodel import REFRESH as REFRESH
from services.evaluation.verification.servicer import register as _register

OUTBOX_DOCUMENTS: tuple[type, ...] = (RoundDoc, CheckDoc)
WORKERS: tuple[object, ...] = ()


def register(server: grpc.Server) -> list[str]:
    return _register(server)
