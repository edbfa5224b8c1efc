"""offers by worker, answered ones only: fair ranking's acceptance read

Ranking reads each candidate's latest answered offers (accepted, declined, expired). The index
on (worker_id, status) made it fetch all of a worker's answered offers and sort them, per
candidate, per wave: a worker of some months has thousands. This partial index holds only the
answered ones, newest last, with their status, so the read walks at most `RECENT_OFFERS`
entries backwards.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_offers_answered",
        "offers",
        ["worker_id", "created_at"],
        postgresql_include=["status"],
        postgresql_where=sa.text("status IN ('accepted', 'declined', 'expired')"),
    )


def downgrade() -> None:
    op.drop_index("ix_offers_answered", table_name="offers")
