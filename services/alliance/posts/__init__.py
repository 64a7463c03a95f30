"""Standing posts (认领岗位): PostService (protos/hongling/alliance/v1/posts.proto).

Posts with shifts, race-safe claims of places (seat inserts), check-ins, and ShiftMissed at each claimed
shift's end by a durable timer (alliance.shift_end). See handlers.py for the claim protocol."""

from __future__ import annotations

from services.alliance.posts import handlers
from services.alliance.posts.documents import PostClaimDoc, PostDoc
from services.alliance.posts.readmodel import REFRESH
from services.alliance.posts.servicer import register
from services.common import clocks

OUTBOX_DOCUMENTS = (PostDoc, PostClaimDoc)
clocks.handler(handlers.SHIFT_END)(handlers.on_shift_end)

__all__ = ["OUTBOX_DOCUMENTS", "REFRESH", "register"]
