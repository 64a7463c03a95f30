"""The alliance service's areas (services/common/areas.py), assembled once: what each registers on the gRPC
server, which of its documents carry events (the outbox relay), which workers it runs and which read models
it keeps."""

from __future__ import annotations

from services.common.areas import Areas

AREAS = Areas(
    "alliance",
    (
        "services.alliance.meetings",
        "services.alliance.ledger",
        "services.alliance.posts",
        "services.alliance.activities",
    ),
)
