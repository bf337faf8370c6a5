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
    # The rep's deletion as 0006 made it (it names the column), then the column.
    for statement in statements(migration("0006_citus_compatible_references.sql")):
        if "CREATE FUNCTION dyno_crm.delete_crm_user" in statement:
            op.execute(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute("ALTER TABLE dyno_crm.deal DROP COLUMN import_digest")
