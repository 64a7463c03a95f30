"""Dispatch's business metrics (Prometheus), per tenant. (Timers: services/common/clocks.py; ranking:
services/dispatch/matching.py.)"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WHISTLES_BLOWN = Counter(
    "hongling_whistles_blown_total",
    "Calls blown (集结号), by type; manual = blown by hand by a community worker.",
    ["tenant", "call_type", "manual"],
)
WHISTLES_UPGRADED = Counter(
    "hongling_whistles_upgraded_total", "Open calls upgraded by a reclassification.", ["tenant", "to_call_type"]
)
REPORT_IN_SECONDS = Histogram(
    "hongling_whistle_report_in_seconds",
    "Time from a call to each responder's first answer (报到响应时间).",
    ["tenant", "call_type", "answer"],
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600, 7 * 24 * 3600),
)
REPORT_INS = Counter(
    "hongling_whistle_report_ins_total", "Answers to calls, by answer and lateness.", ["tenant", "answer", "late"]
)
DEADLINES_MISSED = Counter(
    "hongling_dispatch_deadlines_missed_total",
    "SLA breaches: report-in deadlines with silent targets, completion deadlines missed.",
    ["tenant", "deadline", "call_type"],
)
SILENT_TARGETS = Counter(
    "hongling_whistle_silent_targets_total",
    "Targets that had not answered a call at its report-in deadline (响应吹号 duty).",
    ["tenant", "call_type"],
)
ESCALATIONS = Counter("hongling_dispatch_escalations_total", "Overdue tasks escalated.", ["tenant", "level"])
REMINDERS = Counter("hongling_dispatch_reminders_total", "Reminders before deadlines.", ["tenant", "deadline"])
TRANSITIONS = Counter(
    "hongling_task_transitions_total", "Task status changes, by the status reached.", ["tenant", "to_status"]
)
CLAIMS = Counter(
    "hongling_task_claims_total",
    "Claims on task places: won, or refused (full, taken, not claimable, already claimed).",
    ["tenant", "outcome"],
)
ASSIGNMENTS = Counter(
    "hongling_task_assignments_total",
    "Tasks assigned (点将), override = outside the ranked list.",
    ["tenant", "override"],
)
