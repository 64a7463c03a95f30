"""python -m services.evaluation: the evaluation service."""

from services.common.runner import run_service
from services.evaluation.servicer import register

if __name__ == "__main__":
    run_service("evaluation", register)
