"""The dispatch domain's storage models, on the one declarative `Base` every table shares.

Notifications keep their own tables (masked numbers, call records, push subscriptions, job
messages) in `notifications/models.py`; `all_tables()` imports both, for Alembic and for anything
that needs the whole schema."""

from dispatch.models.base import Base
from dispatch.models.booking import Availability, Booking, Timer
from dispatch.models.community import Community, CommunityCell
from dispatch.models.dispatching import Alert, Assignment, DispatchWave, Offer
from dispatch.models.idempotency import IdempotencyKey
from dispatch.models.identity import SPOKEN_LOCALE, OtpCode, User
from dispatch.models.job import Job
from dispatch.models.ledger import LedgerAccount, LedgerTransfer
from dispatch.models.money import ChangeOrder, Claim, Payout
from dispatch.models.outbox import OutboxMessage
from dispatch.models.safety import Checkin, EmergencyContact, SosCall
from dispatch.models.trust import Review
from dispatch.models.worker import Worker, WorkerCommunity


def all_tables() -> type[Base]:
    """`Base` with every table of the service registered on its metadata."""
    import notifications.models  # noqa: F401  (registers its tables on Base)

    return Base


__all__ = [
    "SPOKEN_LOCALE",
    "Alert",
    "Assignment",
    "Availability",
    "Base",
    "Booking",
    "ChangeOrder",
    "Checkin",
    "Claim",
    "Community",
    "CommunityCell",
    "DispatchWave",
    "EmergencyContact",
    "IdempotencyKey",
    "Job",
    "LedgerAccount",
    "LedgerTransfer",
    "Offer",
    "OtpCode",
    "OutboxMessage",
    "Payout",
    "Review",
    "SosCall",
    "Timer",
    "User",
    "Worker",
    "WorkerCommunity",
]
