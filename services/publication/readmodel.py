"""The publication service's SQL read models: one projection of its state topic (hongling.publication.state.v1),
whose collections the areas' readmodel modules refresh (services/publication/areas.py). Run by the projector."""

from __future__ import annotations

from services.common.events import state_topic_for
from services.common.projection import Projection
from services.publication.areas import AREAS

PROJECTION = Projection(name="publication", topics=(state_topic_for("publication"),), refresh=AREAS.refresh())
