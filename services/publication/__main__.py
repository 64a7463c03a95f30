"""python -m services.publication: the publication service (its areas' gRPC service, outbox relay, durable timers
and consumers)."""

from services.common.clocks import build_timer_worker
from services.common.runner import run_service
from services.publication.areas import AREAS

if __name__ == "__main__":
    run_service(
        "publication",
        AREAS.register_all,
        outbox_documents=AREAS.outbox_documents(),
        workers=[build_timer_worker, *AREAS.workers()],  # the months' schedule, BoardsFrozen consumer
    )
