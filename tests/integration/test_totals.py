"""A run's totals say what they mean: the net remaining target (reps over quota offset
reps short of it) apart from the shortfall of the reps still short, with their own
coverage; and a rep who met quota shows no gap, not minus its open pipeline. The
expected figures are added up from the oracle's rows, not from the code's."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest

from pipeline_coverage import get_run, run_pipeline_coverage_batch
from pipeline_coverage.cli import main
from pipeline_coverage.render import run_table
from tests.factory import Crm
from tests.oracle import Options, Oracle

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
AS_OF = dt.date(2026, 2, 1)
LAST_YEAR = dt.date(2025, 6, 1)


def test_totals_tell_the_net_remaining_from_the_shortfall_of_reps_still_short(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    crm = Crm(conn)
    tenant = crm.tenant("Totals")
    ann, bob, cid = (crm.user(tenant, name) for name in ("Ann", "Bob", "Cid"))
    sales = crm.pipeline(tenant)
    open_stage = crm.stage(tenant, sales, "IN_PROGRESS")
    won = crm.stage(tenant, sales, "DONE_SUCCESS")
    lost = crm.stage(tenant, sales, "DONE_FAILED")
    in_q1 = dt.date(2026, 3, 1)
    for rep, target, won_amount, open_amount in (
        (ann, "100000", "150000", "40000"),  # far over quota, with pipeline left
        (bob, "100000", "20000", "90000"),  # short: 80,000 to win, 90,000 open
        (cid, "50000", "10000", "20000"),  # short: 40,000 to win, 20,000 open
    ):
        crm.target(tenant, "USER", rep, *Q1, target)
        crm.deal(tenant, sales, won, won_amount, close=in_q1, owner=rep)
        crm.deal(tenant, sales, open_stage, open_amount, expected=in_q1, owner=rep)
        # a win rate of 0.5 from last year, so that every row has a gap
        crm.deal(tenant, sales, won, "1", close=LAST_YEAR, owner=rep)
        crm.deal(tenant, sales, lost, "1", close=LAST_YEAR, owner=rep)
    conn.commit()
    run_id = run_pipeline_coverage_batch(conn, tenant, *Q1, as_of=AS_OF)
    oracle = Oracle(conn, tenant)
    rows = {
        rep: oracle.row(Options(*Q1, as_of=AS_OF), "USER", rep, None) for rep in (ann, bob, cid)
    }

    # Ann met quota: her stored gap is SPEC.md §8's formula (minus her open pipeline),
    # and the table shows that she met it rather than a negative gap.
    assert rows[ann]["remaining_target"] == 0
    assert rows[ann]["pipeline_gap"] == Decimal("-40000.00")
    run = get_run(conn, run_id)
    table = run_table(run, ("remaining_target", "pipeline_gap"))
    names = [str(cell) for cell in table.columns[1].cells]
    gaps = [str(cell) for cell in table.columns[3].cells]
    assert gaps[names.index("Ann")] == "quota met"
    assert gaps[names.index("Bob")] == f"{rows[bob]['pipeline_gap']:,.2f}"

    def ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
        return (numerator / denominator).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)

    target = sum(r["target_amount"] for r in rows.values())
    won_total = sum(r["won_amount"] for r in rows.values())
    open_total = sum(r["open_amount"] for r in rows.values())
    short = [r for r in rows.values() if r["remaining_target"] > 0]
    shortfall = sum(r["remaining_target"] for r in short)
    short_open = sum(r["open_amount"] for r in short)
    assert (shortfall, short_open) == (Decimal("120000.00"), Decimal("110000.00"))

    assert main(["--database-url", db_url, "show", str(run_id), "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals == {
        "rows": 3,
        "rows_with_target": 3,
        "target_amount": str(target),
        "won_amount": str(won_total),
        "open_amount": str(open_total),
        "attainment_ratio": str(ratio(won_total, target)),
        # net: Ann's 50,000 over quota offsets Bob's and Cid's shortfall
        "remaining_target": str(target - won_total),
        "remaining_coverage_ratio": str(ratio(open_total, target - won_total)),
        "short_rows": 2,
        "shortfall_amount": str(shortfall),
        "short_open_amount": str(short_open),
        "shortfall_coverage_ratio": str(ratio(short_open, shortfall)),
    }
    assert (
        Decimal(totals["remaining_coverage_ratio"])
        > 1
        > Decimal(totals["shortfall_coverage_ratio"])
    )

    assert main(["--database-url", db_url, "show", str(run_id)]) == 0
    printed = capsys.readouterr().out
    assert "net remaining 70,000.00 (2.14x covered) — reps over quota offset reps short" in printed
    assert (
        "Still short: 2 rep rows with 120,000.00 USD of quota still to win, and 110,000.00"
        " open (0.92x covered)" in printed
    )


def test_within_flags_and_names_overlapping_target_rows(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fiscal year's target and its quarters' and months' all lie inside the year:
    target_match=within sums them all (SPEC.md §10), so the run says so, naming the
    rows — and the number is still SPEC.md's sum, which the oracle gives."""
    crm = Crm(conn)
    tenant = crm.tenant("Overlaps")
    ann, bob = crm.user(tenant, "Ann"), crm.user(tenant, "Bob")
    year = (dt.date(2026, 1, 1), dt.date(2027, 1, 1))
    crm.target(tenant, "USER", ann, *year, "12000000.00")
    quarters = [dt.date(2026, m, 1) for m in (1, 4, 7, 10)] + [dt.date(2027, 1, 1)]
    for start, end in itertools.pairwise(quarters[:4]):  # three of the year's quarters
        crm.target(tenant, "USER", ann, start, end, "3000000.00")
    for month in (10, 11, 12):
        end = dt.date(2026 + month // 12, month % 12 + 1, 1)
        crm.target(tenant, "USER", ann, dt.date(2026, month, 1), end, "1066666.66")
    for start, end in itertools.pairwise(quarters):  # Bob: quarters only
        crm.target(tenant, "USER", bob, start, end, "500000.00")
    conn.commit()
    ids = dict(
        conn.execute(
            "SELECT period_start || '..' || period_end || ' ' || target_amount, id"
            " FROM dyno_crm.sales_target WHERE tenant_id = %s AND principal_id = %s",
            (tenant, ann),
        ).fetchall()
    )
    conn.commit()

    assert (
        main(["--database-url", db_url, "run", "--tenant", str(tenant), "--all",
              "--period-start", "2026-01-01", "--period-end", "2027-01-01",
              "--target-match", "within", "--as-of", "2026-02-01", "--format", "json"])
        == 0
    )  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    rows = {row["principal_name"]: row for row in document["rows"]}
    options = Options(*year, as_of=AS_OF, target_match="within")
    oracle = Oracle(conn, tenant)
    for who, name in ((ann, "Ann"), (bob, "Bob")):
        assert (
            Decimal(rows[name]["target_amount"])
            == oracle.row(options, "USER", who, None)["target_amount"]
        )
    assert rows["Ann"]["target_amount"] == "24199999.98"  # the year, three quarters, 3 months
    assert rows["Ann"]["flags"] == ["TARGET_OVERLAP"]
    assert rows["Bob"]["flags"] == []  # four quarters: no overlap
    [overlap] = [item for item in document["exclusions"] if item["flag"] == "TARGET_OVERLAP"]
    assert overlap["count"] == 1
    message = overlap["message"]
    # every overlapping row of Ann's is named (all seven: each overlaps the year's)
    assert all(f"{label} {target}" in message for label, target in ids.items())
    assert message.startswith("1 row adds up target rows whose periods overlap")

    # The table's note says the same, on one line.
    run_id = document["run_id"]
    assert main(["--database-url", db_url, "show", run_id]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "overlap" in line]
    assert len(notes) == 1
    assert notes[0].startswith("Note: 1 row adds up target rows whose periods overlap")

    # With exact matching nothing is summed twice, and nothing is flagged.
    exact = run_pipeline_coverage_batch(conn, tenant, *year, as_of=AS_OF)
    assert all(not row.flags for row in get_run(conn, exact).rows if row.principal_id == ann)
