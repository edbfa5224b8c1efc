"""Storage models. Import from here so Alembic and the app see every table."""

from dispatch.models.base import Base
from dispatch.models.community import Community, CommunityCell
from dispatch.models.dispatching import Alert, Assignment, Offer
from dispatch.models.idempotency import IdempotencyKey
from dispatch.models.identity import OtpCode, User
from dispatch.models.job import Job
from dispatch.models.outbox import OutboxMessage
from dispatch.models.telephony import (
    CallRecord,
    JobMessage,
    ProxyHold,
    ProxyNumber,
    ProxySession,
    PushSubscription,
)
from dispatch.models.worker import Worker, WorkerCommunity

__all__ = [
    "Alert",
    "Assignment",
    "Base",
    "CallRecord",
    "Community",
    "CommunityCell",
    "IdempotencyKey",
    "Job",
    "JobMessage",
    "Offer",
    "OtpCode",
    "OutboxMessage",
    "ProxyHold",
    "ProxyNumber",
    "ProxySession",
    "PushSubscription",
    "User",
    "Worker",
    "WorkerCommunity",
]
