"""Co-building activities (参与共建): ActivityService (protos/hongling/alliance/v1/activities.proto).

Publish, sign up (a place or the waiting list), withdraw (the first waiting promoted once), attendance with the
hours the time bank credits. Every change is the activity's next version through the unit of work."""

from __future__ import annotations

from services.alliance.activities.documents import ActivityDoc
from services.alliance.activities.readmodel import REFRESH
from services.alliance.activities.servicer import register

OUTBOX_DOCUMENTS = (ActivityDoc,)

__all__ = ["OUTBOX_DOCUMENTS", "REFRESH", "register"]
