"""trust and money: change orders, claims, payouts, reviews, job terms

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 00:40:14.074263
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transfer_id", sa.String(length=160), nullable=False),
        sa.Column("provider_ref", sa.String(length=120), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'failed')", name=op.f("ck_payouts_status")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payouts_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
    )
    op.create_index(
        "ix_payouts_pending",
        "payouts",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        op.f("ix_payouts_worker_id_created_at"),
        "payouts",
        ["worker_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "change_orders",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'declined')", name=op.f("ck_change_orders_status")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_change_orders_amount")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_change_orders_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_orders")),
    )
    op.create_index(op.f("ix_change_orders_job_id"), "change_orders", ["job_id"], unique=False)
    op.create_table(
        "claims",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("resident_id", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name=op.f("ck_claims_status")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_claims_amount")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_claims_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
    )
    op.create_index(op.f("ix_claims_job_id"), "claims", ["job_id"], unique=False)
    op.create_table(
        "reviews",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.CheckConstraint("role IN ('resident', 'worker')", name=op.f("ck_reviews_role")),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_reviews_rating")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_reviews_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("job_id", "author_id", name=op.f("uq_reviews_job_id_author_id")),
    )
    op.create_index(
        op.f("ix_reviews_author_id_subject_id_created_at"),
        "reviews",
        ["author_id", "subject_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_reviews_subject_id_created_at"),
        "reviews",
        ["subject_id", "created_at"],
        unique=False,
    )
    op.add_column(
        "jobs", sa.Column("commission_bps", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "jobs", sa.Column("insurance_bps", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "jobs", sa.Column("dispute", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "users", sa.Column("rating_sum", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "users", sa.Column("rating_count", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "workers", sa.Column("fast_accepts", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "workers", sa.Column("open_refusals", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("workers", "open_refusals")
    op.drop_column("workers", "fast_accepts")
    op.drop_column("users", "rating_count")
    op.drop_column("users", "rating_sum")
    op.drop_column("jobs", "dispute")
    op.drop_column("jobs", "confirmed_at")
    op.drop_column("jobs", "insurance_bps")
    op.drop_column("jobs", "commission_bps")
    op.drop_index(op.f("ix_reviews_subject_id_created_at"), table_name="reviews")
    op.drop_index(op.f("ix_reviews_author_id_subject_id_created_at"), table_name="reviews")
    op.drop_table("reviews")
    op.drop_index(op.f("ix_claims_job_id"), table_name="claims")
    op.drop_table("claims")
    op.drop_index(op.f("ix_change_orders_job_id"), table_name="change_orders")
    op.drop_table("change_orders")
    op.drop_index(op.f("ix_payouts_worker_id_created_at"), table_name="payouts")
    op.drop_index(
        "ix_payouts_pending", table_name="payouts", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("payouts")
