"""The benchmark's floors of a batch (``bench/queries.sql``) measure what they say: the
write floor writes exactly a stored run's rows again, and the input floor reads exactly
the deals a run reads. A floor that wrote less, or read other deals, would make the
batch look closer to its limit than it is."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
from bench.run import COPY_RUN, QUERIES

from pipeline_coverage import run_pipeline_coverage_batch
from tests.factory import random_tenant

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))

#: A run's stored rows, per table, without the run id (which the copy must change).
STORED = {
    "report_pipeline_coverage_fact": "SELECT to_jsonb(t) - 'run_id' FROM"
    " dyno_crm.report_pipeline_coverage_fact AS t WHERE t.tenant_id = %s AND t.run_id = %s",
    "report_run_deals": "SELECT to_jsonb(t) - 'run_id' FROM dyno_crm.report_run_deals AS t"
    " WHERE t.tenant_id = %s AND t.run_id = %s",
    "report_run_credit": "SELECT to_jsonb(t) - 'run_id' FROM"
    " dyno_crm.report_run_credit AS t WHERE t.tenant_id = %s AND t.run_id = %s",
}


def stored(conn: psycopg.Connection[Any], tenant: uuid.UUID, run: uuid.UUID) -> dict[str, Any]:
    found = {}
    for table, select in STORED.items():
        rows = [row[0] for row in conn.execute(select, (tenant, run)).fetchall()]
        found[table] = sorted(rows, key=repr)
    conn.commit()
    return found


def test_the_write_floor_writes_a_runs_rows_again(conn: psycopg.Connection[Any]) -> None:
    tenant = random_tenant(conn, 41)
    run = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=dt.date(2026, 2, 10))
    original = stored(conn, tenant, run)
    assert all(original.values()), "the run stored facts, deals and credits"

    copied = conn.execute(COPY_RUN, {"tenant_id": str(tenant), "run_id": str(run)}).fetchall()
    conn.commit()
    copy = {row[0] for row in copied}
    assert len(copy) == 1
    assert run not in copy
    [copy_id] = copy
    assert len(copied) == len(original["report_pipeline_coverage_fact"])
    assert stored(conn, tenant, copy_id) == original
    header = conn.execute(
        "SELECT tenant_id, period_start, period_end, parameters FROM dyno_crm.report_run"
        " WHERE id = ANY (%s) ORDER BY id = %s",
        ([run, copy_id], run),
    ).fetchall()
    conn.commit()
    assert header[0] == header[1]


def test_the_input_floor_reads_the_deals_a_run_reads(conn: psycopg.Connection[Any]) -> None:
    tenant = random_tenant(conn, 42)
    random_tenant(conn, 43)  # another tenant's deals are not read
    start, end = Q1
    history_start = start - dt.timedelta(days=365)
    deals = conn.execute(
        "SELECT d.expected_close_date, d.close_date, d.amount, ps.stage_state"
        " FROM dyno_crm.deal AS d JOIN dyno_crm.pipeline_stage AS ps"
        " ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id WHERE d.tenant_id = %s",
        (tenant,),
    ).fetchall()
    conn.commit()

    def within(day: dt.date | None, low: dt.date, high: dt.date) -> bool:
        return day is not None and low <= day < high

    # SPEC.md §7: a candidate is dated in the period by either of its dates' orders, or
    # undated; the win rate's window holds the closed deals placed before the period.
    candidates = [
        d for d in deals
        if within(d[0] or d[1], start, end) or within(d[1] or d[0], start, end)
        or (d[0] or d[1]) is None
    ]  # fmt: skip
    window = [
        d for d in deals
        if d[3] in ("DONE_SUCCESS", "DONE_FAILED") and within(d[1] or d[0], history_start, start)
    ]  # fmt: skip
    assert candidates
    assert window

    read = conn.execute(
        QUERIES["input_floor"],
        {"tenant_id": str(tenant), "period_start": start, "period_end": end,
         "history_start": history_start},
    ).fetchall()  # fmt: skip
    conn.commit()
    assert [int(count) for count, _ in read] == [len(candidates), len(window)]
    assert [amount for _, amount in read] == [
        sum((d[2] or 0 for d in candidates), start=0),
        sum((d[2] or 0 for d in window), start=0),
    ]
