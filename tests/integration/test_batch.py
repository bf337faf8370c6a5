"""Batch runs (SPEC.md §5): every row equals the single-principal report, and the set
of principals is exactly the specified one — checked on random edge-case tenants
against the independent oracle and against the single report itself."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pipeline_coverage import (
    NotFoundError,
    ValidationError,
    get_run,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from tests.factory import Crm, random_tenant
from tests.oracle import Oracle

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
Key = tuple[str, uuid.UUID, uuid.UUID | None]


def batch_rows(conn: psycopg.Connection[Any], run_id: uuid.UUID) -> dict[Key, tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT principal_type, principal_id, pipeline_id, target_amount, open_amount,"
        " coverage_ratio, period_start, period_end FROM dyno_crm.report_pipeline_coverage_fact"
        " WHERE run_id = %s",
        (run_id,),
    ).fetchall()
    conn.commit()
    keyed = {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}
    assert len(keyed) == len(rows), "one row per principal (and pipeline)"
    return keyed


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", ["all", "pipeline", "by_pipeline", "by_pipeline_filtered"])
def test_batch_matches_oracle_and_single_report(
    conn: psycopg.Connection[Any], seed: int, mode: str
) -> None:
    tenant = random_tenant(conn, seed)
    noise = random_tenant(conn, seed + 100)  # another tenant's data must not leak in
    oracle = Oracle(conn, tenant)
    pipelines = sorted(oracle.pipelines)
    pipeline = pipelines[0] if mode in ("pipeline", "by_pipeline_filtered") else None
    by_pipeline = mode.startswith("by_pipeline")

    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, pipeline, by_pipeline=by_pipeline)
    rows = batch_rows(conn, run_id)

    principals = oracle.principals(*Q1, pipeline)
    buckets: list[uuid.UUID | None] = (
        [p for p in pipelines if pipeline in (None, p)] if by_pipeline else [pipeline]
    )
    assert set(rows) == {(kind, who, b) for kind, who in principals for b in buckets}
    roster = {("USER", u) for u in oracle.active_users} | {("GROUP", g) for g in oracle.groups}
    assert principals > roster, "inactive reps and unknown principals enter through data"
    assert not any(who in Oracle(conn, noise).active_users for _, who, _ in rows)

    for (kind, who, bucket), values in rows.items():
        expected = oracle.coverage(*Q1, kind, who, bucket)
        assert values == (
            expected.target_amount,
            expected.open_amount,
            expected.coverage_ratio,
            *Q1,
        ), (kind, who, bucket)

    # And each row is what the single-principal report stores for that principal.
    for kind, who, bucket in list(rows)[:12]:
        exists = conn.execute(
            "SELECT 1 FROM dyno_crm.crm_user WHERE tenant_id = %s AND id = %s"
            " UNION ALL SELECT 1 FROM dyno_crm.crm_group WHERE tenant_id = %s AND id = %s",
            (tenant, who, tenant, who),
        ).fetchone()
        conn.commit()
        if exists is None:
            continue  # a target for a principal that does not exist has no single report
        single = run_pipeline_coverage_report(conn, tenant, *Q1, kind, who, bucket)
        assert batch_rows(conn, single) == {(kind, who, bucket): rows[(kind, who, bucket)]}


def test_batch_roster_is_active_users_and_all_groups(conn: psycopg.Connection[Any]) -> None:
    crm = Crm(conn)
    tenant = crm.tenant()
    active = crm.user(tenant, "Active")
    inactive = crm.user(tenant, "Inactive", active=False)
    team = crm.group(tenant, "Team")
    pipeline = crm.pipeline(tenant)
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1)
    assert set(batch_rows(conn, run_id)) == {("USER", active, None), ("GROUP", team, None)}

    # An inactive rep enters the run through a target or an open in-period deal.
    crm.target(tenant, "USER", inactive, *Q1, "10.00")
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1)
    assert ("USER", inactive, None) in batch_rows(conn, run_id)
    crm.deal(
        tenant,
        pipeline,
        crm.stage(tenant, pipeline),
        "5.00",
        expected=dt.date(2026, 2, 2),
        owner=inactive,
    )
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, pipeline)
    assert batch_rows(conn, run_id)[("USER", inactive, pipeline)] == (
        None,
        Decimal("5.00"),
        None,
        *Q1,
    )


def test_tenant_without_anyone_gives_an_empty_run(conn: psycopg.Connection[Any]) -> None:
    tenant = Crm(conn).tenant()
    run = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1))
    assert run.rows == ()
    assert run.parameters == {
        "mode": "batch",
        "pipeline_id": None,
        "by_pipeline": False,
        "period": None,
        "period_start": "2026-01-01",
        "period_end": "2026-04-01",
        "rollup": False,
        "target_match": "exact",
        "win_rate_lookback_days": 365,
        "as_of": dt.date.today().isoformat(),
        "currency": "USD",
        "rates": {},
        # SPEC.md §14: why its rows have no hit probability
        "calibration": {"reason": "the run's as_of is outside its quarter"}
        if not Q1[0] <= dt.date.today() < Q1[1]
        else run.parameters["calibration"],
    }


def test_batch_rejects_bad_arguments(conn: psycopg.Connection[Any]) -> None:
    tenant = Crm(conn).tenant()
    with pytest.raises(ValidationError, match="period_end"):
        run_pipeline_coverage_batch(conn, tenant, Q1[1], Q1[0])
    with pytest.raises(NotFoundError, match="tenant"):
        run_pipeline_coverage_batch(conn, uuid.uuid4(), *Q1)
    with pytest.raises(NotFoundError, match="pipeline"):
        run_pipeline_coverage_batch(conn, tenant, *Q1, uuid.uuid4())
    with pytest.raises(ValidationError, match="by_pipeline"):
        run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline="yes")  # type: ignore[arg-type]
    row = conn.execute("SELECT count(*) FROM dyno_crm.report_run").fetchone()
    assert row == (0,)


def test_a_pipeline_whose_id_is_the_nil_uuid_keeps_its_id(conn: psycopg.Connection[Any]) -> None:
    """No pipeline id is reserved: the batch must not mistake one for "all pipelines"."""
    crm = Crm(conn)
    tenant = crm.tenant()
    rep = crm.user(tenant, "Rep")
    nil = uuid.UUID(int=0)
    conn.execute("INSERT INTO dyno_crm.pipeline VALUES (%s, %s, 'Nil')", (tenant, nil))
    conn.commit()
    crm.deal(tenant, nil, crm.stage(tenant, nil), "100.00", expected=dt.date(2026, 2, 1), owner=rep)
    by_pipeline = batch_rows(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=True))
    assert by_pipeline == {("USER", rep, nil): (None, Decimal("100.00"), None, *Q1)}
    filtered = batch_rows(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, nil))
    assert filtered == {("USER", rep, nil): (None, Decimal("100.00"), None, *Q1)}
    everything = batch_rows(conn, run_pipeline_coverage_batch(conn, tenant, *Q1))
    assert everything == {("USER", rep, None): (None, Decimal("100.00"), None, *Q1)}
