"""The escrow ledger's storage: accounts and transfers, double entry, integer minor units.

No balance column: an account's balance is the sum of its transfers, so a transfer is one insert
and never waits for another on a shared row (the platform's revenue account is credited by every
release). Accounts that must not go below zero (`floor`) are locked by the writer that debits
them, and only by it (`dispatch.money.ledger`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin


class LedgerAccount(IdMixin, Base):
    __tablename__ = "ledger_accounts"

    key: Mapped[str] = mapped_column(String(120), unique=True)
    """What the account is, readable: `escrow:job:42:CNY`, `revenue:CNY`, `payable:worker:7:CNY`."""
    kind: Mapped[str] = mapped_column(String(24))
    currency: Mapped[str] = mapped_column(String(3))
    floor: Mapped[bool] = mapped_column(Boolean)
    """True: debits may never take it below zero (escrow, payables, pools)."""
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LedgerTransfer(Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
        CheckConstraint("status IN ('pending', 'posted', 'voided')", name="status"),
        Index(None, "debit_account_id", "status"),
        Index(None, "credit_account_id", "status"),
        Index(None, "job_id"),
    )

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    """The caller's idempotency id: the same id again moves nothing."""
    seq: Mapped[int] = mapped_column(BigInteger, Identity())
    """The order transfers were recorded in (several share a transaction's `created_at`)."""
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(8))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    resolved_at: Mapped[datetime | None]
    """When a pending transfer was posted or voided."""
