"""The evaluation service's areas (services/common/areas.py): verification (验单), ratings (评单) and
measures with the quarterly boards (四榜)."""

from __future__ import annotations

from services.common.areas import Areas

AREAS = Areas(
    "evaluation",
    (
        "services.evaluation.verification",
        "services.evaluation.ratings",
        "services.evaluation.measures",
    ),
)
