"""Recorded history: the values a load or an import replaced, as versions of the deal.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0013_deal_history.sql")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE dyno_crm.deal_version")
    op.execute("ALTER TABLE dyno_crm.tenant DROP COLUMN recorded_until, DROP COLUMN recorded_since")
    op.execute("ALTER TABLE dyno_crm.deal DROP COLUMN recorded_from")
