"""A batch run stores each chunk of its deals as what changed since the tenant's
previous batch run of the period; a view resolves a run's deals.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from pipeline_coverage.sql import migration, statements

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0017_drilldown_deltas.sql")):
        op.execute(statement)


def downgrade() -> None:
    # Every chunk row stored complete again (its deals as the view resolves them),
    # then the columns go.
    op.execute("DROP TABLE IF EXISTS resolved_run_deals")
    op.execute(
        "CREATE TEMPORARY TABLE resolved_run_deals ON COMMIT DROP AS"
        " SELECT v.tenant_id, v.run_id, v.chunk, array_agg(v.deal_id) AS deal_ids,"
        " array_agg(v.deal_name) AS deal_names, array_agg(v.pipeline_id) AS pipeline_ids,"
        " array_agg(v.pipeline_name) AS pipeline_names, array_agg(v.stage_id) AS stage_ids,"
        " array_agg(v.stage_name) AS stage_names, array_agg(v.deal_class) AS deal_classes,"
        " array_agg(v.forecast_category) AS forecast_categories,"
        " array_agg(v.probability) AS probabilities, array_agg(v.amount) AS amounts,"
        " array_agg(v.currency) AS currencies,"
        " array_agg(v.reporting_amount) AS reporting_amounts,"
        " array_agg(v.weighted_amount) AS weighted_amounts,"
        " array_agg(v.placed_on) AS placed_on, array_agg(v.owner_user_id) AS owner_user_ids,"
        " array_agg(v.flags) AS flags"
        " FROM dyno_crm.report_run_deal_rows AS v"
        " WHERE (v.tenant_id, v.run_id, v.chunk) IN (SELECT d.tenant_id, d.run_id, d.chunk"
        "  FROM dyno_crm.report_run_deals AS d WHERE d.base_run_id IS NOT NULL)"
        " GROUP BY v.tenant_id, v.run_id, v.chunk"
    )
    op.execute("DROP VIEW dyno_crm.report_run_deal_rows")
    op.execute("DROP VIEW dyno_crm.report_run_deal_amounts")
    op.execute("ALTER TABLE dyno_crm.report_run_deals DROP CONSTRAINT fk_report_run_deals_base")
    op.execute(
        "UPDATE dyno_crm.report_run_deals AS d SET deal_ids = r.deal_ids,"
        " deal_names = r.deal_names, pipeline_ids = r.pipeline_ids,"
        " pipeline_names = r.pipeline_names, stage_ids = r.stage_ids,"
        " stage_names = r.stage_names, deal_classes = r.deal_classes,"
        " forecast_categories = r.forecast_categories, probabilities = r.probabilities,"
        " amounts = r.amounts, currencies = r.currencies,"
        " reporting_amounts = r.reporting_amounts, weighted_amounts = r.weighted_amounts,"
        " placed_on = r.placed_on, owner_user_ids = r.owner_user_ids, flags = r.flags,"
        " base_run_id = NULL, chain = NULL, removed_deal_ids = NULL"
        " FROM resolved_run_deals AS r"
        " WHERE d.tenant_id = r.tenant_id AND d.run_id = r.run_id AND d.chunk = r.chunk"
    )
    # (a delta chunk whose every deal was removed resolves to no row: it goes)
    op.execute("DELETE FROM dyno_crm.report_run_deals WHERE base_run_id IS NOT NULL")
    op.execute("DROP INDEX dyno_crm.ix_report_run_deals_base")
    op.execute(
        "ALTER TABLE dyno_crm.report_run_deals DROP CONSTRAINT ck_report_run_deals_delta,"
        " DROP COLUMN base_run_id, DROP COLUMN chain, DROP COLUMN removed_deal_ids"
    )
