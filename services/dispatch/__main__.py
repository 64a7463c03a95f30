"""python -m services.dispatch: the dispatch service (gRPC + intake consumer + outbox relay)."""

from services.common.runner import run_service
from services.dispatch.consumer import build_consumer
from services.dispatch.documents import TaskDoc
from services.dispatch.servicer import register

if __name__ == "__main__":
    run_service("dispatch", register, outbox_documents=[TaskDoc], workers=[build_consumer])
