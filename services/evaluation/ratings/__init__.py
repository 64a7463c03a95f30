"""评单: residents' ratings with their follow-up code (查询码), the reporter's rejection of a verified result,
and the quarterly unit ratings (IssueRated, TaskVerificationFailed with method "resident", UnitRated).

gRPC: RatingService (protos/hongling/evaluation/v1/ratings.proto); a Kafka consumer of the verification's
verdicts (consumer.py, group "evaluation-ratings"); read models kept by the projector (readmodel.py).
Rules: domain.py; windows per tenant (ratings_settings), default 30 days to rate, 7 to reject.
"""

from __future__ import annotations

from services.evaluation.ratings.consumer import build_consumer
from services.evaluation.ratings.documents import ResidentActDoc, UnitRatingDoc
from services.evaluation.ratings.readmodel import REFRESH
from services.evaluation.ratings.servicer import register

OUTBOX_DOCUMENTS = (ResidentActDoc, UnitRatingDoc)
WORKERS = (build_consumer,)

__all__ = ["OUTBOX_DOCUMENTS", "REFRESH", "WORKERS", "register"]
