"""Team hierarchy: a group's parent group, and a rolled-up row's member target.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0009_team_hierarchy.sql")):
        op.execute(statement)


def downgrade() -> None:
    # delete_crm_group as 0006 made it, before it knew of parent groups.
    [before] = [
        s
        for s in statements(migration("0006_citus_compatible_references.sql"))
        if s.startswith("CREATE FUNCTION dyno_crm.delete_crm_group")
    ]
    op.execute(before.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute(
        "ALTER TABLE dyno_crm.report_pipeline_coverage_fact DROP COLUMN member_target_amount"
    )
    op.execute("ALTER TABLE dyno_crm.crm_group DROP COLUMN parent_group_id")
