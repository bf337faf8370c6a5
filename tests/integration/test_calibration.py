"""Coverage calibration (SPEC.md §14) on PostgreSQL: the fit recovers a known truth
from a synthetic history (tests/calibration_world.py), beats the 3x rule in its
backtest, reaches every row of a run as hit_probability (checked against the stored
fit, recomputed here), says why when the tenant has too few quarters, and never reads
another tenant's runs."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage import get_run, run_pipeline_coverage_batch
from pipeline_coverage.calibration import MIN_EACH_OUTCOME, MIN_QUARTERS, calibrate
from pipeline_coverage.cli import main
from tests.calibration_world import Truth, quarter_starts, write_history
from tests.factory import Crm
from tests.worlds import Q1, World

#: Eight quarters before Q1 2026, and a run of Q1 2026 in its week 6.
PAST = quarter_starts(dt.date(2024, 1, 1), 8)
AS_OF = dt.date(2026, 1, 5)
WEEK_6 = dt.date(2026, 2, 10)
#: The fitted coverages at 50% and 80% are within this much of the truth (relative): with
#: 1,200 observations a week the fit's own standard error on them is about 3%, so 10%
#: is a failure only when the fit is wrong, not when the draw is unlucky.
TOLERANCE = 0.10


def principals(count: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=n + 1) for n in range(count)]


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_fit_recovers_the_known_truth_and_beats_the_3x_rule(
    conn: psycopg.Connection[Any],
) -> None:
    tenant = Crm(conn).tenant("Known truth")
    conn.commit()
    truth = Truth()
    written = write_history(conn, tenant, principals(150), PAST, truth)
    found = calibrate(conn, tenant, as_of=AS_OF)

    assert found.reason is None
    assert len(found.quarters_used) == 8
    for report in found.weeks:
        seen = [hit for _, week, _, _, hit in written if week == report.week]
        assert report.observations == len(seen) == 1200
        assert report.hits == sum(seen)
        fit = report.fit
        assert fit.fitted, fit.reason
        assert (fit.first_week, fit.last_week) == (report.week, report.week)  # none pooled
        for probability, fitted in ((0.5, fit.coverage_50), (0.8, fit.coverage_80)):
            expected = truth.coverage_at(probability, report.week)
            assert fitted is not None
            assert abs(float(fitted) / expected - 1) < TOLERANCE, (report.week, probability)
        # The hit rate at 3x or more, counted here from what was written.
        at_rule = [hit for _, week, _, c, hit in written if week == report.week and c >= 3]
        assert report.at_rule == len(at_rule)
        assert report.at_rule_hits == sum(at_rule)
        # The backtest, week by week: the calibration beats the 3x rule and the base rate.
        b = report.backtest
        assert b.scored == 1200
        assert b.calibrated is not None
        assert b.rule is not None
        assert b.base_rate is not None
        assert b.calibrated < b.rule
        assert b.calibrated < b.base_rate

    # The 3x rule's Brier score is its error rate as 0/1: recomputed from the rows.
    rule_errors = sum((c >= 3) != hit for *_, c, hit in written)
    assert found.backtest.rule == pytest.approx(rule_errors / len(written))
    assert found.backtest.calibrated is not None
    assert found.backtest.rule is not None
    assert found.backtest.calibrated < found.backtest.rule


def expit(value: float) -> float:
    return 1 / (1 + math.exp(-value))


def test_a_run_carries_the_hit_probability_of_its_week(
    conn: psycopg.Connection[Any], world: World, api: httpx.Client
) -> None:
    crm = Crm(conn)
    pipeline, stage = world.sales, crm.stage(world.tenant, world.sales, "IN_PROGRESS")
    # Dee: 10,000 to go and 24,000 open (2.4x); Eli: 5,000 to go, nothing open (0x).
    dee, eli = crm.user(world.tenant, "Dee"), crm.user(world.tenant, "Eli")
    crm.target(world.tenant, "USER", dee, *Q1, "10000")
    crm.target(world.tenant, "USER", eli, *Q1, "5000")
    crm.deal(world.tenant, pipeline, stage, "24000", dt.date(2026, 3, 1), owner=dee)
    conn.commit()
    write_history(conn, world.tenant, principals(150), PAST)
    calibrate(conn, world.tenant, as_of=AS_OF)

    run_id = run_pipeline_coverage_batch(conn, world.tenant, *Q1, as_of=WEEK_6)
    run = get_run(conn, run_id)
    assert run.parameters["calibration"]["week"] == 6
    [stored] = conn.execute(
        "SELECT row_to_json(cf) FROM dyno_crm.calibration_fit AS cf"
        " WHERE tenant_id = %s AND principal_type = 'USER' AND week = 6",
        (world.tenant,),
    ).fetchone() or [None]
    assert stored is not None
    assert stored["reason"] is None
    rows = {row.principal_id: row for row in run.rows}
    for who, coverage in ((dee, 2.4), (eli, 0.05)):  # (0x is fitted as the floor, 0.05x)
        row = rows[who]
        assert row["remaining_coverage_ratio"] == Decimal(str(coverage if who == dee else 0))
        x = math.log(coverage)
        eta = stored["intercept"] + stored["slope"] * x
        se = math.sqrt(
            stored["var_intercept"] + 2 * x * stored["covariance"] + x * x * stored["var_slope"]
        )
        for metric, value in (
            ("hit_probability", expit(eta)),
            ("hit_probability_low", expit(eta - 1.959964 * se)),
            ("hit_probability_high", expit(eta + 1.959964 * se)),
        ):
            found = row[metric]
            assert isinstance(found, Decimal), metric
            assert abs(float(found) - value) <= 0.00005 + 1e-9, (metric, found, value)
        low, mid, high = (row[m] for m in ("hit_probability_low", "hit_probability",
                                           "hit_probability_high"))  # fmt: skip
        assert low is not None
        assert mid is not None
        assert high is not None
        assert low <= mid <= high
        assert low < high or mid == 0
    # Ann made her number: no chance to fit (her row says quota met); the team has no
    # GROUP fit: none either, and the run says why.
    assert rows[world.ann]["hit_probability"] is None
    assert rows[world.team]["hit_probability"] is None
    assert "not calibrated yet" in run.parameters["calibration"]["GROUP"]["reason"]
    assert run.parameters["calibration"]["USER"]["coverage_80"] == str(stored["coverage_80"])

    # The API: the field on every row, and the sentence the dashboard shows.
    body = api.get(f"/v1/coverage-runs/{run_id}", headers=world.auth).json()
    by_id = {row["principal_id"]: row for row in body["rows"]}
    assert by_id[str(dee)]["hit_probability"] == str(rows[dee]["hit_probability"])
    assert by_id[str(world.ann)]["hit_probability"] is None
    notes = body["run"]["calibration_notes"]
    assert notes["USER"].startswith(f"needs {Decimal(str(stored['coverage_80'])):.1f}x at week 6")
    assert notes["GROUP"].startswith("no hit probability: not calibrated yet")


def test_too_few_quarters_leave_every_row_without_a_probability_and_say_why(
    conn: psycopg.Connection[Any],
    world: World,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    write_history(conn, world.tenant, principals(150), PAST[-3:])  # three quarters
    # A fourth quarter without a closing run is no outcome yet.
    write_history(conn, world.tenant, principals(150), PAST[-4:-3], closing=False)
    found = calibrate(conn, world.tenant, as_of=AS_OF)
    assert found.reason is not None
    assert f"needs {MIN_QUARTERS}" in found.reason
    assert found.quarters_used == ("2025-Q2", "2025-Q3", "2025-Q4")
    assert found.quarters_without_outcome[-1] == "2025-Q1"
    assert all(not report.fit.fitted for report in found.weeks)

    run_id = run_pipeline_coverage_batch(conn, world.tenant, *Q1, as_of=WEEK_6)
    run = get_run(conn, run_id)
    assert all(row["hit_probability"] is None for row in run.rows)
    assert f"needs {MIN_QUARTERS}" in run.parameters["calibration"]["USER"]["reason"]

    code, out, _ = cli(capsys, db_url, "show", str(run_id))
    assert code == 0
    assert "Hit probability · Reps: no hit probability: 3 past quarters with an outcome;" in out
    code, out, _ = cli(
        capsys, db_url, "calibration", "--tenant", world.name, "--as-of", "2026-01-05"
    )
    assert code == 0
    assert "Without an outcome (no run of the quarter as of its end or later): 2024-Q1," in out
    assert "2024-Q4, 2025-Q1\n" in out
    assert f"calibration needs {MIN_QUARTERS}" in out


def test_a_thin_week_borrows_its_neighbours(conn: psycopg.Connection[Any]) -> None:
    """With few principals, a week alone has fewer than MIN_EACH_OUTCOME of an outcome;
    pooling weeks either side reaches it, and the fit says which weeks it pooled."""
    tenant = Crm(conn).tenant("Thin")
    conn.commit()
    write_history(conn, tenant, principals(2), PAST)  # 16 observations a week
    found = calibrate(conn, tenant, as_of=AS_OF)
    assert any(report.fit.fitted for report in found.weeks)
    for report in found.weeks:
        fit = report.fit
        if fit.fitted:
            assert min(fit.hits, fit.observations - fit.hits) >= MIN_EACH_OUTCOME
            assert fit.observations > report.observations  # borrowed
            assert fit.first_week < report.week or fit.last_week > report.week
        else:
            assert fit.reason is not None
            assert f"needs {MIN_EACH_OUTCOME} of each" in fit.reason


def test_other_tenants_runs_never_leak_in(
    conn: psycopg.Connection[Any], world: World, other: World
) -> None:
    write_history(conn, other.tenant, principals(150), PAST)
    mine = calibrate(conn, world.tenant, as_of=AS_OF)
    assert mine.quarters_used == ()
    assert all(report.observations == 0 for report in mine.weeks)
    theirs = calibrate(conn, other.tenant, as_of=AS_OF)
    assert theirs.reason is None
    # Their fits are theirs: my run has no probability, theirs has.
    mine_run = get_run(conn, run_pipeline_coverage_batch(conn, world.tenant, *Q1, as_of=WEEK_6))
    assert all(row["hit_probability"] is None for row in mine_run.rows)
    assert conn.execute(
        "SELECT count(*) FROM dyno_crm.calibration_fit WHERE tenant_id = %s AND reason IS NULL",
        (world.tenant,),
    ).fetchone() == (0,)


def test_runs_of_other_options_or_scopes_are_not_observations(
    conn: psycopg.Connection[Any],
) -> None:
    """Only batch runs of every pipeline made with the tenant's default roll-up and
    target matching are observations: the same history made with roll-up on, or for
    one pipeline, is not read."""
    tenant = Crm(conn).tenant("Options")
    conn.commit()
    write_history(conn, tenant, principals(150), PAST, rollup=True)
    write_history(conn, tenant, principals(150), PAST, pipeline_id=str(uuid.uuid4()))
    assert calibrate(conn, tenant, as_of=AS_OF).quarters_used == ()


def test_cli_output_and_exit_codes(
    conn: psycopg.Connection[Any],
    world: World,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    write_history(conn, world.tenant, principals(150), PAST)
    code, out, err = cli(
        capsys, db_url, "calibration", "--tenant", world.name, "--as-of", "2026-01-05",
        "--format", "json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["quarters_used"][0] == "2024-Q1"
    assert len(document["weeks"]) == 13
    assert document["minimum"]["quarters"] == MIN_QUARTERS
    week_6 = document["weeks"][5]
    assert Decimal(week_6["coverage_80"]) > Decimal(week_6["coverage_50"]) > 0
    assert float(document["backtest"]["calibrated"]) < float(document["backtest"]["rule_3x"])

    code, out, _ = cli(capsys, db_url, "calibration", "--tenant", world.name, "--format", "csv",
                       "--as-of", "2026-01-05", "--dry-run")  # fmt: skip
    assert code == 0
    assert out.splitlines()[0].startswith("week,observations,hits,hit_rate,pooled_weeks")
    assert len(out.splitlines()) == 14

    for args, message in (
        (("--quarters", "0"), "--quarters"),
        (("--type", "TEAM"), "--type"),
        (("--as-of", "2026-13-01"), "--as-of"),
    ):
        code, out, err = cli(capsys, db_url, "calibration", "--tenant", world.name, *args)
        assert code == 2, args
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert message in err, err
    code, _, err = cli(capsys, db_url, "calibration", "--tenant", "No such tenant")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
