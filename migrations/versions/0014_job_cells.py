"""jobs by H3 cell: the fine cell code of a job's location, for the jobs board

`jobs.h3_code` is the code of the resolution-10 H3 cell holding the job's location, as the live
index scores workers (`geo.live.cells.cell_code`): any coarser cell is one range of codes, so the
board reads the open jobs near a worker from a B-tree on (community_id, h3_code), open jobs only,
a few ranges per query. Existing jobs get theirs here, computed in Python (PostgreSQL has no H3)
in batches; every job has a location, so the column is then NOT NULL.

The code is written out below rather than imported: this migration must compute what it computed
when it was written (tests/test_migrations.py checks it against `cell_code`).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import h3.api.basic_int as h3
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

FINE_RES = 10
BATCH = 5000


def fine_code(lat: float, lng: float) -> int:
    """The index's bits below its mode and resolution, less the unused digits: 7 bits of base
    cell and FINE_RES digits of 3."""
    return (h3.latlng_to_cell(lat, lng, FINE_RES) >> 3 * (15 - FINE_RES)) & ((1 << 37) - 1)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("h3_code", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    read = sa.text(
        "SELECT id, ST_Y(location::geometry), ST_X(location::geometry) FROM jobs"
        " WHERE id > :after ORDER BY id LIMIT :n"
    )
    write = sa.text(
        "UPDATE jobs SET h3_code = v.code FROM unnest(CAST(:ids AS bigint[]),"
        " CAST(:codes AS bigint[])) AS v(id, code) WHERE jobs.id = v.id"
    )
    after = 0
    while rows := bind.execute(read, {"after": after, "n": BATCH}).all():
        bind.execute(
            write, {"ids": [r[0] for r in rows], "codes": [fine_code(r[1], r[2]) for r in rows]}
        )
        after = rows[-1][0]
    op.alter_column("jobs", "h3_code", nullable=False)
    op.create_index(
        "ix_jobs_open_h3_code",
        "jobs",
        ["community_id", "h3_code"],
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_open_h3_code", table_name="jobs")
    op.drop_column("jobs", "h3_code")
