"""Indexes for the single-principal report and the batch.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from pipeline_coverage.sql import migration

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEXES = (
    "ix_deal_owned_by_user_close",
    "ix_deal_assigned_user_close",
    "ix_deal_owned_by_group_close",
    "ix_deal_assigned_group_close",
    "ix_deal_tenant_close",
    "ix_sales_target_period_principal",
)


def upgrade() -> None:
    op.execute(migration("0002_report_indexes.sql"))


def downgrade() -> None:
    for index in _INDEXES:
        op.execute(f"DROP INDEX dyno_crm.{index}")
