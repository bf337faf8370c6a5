"""Every metric, flag, drill-down row and principal of a run (SPEC.md §7, §8, §10),
compared with the independent oracle on random edge-case tenants, for single runs,
batches, by-pipeline batches, target_match=within, an as_of inside and after the
period, and teams rolled up over their members and subgroups."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pipeline_coverage import (
    get_run,
    run_deals,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.metrics import NAMES, ROW_FLAGS
from pipeline_coverage.reports import coverage as coverage_module
from pipeline_coverage.reports.coverage import coverage_request, run_coverage
from pipeline_coverage.sql import query
from pipeline_coverage.store import CoverageRow
from tests.factory import Crm, random_tenant
from tests.oracle import Options, Oracle

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
INSIDE = dt.date(2026, 2, 10)  # inside the period, a day some deals close on: past due is "before"
AFTER = dt.date(2026, 6, 1)  # after it: every open deal of the period is past due


def compare_row(oracle: Oracle, options: Options, row: CoverageRow) -> None:
    expected = oracle.row(options, row.principal_type, row.principal_id, row.pipeline_id)
    found = {name: row.values[name] for name in NAMES}
    wanted = {name: expected[name] for name in NAMES}
    assert found == wanted, (row.principal_type, row.principal_id, row.pipeline_id)
    assert list(row.flags) == expected["flags"]


def compare_drilldown(
    conn: psycopg.Connection[Any],
    oracle: Oracle,
    options: Options,
    run_id: uuid.UUID,
    principal: tuple[str, uuid.UUID] | None = None,
) -> None:
    deals = run_deals(conn, run_id)
    found: dict[tuple[str, uuid.UUID, uuid.UUID | None], dict[uuid.UUID, tuple[str, str]]] = {}
    by_id = {deal.id: deal for deal in oracle.all_deals}
    for deal in deals:
        key = (deal.principal_type, deal.principal_id, deal.pipeline_id)
        assert deal.deal_id not in found.get(key, {}), "a deal twice in one row"
        found.setdefault(key, {})[deal.deal_id] = (deal.deal_class, deal.credit_reason)
        source = by_id[deal.deal_id]
        assert set(deal.flags) == oracle.deal_flags(source, options), deal
        assert deal.forecast_category == oracle.forecast_category(source, options), deal
        assert deal.amount == source.amount
        assert deal.currency == (source.currency or oracle.currency)
        assert deal.reporting_amount == oracle.reporting(source, options.as_of)
        assert deal.deal_pipeline_id == source.pipeline_id
        assert deal.stage_id == source.stage_id
    assert found == oracle.drilldown(options, principal)


def options_for(mode: str) -> Options:
    if mode.startswith("rollup"):
        return Options(*Q1, as_of=INSIDE, rollup=True)
    if mode == "within":
        return Options(*Q1, target_match="within", as_of=INSIDE)
    if mode == "after":
        return Options(*Q1, as_of=AFTER, lookback_days=90)
    return Options(*Q1, as_of=INSIDE)


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize(
    "mode",
    ["plain", "within", "after", "pipeline", "by_pipeline", "rollup", "rollup_by_pipeline"],
)
def test_batch_matches_the_oracle_in_every_column(
    conn: psycopg.Connection[Any], seed: int, mode: str
) -> None:
    tenant = random_tenant(conn, seed)
    random_tenant(conn, seed + 100)  # another tenant's data must not leak in
    oracle = Oracle(conn, tenant)
    base = options_for(mode)
    pipeline = sorted(oracle.pipelines)[0] if mode == "pipeline" else None
    options = Options(
        base.start,
        base.end,
        pipeline,
        by_pipeline=mode.endswith("by_pipeline"),
        as_of=base.as_of,
        target_match=base.target_match,
        lookback_days=base.lookback_days,
        rollup=mode.startswith("rollup"),
    )
    request = coverage_request(
        tenant,
        *Q1,
        pipeline_id=pipeline,
        by_pipeline=options.by_pipeline,
        rollup=options.rollup,
        as_of=options.as_of,
        target_match=options.target_match,
        win_rate_lookback_days=options.lookback_days,
    )
    run = get_run(conn, run_coverage(conn, request).run_id)

    keys = {(row.principal_type, row.principal_id, row.pipeline_id) for row in run.rows}
    assert len(keys) == len(run.rows), "one row per principal and bucket"
    expected_keys = {
        (kind, who, bucket)
        for kind, who in oracle.run_principals(options)
        for bucket in oracle.buckets(options)
    }
    assert keys == expected_keys
    for row in run.rows:
        compare_row(oracle, options, row)
    compare_drilldown(conn, oracle, options, run.run_id)

    # The run exercises what it claims to: these columns are not all zero.
    for name in ("won_count", "lost_count", "undated_count", "open_count", "history_won_count"):
        assert any(row.values[name] for row in run.rows), name
    reasons = {deal.credit_reason for deal in run_deals(conn, run.run_id)}
    if options.rollup:
        assert {"MEMBER", "SUBGROUP"} <= reasons
        assert any(row.values["member_target_amount"] is not None for row in run.rows)
    else:
        assert not {"MEMBER", "SUBGROUP"} & reasons
        assert all(row.values["member_target_amount"] is None for row in run.rows)
    if mode != "pipeline":
        assert any(row.values["past_due_count"] for row in run.rows)
        assert any(row.flags for row in run.rows) or mode == "within"

    # The exclusions report counts the flagged deals of the run's scope — credited to
    # a row or not (a deal without any owner is still an undated deal of the tenant).
    flagged: Counter[str] = Counter()
    for deal in oracle.all_deals:
        if oracle.deal_class(deal, options) in ("OPEN", "WON", "LOST", "UNDATED"):
            flagged.update(oracle.deal_flags(deal, options))
    for row_flag in ROW_FLAGS:  # (each row's flags are the oracle's: compare_row)
        if rows_flagged := sum(row_flag in row.flags for row in run.rows):
            flagged[row_flag] = rows_flagged
    assert {item.flag: item.count for item in run.exclusions} == dict(flagged)


@pytest.mark.parametrize("seed", [21, 22])
@pytest.mark.parametrize("mode", ["plain", "within", "after", "rollup"])
def test_single_runs_match_the_oracle_in_every_column(
    conn: psycopg.Connection[Any], seed: int, mode: str
) -> None:
    tenant = random_tenant(conn, seed)
    oracle = Oracle(conn, tenant)
    options = options_for(mode)
    principals = sorted(
        [("USER", u) for u in oracle.active_users] + [("GROUP", g) for g in oracle.groups]
    )
    if options.rollup:  # every team, and some reps (whom rollup leaves as they are)
        principals = [("GROUP", g) for g in sorted(oracle.groups)] + principals[:6:2]
    else:
        principals = principals[::2]
    for kind, who in principals:
        request = coverage_request(
            tenant, *Q1, kind, who, as_of=options.as_of, target_match=options.target_match,
            win_rate_lookback_days=options.lookback_days, rollup=options.rollup,
        )  # fmt: skip
        run = get_run(conn, run_coverage(conn, request).run_id)
        [row] = run.rows
        assert (row.principal_type, row.principal_id, row.pipeline_id) == (kind, who, None)
        compare_row(oracle, options, row)
        compare_drilldown(conn, oracle, options, run.run_id, (kind, who))


# --- the cases the metrics exist for -------------------------------------------------


def test_a_rep_past_the_target_shows_attainment_and_no_remaining_quota(
    conn: psycopg.Connection[Any],
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant()
    rep = crm.user(tenant, "Closer")
    pipeline = crm.pipeline(tenant)
    won = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    lost = crm.stage(tenant, pipeline, "DONE_FAILED")
    open_stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    crm.target(tenant, "USER", rep, *Q1, "80000.00")
    crm.deal(tenant, pipeline, won, "89577.00", close=dt.date(2026, 2, 1), owner=rep)
    crm.deal(tenant, pipeline, lost, "1000.00", close=dt.date(2026, 3, 1), owner=rep)
    crm.deal(tenant, pipeline, open_stage, "62400.00", expected=dt.date(2026, 3, 3), owner=rep)
    # A year of history: 3 won, 1 lost.
    for day, stage in ((10, won), (40, won), (70, won), (100, lost)):
        crm.deal(tenant, pipeline, stage, "1.00", close=Q1[0] - dt.timedelta(days=day), owner=rep)

    [row] = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1)).rows
    assert row.coverage_ratio == Decimal("0.7800")  # the seed's number: red, misleading
    assert row["won_amount"] == Decimal("89577.00")
    assert row["attainment_ratio"] == Decimal("1.1197")
    assert row["remaining_target"] == Decimal("0.00")
    assert row["remaining_coverage_ratio"] is None  # quota met: nothing left to cover
    assert row["win_rate"] == Decimal("0.7500")
    assert row["needed_coverage"] == Decimal("1.3333")
    assert row["pipeline_gap"] == Decimal("-62400.00")  # a surplus
    assert (row["won_count"], row["lost_count"], row["open_count"]) == (1, 1, 1)


def test_undated_deals_are_reported_and_never_counted(conn: psycopg.Connection[Any]) -> None:
    crm = Crm(conn)
    tenant = crm.tenant()
    rep = crm.user(tenant, "Rep")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    crm.deal(tenant, pipeline, stage, "700.00", owner=rep)
    crm.deal(tenant, pipeline, stage, "300.00", owner=rep)
    crm.deal(tenant, pipeline, stage, "5.00", expected=dt.date(2026, 2, 1), owner=rep)
    run = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=Q1[0]))
    [row] = run.rows
    assert row.open_amount == Decimal("5.00")
    assert (row["undated_amount"], row["undated_count"]) == (Decimal("1000.00"), 2)
    [undated] = [item for item in run.exclusions if item.flag == "UNDATED"]
    assert (undated.count, undated.amount) == (2, Decimal("1000.00"))
    assert undated.describe("USD") == (
        "2 open deals worth 1,000.00 USD have no close date and count in no period"
    )


def test_a_target_of_another_period_is_flagged_not_silently_ignored(
    conn: psycopg.Connection[Any],
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant()
    rep = crm.user(tenant, "Rep")
    crm.target(tenant, "USER", rep, dt.date(2026, 1, 1), dt.date(2026, 2, 1), "100.00")
    crm.target(tenant, "USER", rep, dt.date(2026, 2, 1), dt.date(2026, 3, 1), "200.00")
    exact = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1))
    [row] = exact.rows
    assert row.target_amount is None
    assert row.flags == ("TARGET_PERIOD_MISMATCH",)
    assert [item.flag for item in exact.exclusions] == ["TARGET_PERIOD_MISMATCH"]
    within = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, target_match="within"))
    [row] = within.rows
    assert row.target_amount == Decimal("300.00")
    assert row.flags == ()


def test_a_run_keeps_the_names_of_its_time(conn: psycopg.Connection[Any]) -> None:
    crm = Crm(conn)
    tenant = crm.tenant()
    rep = crm.user(tenant, "Old Name")
    pipeline = crm.pipeline(tenant, "Old Pipeline")
    stage = crm.stage(tenant, pipeline, name="Old Stage")
    crm.deal(tenant, pipeline, stage, "1.00", expected=dt.date(2026, 2, 1), owner=rep)
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, by_pipeline=True)
    conn.execute("UPDATE dyno_crm.crm_user SET name = 'New Name' WHERE id = %s", (rep,))
    conn.execute("UPDATE dyno_crm.pipeline SET name = 'New Pipeline' WHERE id = %s", (pipeline,))
    conn.execute("UPDATE dyno_crm.pipeline_stage SET name = 'New Stage' WHERE id = %s", (stage,))
    conn.commit()
    [row] = get_run(conn, run_id).rows
    assert (row.principal_name, row.pipeline_name) == ("Old Name", "Old Pipeline")
    [deal] = run_deals(conn, run_id)
    assert (deal.pipeline_name, deal.stage_name) == ("Old Pipeline", "Old Stage")


def test_deleting_runs_deletes_their_drilldown(conn: psycopg.Connection[Any]) -> None:
    tenant = random_tenant(conn, 31)
    kept = random_tenant(conn, 32)
    run_pipeline_coverage_batch(conn, tenant, *Q1)
    other = run_pipeline_coverage_batch(conn, kept, *Q1)

    def drilldown_rows() -> tuple[int, int]:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM dyno_crm.report_run_deals),"
            " (SELECT count(*) FROM dyno_crm.report_run_credit)"
        ).fetchone()
        conn.commit()
        assert row is not None
        return int(row[0]), int(row[1])

    both = drilldown_rows()
    assert both[0] > 0
    assert both[1] > 0
    # A tenant deleted: its runs cascade, and their drill-down goes with them.
    conn.execute("DELETE FROM dyno_crm.tenant WHERE id = %s", (tenant,))
    conn.commit()
    alone = drilldown_rows()
    assert 0 < alone[0] < both[0]
    assert len(run_deals(conn, other)) > 0
    conn.execute("DELETE FROM dyno_crm.report_run")
    conn.commit()
    assert drilldown_rows() == (0, 0)


def test_foreign_currencies_convert_at_the_rate_in_force_and_are_frozen(
    conn: psycopg.Connection[Any],
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant()
    rep = crm.user(tenant, "Rep")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    usd = crm.deal(tenant, pipeline, stage, "100.00", expected=dt.date(2026, 2, 1), owner=rep)
    eur = crm.deal(tenant, pipeline, stage, "100.00", expected=dt.date(2026, 2, 2), owner=rep)
    yen = crm.deal(tenant, pipeline, stage, "999.00", expected=dt.date(2026, 2, 3), owner=rep)
    conn.execute("UPDATE dyno_crm.deal SET currency = 'EUR' WHERE id = %s", (eur,))
    conn.execute("UPDATE dyno_crm.deal SET currency = 'JPY' WHERE id = %s", (yen,))
    conn.execute(
        "INSERT INTO dyno_crm.exchange_rate VALUES (%s, 'EUR', '2025-01-01', 1.5),"
        " (%s, 'EUR', '2026-03-01', 2.0)",
        (tenant, tenant),
    )
    conn.commit()
    crm.target(tenant, "USER", rep, *Q1, "1000.00")

    before_march = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, as_of="2026-02-15"))
    [row] = before_march.rows
    assert row.open_amount == Decimal("250.00")  # 100 USD + 100 EUR x 1.5; JPY left out
    assert row["open_count"] == 2
    assert before_march.parameters["rates"] == {"EUR": "1.50000000"}
    [no_rate] = [item for item in before_march.exclusions if item.flag == "NO_RATE"]
    assert no_rate.count == 1
    deals = {deal.deal_id: deal for deal in run_deals(conn, before_march.run_id)}
    assert deals[yen].reporting_amount is None
    assert "NO_RATE" in deals[yen].flags
    assert (deals[eur].amount, deals[eur].currency, deals[eur].reporting_amount) == (
        Decimal("100.00"), "EUR", Decimal("150.00"))  # fmt: skip
    assert deals[usd].reporting_amount == Decimal("100.00")

    # The rate in force on as_of: a later run as of March takes the new rate; the
    # stored run keeps the one it used.
    [later] = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, as_of="2026-03-15")).rows
    assert later.open_amount == Decimal("300.00")
    [again] = get_run(conn, before_march.run_id).rows
    assert again.open_amount == Decimal("250.00")


def test_a_rep_whose_only_deals_have_no_rate_keeps_a_row_with_them(
    conn: psycopg.Connection[Any],
) -> None:
    """SPEC.md §5 and §9: a deal without a rate in force is in no amount, but it is the
    rep's open deal of the period: the batch lists the (inactive, target-less) rep, as
    its single report shows it, with the deals in the row's drill-down; the exclusions
    report does not count them into an amount."""
    crm = Crm(conn)
    tenant = crm.tenant()
    gone = crm.user(tenant, "Gone", active=False)
    rep = crm.user(tenant, "Rep")
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    yen = crm.deal(tenant, pipeline, stage, "1000.00", expected=dt.date(2026, 1, 5), owner=gone)
    crm.deal(tenant, pipeline, stage, "40.00", expected=dt.date(2026, 1, 6), owner=rep)
    conn.execute("UPDATE dyno_crm.deal SET currency = 'JPY' WHERE id = %s", (yen,))
    conn.commit()

    run = get_run(conn, run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=INSIDE))
    rows = {row.principal_id: row for row in run.rows}
    assert set(rows) == {gone, rep}
    assert (rows[gone].open_amount, rows[gone]["open_count"], rows[gone]["past_due_count"]) == (
        Decimal("0.00"), 0, 0)  # fmt: skip
    [deal] = run_deals(conn, run.run_id, principal_type="USER", principal_id=gone)
    assert (deal.deal_id, deal.reporting_amount) == (yen, None)
    assert {"NO_RATE", "PAST_DUE"} <= set(deal.flags)
    single = get_run(
        conn,
        run_pipeline_coverage_report(conn, tenant, *Q1, "USER", gone, as_of=INSIDE),
    )
    [alone] = single.rows
    assert alone.values == rows[gone].values
    assert [d.deal_id for d in run_deals(conn, single.run_id)] == [yen]

    report = {item.flag: item for item in run.exclusions}
    past_due = report["PAST_DUE"]
    assert (past_due.count, past_due.no_rate, past_due.amount) == (2, 1, Decimal("40.00"))
    assert past_due.describe("USD") == (
        "1 open deal worth 40.00 USD is past its close date and still counts as open;"
        " 1 more has no exchange rate in force and is left out"
    )
    [only] = [item for item in single.exclusions if item.flag == "PAST_DUE"]
    assert (only.count, only.no_rate, only.amount) == (1, 1, None)
    assert only.describe("USD") == (
        "1 open deal is past its close date but has no exchange rate in force and is left out"
    )


@pytest.mark.parametrize(
    "mode", ["batch", "single", "by_pipeline", "single_group", "single_group_rollup"]
)
def test_a_specialized_run_statement_gives_what_the_whole_one_gives(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Runs send the statement without the parts their values fold away (rollup's
    without rollup, the batch's for one principal, the other principal kind's): it plans
    faster, and a single report's runs on a generic plan. The whole statement, as
    written, must store exactly the same run."""
    tenant = random_tenant(conn, 31)
    oracle = Oracle(conn, tenant)
    kind, principal = None, None
    if mode == "single":
        kind, principal = "USER", sorted(oracle.active_users)[0]
    elif mode.startswith("single_group"):
        kind, principal = "GROUP", sorted(oracle.groups)[0]
    request = coverage_request(
        tenant, *Q1, kind, principal, by_pipeline=mode == "by_pipeline", as_of=INSIDE,
        rollup=mode == "single_group_rollup",
    )  # fmt: skip
    specialized = get_run(conn, run_coverage(conn, request).run_id)
    monkeypatch.setattr(
        coverage_module, "specialized_query", lambda file, name, **flags: query(file, name)
    )
    whole = get_run(conn, run_coverage(conn, request).run_id)

    def rows(run: Any) -> list[tuple[Any, ...]]:
        return sorted(
            (r.principal_type, str(r.principal_id), str(r.pipeline_id),
             tuple(sorted(r.values.items())), tuple(r.flags))
            for r in run.rows
        )  # fmt: skip

    def deals(run: Any) -> list[tuple[Any, ...]]:
        return sorted(
            (d.principal_type, str(d.principal_id), str(d.pipeline_id), str(d.deal_id),
             d.credit_reason, d.deal_class, d.reporting_amount)
            for d in run_deals(conn, run.run_id)
        )  # fmt: skip

    assert rows(specialized)
    assert rows(specialized) == rows(whole)
    assert deals(specialized)
    assert deals(specialized) == deals(whole)
