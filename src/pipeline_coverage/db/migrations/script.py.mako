"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from alembic import op

from pipeline_coverage.sql import migration

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(migration("${up_revision}.sql"))


def downgrade() -> None:
    raise NotImplementedError("write the downgrade SQL")
