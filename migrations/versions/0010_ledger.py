"""ledger: double-entry accounts and transfers (escrow, payables, revenue, pools)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 22:18:42.718267
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("floor", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_accounts_key")),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("debit_account_id", sa.BigInteger(), nullable=False),
        sa.Column("credit_account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'posted', 'voided')", name=op.f("ck_ledger_transfers_status")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_ledger_transfers_positive")),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name=op.f("ck_ledger_transfers_two_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_transfers_credit_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_transfers_debit_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
    )
    op.create_index(
        op.f("ix_ledger_transfers_credit_account_id_status"),
        "ledger_transfers",
        ["credit_account_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ledger_transfers_debit_account_id_status"),
        "ledger_transfers",
        ["debit_account_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ledger_transfers_job_id"), "ledger_transfers", ["job_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_transfers_job_id"), table_name="ledger_transfers")
    op.drop_index(
        op.f("ix_ledger_transfers_debit_account_id_status"), table_name="ledger_transfers"
    )
    op.drop_index(
        op.f("ix_ledger_transfers_credit_account_id_status"), table_name="ledger_transfers"
    )
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
