"""workers' last positions indexed (GiST): the dispatch log's count of who was within reach

After each wave the dispatch log counts the community's workers within the wave's reach by why
they were not candidates. Without an index on `workers.location` that read every member of the
community and measured each: 20-57 ms of PostgreSQL per wave for a community of 10,000 (35 % of
a core at 20 jobs/s in `bench.dispatch`), 2-3 ms with this index. The index costs the positions'
write-behind about 7 us a row (10,000 rows: 70 -> 140 ms), 2 % of a core for 10,000 workers
pinging every 4 s.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_workers_location", "workers", ["location"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_index("ix_workers_location", table_name="workers")
