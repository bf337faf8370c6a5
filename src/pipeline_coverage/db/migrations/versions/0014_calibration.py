"""Coverage calibration: hit_probability on fact rows, and the per-tenant fits.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0014_calibration.sql")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE dyno_crm.calibration_fit")
    op.execute(
        "ALTER TABLE dyno_crm.report_pipeline_coverage_fact DROP COLUMN hit_probability,"
        " DROP COLUMN hit_probability_low, DROP COLUMN hit_probability_high"
    )
