"""safety on site

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:54:01.748642
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkins",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lng", sa.Float(), nullable=True),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_checkins_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["users.id"], name=op.f("fk_checkins_worker_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkins")),
    )
    op.create_index(
        op.f("ix_checkins_job_id_created_at"), "checkins", ["job_id", "created_at"], unique=False
    )
    op.add_column("jobs", sa.Column("start_pin", sa.String(length=8), nullable=True))
    op.add_column(
        "jobs", sa.Column("pin_failures", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "started_at")
    op.drop_column("jobs", "arrived_at")
    op.drop_column("jobs", "pin_failures")
    op.drop_column("jobs", "start_pin")
    op.drop_index(op.f("ix_checkins_job_id_created_at"), table_name="checkins")
    op.drop_table("checkins")
