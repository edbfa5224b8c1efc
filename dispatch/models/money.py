"""Money around a job, beside the ledger: change orders (materials agreed during the work),
insurance claims, and workers' payouts. The amounts move as ledger transfers
(`dispatch.money.ledger`); these rows are the requests and their answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin


class ChangeOrder(IdMixin, Base):
    """Materials the assigned worker proposes during the work; only approved ones count."""

    __tablename__ = "change_orders"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'declined')", name="status"),
        CheckConstraint("amount_cents > 0", name="amount"),
        Index(None, "job_id"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    worker_id: Mapped[int] = mapped_column(BigInteger)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    """[{name, quantity, unit_cents}], screened."""
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    answered_at: Mapped[datetime | None]


class Claim(IdMixin, Base):
    """A resident's insurance claim on an insured job, decided by an operator."""

    __tablename__ = "claims"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),
        CheckConstraint("amount_cents > 0", name="amount"),
        Index(None, "job_id"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    community_id: Mapped[int] = mapped_column(BigInteger)
    resident_id: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)


class Payout(IdMixin, Base):
    """A worker's withdrawal of released earnings: a pending ledger transfer out, posted when
    the payment provider pays it, voided (the money back) when it fails."""

    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'paid', 'failed')", name="status"),
        CheckConstraint("amount_cents > 0", name="amount"),
        Index(None, "worker_id", "created_at"),
        Index("ix_payouts_pending", "created_at", postgresql_where=text("status = 'pending'")),
    )

    worker_id: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    transfer_id: Mapped[str] = mapped_column(String(160))
    provider_ref: Mapped[str | None] = mapped_column(String(120))
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    settled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
