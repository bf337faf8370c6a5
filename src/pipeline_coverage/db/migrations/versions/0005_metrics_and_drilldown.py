"""Metrics and drill-down: forecast categories, the reporting currency, every metric
of a fact row, the names a run saw, and the deals behind every row.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from pipeline_coverage.sql import migration

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(migration("0005_metrics_and_drilldown.sql"))


def downgrade() -> None:
    op.execute("DROP TRIGGER tr_report_run_drop_drilldown ON dyno_crm.report_run")
    op.execute("DROP FUNCTION dyno_crm.report_run_drop_drilldown()")
    op.execute("DROP TABLE dyno_crm.report_run_credit")
    op.execute("DROP TABLE dyno_crm.report_run_deals")
    op.execute(
        "ALTER TABLE dyno_crm.report_pipeline_coverage_fact "
        + ", ".join(
            f"DROP COLUMN {column}"
            for column in (
                "principal_name", "pipeline_name", "open_count", "weighted_amount",
                "commit_amount", "best_case_amount", "pipeline_amount", "omitted_amount",
                "won_amount", "won_count", "lost_amount", "lost_count", "attainment_ratio",
                "remaining_target", "remaining_coverage_ratio", "win_rate",
                "history_won_count", "history_lost_count", "needed_coverage", "pipeline_gap",
                "past_due_amount", "past_due_count", "undated_amount", "undated_count", "flags",
            )
        )
    )  # fmt: skip
    op.execute("ALTER TABLE dyno_crm.tenant DROP COLUMN currency")
    op.execute("ALTER TABLE dyno_crm.deal DROP COLUMN forecast_category")
    op.execute("ALTER TABLE dyno_crm.pipeline_stage DROP COLUMN forecast_category")
