"""Core schema: the dyno_crm contract and the pipeline coverage report storage.

Revision ID: 0001
Revises:
"""

from alembic import op

from pipeline_coverage.sql import migration

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES_NEWEST_FIRST = (
    "report_pipeline_coverage_fact",
    "report_run",
    "sales_target",
    "deal",
    "pipeline_stage",
    "pipeline",
    "group_member",
    "crm_group",
    "crm_user",
    "tenant",
)


def upgrade() -> None:
    op.execute(migration("0001_core_schema.sql"))


def downgrade() -> None:
    for table in _TABLES_NEWEST_FIRST:
        op.execute(f"DROP TABLE dyno_crm.{table}")
