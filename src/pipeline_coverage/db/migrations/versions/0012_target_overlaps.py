"""The target rows a fact row summed whose periods overlap (target_match=within).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0012_target_overlaps.sql")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE dyno_crm.report_pipeline_coverage_fact DROP COLUMN target_overlaps")
