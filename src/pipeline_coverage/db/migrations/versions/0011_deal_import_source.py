"""Which import source a deal came from (a full sync deletes the source's absent deals).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0011_deal_import_source.sql")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX dyno_crm.ix_deal_import_source")
    op.execute("ALTER TABLE dyno_crm.deal DROP COLUMN import_source")
