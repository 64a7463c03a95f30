"""python -m services.publication: the publication service."""

from services.common.runner import run_service
from services.publication.servicer import register

if __name__ == "__main__":
    run_service("publication", register)
