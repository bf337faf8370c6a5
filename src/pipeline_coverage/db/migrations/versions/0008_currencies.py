"""Currencies: a deal's own currency, and a tenant's exchange rates.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0008_currencies.sql")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE dyno_crm.exchange_rate")
    op.execute("ALTER TABLE dyno_crm.deal DROP COLUMN currency")
