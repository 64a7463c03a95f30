"""python -m services.intake: the intake service (gRPC + outbox relay + lifecycle consumer + timers)."""

from services.common.clocks import build_timer_worker
from services.common.protect import protector
from services.common.runner import run_service
from services.common.settings import get_settings
from services.intake import filing  # noqa: F401  (registers the verification deadline's timer handler)
from services.intake.consumer import build_consumer
from services.intake.documents import IssueDoc
from services.intake.placement import OrgPlacer
from services.intake.servicer import register

if __name__ == "__main__":
    settings = get_settings()
    placer = OrgPlacer(settings)
    keys = protector(settings.data_key, settings.data_key_accepted)
    run_service(
        "intake",
        lambda server: register(server, placer, keys),
        outbox_documents=[IssueDoc],
        workers=[build_consumer, build_timer_worker],  # lifecycle events; verification deadlines (核实立案)
    )
