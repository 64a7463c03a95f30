"""python -m services.alliance: the alliance service (its areas' gRPC services, outbox relay, durable timers)."""

from services.alliance import areas
from services.common.clocks import build_timer_worker
from services.common.runner import run_service

if __name__ == "__main__":
    run_service(
        "alliance",
        areas.register_all,
        outbox_documents=areas.outbox_documents(),
        workers=[build_timer_worker, *areas.workers()],  # shifts' and meetings' durable timers, then consumers
    )
