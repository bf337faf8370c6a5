"""HTTP API: tenant API keys and idempotency keys.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from pipeline_coverage.sql import migration

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(migration("0003_api_keys_and_idempotency.sql"))


def downgrade() -> None:
    op.execute("DROP TABLE dyno_crm.idempotency_key")
    op.execute("DROP TABLE dyno_crm.api_key")
