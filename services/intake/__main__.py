"""python -m services.intake: the intake service (gRPC + outbox relay)."""

from services.common.runner import run_service
from services.intake.documents import IssueDoc
from services.intake.servicer import register

if __name__ == "__main__":
    run_service("intake", register, outbox_documents=[IssueDoc])
