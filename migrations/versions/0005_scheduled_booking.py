"""scheduled booking

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:53:49.410491
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The exclusion constraint against double booking compares worker ids with `=` in a GiST index.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.create_table(
        "timers",
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("ref_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
        sa.UniqueConstraint("key", name=op.f("uq_timers_key")),
    )
    op.create_index(
        "ix_timers_due",
        "timers",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("fired_at IS NULL"),
    )
    op.create_index(op.f("ix_timers_kind_ref_id"), "timers", ["kind", "ref_id"], unique=False)
    op.create_geospatial_table(
        "availabilities",
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("weekly", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("overrides", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("buffer_min", sa.Integer(), nullable=False),
        sa.Column("min_notice_min", sa.Integer(), nullable=False),
        sa.Column("max_jobs_per_day", sa.Integer(), nullable=True),
        sa.Column(
            "home",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
            ),
            nullable=True,
        ),
        sa.Column("travel_radius_m", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.user_id"],
            name=op.f("fk_availabilities_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_availabilities")),
    )
    op.create_index("ix_availabilities_home", "availabilities", ["home"], postgresql_using="gist")
    op.create_table(
        "bookings",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("block", postgresql.TSTZRANGE(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lng", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        postgresql.ExcludeConstraint(
            (sa.text("worker_id"), "="),
            (sa.text("block"), "&&"),
            where=sa.text("active"),
            using="gist",
            name="no_double_booking",
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_bookings_span")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_bookings_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["users.id"], name=op.f("fk_bookings_worker_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
    )
    op.create_index(op.f("ix_bookings_job_id"), "bookings", ["job_id"], unique=False)
    op.create_index(
        op.f("ix_bookings_worker_id_starts_at"),
        "bookings",
        ["worker_id", "starts_at"],
        unique=False,
    )
    op.add_column("jobs", sa.Column("duration_min", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("requested_worker_id", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("scheduled_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("scheduled_end", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("booked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("no_show_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("compensation_cents", sa.Integer(), nullable=True))
    op.add_column(
        "jobs", sa.Column("reschedule", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_jobs_requested_worker_id_users"), "jobs", "users", ["requested_worker_id"], ["id"]
    )
    op.add_column(
        "workers", sa.Column("no_shows", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "workers", sa.Column("bookings_done", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "workers", sa.Column("late_cancels", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("workers", "late_cancels")
    op.drop_column("workers", "bookings_done")
    op.drop_column("workers", "no_shows")
    op.drop_constraint(op.f("fk_jobs_requested_worker_id_users"), "jobs", type_="foreignkey")
    op.drop_column("jobs", "reschedule")
    op.drop_column("jobs", "compensation_cents")
    op.drop_column("jobs", "no_show_at")
    op.drop_column("jobs", "booked_at")
    op.drop_column("jobs", "scheduled_end")
    op.drop_column("jobs", "scheduled_start")
    op.drop_column("jobs", "requested_worker_id")
    op.drop_column("jobs", "duration_min")
    op.drop_index(op.f("ix_bookings_worker_id_starts_at"), table_name="bookings")
    op.drop_index(op.f("ix_bookings_job_id"), table_name="bookings")
    op.drop_table("bookings")
    op.drop_index("ix_availabilities_home", table_name="availabilities", postgresql_using="gist")
    op.drop_geospatial_table("availabilities")
    op.drop_index(op.f("ix_timers_kind_ref_id"), table_name="timers")
    op.drop_index(
        "ix_timers_due", table_name="timers", postgresql_where=sa.text("fired_at IS NULL")
    )
    op.drop_table("timers")
