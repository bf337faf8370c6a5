"""Scheduled snapshots (``snapshot``): this and next fiscal quarter per tenant, once a
day, a failing tenant reported while the others go on — on a real PostgreSQL, with
the periods checked against a calendar built month by month here."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline_coverage import NotFoundError
from pipeline_coverage.cli import main
from pipeline_coverage.reports.snapshot import snapshot_key, take_snapshots
from pipeline_coverage.tenants import SEED_DEFAULTS
from tests.factory import Crm, stored_runs
from tests.oracle import Options, Oracle

DAY = dt.date(2026, 2, 14)
PREFIX = "pipeline-coverage: error:"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PIPELINE_COVERAGE_DATA_DIR", str(tmp_path / "embedded"))


def next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def expected_quarters(day: dt.date, start_month: int) -> list[tuple[str, dt.date, dt.date]]:
    """This and next fiscal quarter of ``day``, independently: walk back month by month
    to a quarter's first month (3, 6 or 9 months from the start month, or it), then
    forward three months at a time; the fiscal year is named by the year it ends in."""
    first = dt.date(day.year, day.month, 1)
    while (first.month - start_month) % 3:
        first = dt.date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    found = []
    for _ in range(2):
        end = first
        for _ in range(3):
            end = next_month(end)
        year_start = first
        while year_start.month != start_month:
            year_start = dt.date(
                year_start.year - (year_start.month == 1), (year_start.month - 2) % 12 + 1, 1
            )
        year_end = year_start
        for _ in range(12):
            year_end = next_month(year_end)
        last_day = year_end - dt.timedelta(days=1)
        quarter = 1 + ((first.year - year_start.year) * 12 + first.month - year_start.month) // 3
        # (A January year names its quarters as the calendar does: 2026-Q1.)
        name = f"{first.year}-Q{quarter}" if start_month == 1 else f"FY{last_day.year}-Q{quarter}"
        found.append((name, first, end))
        first = end
    return found


def small_tenant(conn: psycopg.Connection[Any], name: str, start_month: int = 1) -> uuid.UUID:
    """A tenant with a rep, a team, a target and deals in and around the quarters of DAY."""
    crm = Crm(conn)
    tenant = crm.tenant(name)
    conn.execute(
        "UPDATE dyno_crm.tenant SET fiscal_year_start_month = %s WHERE id = %s",
        (start_month, tenant),
    )
    conn.commit()
    rep = crm.user(tenant, f"{name} Rep")
    team = crm.group(tenant, f"{name} Team")
    crm.member(tenant, team, rep)
    sales = crm.pipeline(tenant, f"{name} Sales")
    open_stage = crm.stage(tenant, sales, "IN_PROGRESS")
    won = crm.stage(tenant, sales, "DONE_SUCCESS")
    for offset, amount in ((-40, "100"), (0, "250.50"), (30, "400"), (75, "999.99"), (120, "50")):
        crm.deal(tenant, sales, open_stage, amount, DAY + dt.timedelta(days=offset), owner=rep)
    crm.deal(tenant, sales, won, "700", close=DAY, owner=rep, owner_group=team)
    for label, start, end in expected_quarters(DAY, start_month):
        crm.target(tenant, "USER", rep, start, end, "1000" if label.endswith("1") else "800")
    return tenant


def runs_of(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, period_start, period_end, parameters FROM dyno_crm.report_run"
        " WHERE tenant_id = %s ORDER BY generated_at, id",
        (tenant,),
    ).fetchall()
    conn.commit()
    return [{"id": r[0], "start": r[1], "end": r[2], "parameters": r[3]} for r in rows]


def test_the_same_day_twice_makes_no_new_run(conn: psycopg.Connection[Any]) -> None:
    tenant = small_tenant(conn, "Acme")
    first = take_snapshots(conn, as_of=DAY)
    assert [one.status for one in first] == ["created", "created"]
    assert stored_runs(conn)[0] == 2
    again = take_snapshots(conn, as_of=DAY)
    assert [one.status for one in again] == ["replayed", "replayed"]
    assert [one.run_id for one in again] == [one.run_id for one in first]
    assert stored_runs(conn)[0] == 2
    stored = runs_of(conn, tenant)
    assert {row["id"] for row in stored} == {one.run_id for one in first}
    for row in stored:
        assert row["parameters"]["mode"] == "batch"
        assert row["parameters"]["as_of"] == DAY.isoformat()
    # By pipeline is another request: its own runs, once a day too.
    by_pipeline = take_snapshots(conn, as_of=DAY, by_pipeline=True)
    assert [one.status for one in by_pipeline] == ["created", "created"]
    assert take_snapshots(conn, as_of=DAY, by_pipeline=True)[0].replayed
    assert stored_runs(conn)[0] == 4


def test_the_next_day_makes_new_runs(conn: psycopg.Connection[Any]) -> None:
    tenant = small_tenant(conn, "Acme")
    first = take_snapshots(conn, [tenant], as_of=DAY)
    following = take_snapshots(conn, [tenant], as_of=DAY + dt.timedelta(days=1))
    assert [one.status for one in following] == ["created", "created"]
    assert {one.run_id for one in first}.isdisjoint({one.run_id for one in following})
    assert stored_runs(conn)[0] == 4
    as_of = sorted(row["parameters"]["as_of"] for row in runs_of(conn, tenant))
    assert as_of == ["2026-02-14", "2026-02-14", "2026-02-15", "2026-02-15"]


@pytest.mark.parametrize("day", [DAY, dt.date(2026, 12, 31), dt.date(2028, 2, 29)])
def test_each_tenant_gets_its_own_fiscal_quarters(
    conn: psycopg.Connection[Any], day: dt.date
) -> None:
    months = {"Jan": 1, "Feb": 2, "Apr": 4, "Jul": 7, "Oct": 10, "Dec": 12}
    tenants = {small_tenant(conn, name, month): month for name, month in months.items()}
    taken = take_snapshots(conn, as_of=day)
    assert len(taken) == 2 * len(tenants)
    for tenant, month in tenants.items():
        expected = expected_quarters(day, month)
        mine = [one for one in taken if one.tenant_id == tenant]
        assert [(one.period, one.period_start, one.period_end) for one in mine] == expected
        stored = {row["id"]: row for row in runs_of(conn, tenant)}
        for one, (label, start, end) in zip(mine, expected, strict=True):
            row = stored[one.run_id]
            assert (row["start"], row["end"]) == (start, end)
            assert row["parameters"]["period"] == label
            assert (end - start).days in (89, 90, 91, 92)
            assert start <= day < end if one is mine[0] else day < start


def test_the_rows_are_the_batch_of_the_period(conn: psycopg.Connection[Any]) -> None:
    tenant = small_tenant(conn, "Acme", start_month=2)
    oracle = Oracle(conn, tenant)
    for one in take_snapshots(conn, as_of=DAY):
        options = Options(one.period_start, one.period_end, as_of=DAY)
        rows = conn.execute(
            "SELECT principal_type, principal_id, target_amount, open_amount, won_amount"
            " FROM dyno_crm.report_pipeline_coverage_fact WHERE run_id = %s",
            (one.run_id,),
        ).fetchall()
        conn.commit()
        assert {(r[0], r[1]) for r in rows} == oracle.run_principals(options)
        for kind, who, target, open_amount, won in rows:
            expected = oracle.row(options, kind, who, None)
            assert (target, open_amount, won) == (
                expected["target_amount"],
                expected["open_amount"],
                expected["won_amount"],
            )


def fail_runs_of(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> None:
    """A trigger that makes every run of one tenant fail inside the database."""
    conn.execute(
        "CREATE FUNCTION dyno_crm.refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'disk quota exceeded'; END $$"
    )
    conn.execute(
        "CREATE TRIGGER refuse_run BEFORE INSERT ON dyno_crm.report_run FOR EACH ROW"
        f" WHEN (NEW.tenant_id = '{tenant}') EXECUTE FUNCTION dyno_crm.refuse_run()"
    )
    conn.commit()


def test_a_failing_tenant_does_not_stop_the_others(conn: psycopg.Connection[Any]) -> None:
    acme = small_tenant(conn, "Acme")
    broken = small_tenant(conn, "Broken")
    zeta = small_tenant(conn, "Zeta")
    fail_runs_of(conn, broken)
    taken = take_snapshots(conn, as_of=DAY)
    status = {(one.tenant_id, one.period): one.status for one in taken}
    assert [status[(t, p)] for t in (acme, broken, zeta) for p in ("2026-Q1", "2026-Q2")] == [
        "created", "created", "failed", "failed", "created", "created"
    ]  # fmt: skip
    failed = [one for one in taken if one.error]
    assert all("disk quota exceeded" in (one.error or "") for one in failed)
    assert not any(one.bad_input for one in failed)
    assert len(runs_of(conn, acme)) == len(runs_of(conn, zeta)) == 2
    assert runs_of(conn, broken) == []


def test_an_unknown_tenant_is_refused_before_anything_is_written(
    conn: psycopg.Connection[Any],
) -> None:
    small_tenant(conn, "Acme")
    with pytest.raises(NotFoundError, match="tenant_id: no tenant"):
        take_snapshots(conn, [uuid.uuid4()], as_of=DAY)
    assert stored_runs(conn) == (0, 0)


# --- the command -----------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, "snapshot", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_prints_a_line_per_tenant_and_is_idempotent(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = small_tenant(conn, "Acme")
    small_tenant(conn, "Globex", start_month=7)
    code, out, err = run_cli(capsys, db_url, "--as-of", "2026-02-14")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"Acme ({acme}): 2026-Q1 run ")
    assert "created; 2026-Q2 run " in lines[0]
    assert lines[1].startswith("Globex (")
    assert "FY2026-Q3 run" in lines[1]
    assert "FY2026-Q4 run" in lines[1]
    code, out, err = run_cli(capsys, db_url, "--as-of", "2026-02-14", "--tenant", "acme")
    assert (code, err) == (0, "")
    assert out.count("already taken for this day") == 2
    assert stored_runs(conn)[0] == 4


def test_the_command_as_json(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = small_tenant(conn, "Acme", start_month=4)
    code, out, _ = run_cli(capsys, db_url, "--as-of", "2026-02-14", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert (document["as_of"], document["created"], document["failed"]) == ("2026-02-14", 2, 0)
    expected = expected_quarters(DAY, 4)
    assert [(s["period"], s["period_start"], s["period_end"]) for s in document["snapshots"]] == [
        (label, start.isoformat(), end.isoformat()) for label, start, end in expected
    ]
    assert {uuid.UUID(s["run_id"]) for s in document["snapshots"]} == {
        row["id"] for row in runs_of(conn, tenant)
    }


def test_the_command_exits_1_when_a_tenant_fails_unexpectedly(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    small_tenant(conn, "Acme")
    fail_runs_of(conn, small_tenant(conn, "Broken"))
    code, out, err = run_cli(capsys, db_url, "--as-of", "2026-02-14")
    assert code == 1
    assert len(out.splitlines()) == 2
    assert "2026-Q1 failed: database error: disk quota exceeded" in out
    assert err.splitlines() == [f"{PREFIX} 2 of 4 snapshots failed: Broken 2026-Q1, Broken 2026-Q2"]
    assert stored_runs(conn)[0] == 2


def test_the_command_exits_2_when_every_failure_is_bad_input(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline_coverage.reports.coverage import coverage_request, run_coverage

    small_tenant(conn, "Acme")
    taken = small_tenant(conn, "Taken")
    # The day's key of Taken's this-quarter snapshot, already used for another request.
    [(label, start, end), _] = expected_quarters(DAY, 1)
    request = coverage_request(taken, start, end, as_of=DAY, period_expression=label).with_defaults(
        SEED_DEFAULTS
    )
    other = coverage_request(taken, start, end, as_of=DAY, target_match="within")
    run_coverage(conn, other, idempotency_key=snapshot_key(request))
    code, out, err = run_cli(capsys, db_url, "--as-of", "2026-02-14")
    assert code == 2
    assert "2026-Q1 failed: idempotency_key: used before with another request" in out
    assert err.splitlines() == [f"{PREFIX} 1 of 4 snapshots failed: Taken 2026-Q1"]
    assert stored_runs(conn)[0] == 1 + 3


def test_the_command_refuses_an_unknown_tenant(
    conn: psycopg.Connection[Any], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    small_tenant(conn, "Acme")
    code, out, err = run_cli(capsys, db_url, "--tenant", "Nobody")
    assert (code, out) == (2, "")
    assert err.startswith(f"{PREFIX} tenant: no tenant named 'Nobody'")
    assert len(err.splitlines()) == 1
    assert stored_runs(conn) == (0, 0)


def test_the_first_days_of_a_quarter_take_the_closing_run_of_the_last_one(
    conn: psycopg.Connection[Any],
) -> None:
    """From the first day of a fiscal quarter for a week, a snapshot also takes the
    quarter that just ended, as of that day (its outcome, which calibration learns
    from), once; and then fits the tenant's calibration again (here: too few quarters,
    said as such)."""
    tenant = small_tenant(conn, "Closing")
    first = dt.date(2026, 4, 1)
    for day, closing in ((first, True), (first + dt.timedelta(days=6), True),
                         (first + dt.timedelta(days=7), False)):  # fmt: skip
        taken = take_snapshots(conn, [tenant], as_of=day)
        periods = [(one.period_start, one.period_end, one.closing) for one in taken]
        assert ((dt.date(2026, 1, 1), first, True) in periods) is closing, (day, periods)
        closed = [one for one in taken if one.closing]
        assert all(one.status == "created" for one in closed)
        if closed:
            assert closed[0].calibrated is not None
            assert "no fit" in closed[0].calibrated
    again = take_snapshots(conn, [tenant], as_of=first)
    assert [one.status for one in again] == ["replayed"] * 3
    assert all(one.calibrated is None for one in again)  # (nothing new to learn from)
