"""The monthly public board of a community (一月一公示): its sources on the SQL read side (sources.py), evaluation's
measures and org's public names; the content builder (build.py: content.MonthlyContent); the durable schedule
after the month closes (schedule.py). Registered as the kind "monthly" (services/publication/content.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from services.common.errors import InvalidArgument
from services.publication import channels, content
from services.publication.monthly import build, schedule

OUTBOX_DOCUMENTS: tuple[type, ...] = ()
WORKERS: tuple[object, ...] = (schedule.build_arm_worker,)
REFRESH: dict[str, object] = {}


def check(scope: str, period: str) -> None:
    """A community of the tenant (org) and a month that has closed (Asia/Shanghai)."""
    _, end = build.month_bounds(period)
    if end > datetime.now(UTC):
        raise InvalidArgument(
            f"{period} 尚未结束，月度公示须在月末之后生成 (the month {period} has not closed yet)", field="period"
        )
    if scope == "*":
        raise InvalidArgument("月度公示的范围须为社区编号 (the monthly board's scope is a community id)", field="scope")
    build.community(scope)


KIND = content.register(
    content.Kind(
        name="monthly",
        channels=channels.CHANNELS["monthly"],
        check=check,
        build=build.build,
        anchored=True,
    )
)


def register(server: grpc.Server) -> list[str]:
    return []
