"""Joint meetings (共商共议共决): MeetingService (protos/hongling/alliance/v1/meetings.proto).

A community schedules a meeting of its alliance (place, invited units and people, an agenda from open issues,
members' proposals and the month's hot topics), records attendance (按时参会: check-in by the member itself, or
by the community worker; the absent recorded by a durable timer at the end), a decision on every item (with
votes), and action items that become issues in intake; the minutes are exported as a docx to sign.
"""

from __future__ import annotations

import grpc

from services.alliance.meetings import handlers as _handlers  # noqa: F401  (registers the close timer's handler)
from services.alliance.meetings.documents import MeetingDoc
from services.alliance.meetings.readmodel import REFRESH as REFRESH
from services.alliance.meetings.servicer import register as _register

OUTBOX_DOCUMENTS = (MeetingDoc,)


def register(server: grpc.Server) -> list[str]:
    return _register(server)
