"""Recorded history (SPEC.md §13) on a real PostgreSQL: what a ``load`` or an
``import`` replaces or deletes is kept as versions of the deal over recorded time,
exports go in oldest first, and a time in the future is refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline_coverage import get_run, run_deals
from pipeline_coverage.importing.load import load_tables
from pipeline_coverage.importing.upsert import delete_absent_deals
from pipeline_coverage.metrics import NAMES
from pipeline_coverage.reports.coverage import coverage_request, run_coverage
from tests.factory import random_tenant
from tests.integration.test_cli import assert_one_error_line, cli
from tests.integration.test_import import EXPORTS, counts, imported
from tests.integration.test_metrics import compare_drilldown, compare_row
from tests.oracle import Options, Oracle

UTC = dt.UTC
T1 = dt.datetime(2026, 1, 5, 9, tzinfo=UTC)
T2 = dt.datetime(2026, 1, 12, 9, tzinfo=UTC)
T3 = dt.datetime(2026, 1, 19, 9, tzinfo=UTC)


def export(tmp_path: Path, name: str, change: Any = None) -> Path:
    text = (EXPORTS / "salesforce.csv").read_text(encoding="utf-8")
    path = tmp_path / name
    path.write_text(change(text) if change else text, encoding="utf-8")
    return path


def versions(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """(deal name, from, to, amount) of every version, in order."""
    found = conn.execute(
        "SELECT v.name, v.valid_from, v.valid_to, v.amount FROM dyno_crm.deal_version AS v"
        " ORDER BY v.name, v.valid_to"
    ).fetchall()
    conn.commit()
    return found


def test_a_change_and_a_deletion_keep_what_they_replaced_from_when_it_held(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    first = export(tmp_path, "week1.csv")
    raised = export(tmp_path, "week2.csv", lambda t: t.replace('"120000.00"', '"130000.00"'))
    gone = export(
        tmp_path, "week3.csv",
        lambda t: "\n".join(line for line in t.replace('"120000.00"', '"130000.00"').split("\n")
                            if "Umbrella expansion" not in line),
    )  # fmt: skip
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", T1.isoformat())
    assert versions(conn) == []
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", "2026-01-08")
    assert versions(conn) == [], "an unchanged export keeps no version"
    imported(capsys, db_url, "--tenant", "Hist", str(raised), "--exported-at", T2.isoformat())
    imported(capsys, db_url, "--tenant", "Hist", "--full", "--max-delete", "50", str(gone),
             "--exported-at", T3.isoformat())  # fmt: skip
    assert versions(conn) == [
        ("Acme - 200 licenses", T1, T2, Decimal("120000.00")),
        ("Umbrella expansion", T1, T3, Decimal("9000.00")),
    ]
    stored = dict(conn.execute("SELECT d.name, d.recorded_from FROM dyno_crm.deal AS d").fetchall())
    conn.commit()
    assert stored["Acme - 200 licenses"] == T2
    assert stored["Globex renewal"] == T1
    assert "Umbrella expansion" not in stored


def test_an_older_export_after_a_newer_one_is_refused_and_nothing_is_written(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    first = export(tmp_path, "new.csv")
    older = export(tmp_path, "old.csv", lambda t: t.replace('"120000.00"', '"1.00"'))
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", T2.isoformat())
    before = counts(conn)
    line = assert_one_error_line(
        cli(
            capsys,
            db_url,
            "import",
            "--tenant",
            "Hist",
            str(older),
            "--exported-at",
            T1.isoformat(),
        )
    )
    assert "--exported-at: 2026-01-05 09:00:00 UTC" in line
    assert "2026-01-12 09:00:00 UTC" in line
    assert counts(conn) == before
    assert versions(conn) == []


def test_a_full_sync_without_deals_older_than_the_latest_export_is_refused(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    first = export(tmp_path, "new.csv")
    empty = export(tmp_path, "empty.csv", lambda t: t.split("\n")[0] + "\n")
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", T2.isoformat())
    before = counts(conn)
    result = cli(capsys, db_url, "import", "--tenant", "Hist", "--full", "--max-delete", "100",
                 str(empty), "--exported-at", T1.isoformat())  # fmt: skip
    assert "2026-01-12 09:00:00 UTC" in assert_one_error_line(result)
    assert counts(conn) == before
    imported(capsys, db_url, "--tenant", "Hist", "--full", "--max-delete", "100", str(empty),
             "--exported-at", T3.isoformat())  # fmt: skip
    assert {row[2] for row in versions(conn)} == {T3}
    until = conn.execute("SELECT recorded_until FROM dyno_crm.tenant").fetchone()
    conn.commit()
    assert until == (T3,)


def test_a_time_in_the_future_or_not_a_time_is_refused(
    capsys: Any, db_url: str, tmp_path: Path
) -> None:
    first = export(tmp_path, "x.csv")
    tomorrow = (dt.datetime.now(UTC) + dt.timedelta(days=1)).isoformat()
    line = assert_one_error_line(
        cli(capsys, db_url, "import", "--tenant", "Hist", str(first), "--exported-at", tomorrow)
    )
    assert "in the future" in line
    result = cli(capsys, db_url, "import", "--tenant", "Hist", str(first),
                 "--exported-at", "last tuesday")  # fmt: skip
    assert result.code == 2
    assert "not a date or time" in result.err


# --- the invariant of SPEC.md §13 -----------------------------------------------------

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 4, 1))
DEAL_COLUMNS = (
    "id", "tenant_id", "pipeline_id", "stage_id", "name", "amount", "expected_close_date",
    "close_date", "owned_by_user_id", "assigned_user_id", "owned_by_group_id",
    "assigned_group_id", "forecast_category", "currency",
)  # fmt: skip


def tenant_deals(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> dict[uuid.UUID, list[Any]]:
    """The tenant's deals as rows of deals.csv, by id."""
    found = conn.execute(
        sql.SQL("SELECT {} FROM dyno_crm.deal WHERE tenant_id = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, DEAL_COLUMNS))
        ),
        (tenant,),
    ).fetchall()
    conn.commit()
    return {row[0]: list(row) for row in found}


def one_column(conn: psycopg.Connection[Any], statement: str, tenant: uuid.UUID) -> list[Any]:
    found = [row[0] for row in conn.execute(statement, (tenant,)).fetchall()]
    conn.commit()
    return found


def next_export(
    conn: psycopg.Connection[Any], tenant: uuid.UUID, rng: random.Random,
    gone: dict[uuid.UUID, list[Any]], at: dt.datetime,
) -> None:  # fmt: skip
    """The tenant's next export, taken at ``at``: a fifth of its deals changed (owner,
    amount, dates, stage, currency, or moved to another pipeline), some deleted, and
    some deleted before made again with other values."""
    users = one_column(conn, "SELECT id FROM dyno_crm.crm_user WHERE tenant_id = %s", tenant)
    stages: dict[uuid.UUID, list[uuid.UUID]] = {}
    for pipeline, stage in conn.execute(
        "SELECT pipeline_id, id FROM dyno_crm.pipeline_stage WHERE tenant_id = %s", (tenant,)
    ).fetchall():
        stages.setdefault(pipeline, []).append(stage)
    conn.commit()
    deals = tenant_deals(conn, tenant)
    changed = []
    for deal_id in sorted(deals):
        row = deals[deal_id]
        roll = rng.random()
        if roll < 0.05:
            gone[deal_id] = row
            continue
        if roll < 0.25:
            what = rng.choice(["owner", "amount", "dates", "stage", "currency", "pipeline"])
            if what == "owner":
                row[8] = rng.choice([None, *users])
            elif what == "amount":
                row[5] = Decimal(rng.randint(0, 5_000_000)) / 100
            elif what == "dates":
                row[6] = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(-30, 120))
                row[7] = rng.choice([None, row[6]])
            elif what == "stage":
                row[3] = rng.choice(stages[row[2]])
            elif what == "currency":
                row[13] = rng.choice([None, "USD", "EUR", "GBP", "JPY"])
            else:
                row[2] = rng.choice(sorted(stages))
                row[3] = rng.choice(stages[row[2]])
            changed.append((0, row))
    for deal_id in sorted(gone)[: len(gone) // 2]:  # made again, with another amount
        row = gone.pop(deal_id)
        row[5] = Decimal(rng.randint(0, 5_000_000)) / 100
        changed.append((0, row))
    load_tables(conn, {"deals.csv": changed}, recorded_at=at)
    delete_absent_deals(
        conn, tenant, kept=[], candidates=[d for d in gone if d in deals], recorded_at=at
    )


def run_of(conn: psycopg.Connection[Any], tenant: uuid.UUID, day: dt.date, recorded: bool) -> Any:
    request = coverage_request(
        tenant, *Q1, as_of=day, rollup=True, target_match="exact", win_rate_lookback_days=90,
        as_recorded=recorded,
    )  # fmt: skip
    run_id = run_coverage(conn, request).run_id
    run = get_run(conn, run_id, tenant)
    rows = sorted(
        ((r.principal_type, r.principal_id, r.pipeline_id, tuple(r.values[n] for n in NAMES),
          tuple(r.flags)) for r in run.rows),
        key=repr,
    )  # fmt: skip
    deals = sorted(
        (tuple(v for k, v in dataclasses.asdict(d).items() if k != "run_id")
         for d in run_deals(conn, run_id, tenant)),
        key=repr,
    )  # fmt: skip
    return run_id, rows, deals


@pytest.mark.parametrize("seed", [31, 32])
def test_a_run_as_recorded_equals_the_run_made_right_after_that_export(
    conn: psycopg.Connection[Any], seed: int
) -> None:
    """SPEC.md §13's invariant: for exports A at t1 and B at t2, a run as recorded on a
    day whose end lies in [t1, t2) equals the run made right after A with that as_of,
    in every column and every deal of its drill-down — on random edge-case tenants
    (each run right after its export checked against the oracle), over four exports
    that change owners, amounts, dates, stages, currencies and pipelines, and delete
    deals and make some again."""
    tenant = random_tenant(conn, seed)
    random_tenant(conn, seed + 100)  # another tenant's history must not leak in
    rng = random.Random(seed)
    gone: dict[uuid.UUID, list[Any]] = {}
    made = []
    for k in range(4):
        at = dt.datetime(2026, 2, 10 + 2 * k, 9, tzinfo=UTC)
        next_export(conn, tenant, rng, gone, at)
        day = at.date()  # its end lies between this export and the next
        run_id, rows, deals = run_of(conn, tenant, day, recorded=False)
        oracle, options = Oracle(conn, tenant), Options(*Q1, as_of=day, rollup=True,
                                                         lookback_days=90)  # fmt: skip
        for row in get_run(conn, run_id, tenant).rows:
            compare_row(oracle, options, row)
        compare_drilldown(conn, oracle, options, run_id)
        made.append((day, rows, deals))
    versions_kept = one_column(
        conn, "SELECT count(*) FROM dyno_crm.deal_version WHERE tenant_id = %s", tenant
    )[0]
    assert versions_kept > 50
    for day, rows, deals in made:
        _, recorded_rows, recorded_deals = run_of(conn, tenant, day, recorded=True)
        assert recorded_rows == rows, day
        assert recorded_deals == deals, day
    # A day before the first export: the deals as they were before it (since always).
    _, first_rows, _ = run_of(conn, tenant, dt.date(2026, 2, 1), recorded=True)
    assert first_rows != made[-1][1]


def test_backfill_takes_the_snapshots_of_each_week_as_recorded_once(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Two weekly exports, then a backfill over their weeks: one run as recorded per
    week and quarter, each as the deals stood then (the raised amount only from the
    second week on); a second backfill makes nothing new."""
    first = export(tmp_path, "week1.csv")
    raised = export(tmp_path, "week2.csv", lambda t: t.replace('"120000.00"', '"130000.00"'))
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", "2026-01-05T09:00Z")
    imported(capsys, db_url, "--tenant", "Hist", str(raised), "--exported-at", "2026-01-12T09:00Z")
    result = cli(capsys, db_url, "backfill", "--tenant", "Hist", "--from", "2026-01-05",
                 "--to", "2026-01-19", "--format", "json")  # fmt: skip
    assert result.code == 0, result
    days = json.loads(result.out)
    assert [day["as_of"] for day in days] == ["2026-01-05", "2026-01-12", "2026-01-19"]
    # (2026-01-05 is in the first week of Q1: Q4 2025's closing run too)
    assert [day["created"] for day in days] == [3, 2, 2]
    quarter_runs = [
        next(s["run_id"] for s in day["snapshots"] if s["period_start"] == "2026-01-01")
        for day in days
    ]
    open_amounts = []
    for run_id in quarter_runs:
        shown = json.loads(cli(capsys, db_url, "show", "--tenant", "Hist", run_id,
                               "--format", "json").out)  # fmt: skip
        assert shown["run"]["parameters"]["as_recorded"] is True
        assert shown["run"]["as_recorded"] is True
        ana = next(r for r in shown["rows"] if r["principal_name"] == "Ana Silva")
        open_amounts.append(ana["open_amount"])
    assert open_amounts == ["120000.00", "130000.00", "130000.00"]
    # The movement between two backfilled weeks: Ana's deal changed by 10,000.
    moved = cli(capsys, db_url, "compare", quarter_runs[0], quarter_runs[1], "--tenant", "Hist",
                "--principal", "Ana Silva", "--format", "json")  # fmt: skip
    assert moved.code == 0, moved
    [ana_row] = json.loads(moved.out)["rows"]
    assert (ana_row["changed_count"], ana_row["changed_amount"]) == (1, "10000.00")
    again = cli(capsys, db_url, "backfill", "--tenant", "Hist", "--from", "2026-01-05",
                "--to", "2026-01-19", "--format", "json")  # fmt: skip
    assert [day["replayed"] for day in json.loads(again.out)] == [3, 2, 2]
    line = assert_one_error_line(
        cli(
            capsys,
            db_url,
            "backfill",
            "--tenant",
            "Hist",
            "--from",
            "2026-01-19",
            "--to",
            "2026-01-05",
        )
    )
    assert "after to" in line


def test_backfilled_runs_make_the_trend_and_the_same_point_of_past_quarters(
    capsys: Any, db_url: str, tmp_path: Path
) -> None:
    """A tenant imported today with two past exports: after a backfill, `history` has a
    point a week, and `same-point` finds last quarter's run of the same day."""
    first = export(tmp_path, "q4.csv")
    raised = export(tmp_path, "q1.csv", lambda t: t.replace('"120000.00"', '"130000.00"'))
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", "2025-11-17")
    imported(capsys, db_url, "--tenant", "Hist", str(raised), "--exported-at", "2026-02-16")
    done = cli(capsys, db_url, "backfill", "--tenant", "Hist", "--from", "2025-11-17",
               "--to", "2026-02-16", "--every", "week", "--format", "json")  # fmt: skip
    assert done.code == 0, done
    trend = cli(capsys, db_url, "history", "--tenant", "Hist", "--principal", "Ana Silva",
                "--period", "2026-Q1", "--format", "json")  # fmt: skip
    assert trend.code == 0, trend
    points = json.loads(trend.out)["points"]
    # The weeks of 2026 before the second export see the first; from it on, the second.
    opened = {p["as_of"]: p["open_amount"] for p in points}
    assert opened["2026-01-05"] == "120000.00"
    assert opened["2026-02-09"] == "120000.00"
    assert opened["2026-02-16"] == "130000.00"
    same = cli(capsys, db_url, "same-point", "--tenant", "Hist", "--principal", "Ana Silva",
               "--as-of", "2026-02-16", "--format", "json")  # fmt: skip
    assert same.code == 0, same
    quarters = json.loads(same.out)["quarters"]
    assert len(quarters) >= 2, quarters


def test_a_run_as_recorded_through_the_api_and_the_cli_says_so(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], api: Any, world: Any
) -> None:
    """POST as_recorded: the run is from the deals of that day (Ann's big deal before the
    export that raised it), and says so in its header, the runs list and `runs`."""
    row = conn.execute(
        sql.SQL("SELECT {} FROM dyno_crm.deal WHERE tenant_id = %s AND id = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, DEAL_COLUMNS))
        ),
        (world.tenant, world.big_deal),
    ).fetchone()
    conn.commit()
    assert row is not None
    before = row[5]
    raised = [*row[:5], before + 1000, *row[6:]]
    load_tables(conn, {"deals.csv": [(2, raised)]},
                recorded_at=dt.datetime(2026, 2, 12, 9, tzinfo=UTC))  # fmt: skip
    body = {"period_start": "2026-01-01", "period_end": "2026-04-01", "as_of": "2026-02-10",
            "principal_type": "USER", "principal_id": str(world.ann)}  # fmt: skip
    made = {}
    for recorded in (False, True):
        response = api.post("/v1/coverage-runs", json={**body, "as_recorded": recorded},
                            headers=world.auth)  # fmt: skip
        assert response.status_code == 201, response.text
        made[recorded] = response.json()
    assert made[True]["run"]["as_recorded"] is True
    assert made[False]["run"]["as_recorded"] is False
    opened = {k: Decimal(v["rows"][0]["open_amount"]) for k, v in made.items()}
    assert opened[False] - opened[True] == 1000
    listed = api.get("/v1/coverage-runs", headers=world.auth).json()["items"]
    marks = {item["run_id"]: item["as_recorded"] for item in listed}
    assert marks[made[True]["run_id"]] is True
    assert marks[made[False]["run_id"]] is False
    shown = cli(capsys, db_url, "runs", "--tenant", str(world.tenant))
    assert shown.code == 0, shown
    assert "as recorded at the end of 2026-02-10" in " ".join(shown.out.split())
    table = cli(capsys, db_url, "show", "--tenant", str(world.tenant), made[True]["run_id"])
    assert "as recorded at the end of 2026-02-10" in " ".join(table.out.split())


# --- the CRM's own history (import --history) ------------------------------------------

HISTORY = EXPORTS / "opportunity-history.csv"
#: salesforce.csv with each deal's CreatedDate.
CREATED = EXPORTS / "salesforce-created.csv"
FIRST = dt.datetime(2026, 1, 5, 9, tzinfo=UTC)  # the tenant's first export: the clip


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


ACME, GLOBEX, INITECH, UMBRELLA = (
    "Acme - 200 licenses",
    "Globex renewal",
    "Initech pilot",
    "Umbrella expansion",
)
#: The versions opportunity-history.csv makes of salesforce-created.csv's deals, worked
#: out by hand: (deal, from, to, stage, amount, expected close, close, category,
#: currency, owner). The lines of each deal in time order, the first from the deal's
#: created date when earlier (Initech was created after its first line), the last
#: until the first export; Umbrella has no lines: as it is now, from its created date.
EXPECTED = [
    (ACME, at("2025-10-01 08:00"), at("2025-11-02 11:00"), "Prospecting", Decimal(100000),
     dt.date(2026, 3, 31), None, "PIPELINE", "USD", "Ana Silva"),
    (ACME, at("2025-11-02 11:00"), at("2025-12-10 15:30"), "Value Proposition", Decimal(110000),
     dt.date(2026, 3, 15), None, "BEST_CASE", "USD", "Ana Silva"),
    (ACME, at("2025-12-10 15:30"), FIRST, "Negotiation/Review", Decimal(120000),
     dt.date(2026, 3, 31), None, "COMMIT", "USD", "Ana Silva"),
    (GLOBEX, at("2025-11-14 08:00"), at("2026-01-02 16:00"), "Qualification", Decimal(40000),
     dt.date(2026, 2, 28), None, "PIPELINE", "EUR", "Ben Ode"),
    (GLOBEX, at("2026-01-02 16:00"), FIRST, "Closed Won", Decimal(45000),
     None, dt.date(2026, 2, 14), None, "EUR", "Ben Ode"),
    (INITECH, at("2025-12-05 10:00"), at("2026-01-03 12:00"), "Prospecting", Decimal(20000),
     dt.date(2026, 1, 31), None, "PIPELINE", None, None),
    (INITECH, at("2026-01-03 12:00"), FIRST, "Closed Lost", None,
     None, dt.date(2026, 1, 20), "OMITTED", None, None),
    (UMBRELLA, at("2025-12-20 12:00"), FIRST, "Prospecting", Decimal(9000),
     dt.date(2026, 6, 30), None, "PIPELINE", "USD", "Ana Silva"),
]  # fmt: skip


def crm_versions(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The CRM-history versions as EXPECTED lists them (every one flagged owner-assumed)."""
    found = conn.execute(
        "SELECT v.name, v.valid_from, v.valid_to, s.name, v.amount, v.expected_close_date,"
        " v.close_date, v.forecast_category, v.currency, u.name, v.owner_assumed"
        " FROM dyno_crm.deal_version AS v"
        " JOIN dyno_crm.pipeline_stage AS s ON s.id = v.stage_id"
        " LEFT JOIN dyno_crm.crm_user AS u ON u.id = v.owned_by_user_id"
        " WHERE v.origin = 'crm' ORDER BY v.name, v.valid_to"
    ).fetchall()
    conn.commit()
    assert all(row[-1] is True for row in found), "a CRM version's owner is assumed"
    return [row[:-1] for row in found]


def as_of(conn: psycopg.Connection[Any], when: dt.datetime) -> dict[str, tuple[str, Any]]:
    """Each deal as it stood at ``when`` (stage, amount), by the rule runs as recorded
    read: the versions valid then, and the deals whose values held from then on."""
    found = conn.execute(
        "SELECT x.name, s.name, x.amount FROM ("
        "  SELECT v.name, v.stage_id, v.amount FROM dyno_crm.deal_version AS v"
        "  WHERE (v.valid_from IS NULL OR v.valid_from <= %(t)s) AND %(t)s < v.valid_to"
        "  UNION ALL"
        "  SELECT d.name, d.stage_id, d.amount FROM dyno_crm.deal AS d"
        "  WHERE d.recorded_from IS NULL OR d.recorded_from <= %(t)s"
        ") AS x JOIN dyno_crm.pipeline_stage AS s ON s.id = x.stage_id ORDER BY x.name",
        {"t": when},
    ).fetchall()
    conn.commit()
    names = [name for name, _, _ in found]
    assert len(names) == len(set(names)), f"a deal stands twice at {when}: {found}"
    return {name: (stage, amount) for name, stage, amount in found}


def with_history(capsys: Any, db_url: str, export_file: Path, history: Path, when: str,
                 *extra: str) -> list[str]:  # fmt: skip
    return imported(capsys, db_url, "--tenant", "Hist", str(export_file),
                    "--history", str(history), "--exported-at", when, *extra)  # fmt: skip


def test_history_lines_become_versions_up_to_the_first_export(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    out = with_history(capsys, db_url, CREATED, HISTORY, FIRST.isoformat())
    # The unknown opportunity's two lines are skipped, counted, and the first named.
    assert (
        "history: 7 lines, 3 deals; 2 lines of 1 opportunity not in the export skipped"
        " (first at line 6)"
    ) in out
    assert any(line.startswith("history versions: 8 written, up to 2026-01-05 09:00:00 UTC")
               for line in out)  # fmt: skip
    # The stages only the history names are made as the export's are.
    assert "stage created: New Business / Value Proposition: IN_PROGRESS, probability 50" in out
    assert "stage created: Renewal / Qualification: IN_PROGRESS, probability 10" in out
    assert crm_versions(conn) == EXPECTED
    recorded = conn.execute("SELECT recorded_since, recorded_until FROM dyno_crm.tenant").fetchone()
    conn.commit()
    assert recorded == (FIRST, FIRST)


def test_the_deals_as_they_stood_at_each_time(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with_history(capsys, db_url, CREATED, HISTORY, FIRST.isoformat())
    neg, won, lost, prospecting = "Negotiation/Review", "Closed Won", "Closed Lost", "Prospecting"
    assert as_of(conn, at("2025-09-30 00:00")) == {}, "before any deal was created"
    assert as_of(conn, at("2025-10-01 07:59")) == {}
    assert as_of(conn, at("2025-10-01 08:00")) == {ACME: (prospecting, Decimal(100000))}
    assert as_of(conn, at("2025-11-20 00:00")) == {
        ACME: ("Value Proposition", Decimal(110000)),
        GLOBEX: ("Qualification", Decimal(40000)),
    }
    assert as_of(conn, at("2025-12-21 00:00")) == {
        ACME: (neg, Decimal(120000)),
        GLOBEX: ("Qualification", Decimal(40000)),
        INITECH: (prospecting, Decimal(20000)),
        UMBRELLA: (prospecting, Decimal(9000)),
    }
    assert as_of(conn, at("2026-01-04 00:00")) == {
        ACME: (neg, Decimal(120000)), GLOBEX: (won, Decimal(45000)), INITECH: (lost, None),
        UMBRELLA: (prospecting, Decimal(9000)),
    }  # fmt: skip
    now = {ACME: (neg, Decimal(120000)), GLOBEX: (won, Decimal(45000)), INITECH: (lost, None),
           UMBRELLA: (prospecting, Decimal(9000))}  # fmt: skip
    assert as_of(conn, FIRST) == now, "from the first export on, its deals"
    assert as_of(conn, at("2026-03-01 00:00")) == now


def test_lines_out_of_time_order_are_sorted(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    header, *lines = HISTORY.read_text(encoding="utf-8").splitlines()
    reversed_file = tmp_path / "reversed.csv"
    reversed_file.write_text("\n".join([header, *reversed(lines)]) + "\n", encoding="utf-8")
    out = with_history(capsys, db_url, CREATED, reversed_file, FIRST.isoformat())
    assert "(first at line 2)" in " ".join(out), "the unknown opportunity's last line is first"
    assert crm_versions(conn) == EXPECTED


def test_the_same_history_imported_again_changes_nothing(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with_history(capsys, db_url, CREATED, HISTORY, FIRST.isoformat())
    with_history(capsys, db_url, CREATED, HISTORY, FIRST.isoformat())
    assert crm_versions(conn) == EXPECTED
    out = with_history(capsys, db_url, CREATED, HISTORY, T2.isoformat())
    assert "deals: 0 new, 0 updated, 4 unchanged, 0 deleted" in out
    assert crm_versions(conn) == EXPECTED, "still up to the tenant's first export"
    assert versions(conn) == [(row[0], row[1], row[2], row[4]) for row in EXPECTED]


def test_recorded_history_wins_from_the_first_export_on(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    imported(capsys, db_url, "--tenant", "Hist", str(CREATED), "--exported-at", FIRST.isoformat())
    raised = tmp_path / "week2.csv"
    raised.write_text(CREATED.read_text(encoding="utf-8").replace('"120000.00"', '"130000.00"'),
                      encoding="utf-8")  # fmt: skip
    later = tmp_path / "history.csv"
    later.write_text(
        HISTORY.read_text(encoding="utf-8")
        + "0081x00000H1stAAAA,0065g00000AbCdEAAV,2026-01-08T10:00:00.000+0000,Closed Won,"
        "125000,2026-01-08,100,Closed,USD\n",
        encoding="utf-8",
    )
    with_history(capsys, db_url, raised, later, T2.isoformat())
    # The line after the first export is left out, the one spanning it cut there.
    assert crm_versions(conn) == EXPECTED
    assert as_of(conn, at("2026-01-04 00:00"))[ACME] == ("Negotiation/Review", Decimal(120000))
    assert as_of(conn, at("2026-01-09 00:00"))[ACME] == ("Negotiation/Review", Decimal(120000)), (
        "between the exports, the first export's values, not the CRM history's"
    )
    assert as_of(conn, T2)[ACME] == ("Negotiation/Review", Decimal(130000))
    found = conn.execute(
        "SELECT v.name, v.valid_from, v.valid_to, v.amount FROM dyno_crm.deal_version AS v"
        " WHERE v.origin = 'recorded'"
    ).fetchall()
    conn.commit()
    assert found == [(ACME, FIRST, T2, Decimal("120000.00"))]


def test_deals_recorded_since_always_are_known_from_the_clip(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Deals written before recorded history began (their values known since always)
    take the CRM's history for the time before the tenant's first recorded export."""
    imported(capsys, db_url, "--tenant", "Hist", str(CREATED), "--exported-at", T1.isoformat())
    conn.execute("UPDATE dyno_crm.deal SET recorded_from = NULL")
    conn.execute("UPDATE dyno_crm.tenant SET recorded_since = NULL, recorded_until = NULL")
    conn.commit()
    raised = tmp_path / "now.csv"
    raised.write_text(CREATED.read_text(encoding="utf-8").replace('"120000.00"', '"130000.00"'),
                      encoding="utf-8")  # fmt: skip
    with_history(capsys, db_url, raised, HISTORY, T2.isoformat())
    # The clip is this import's time; ACME's old values, known "since always", are what
    # the CRM's history describes before it.
    assert as_of(conn, at("2025-11-20 00:00")) == {
        ACME: ("Value Proposition", Decimal(110000)), GLOBEX: ("Qualification", Decimal(40000)),
    }  # fmt: skip
    assert as_of(conn, at("2026-01-09 00:00"))[ACME] == ("Negotiation/Review", Decimal(120000))
    assert as_of(conn, T2)[ACME] == ("Negotiation/Review", Decimal(130000))
    nulls = conn.execute(
        "SELECT (SELECT count(*) FROM dyno_crm.deal WHERE recorded_from IS NULL),"
        " (SELECT count(*) FROM dyno_crm.deal_version WHERE origin = 'recorded')"
    ).fetchone()
    conn.commit()
    assert nulls == (0, 0)


def test_a_history_line_in_the_future_is_refused_and_nothing_is_written(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    late = tmp_path / "history.csv"
    late.write_text(
        HISTORY.read_text(encoding="utf-8").replace(
            "2026-01-03T12:00:00.000+0000", "2026-01-05T09:00:01.000+0000"
        ),
        encoding="utf-8",
    )
    before = counts(conn)
    line = assert_one_error_line(
        cli(
            capsys,
            db_url,
            "import",
            "--tenant",
            "Hist",
            str(CREATED),
            "--history",
            str(late),
            "--exported-at",
            FIRST.isoformat(),
        )
    )
    assert line.endswith(
        "history.csv:9: CreatedDate: 2026-01-05 09:00:01 UTC: in the future (the import's"
        " time is 2026-01-05 09:00:00 UTC)"
    ), line
    assert counts(conn) == before
    assert versions(conn) == []


def test_a_dry_run_with_history_writes_nothing(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    out = with_history(capsys, db_url, CREATED, HISTORY, FIRST.isoformat(), "--dry-run")
    assert any(line.startswith("history versions: 8 would be written") for line in out)
    assert counts(conn)["deal"] == 0
    assert versions(conn) == []


def test_a_history_without_ids_is_matched_by_name(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    names = {
        "0065g00000AbCdEAAV": ACME,
        "0065g00000AbCdFAAV": GLOBEX,
        "0065g00000AbCdGAAV": INITECH,
    }
    text = HISTORY.read_text(encoding="utf-8").replace("OpportunityId", "Opportunity Name")
    for key, name in names.items():
        text = text.replace(key, name.upper())  # any case
    by_name = tmp_path / "by-name.csv"
    by_name.write_text(text, encoding="utf-8")
    out = with_history(capsys, db_url, CREATED, by_name, FIRST.isoformat())
    assert "history: 7 lines, 3 deals;" in " ".join(out)
    assert crm_versions(conn) == EXPECTED
    # ACME name several deals of the export bear is an error at its line.
    twice = tmp_path / "twice.csv"
    twice.write_text(
        CREATED.read_text(encoding="utf-8").replace(UMBRELLA, ACME.lower()), encoding="utf-8"
    )
    line = assert_one_error_line(
        cli(
            capsys,
            db_url,
            "import",
            "--tenant",
            "Hist",
            str(twice),
            "--history",
            str(by_name),
            "--exported-at",
            T2.isoformat(),
        )
    )
    assert "by-name.csv:2: Opportunity Name: 'ACME - 200 LICENSES' is the name of 2 deals" in line
    assert crm_versions(conn) == EXPECTED


def test_a_history_missing_a_column_or_with_a_bad_value_is_refused(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    no_stage = tmp_path / "no-stage.csv"
    no_stage.write_text(HISTORY.read_text(encoding="utf-8").replace("StageName", "Phase"),
                        encoding="utf-8")  # fmt: skip
    line = assert_one_error_line(
        cli(
            capsys,
            db_url,
            "import",
            "--tenant",
            "Hist",
            str(CREATED),
            "--history",
            str(no_stage),
            "--exported-at",
            FIRST.isoformat(),
        )
    )
    assert "no-stage.csv:1: StageName or Stage: missing column" in line
    bad = tmp_path / "bad.csv"
    bad.write_text(HISTORY.read_text(encoding="utf-8").replace(",20000,", ",20k,"),
                   encoding="utf-8")  # fmt: skip
    line = assert_one_error_line(
        cli(
            capsys,
            db_url,
            "import",
            "--tenant",
            "Hist",
            str(CREATED),
            "--history",
            str(bad),
            "--exported-at",
            FIRST.isoformat(),
        )
    )
    assert "bad.csv:7: Amount: not an amount: '20k'" in line
    assert counts(conn)["tenant"] == 0


def test_a_history_workbook_with_typed_cells_reads_as_its_csv(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """An .xlsx history: times and dates as typed cells (a time without an offset is
    UTC), amounts and probabilities as numbers, header names in another case."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    header, *lines = HISTORY.read_text(encoding="utf-8").splitlines()
    sheet.append([name.lower() for name in header.split(",")])
    for line in lines:
        cells: list[Any] = line.split(",")
        cells[2] = dt.datetime.fromisoformat(cells[2]).replace(tzinfo=None)
        cells[4] = int(cells[4]) if cells[4] else None
        cells[5] = dt.date.fromisoformat(cells[5])
        cells[6] = int(cells[6])
        sheet.append(cells)
    path = tmp_path / "history.xlsx"
    workbook.save(path)
    out = with_history(capsys, db_url, CREATED, path, FIRST.isoformat())
    assert "history: 7 lines, 3 deals;" in " ".join(out)
    assert crm_versions(conn) == EXPECTED


def test_a_run_as_recorded_on_the_crms_history_flags_the_assumed_owners(
    capsys: Any, db_url: str
) -> None:
    """Before the first export, Ana's deals come from the CRM's history, which has no
    owner: a run as recorded then flags them OWNER_ASSUMED in its drill-down and its
    exclusions report; a run as recorded after the export flags none."""
    with_history(capsys, db_url, CREATED, HISTORY, FIRST.isoformat())
    flagged = {}
    for day in ("2025-12-20", "2026-01-10"):
        made = cli(capsys, db_url, "run", "--tenant", "Hist", "--period", "2026-Q1", "--all",
                   "--as-of", day, "--as-recorded", "--format", "json")  # fmt: skip
        assert made.code == 0, made
        document = json.loads(made.out)
        deals = cli(capsys, db_url, "show", "--tenant", "Hist", document["run_id"], "--deals",
                    "--format", "json")  # fmt: skip
        flagged[day] = {
            deal["deal_name"] for deal in json.loads(deals.out)["deals"]
            if "OWNER_ASSUMED" in deal["flags"]
        }  # fmt: skip
        notes = [item["flag"] for item in document["exclusions"]]
        assert ("OWNER_ASSUMED" in notes) == bool(flagged[day]), (day, notes)
    # (the deals open in Q1 that day with an owner to credit; Initech has none)
    assert flagged["2025-12-20"] == {ACME, GLOBEX}
    assert flagged["2026-01-10"] == set()


def test_an_export_dated_a_day_is_that_days_not_the_day_befores(
    capsys: Any, db_url: str, tmp_path: Path
) -> None:
    """--exported-at 2026-01-12 is its midnight: a run as recorded on 2026-01-11 (which
    ends just before it) has the export before; one on 2026-01-12 has it."""
    first = export(tmp_path, "week1.csv")
    raised = export(tmp_path, "week2.csv", lambda t: t.replace('"120000.00"', '"130000.00"'))
    imported(capsys, db_url, "--tenant", "Hist", str(first), "--exported-at", "2026-01-05")
    imported(capsys, db_url, "--tenant", "Hist", str(raised), "--exported-at", "2026-01-12")
    seen = {}
    for day in ("2026-01-11", "2026-01-12"):
        made = cli(capsys, db_url, "run", "--tenant", "Hist", "--period", "2026-Q1",
                   "--principal", "Ana Silva", "--as-of", day, "--as-recorded",
                   "--format", "json")  # fmt: skip
        assert made.code == 0, made
        seen[day] = json.loads(made.out)["rows"][0]["open_amount"]
    assert seen == {"2026-01-11": "120000.00", "2026-01-12": "130000.00"}
