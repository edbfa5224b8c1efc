"""people's language: the one they chose, and the one their account was given

`users.locale` is what a person chose (`PUT /v1/me`), NULL until they choose; `default_locale`
is what they get until then, set when the account is made (by `DISPATCH_DEFAULT_LOCALE`: by
default Simplified Chinese for a +86 phone, else English). Accounts made before this have
English until they choose: their phones are encrypted, so the migration cannot read them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("locale", sa.Text(), nullable=True))
    op.add_column(
        "users", sa.Column("default_locale", sa.Text(), server_default="en", nullable=False)
    )
    op.create_check_constraint(op.f("ck_users_locale"), "users", "locale IN ('en', 'zh-CN')")
    op.create_check_constraint(
        op.f("ck_users_default_locale"), "users", "default_locale IN ('en', 'zh-CN')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_default_locale"), "users", type_="check")
    op.drop_constraint(op.f("ck_users_locale"), "users", type_="check")
    op.drop_column("users", "default_locale")
    op.drop_column("users", "locale")
