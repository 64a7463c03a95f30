"""Words more than one service prints. Services never import each other, so a name that intake gives and the
alliance's minutes or evaluation's follow page repeat lives here, once."""

from __future__ import annotations

# An intake issue's statuses in Chinese (services/intake/domain.py's STATUS_ZH is this table; its unit test
# keeps every intake status named here).
ISSUE_STATUS_ZH: dict[str, str] = {
    "received": "已受理",
    "pending_verification": "待核实",
    "classified": "已分类",
    "duplicate": "重复反映",
    "whistle_blown": "已吹号",
    "assigned": "已派单",
    "in_progress": "办理中",
    "done": "已办结",
    "verified": "已验单",
    "published": "已公示",
    "rated": "已评价",
    "cancelled": "已撤销",
    "declined": "不予立案",
}
