"""python -m services.org: the organisation-structure service."""

from services.common.runner import run_service
from services.org.servicer import register

if __name__ == "__main__":
    run_service("org", register, tenantless=["ListTenants"])
