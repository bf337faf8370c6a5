"""A batch run stores its credit rows as what changed since an earlier batch run.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from pipeline_coverage.db.downgrades import each_tenant
from pipeline_coverage.sql import migration, statements

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(migration("0018_credit_deltas.sql")):
        op.execute(statement)


def downgrade() -> None:
    # Every run's credit rows stored complete again, as the readers resolve them
    # (fragments.sql's run_credit_rows, one tenant at a time: on Citus a router query),
    # then the key and the columns go.
    # (the rows a run takes from its chain become its own; its own are its latest)
    inherited = (
        "INSERT INTO dyno_crm.report_run_credit (tenant_id, run_id, principal_type,"
        " principal_id, pipeline_id, deal_ids, credit_reasons, deal_chunks)"
        " SELECT v.tenant_id, v.run_id, v.principal_type, v.principal_id, v.pipeline_id,"
        " v.deal_ids, v.credit_reasons, v.deal_chunks"
        " FROM /* fragment: run_credit_rows */ AS v"
        " JOIN dyno_crm.report_run AS r ON r.tenant_id = v.tenant_id AND r.id = v.run_id"
        " WHERE v.tenant_id = %(tenant_id)s::uuid AND r.tenant_id = %(tenant_id)s::uuid"
        " AND r.credit_chain IS NOT NULL AND v.source_run_id <> v.run_id"
    )
    each_tenant(
        "SELECT DISTINCT tenant_id FROM dyno_crm.report_run WHERE credit_chain IS NOT NULL",
        inherited,
    )
    op.execute("DELETE FROM dyno_crm.report_run_credit WHERE removed")
    op.execute("ALTER TABLE dyno_crm.report_run DROP CONSTRAINT fk_report_run_credit_base")
    op.execute("DROP INDEX dyno_crm.ix_report_run_credit_base")
    op.execute(
        "ALTER TABLE dyno_crm.report_run DROP CONSTRAINT ck_report_run_credit_delta,"
        " DROP COLUMN credit_base_run_id, DROP COLUMN credit_chain"
    )
    op.execute(
        "ALTER TABLE dyno_crm.report_run_credit DROP CONSTRAINT ck_report_run_credit_removed,"
        " DROP COLUMN removed"
    )
