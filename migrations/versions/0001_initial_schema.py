"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 15:34:23.598290
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_geospatial_table(
        "communities",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "center",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("radius_m", sa.Integer(), nullable=True),
        sa.Column(
            "boundary",
            Geometry(
                geometry_type="POLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("dispatch", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("cover_res", sa.SmallInteger(), nullable=False),
        sa.Column("cell_count", sa.Integer(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_communities")),
    )
    op.create_table(
        "otp_codes",
        sa.Column("phone_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_otp_codes")),
    )
    op.create_index(
        op.f("ix_otp_codes_phone_hash_created_at"),
        "otp_codes",
        ["phone_hash", "created_at"],
        unique=False,
    )
    op.create_table(
        "users",
        sa.Column("phone_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("phone_enc", sa.LargeBinary(), nullable=True),
        sa.Column("phone_hint", sa.String(length=8), nullable=True),
        sa.Column("handle", sa.String(length=120), nullable=True),
        sa.Column("roles", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("operator_community_ids", sa.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("handle", name=op.f("uq_users_handle")),
        sa.UniqueConstraint("phone_hash", name=op.f("uq_users_phone_hash")),
    )
    op.create_table(
        "community_cells",
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_community_cells_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cell", "community_id", name=op.f("pk_community_cells")),
    )
    op.create_index(
        op.f("ix_community_cells_community_id"), "community_cells", ["community_id"], unique=False
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_idempotency_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    op.create_geospatial_table(
        "jobs",
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("resident_id", sa.BigInteger(), nullable=False),
        sa.Column("worker_id", sa.BigInteger(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=5000), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("skills", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "location",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("materials", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("insured", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("mode IN ('grab', 'booking')", name=op.f("ck_jobs_mode")),
        sa.CheckConstraint(
            "status IN ('under_review', 'open', 'assigned', 'in_progress', 'completed', 'confirmed', 'cancelled', 'unfilled', 'disputed')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint("price_cents >= 0", name=op.f("ck_jobs_price")),
        sa.ForeignKeyConstraint(
            ["community_id"], ["communities.id"], name=op.f("fk_jobs_community_id_communities")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["users.id"], name=op.f("fk_jobs_resident_id_users")
        ),
        sa.ForeignKeyConstraint(["worker_id"], ["users.id"], name=op.f("fk_jobs_worker_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(
        op.f("ix_jobs_community_id_status"), "jobs", ["community_id", "status"], unique=False
    )
    op.create_geospatial_index(
        "ix_jobs_location",
        "jobs",
        ["location"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        op.f("ix_jobs_resident_id_created_at"), "jobs", ["resident_id", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_jobs_worker_id_created_at"), "jobs", ["worker_id", "created_at"], unique=False
    )
    op.create_table(
        "outbox",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("to_user_id", sa.BigInteger(), nullable=True),
        sa.Column("to_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("to_enc", sa.LargeBinary(), nullable=True),
        sa.Column("to_hint", sa.String(length=8), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_ref", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["to_user_id"],
            ["users.id"],
            name=op.f("fk_outbox_to_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_dedupe_key")),
        sa.UniqueConstraint("provider_ref", name=op.f("uq_outbox_provider_ref")),
    )
    op.create_index(
        op.f("ix_outbox_status_next_attempt_at"),
        "outbox",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_outbox_to_hash_created_at"), "outbox", ["to_hash", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_outbox_to_user_id_created_at"),
        "outbox",
        ["to_user_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "workers",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("bio", sa.String(length=2000), nullable=True),
        sa.Column("skills", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("hourly_rate_cents", sa.Integer(), nullable=True),
        sa.Column("verification", sa.String(length=16), nullable=False),
        sa.Column("legal_name_enc", sa.LargeBinary(), nullable=True),
        sa.Column("id_number_enc", sa.LargeBinary(), nullable=True),
        sa.Column("rating_sum", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_workers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_workers")),
    )
    op.create_table(
        "worker_communities",
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_worker_communities_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.user_id"],
            name=op.f("fk_worker_communities_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("worker_id", "community_id", name=op.f("pk_worker_communities")),
    )
    op.create_index(
        op.f("ix_worker_communities_community_id"),
        "worker_communities",
        ["community_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_worker_communities_community_id"), table_name="worker_communities")
    op.drop_table("worker_communities")
    op.drop_table("workers")
    op.drop_index(op.f("ix_outbox_to_user_id_created_at"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_to_hash_created_at"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_status_next_attempt_at"), table_name="outbox")
    op.drop_table("outbox")
    op.drop_index(op.f("ix_jobs_worker_id_created_at"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_resident_id_created_at"), table_name="jobs")
    op.drop_geospatial_index(
        "ix_jobs_location", table_name="jobs", postgresql_using="gist", column_name="location"
    )
    op.drop_index(op.f("ix_jobs_community_id_status"), table_name="jobs")
    op.drop_geospatial_table("jobs")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_community_cells_community_id"), table_name="community_cells")
    op.drop_table("community_cells")
    op.drop_table("users")
    op.drop_index(op.f("ix_otp_codes_phone_hash_created_at"), table_name="otp_codes")
    op.drop_table("otp_codes")
    op.drop_geospatial_table("communities")
