"""missed check-in alerts may repeat in a job

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A worker may miss a check-in, answer, and miss a later one: each missed check-in that
    # reaches the alert step is its own alert (the ladder's timers make each step once).
    op.drop_index("uq_alerts_job_kind", table_name="alerts")
    op.create_index(
        "uq_alerts_job_kind", "alerts", ["job_id", "kind"], unique=True,
        postgresql_where=sa.text("job_id IS NOT NULL AND kind NOT IN ('sos', 'missed_checkin')"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("uq_alerts_job_kind", table_name="alerts")
    op.execute(
        "DELETE FROM alerts a USING alerts b WHERE a.kind = 'missed_checkin' "
        "AND b.kind = 'missed_checkin' AND a.job_id = b.job_id AND a.id > b.id"
    )
    op.create_index(
        "uq_alerts_job_kind", "alerts", ["job_id", "kind"], unique=True,
        postgresql_where=sa.text("job_id IS NOT NULL AND kind <> 'sos'"),
    )  # fmt: skip
