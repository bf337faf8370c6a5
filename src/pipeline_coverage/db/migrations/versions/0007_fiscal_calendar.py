"""Fiscal calendar: the month a tenant's fiscal year starts in.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0007_fiscal_calendar.sql")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE dyno_crm.tenant DROP COLUMN fiscal_year_start_month")
