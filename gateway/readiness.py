"""The gateway's readiness (`GET /readyz`): every service it calls SERVING, and its own stores answering.

The services report their own dependencies through gRPC health (services/common/dependencies.py: NOT_SERVING
while their database is down); the gateway adds the stores it uses itself: the database of the audit log,
governance and accounts, and the read side (audit pages). Checked when asked, on the clients the gateway
already holds, each within a short timeout, so a probe every few seconds costs a few round trips.
"""

from __future__ import annotations

from typing import Any

from services.common.dependencies import Check, mongo_check, readside_check

OK = "ok"
# A probe waits for its answer (Kubernetes: timeoutSeconds); a database that does not answer in this long is down.
STORE_TIMEOUT = 3.0


def store_checks(audit: Any) -> list[Check]:
    """The gateway's own stores: its audit log's database client (the same FerretDB/MongoDB as governance and
    accounts), and the read side."""
    return [mongo_check(audit.entries.database.client, timeout=STORE_TIMEOUT), readside_check()]


def check_stores(checks: list[Check]) -> dict[str, str]:
    """Each store's state: "ok", or the error of its ping."""
    out = {}
    for check in checks:
        try:
            check.ping()
            out[check.name] = OK
        except Exception as exc:  # any failed ping means "not ready"; the message names why
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            out[check.name] = f"{type(exc).__name__}: {first}"
    return out


def readiness(services: dict[str, str], stores: dict[str, str]) -> tuple[bool, dict[str, Any]]:
    """(ready, body): ready when every service is SERVING and every store answers; the body names what is
    down (`down`), each service's health status and each store's state."""
    down = [f"service:{name}" for name, status in services.items() if status != "SERVING"]
    down += [f"store:{name}" for name, state in stores.items() if state != OK]
    body: dict[str, Any] = {"status": "not_ready" if down else "ready", "services": services, "stores": stores}
    if down:
        body["down"] = down
    return not down, body
