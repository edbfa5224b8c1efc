"""emergency contacts and sos

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 14:57:28.536759
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "emergency_contacts",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("phone_hash", sa.LargeBinary(), nullable=False),
        sa.Column("phone_enc", sa.LargeBinary(), nullable=False),
        sa.Column("phone_hint", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_emergency_contacts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergency_contacts")),
    )
    op.create_index(
        op.f("ix_emergency_contacts_user_id_position"),
        "emergency_contacts",
        ["user_id", "position"],
        unique=False,
    )
    op.create_table(
        "sos_calls",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lng", sa.Float(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("presses", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_press_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_sos_calls_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_sos_calls_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_sos_calls_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sos_calls")),
    )
    op.create_index(
        op.f("ix_sos_calls_job_id_created_at"), "sos_calls", ["job_id", "created_at"], unique=False
    )
    op.add_column(
        "alerts",
        sa.Column("severity", sa.String(length=16), server_default="warning", nullable=False),
    )
    op.add_column("jobs", sa.Column("sos_at", sa.DateTime(timezone=True), nullable=True))
    # SOS may be pressed again later in a job: each is its own alert.
    op.drop_index("uq_alerts_job_kind", table_name="alerts")
    op.create_index(
        "uq_alerts_job_kind", "alerts", ["job_id", "kind"], unique=True,
        postgresql_where=sa.text("job_id IS NOT NULL AND kind <> 'sos'"),
    )  # fmt: skip
    op.add_column("outbox", sa.Column("priority", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_index("uq_alerts_job_kind", table_name="alerts")
    op.execute("DELETE FROM alerts WHERE kind = 'sos'")
    op.create_index(
        "uq_alerts_job_kind", "alerts", ["job_id", "kind"], unique=True,
        postgresql_where=sa.text("job_id IS NOT NULL"),
    )  # fmt: skip
    op.drop_column("outbox", "priority")
    op.drop_column("jobs", "sos_at")
    op.drop_column("alerts", "severity")
    op.drop_index(op.f("ix_sos_calls_job_id_created_at"), table_name="sos_calls")
    op.drop_table("sos_calls")
    op.drop_index(op.f("ix_emergency_contacts_user_id_position"), table_name="emergency_contacts")
    op.drop_table("emergency_contacts")
