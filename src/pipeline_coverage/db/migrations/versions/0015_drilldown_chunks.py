"""A run's stored deals in chunks by owner, so that a principal's drill-down reads only
the chunks that hold its deals.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0015_drilldown_chunks.sql")):
        op.execute(statement)


def downgrade() -> None:
    # A run stored in several chunks goes back to one row: its chunks' arrays
    # concatenated, aggregated in one pass so that they still line up.
    arrays = (
        "deal_ids", "deal_names", "pipeline_ids", "pipeline_names", "stage_ids",
        "stage_names", "deal_classes", "forecast_categories", "probabilities", "amounts",
        "currencies", "reporting_amounts", "weighted_amounts", "placed_on",
        "owner_user_ids", "flags",
    )  # fmt: skip
    # (the statements are built from the column names above, never from input)
    op.execute(
        "CREATE TEMPORARY TABLE merged_run_deals ON COMMIT DROP AS"  # noqa: S608
        " SELECT d.tenant_id, d.run_id, "
        + ", ".join(f"array_agg(x.{name}) AS {name}" for name in arrays)
        + " FROM dyno_crm.report_run_deals AS d CROSS JOIN LATERAL unnest("
        + ", ".join(f"d.{name}" for name in arrays)
        + ") AS x ("
        + ", ".join(arrays)
        + ") WHERE (d.tenant_id, d.run_id) IN (SELECT o.tenant_id, o.run_id"
        " FROM dyno_crm.report_run_deals AS o GROUP BY o.tenant_id, o.run_id"
        " HAVING count(*) > 1) GROUP BY d.tenant_id, d.run_id"
    )
    op.execute(
        "DELETE FROM dyno_crm.report_run_deals AS d USING merged_run_deals AS m"
        " WHERE d.tenant_id = m.tenant_id AND d.run_id = m.run_id"
    )
    op.execute(
        "INSERT INTO dyno_crm.report_run_deals (tenant_id, run_id, chunk, "  # noqa: S608
        + ", ".join(arrays)
        + ") SELECT m.tenant_id, m.run_id, 0, "
        + ", ".join(f"m.{name}" for name in arrays)
        + " FROM merged_run_deals AS m"
    )
    op.execute(
        "ALTER TABLE dyno_crm.report_run_credit DROP CONSTRAINT ck_report_run_credit_chunks,"
        " DROP COLUMN deal_chunks"
    )
    op.execute(
        "ALTER TABLE dyno_crm.report_run_deals DROP CONSTRAINT pk_report_run_deals,"
        " ADD CONSTRAINT pk_report_run_deals PRIMARY KEY (tenant_id, run_id)"
    )
    op.execute("ALTER TABLE dyno_crm.report_run_deals DROP COLUMN chunk")
