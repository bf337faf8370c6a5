"""A run stores its deals in chunks by owner (migration 0015), so that one principal's
drill-down reads the chunks holding its deals, not the whole run's: the same deals as
the whole run's drill-down shows for that principal, the same as the oracle's, for
runs stored in chunks and for runs stored before (one row, chunk 0)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import psycopg
import pytest

from pipeline_coverage import run_deals, run_pipeline_coverage_batch
from pipeline_coverage.sql import query
from pipeline_coverage.store import _QUERIES, DEALS_SETTINGS
from tests.factory import bulk_tenant, random_tenant
from tests.oracle import Options, Oracle
from tests.plans import plan_nodes

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
INSIDE = dt.date(2026, 2, 10)

#: A run's stored deals, in the columns of report_run_deals (beside its keys and chunk).
ARRAYS = (
    "deal_ids", "deal_names", "pipeline_ids", "pipeline_names", "stage_ids", "stage_names",
    "deal_classes", "forecast_categories", "probabilities", "amounts", "currencies",
    "reporting_amounts", "weighted_amounts", "placed_on", "owner_user_ids", "flags",
)  # fmt: skip


def by_principal(conn: psycopg.Connection[Any], run: uuid.UUID) -> dict[Any, list[Any]]:
    """The whole run's drill-down, split by principal."""
    found: dict[Any, list[Any]] = {}
    for deal in run_deals(conn, run):
        found.setdefault((deal.principal_type, deal.principal_id), []).append(deal)
    return found


def store_as_one_chunk(conn: psycopg.Connection[Any], tenant: uuid.UUID, run: uuid.UUID) -> None:
    """Rewrites a run's drill-down as runs stored before chunks were: one row, chunk 0,
    and credit rows without deal_chunks."""
    columns = ", ".join(ARRAYS)
    conn.execute(  # (built from the column names above)
        f"CREATE TEMPORARY TABLE one_chunk AS SELECT d.tenant_id, d.run_id,"  # noqa: S608
        f" {', '.join(f'array_agg(x.{name}) AS {name}' for name in ARRAYS)}"
        f" FROM dyno_crm.report_run_deals AS d CROSS JOIN LATERAL unnest("
        f"{', '.join(f'd.{name}' for name in ARRAYS)}) AS x ({columns})"
        " WHERE d.tenant_id = %s AND d.run_id = %s GROUP BY d.tenant_id, d.run_id",
        (tenant, run),
    )
    conn.execute(
        "DELETE FROM dyno_crm.report_run_deals WHERE tenant_id = %s AND run_id = %s",
        (tenant, run),
    )
    conn.execute(
        f"INSERT INTO dyno_crm.report_run_deals (tenant_id, run_id, chunk, {columns})"  # noqa: S608
        f" SELECT tenant_id, run_id, 0, {columns} FROM one_chunk"
    )
    conn.execute(
        "UPDATE dyno_crm.report_run_credit SET deal_chunks = NULL"
        " WHERE tenant_id = %s AND run_id = %s",
        (tenant, run),
    )
    conn.execute("DROP TABLE one_chunk")
    conn.commit()


@pytest.mark.parametrize("rollup", [False, True], ids=["plain", "rollup"])
def test_each_principals_drilldown_is_its_share_of_the_whole_runs(
    conn: psycopg.Connection[Any], rollup: bool
) -> None:
    tenant = random_tenant(conn, 41)
    random_tenant(conn, 42)  # another tenant's chunks must not leak in
    oracle = Oracle(conn, tenant)
    options = Options(*Q1, as_of=INSIDE, rollup=rollup)
    run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE, rollup=rollup)
    chunks = conn.execute(
        "SELECT count(*) FROM dyno_crm.report_run_deals WHERE run_id = %s", (run,)
    ).fetchone()
    assert chunks is not None
    assert chunks[0] > 1, "the run is stored in several chunks"

    whole = by_principal(conn, run)
    assert whole, "the run has a drill-down"
    for (kind, who), deals in whole.items():
        alone = run_deals(conn, run, tenant, principal_type=kind, principal_id=who)
        assert alone == deals, (kind, who)
        expected = oracle.drilldown(options, (kind, who))
        assert {d.deal_id: (d.deal_class, d.credit_reason) for d in alone} == {
            deal: value for row in expected.values() for deal, value in row.items()
        }, (kind, who)


def test_a_run_stored_before_chunks_drills_down_the_same(
    conn: psycopg.Connection[Any],
) -> None:
    tenant = random_tenant(conn, 43)
    run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    whole = by_principal(conn, run)
    store_as_one_chunk(conn, tenant, run)
    assert by_principal(conn, run) == whole
    for (kind, who), deals in whole.items():
        assert run_deals(conn, run, tenant, principal_type=kind, principal_id=who) == deals


def test_a_reps_drilldown_reads_only_the_chunks_of_its_deals(
    conn: psycopg.Connection[Any],
) -> None:
    """The promise behind the API's drill-down throughput: a rep's page reads the
    chunks of its own deals (those of their owners: itself, and the owners of the
    deals it is assigned), not the run's."""
    tenant = bulk_tenant(conn, 6_000, Q1, users=60, groups=6)
    run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE)
    stored = conn.execute(
        "SELECT count(*) FROM dyno_crm.report_run_deals WHERE run_id = %s", (run,)
    ).fetchone()
    rep = conn.execute(
        "SELECT principal_id, cardinality(deal_ids) FROM dyno_crm.report_run_credit"
        " WHERE run_id = %s AND principal_type = 'USER' ORDER BY 2 DESC LIMIT 1",
        (run,),
    ).fetchone()
    conn.commit()
    assert stored is not None
    assert rep is not None
    assert stored[0] >= 30

    params = {
        "tenant_id": str(tenant), "run_id": str(run), "principal_type": "USER",
        "principal_id": str(rep[0]), "after_type": None, "after_principal": None,
        "after_pipeline": None, "after_deal": None, "limit": 1000,
    }  # fmt: skip
    with conn.transaction():
        for name, value in DEALS_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        plan = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + query(_QUERIES, "run_deals"), params
        ).fetchone()
    assert plan is not None
    nodes = list(plan_nodes(plan[0] if isinstance(plan[0], list) else json.loads(plan[0])))
    read = [n for n in nodes if n.get("Relation Name") == "report_run_deals"]
    assert read, "the plan reads the stored deals"
    chunks_read = sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in read)
    # At most one chunk per owner of the deals it shows, and far fewer than the run's.
    owners = {
        deal.owner_user_id
        for deal in run_deals(conn, run, tenant, principal_type="USER", principal_id=rep[0])
    }
    assert rep[1] > 0
    assert 1 <= chunks_read <= len(owners), (chunks_read, len(owners))
    assert chunks_read * 4 <= stored[0], (chunks_read, stored[0])
