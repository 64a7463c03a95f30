"""The monthly board's durable schedule (services/common/clocks.py): after each month closes (Asia/Shanghai) and
a grace (HONGLING_PUBLICATION_MONTHLY_GRACE_HOURS, default 6: late events of the month's last hours reach the
read side first), the timer "publication.monthly:<YYYY-MM>" drafts every community's board of that month
(by "schedule"; a subdistrict admin then reviews and releases them) and arms the next month's. The timer lives in
the tenant's database, so it survives restarts; the service arms the current month's at start for every tenant
when it is not there (ArmWorker). The handler is idempotent: a draft already there with the same content is
left as it is, and a released month whose sources did not change is skipped ("nothing changed").
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime, timedelta

from services.common import clocks, context
from services.common.errors import FailedPrecondition, HonglingError
from services.common.principal import Principal
from services.common.settings import Settings
from services.common.tenants import tenant_slugs
from services.publication.monthly import build

log = logging.getLogger(__name__)
KIND = "publication.monthly"
BY = "schedule"


def grace() -> timedelta:
    return timedelta(hours=float(os.environ.get("HONGLING_PUBLICATION_MONTHLY_GRACE_HOURS", "6")))


def key_of(period: str) -> str:
    return f"{KIND}:{period}"


def month_of(at: datetime) -> str:
    return at.astimezone(build.SHANGHAI).strftime("%Y-%m")


def next_month(period: str) -> str:
    _, end = build.month_bounds(period)
    return end.strftime("%Y-%m")


def arm(period: str, *, again: bool = False) -> None:
    """The call tenant's timer for `period` (due at its end + the grace), unless it is there already (`again`:
    set it whatever is there, as a new generation, which a firing of the same key keeps)."""
    key = key_of(period)
    if not again and clocks.get(key) is not None:
        return
    _, end = build.month_bounds(period)
    clocks.schedule(key, KIND, end + grace(), {"period": period})


def draft_month(tenant: str, period: str) -> dict[str, str]:
    """Every community's draft of a closed month; community -> the version's id, or why there is none."""
    from services.publication.lifecycle.handlers import create_draft  # the lifecycle area, same service

    out: dict[str, str] = {}
    for community_id in build.communities():
        try:
            out[community_id] = create_draft(tenant, "monthly", community_id, period, BY).id
        except FailedPrecondition as exc:  # released and unchanged
            out[community_id] = str(exc)
    return out


@clocks.handler(KIND)
def on_month_closed(timer: clocks.Timer) -> None:
    period = timer.payload.get("period", "")
    try:
        build.month_bounds(period)
    except HonglingError:
        log.error("monthly timer %s names no month", timer.key)
        return
    drafted = draft_month(timer.tenant, period)
    log.info("monthly boards of %s drafted for %d communities", period, len(drafted))
    arm(next_month(period), again=True)


class ArmWorker:
    """At start: arms the current month's timer of every tenant that has none (then idles until stopped)."""

    name = "publication-monthly-schedule"

    def run(self, stop: threading.Event) -> None:
        pending = list(tenant_slugs())
        while pending and not stop.is_set():
            period = month_of(datetime.now(UTC))
            for tenant in list(pending):
                me = Principal(sub="service:publication-schedule", role="service", tenants=(tenant,))
                try:
                    with context.bound(tenant=tenant, principal=me):
                        arm(period)
                    pending.remove(tenant)
                except Exception:  # storage not reachable yet: try again shortly
                    log.warning("could not arm the monthly schedule of %s yet", tenant, exc_info=True)
            if pending:
                stop.wait(5.0)
        stop.wait()


def build_arm_worker(settings: Settings) -> ArmWorker:
    return ArmWorker()
