"""``pipeline-coverage import``: a CRM's own export into a tenant, on a real
PostgreSQL — each preset and a mapping file, teams and quota sheets, re-imports that
change nothing, full sync with its guard, dry runs, and the numbers a rolled-up run
then gives, against sums computed from the export files themselves."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_cli import Result, assert_one_error_line, cli

EXPORTS = Path(__file__).parent.parent / "data" / "exports"
MAVEN = Path(__file__).parent.parent.parent / "docs" / "examples" / "maven-crm.toml"
Q1 = ("--period-start", "2026-01-01", "--period-end", "2026-04-01")


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows of every table an import writes, all tenants."""
    tables = ("tenant", "crm_user", "crm_group", "group_member", "pipeline",
              "pipeline_stage", "deal", "sales_target")  # fmt: skip
    found = {}
    for table in tables:
        row = conn.execute(f"SELECT count(*) FROM dyno_crm.{table}").fetchone()  # noqa: S608
        assert row is not None
        found[table] = int(row[0])
    conn.commit()
    return found


def ok(result: Result) -> list[str]:
    assert result.code == 0, result
    return result.out.splitlines()


def imported(capsys: Any, db_url: str, *args: str) -> list[str]:
    return ok(cli(capsys, db_url, "import", *args))


def batch(capsys: Any, db_url: str, tenant: str, *extra: str) -> dict[str, Any]:
    result = cli(capsys, db_url, "run", "--tenant", tenant, *Q1, "--all", "--format", "json",
                 *extra)  # fmt: skip
    ok(result)
    return dict(json.loads(result.out))


def rows_by_name(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["principal_type"], row["principal_name"]): row for row in run["rows"]}


def report_open_amounts(path: Path) -> dict[str, Decimal]:
    """Independent of the product: each owner's open amount closing in Q1 2026, read
    straight from the Salesforce report export (M/D/YYYY dates, its footer after a
    blank line)."""
    totals: dict[str, Decimal] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for record in csv.DictReader(handle):
            if not record.get("Opportunity Name"):
                break  # the footer
            month, day, year = (int(part) for part in record["Close Date"].split("/"))
            closes = dt.date(year, month, day)
            if record["Stage"] in ("Closed Won", "Closed Lost"):
                continue
            if dt.date(2026, 1, 1) <= closes < dt.date(2026, 4, 1):
                owner = record["Opportunity Owner"]
                totals[owner] = totals.get(owner, Decimal(0)) + Decimal(record["Amount"])
    return totals


def test_a_salesforce_report_with_teams_and_targets_gives_rolled_up_coverage(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    export = EXPORTS / "salesforce-report.csv"
    targets = tmp_path / "quota.csv"
    targets.write_text(
        "principal,period,amount,type\n"
        'Ana Silva,2026-Q1,"250,000",rep\n'
        "Ben Ode,2026-Q1,180000.50,\n"
        'East,2026-Q1,"400,000",team\n'
        'Ana Silva,FY2027-Q1,"99",\n'  # another period: not this run's
    )
    lines = imported(capsys, db_url, "--tenant", "Acme Sales", str(export),
                     "--teams", str(EXPORTS / "teams.csv"), "--targets", str(targets))  # fmt: skip
    text = "\n".join(lines)
    assert "Salesforce report export, 3 deals" in text
    assert "footer lines skipped" in text
    assert "deals: 3 new, 0 updated, 0 unchanged, 0 deleted" in text
    assert "tenant Acme Sales: created (roll-up on by default)" in text
    assert "stage created: New Business / Proposal/Price Quote: IN_PROGRESS, probability 75" in text
    assert "stage created: Sales / Closed Won: DONE_SUCCESS, probability 100" in text
    assert "columns ignored: Account Name" in text
    assert "reps created: 3 (Ana Silva, Ben Ode, Cleo Park)" in text

    run = batch(capsys, db_url, "Acme Sales")
    assert run["run"]["parameters"]["rollup"] is True  # the imported tenant's default
    rows = rows_by_name(run)
    expected = report_open_amounts(export)
    for owner, amount in expected.items():
        assert Decimal(rows[("USER", owner)]["open_amount"]) == amount
    # The team is credited through its members (roll-up), and so is its parent.
    east = sum(expected.get(rep, Decimal(0)) for rep in ("Ana Silva", "Ben Ode"))
    assert Decimal(rows[("GROUP", "East")]["open_amount"]) == east
    assert Decimal(rows[("GROUP", "Enterprise")]["open_amount"]) == east
    # Targets of the sheet, by name and period expression ("250,000" for Q1 2026).
    assert Decimal(rows[("USER", "Ana Silva")]["target_amount"]) == Decimal("250000")
    assert Decimal(rows[("USER", "Ben Ode")]["target_amount"]) == Decimal("180000.50")
    assert Decimal(rows[("GROUP", "East")]["target_amount"]) == Decimal("400000")
    # Won to date: the Closed Won deal, in Q1.
    assert Decimal(rows[("USER", "Ben Ode")]["won_amount"]) == Decimal("45000.00")

    # The same export again: nothing changes, nothing is created.
    before = counts(conn)
    again = "\n".join(imported(capsys, db_url, "--tenant", "acme sales", str(export),
                               "--teams", str(EXPORTS / "teams.csv"),
                               "--targets", str(targets)))  # fmt: skip
    assert "deals: 0 new, 0 updated, 3 unchanged, 0 deleted" in again
    assert "created" not in again
    assert counts(conn) == before


def test_a_full_sync_deletes_what_left_the_export_and_guards_against_a_truncated_one(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    source = EXPORTS / "pipedrive.csv"
    imported(capsys, db_url, "--tenant", "Pipe Co", str(source))
    first = batch(capsys, db_url, "Pipe Co")
    before = counts(conn)
    assert before["deal"] == 4  # the deleted one is skipped
    # The won deal sits in an open stage in Pipedrive: it is in its pipeline's Won stage.
    stage = conn.execute(
        "SELECT s.name, s.stage_state FROM dyno_crm.deal AS d JOIN dyno_crm.pipeline_stage AS s"
        " ON s.tenant_id = d.tenant_id AND s.id = d.stage_id WHERE d.name = 'Globex renewal'"
    ).fetchone()
    conn.commit()
    assert stage == ("Won", "DONE_SUCCESS")

    # One deal gone from the CRM: a full sync of the rest deletes it...
    with source.open(encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    shorter = tmp_path / "pipedrive.csv"
    shorter.write_text("\n".join(line for line in lines if not line.startswith("105,")) + "\n")
    # ...unless it deletes more than --max-delete of the source's deals (1 of 4 = 25%).
    refused = cli(capsys, db_url, "import", "--tenant", "Pipe Co", "--full", str(shorter))
    assert "--max-delete 10%" in assert_one_error_line(refused)
    assert counts(conn) == before
    dry = imported(capsys, db_url, "--tenant", "Pipe Co", "--full", "--max-delete",
                   "30", "--dry-run", str(shorter))[0:2]  # fmt: skip
    assert dry[0].startswith("dry run, nothing written")
    assert "1 deleted" in dry[1]
    assert counts(conn) == before
    synced = imported(capsys, db_url, "--tenant", "Pipe Co", "--full", "--max-delete", "30",
                      str(shorter))  # fmt: skip
    assert "deals: 0 new, 0 updated, 3 unchanged, 1 deleted" in synced[1]
    assert counts(conn)["deal"] == 3
    # Stored runs keep their snapshots.
    again = cli(capsys, db_url, "show", first["run_id"], "--format", "json")
    ok(again)
    assert json.loads(again.out)["rows"] == first["rows"]
    # A plain import (no --full) never deletes.
    imported(capsys, db_url, "--tenant", "Pipe Co", str(shorter))
    assert counts(conn)["deal"] == 3


def test_a_mapping_file_imports_the_maven_export_with_its_regional_teams(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    lines = imported(capsys, db_url, "--tenant", "Maven", "--format", str(MAVEN),
                     str(EXPORTS / "maven-pipeline.csv"), "--teams",
                     str(EXPORTS / "maven-teams.csv"))  # fmt: skip
    assert any(line.startswith("deals: ") for line in lines)
    names = dict(
        conn.execute(
            "SELECT g.name, p.name FROM dyno_crm.crm_group AS g LEFT JOIN dyno_crm.crm_group AS p"
            " ON p.tenant_id = g.tenant_id AND p.id = g.parent_group_id"
        ).fetchall()
    )
    conn.commit()
    assert names["Melvin Marxen"] == "Central"
    assert names["Cara Losch"] == "East"
    assert names["Central"] is None
    deal = conn.execute(
        "SELECT d.name, d.amount, d.close_date, s.stage_state FROM dyno_crm.deal AS d"
        " JOIN dyno_crm.pipeline_stage AS s ON s.tenant_id = d.tenant_id AND s.id = d.stage_id"
        " WHERE d.name = 'GTXPro / Isdom'"
    ).fetchone()
    conn.commit()
    assert deal == ("GTXPro / Isdom", Decimal("4514.00"), dt.date(2017, 3, 11), "DONE_SUCCESS")


def test_hubspot_and_salesforce_api_exports_import(capsys: Any, db_url: str) -> None:
    for tenant, name in (("Hub Co", "hubspot.csv"), ("Force Co", "salesforce.csv")):
        lines = imported(capsys, db_url, "--tenant", tenant, str(EXPORTS / name))
        assert any(line.startswith("deals: ") and " new," in line for line in lines)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda text: text.replace('"3/31/2026"', '"31/3/2026"'), "Close Date: not a date"),
        (lambda text: text.replace('"120000.00"', '"$120000"'), "Amount: not an amount"),
    ],
)
def test_bad_rows_are_refused_at_their_line_and_nothing_is_written(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path,
    change: Any, expected: str,
) -> None:  # fmt: skip
    bad = tmp_path / "report.csv"
    bad.write_text(change((EXPORTS / "salesforce-report.csv").read_text(encoding="utf-8")))
    before = counts(conn)
    line = assert_one_error_line(cli(capsys, db_url, "import", "--tenant", "Acme", str(bad)))
    assert f"report.csv:2: {expected}" in line
    assert counts(conn) == before


def test_an_existing_tenants_currency_is_never_changed(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    imported(capsys, db_url, "--tenant", "Acme", "--currency", "EUR",
             str(EXPORTS / "salesforce-report.csv"))  # fmt: skip
    before = counts(conn)
    result = cli(capsys, db_url, "import", "--tenant", "Acme", "--currency", "USD",
                 str(EXPORTS / "salesforce-report.csv"))  # fmt: skip
    assert "reports in EUR" in assert_one_error_line(result)
    assert counts(conn) == before


def test_a_wide_quota_sheet_sets_each_period(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    imported(capsys, db_url, "--tenant", "Acme", str(EXPORTS / "salesforce-report.csv"),
             "--targets", str(EXPORTS / "targets-wide.csv"))  # fmt: skip
    found = conn.execute(
        "SELECT u.name, t.period_start, t.target_amount FROM dyno_crm.sales_target AS t"
        " JOIN dyno_crm.crm_user AS u ON u.tenant_id = t.tenant_id AND u.id = t.principal_id"
        " ORDER BY u.name, t.period_start"
    ).fetchall()
    conn.commit()
    assert found == [
        # FY2027 of a January fiscal year is 2027; an empty cell sets nothing.
        ("Ana Silva", dt.date(2027, 1, 1), Decimal("250000.00")),
        ("Ana Silva", dt.date(2027, 4, 1), Decimal("260000.00")),
        ("Ben Ode", dt.date(2027, 1, 1), Decimal("180000.00")),
        ("Ben Ode", dt.date(2027, 7, 1), Decimal("90000.00")),
    ]


def test_a_copy_of_the_export_elsewhere_is_the_same_source(
    capsys: Any, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Ids come from the tenant, the source and the record's key, not the file."""
    copy = tmp_path / "renamed.csv"
    shutil.copy(EXPORTS / "salesforce-report.csv", copy)
    imported(capsys, db_url, "--tenant", "Acme", str(EXPORTS / "salesforce-report.csv"))
    before = counts(conn)
    lines = imported(capsys, db_url, "--tenant", "Acme", str(copy))
    assert "3 unchanged" in lines[1]
    assert counts(conn) == before


EDGE_EXPORT = (
    '"Id","Name","Owner.Name","StageName","IsWon","IsClosed","Amount","CurrencyIsoCode",'
    '"CloseDate","ForecastCategoryName","Probability","RecordType.Name"\r\n'
    '"e1","=HYPERLINK(""x"")","Zoë ""Z"" Ng","Prospecting","false","false",'
    '"9999999999999999.99","usd","0001-01-01","Best Case","0.5",""\r\n'
    '"e2","line\rbreak , [b]x[/b]","","Closed Won","true","true","0","JPY","9999-12-31",'
    '"Closed","100","Renewal"\r\n'
    '"e3","\x1b[31mred","\x1b[2Jowner","Prospecting","false","false","","","",'
    '"Omitted","","Renewal"\r\n'
)


@pytest.mark.parametrize(
    ("name", "preset"),
    [("salesforce-report.csv", None), ("salesforce.csv", None), ("hubspot.csv", None),
     ("pipedrive.csv", None), ("maven-pipeline.csv", str(MAVEN)), ("edge.csv", "salesforce")],
)  # fmt: skip
def test_an_imports_deals_pass_the_checks_of_load_that_it_skips(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, preset: str | None
) -> None:
    """An import hands its deals to the load as checked values (their checks are not
    run again): here they go through the load's own path for rows instead, every value,
    key and reference check included, twice (a new tenant, then every deal unchanged),
    and the import ends as it does without them."""
    from pipeline_coverage.importing import crm
    from pipeline_coverage.importing.load import load_tables as real

    def fully_checked(conn: Any, rows: Any, *, staged: Any, **options: Any) -> Any:
        rows = dict(rows)
        for file, made in staged.items():
            with conn.cursor() as cur:
                cur.execute(made(cur))
                rows[file] = [(row[0], row[1:]) for row in cur.fetchall()]
        return real(conn, rows, **options)

    export = EXPORTS / name
    if name == "edge.csv":
        export = tmp_path / name
        export.write_bytes(EDGE_EXPORT.encode("utf-8"))
    request = crm.ImportRequest(tenant="Checked", deals=export, format=preset)
    outcomes = []
    for checked in (True, False, True):
        if not checked:
            monkeypatch.setattr("pipeline_coverage.importing.crm.load_tables", fully_checked)
        with psycopg.connect(db_url) as conn:
            outcomes.append(crm.import_export(conn, request))
        monkeypatch.setattr("pipeline_coverage.importing.crm.load_tables", real)
    first, again, last = (next(x for x in o.loads if x.table == "deal") for o in outcomes)
    assert first.rows == first.inserted > 0
    assert again.rows == first.rows
    assert (again.inserted, again.updated) == (0, 0)
    assert (last.inserted, last.updated) == (0, 0)
