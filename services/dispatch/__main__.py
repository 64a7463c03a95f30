"""python -m services.dispatch: the dispatch service (Dispatch + Webhook gRPC, consumers, outbox relay, timers)."""

import grpc

from services.common.clocks import build_timer_worker
from services.common.runner import run_service
from services.dispatch import deadlines  # noqa: F401  (registers the deadline timers' handlers)
from services.dispatch.consumer import consumer_workers
from services.dispatch.documents import TaskDoc, WhistleDoc
from services.dispatch.matching_consumer import build_consumer as build_matching_consumer
from services.dispatch.servicer import register
from services.dispatch.webhook_delivery import build_delivery_worker
from services.dispatch.webhooks import build_webhook_consumer, register_service


def register_all(server: grpc.Server) -> list[str]:
    """DispatchService and WebhookService on one server."""
    return [*register(server), *register_service(server)]


if __name__ == "__main__":
    run_service(
        "dispatch",
        register_all,
        outbox_documents=[TaskDoc, WhistleDoc],
        workers=[
            *consumer_workers(),  # intake events -> tasks and calls (one consumer per partition)
            build_matching_consumer,
            build_timer_worker,  # deadlines, reminders, escalations (durable timers)
            build_webhook_consumer,  # dispatch events -> webhook deliveries
            build_delivery_worker,  # sends the deliveries (timers of their own worker)
        ],
    )
