"""Grab-order dispatch state: offers to workers, assignments (with fencing versions), alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin

OFFER_STATUSES = ("pending", "accepted", "declined", "expired", "taken", "withdrawn")


class Offer(IdMixin, Base):
    __tablename__ = "offers"
    __table_args__ = (
        # A worker never gets the same job twice.
        UniqueConstraint("job_id", "worker_id"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in OFFER_STATUSES) + ")", name="status"
        ),
        Index(None, "worker_id", "status"),
        Index(None, "worker_id", "created_at"),
        Index(None, "job_id", "wave"),
        # Fair ranking's acceptance read: a worker's latest answered offers, newest first.
        Index(
            "ix_offers_answered",
            "worker_id",
            "created_at",
            postgresql_include=["status"],
            postgresql_where=text("status IN ('accepted', 'declined', 'expired')"),
        ),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    wave: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    distance_m: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    responded_at: Mapped[datetime | None]


class Assignment(IdMixin, Base):
    """Who holds a job. `version` is the fencing token every later step must carry."""

    __tablename__ = "assignments"
    __table_args__ = (
        # At most one active assignment per job, whatever races above.
        Index(
            "uq_assignments_active_job",
            "job_id",
            unique=True,
            postgresql_where=text("active"),
        ),
        Index(None, "worker_id", "active"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    version: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    """grab (an accepted offer) or manual (an operator)."""
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))


REPEATABLE_ALERTS = ("sos", "missed_checkin")
REPEATABLE_SQL = "('sos', 'missed_checkin')"


class Alert(IdMixin, Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index(None, "community_id", "acked_at", "created_at"),
        # One alert of a kind per job (a replayed timer cannot raise it twice); an SOS may be
        # pressed again later in a job, and a worker may miss more than one check-in: each of
        # those is its own alert (`REPEATABLE_ALERTS`).
        Index(
            "uq_alerts_job_kind",
            "job_id",
            "kind",
            unique=True,
            postgresql_where=text(f"job_id IS NOT NULL AND kind NOT IN {REPEATABLE_SQL}"),
        ),
    )

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    worker_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    severity: Mapped[str] = mapped_column(String(16), default="warning", server_default="warning")
    """`info`, `warning`, `high` or `critical` (SOS)."""
    created_at: Mapped[datetime]
    acked_at: Mapped[datetime | None]
    acked_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))


class DispatchWave(IdMixin, Base):
    """One wave of a grab job as it went out, for "why this worker": its reach and time, every
    candidate the live index returned (distance, rank, picked or why not) and how many of the
    community's workers within reach were left out, by reason. Written once per wave, right
    after the wave commits (`ops.dispatchlog`), never recomputed."""

    __tablename__ = "dispatch_waves"
    __table_args__ = (UniqueConstraint("job_id", "wave"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    wave: Mapped[int] = mapped_column(Integer)
    radius_m: Mapped[float] = mapped_column(Float)
    size: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime]
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    excluded: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict)
