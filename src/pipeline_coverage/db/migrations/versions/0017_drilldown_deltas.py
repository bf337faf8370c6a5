"""A batch run stores each chunk of its deals as what changed since the tenant's
previous batch run of the period.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from pipeline_coverage.db.downgrades import each_tenant
from pipeline_coverage.sql import migration, statements

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0017_drilldown_deltas.sql")):
        op.execute(statement)


def downgrade() -> None:
    # Every chunk row stored complete again, with its deals as the readers resolve them
    # (fragments.sql's run_deal_rows, one tenant at a time: on Citus a router query),
    # then the key and the columns go.
    arrays = (
        ("deal_ids", "deal_id"), ("deal_names", "deal_name"), ("pipeline_ids", "pipeline_id"),
        ("pipeline_names", "pipeline_name"), ("stage_ids", "stage_id"),
        ("stage_names", "stage_name"), ("deal_classes", "deal_class"),
        ("forecast_categories", "forecast_category"), ("probabilities", "probability"),
        ("amounts", "amount"), ("currencies", "currency"),
        ("reporting_amounts", "reporting_amount"), ("weighted_amounts", "weighted_amount"),
        ("placed_on", "placed_on"), ("owner_user_ids", "owner_user_id"), ("flags", "flags"),
    )  # fmt: skip
    # (built from the column names above, never from input)
    complete = (
        "UPDATE dyno_crm.report_run_deals AS d SET "  # noqa: S608
        + ", ".join(f"{name} = v.{name}" for name, _ in arrays)
        + ", base_run_id = NULL, chain = NULL, removed_deal_ids = NULL FROM (SELECT"
        " x.tenant_id, x.run_id, x.chunk, "
        + ", ".join(f"array_agg(x.{value}) AS {name}" for name, value in arrays)
        + " FROM /* fragment: run_deal_rows */ AS x WHERE x.tenant_id = %(tenant_id)s::uuid"
        " AND (x.run_id, x.chunk) IN (SELECT k.run_id, k.chunk FROM dyno_crm.report_run_deals"
        " AS k WHERE k.tenant_id = %(tenant_id)s::uuid AND k.base_run_id IS NOT NULL)"
        " GROUP BY x.tenant_id, x.run_id, x.chunk) AS v WHERE d.tenant_id = %(tenant_id)s::uuid"
        " AND d.tenant_id = v.tenant_id AND d.run_id = v.run_id AND d.chunk = v.chunk"
    )
    each_tenant(
        "SELECT DISTINCT tenant_id FROM dyno_crm.report_run_deals WHERE base_run_id IS NOT NULL",
        complete,
    )
    # (a row whose every deal was removed resolves to none: it goes)
    op.execute("DELETE FROM dyno_crm.report_run_deals WHERE base_run_id IS NOT NULL")
    op.execute("ALTER TABLE dyno_crm.report_run_deals DROP CONSTRAINT fk_report_run_deals_base")
    op.execute("DROP INDEX dyno_crm.ix_report_run_deals_base")
    op.execute(
        "ALTER TABLE dyno_crm.report_run_deals DROP CONSTRAINT ck_report_run_deals_delta,"
        " DROP COLUMN base_run_id, DROP COLUMN chain, DROP COLUMN removed_deal_ids"
    )
