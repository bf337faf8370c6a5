"""Dashboard sessions kept on the server (sign-out ends them at once).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from pipeline_coverage.sql import migration

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(migration("0004_api_sessions.sql"))


def downgrade() -> None:
    op.execute("DROP TABLE dyno_crm.api_session")
