"""The names helpers appear by in publications: the name a member unit, team or person agreed to show (org's
`public_name`), looked up from org over gRPC and cached briefly. A person who agreed to none appears by
surname and a mask ("张**"); a unit or team by its registered name.

A placeholder until its area fills it in: it answers each subject by its id.
"""

from __future__ import annotations

from collections.abc import Iterable


def public_names(tenant: str, subjects: Iterable[str]) -> dict[str, str]:
    """subject ("member_unit:<id>", "person:<id>", "team:<id>") -> the name to publish."""
    return {s: s.split(":", 1)[-1] for s in subjects}
