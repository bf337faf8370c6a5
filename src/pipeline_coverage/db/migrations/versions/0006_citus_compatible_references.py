"""References a Citus cluster accepts: deal's user/group keys without SET NULL (a
function clears them before a delete), the drill-down cascading from its run instead
of a trigger.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from pipeline_coverage.sql import migration

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(migration("0006_citus_compatible_references.sql"))


def downgrade() -> None:
    op.execute("ALTER TABLE dyno_crm.report_run_credit DROP CONSTRAINT fk_report_run_credit_run")
    op.execute("ALTER TABLE dyno_crm.report_run_deals DROP CONSTRAINT fk_report_run_deals_run")
    op.execute("DROP FUNCTION dyno_crm.delete_crm_group(uuid, uuid)")
    op.execute("DROP FUNCTION dyno_crm.delete_crm_user(uuid, uuid)")
    for name, column, table in (
        ("fk_deal_owned_by_user", "owned_by_user_id", "crm_user"),
        ("fk_deal_assigned_user", "assigned_user_id", "crm_user"),
        ("fk_deal_owned_by_group", "owned_by_group_id", "crm_group"),
        ("fk_deal_assigned_group", "assigned_group_id", "crm_group"),
    ):
        op.execute(f"ALTER TABLE dyno_crm.deal DROP CONSTRAINT {name}")
        op.execute(
            f"ALTER TABLE dyno_crm.deal ADD CONSTRAINT {name} FOREIGN KEY (tenant_id, {column})"
            f" REFERENCES dyno_crm.{table} (tenant_id, id) ON DELETE SET NULL ({column})"
        )
    # The trigger that 0005 created, as it was.
    migration_text = migration("0005_metrics_and_drilldown.sql")
    op.execute(migration_text[migration_text.index("CREATE FUNCTION dyno_crm.report_run_drop") :])
