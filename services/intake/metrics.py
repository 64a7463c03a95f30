"""Intake's business metrics (Prometheus), per tenant."""

from __future__ import annotations

from prometheus_client import Counter

ISSUES_RECEIVED = Counter(
    "hongling_issues_received_total", "Issues taken in, by channel and class.", ["tenant", "channel", "urgency"]
)
DUPLICATES = Counter(
    "hongling_issue_duplicates_total", "New issues linked to an open one as duplicates.", ["tenant", "category"]
)
RECLASSIFICATIONS = Counter(
    "hongling_issue_reclassifications_total", "Issues reclassified by a community worker.", ["tenant", "to_urgency"]
)
REVEALS = Counter(
    "hongling_issue_contact_reveals_total",
    "Reporter contacts shown unmasked (each one audit-logged).",
    ["tenant", "role"],
)
STATUS_CHANGES = Counter(
    "hongling_issue_status_changes_total",
    "Issue status changes fed by other services' events.",
    ["tenant", "to_status"],
)
FILING_DECISIONS = Counter(
    "hongling_issue_filing_decisions_total",
    "Reports waiting for verification filed (accepted) or declined (核实立案).",
    ["tenant", "decision"],
)
VERIFICATION_OVERDUE = Counter(
    "hongling_issue_verification_overdue_total",
    "Reports nobody filed or declined by their verification deadline (escalated to the subdistrict).",
    ["tenant", "urgency"],
)
