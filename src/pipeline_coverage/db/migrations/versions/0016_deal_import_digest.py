"""The digest of the export row an imported deal was last written from (a re-import
parses only the rows it does not find).

Revision ID: 0016
Revises: 0015
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0016_deal_import_digest.sql")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE dyno_crm.deal DROP COLUMN import_digest")
