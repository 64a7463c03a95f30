"""The publication service's areas (services/common/areas.py): the lifecycle every kind shares (drafts, review,
release, immutable versions, channels, feeds: PublicationService), and the kinds — the monthly public board
(一月一公示), the quarterly boards (先锋榜, on BoardsFrozen) and the monthly report upward with the burden
ledger. The channels (channels/) are pure renderers of a version's content."""

from __future__ import annotations

from services.common.areas import Areas

AREAS = Areas(
    "publication",
    (
        "services.publication.lifecycle",
        "services.publication.monthly",
        "services.publication.boards",
        "services.publication.reports",
    ),
)
