"""python -m services.alliance: the alliance service (its areas' gRPC services, outbox relay, durable timers)."""

from services.alliance.areas import AREAS
from services.common.clocks import build_timer_worker
from services.common.runner import run_service

if __name__ == "__main__":
    run_service(
        "alliance",
        AREAS.register_all,
        outbox_documents=AREAS.outbox_documents(),
        workers=[build_timer_worker, *AREAS.workers()],  # shifts' and meetings' durable timers, then consumers
    )
