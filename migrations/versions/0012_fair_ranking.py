"""fair ranking: jobs done by a worker (any mode), offers by worker and time

`workers.bookings_done` was never counted; it becomes `jobs_done`, every completed job of any
mode, backfilled from the completed assignments. Ranking reads a worker's latest offers and
their offers of the last hour: an index on (worker_id, created_at).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 07:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("workers", "bookings_done", new_column_name="jobs_done")
    op.execute(
        "UPDATE workers w SET jobs_done = (SELECT count(*) FROM assignments a"
        " WHERE a.worker_id = w.user_id AND a.end_reason = 'completed')"
    )
    op.create_index(op.f("ix_offers_worker_id_created_at"), "offers", ["worker_id", "created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_offers_worker_id_created_at"), table_name="offers")
    op.alter_column("workers", "jobs_done", new_column_name="bookings_done")
