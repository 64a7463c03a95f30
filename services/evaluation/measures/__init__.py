"""Measures (响应率, 解决率, 满意率, on-time, reopen, whistle rate, the five duties), the quarterly boards
(四榜, BoardsFrozen), the tenant's weights and the rebuild: EvaluationService (protos/hongling/evaluation/v1/
evaluation.proto). Definitions: domain.py (README "Measures and the quarterly boards"); kept by the consumer group
"evaluation-measures" (consumer.py) in the read side's tables (readmodel.py, migration 0011); boards frozen by
the durable timer "boards:<quarter>" (handlers.py) with the BoardsFrozen event in the same write.
"""

from __future__ import annotations

from services.evaluation.measures import handlers as _handlers  # registers the boards' timer handler
from services.evaluation.measures.consumer import build_worker
from services.evaluation.measures.documents import BoardSetDoc
from services.evaluation.measures.servicer import register

OUTBOX_DOCUMENTS = (BoardSetDoc,)
WORKERS = (build_worker,)
REFRESH: dict[str, object] = {}

__all__ = ["OUTBOX_DOCUMENTS", "REFRESH", "WORKERS", "register"]
assert _handlers.BOARDS_KIND
