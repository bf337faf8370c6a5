"""A tenant's default run options: roll-up, target matching, win-rate lookback.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0010_tenant_run_defaults.sql")):
        op.execute(statement)


def downgrade() -> None:
    for column in ("default_win_rate_lookback_days", "default_target_match", "default_rollup"):
        op.execute(f"ALTER TABLE dyno_crm.tenant DROP COLUMN {column}")
