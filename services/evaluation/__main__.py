"""python -m services.evaluation: the evaluation service (its areas' gRPC services, outbox relay, durable timers)."""

from services.common.clocks import build_timer_worker
from services.common.runner import run_service
from services.evaluation.areas import AREAS

if __name__ == "__main__":
    run_service(
        "evaluation",
        AREAS.register_all,
        outbox_documents=AREAS.outbox_documents(),
        workers=[build_timer_worker, *AREAS.workers()],  # verification windows' and boards' durable timers, consumers
    )
