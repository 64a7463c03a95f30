"""The monthly report upward of a subdistrict (measures, rankings of communities, exceptions) and the community
burden ledger (减负: district departments' requests, from the audit log's read model), as content.ReportContent:
the `report` kind (scope "*", period a closed month "YYYY-MM", anchored to the audit log's head at the month's
end). Sources: evaluation's measures over gRPC, the SQL read side through this area's own read-only table
declarations (sources.py), org's communities. Pure parts: domain.py; the builder: builder.py."""

from __future__ import annotations

import grpc

from services.publication import content
from services.publication.channels import CHANNELS
from services.publication.reports import builder

KIND = content.register(
    content.Kind(name="report", channels=CHANNELS["report"], check=builder.check, build=builder.build, anchored=True)
)

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = ()
REFRESH: dict[str, object] = {}


def register(server: grpc.Server) -> list[str]:
    """No gRPC service of its own: the lifecycle's PublicationService builds it through the kinds' registry."""
    return []
