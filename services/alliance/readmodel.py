"""The alliance service's SQL read models: one projection of its state topic (hongling.alliance.state.v1),
whose collections the areas' readmodel modules refresh (services/alliance/areas.py). Run by the projector."""

from __future__ import annotations

from services.alliance.areas import AREAS
from services.common.events import state_topic_for
from services.common.projection import Projection

PROJECTION = Projection(name="alliance", topics=(state_topic_for("alliance"),), refresh=AREAS.refresh())
