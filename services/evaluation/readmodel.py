"""The evaluation service's SQL read models: one projection of its state topic (hongling.evaluation.state.v1),
whose collections the areas' readmodel modules refresh (services/evaluation/areas.py). Run by the projector.
The measures and boards are kept apart from it, by the measures area's own consumer of the services' events."""

from __future__ import annotations

from services.common.events import state_topic_for
from services.common.projection import Projection
from services.evaluation.areas import AREAS

PROJECTION = Projection(name="evaluation", topics=(state_topic_for("evaluation"),), refresh=AREAS.refresh())
