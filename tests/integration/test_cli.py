"""The command line (SPEC.md §6) against a real PostgreSQL.

Most tests call ``pipeline_coverage.cli.main`` in-process and read its output with
``capsys``; a few run ``python -m pipeline_coverage`` as a real subprocess.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest

from pipeline_coverage import demo as demo_data
from pipeline_coverage.cli import main
from pipeline_coverage.db import migrate
from pipeline_coverage.render import CSV_COLUMNS
from tests.factory import Crm
from tests.oracle import Oracle

PREFIX = "pipeline-coverage: error:"
#: Nothing listens on port 1: connecting fails at once.
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"
Q1 = ("--period-start", "2026-01-01", "--period-end", "2026-04-01")
COMMANDS = ("db", "load", "run", "show", "runs", "demo")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No URL from the environment, plain output, and the signal handlers main() installs
    are put back afterwards."""
    for name in (
        "DATABASE_URL",
        "PIPELINE_COVERAGE_DEBUG",
        "FORCE_COLOR",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIPELINE_COVERAGE_DATA_DIR", str(tmp_path / "embedded"))
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def cli(capsys: pytest.CaptureFixture[str], url: str | None, *args: str) -> Result:
    """Run the command in-process (with ``--database-url url`` unless ``url`` is None)."""
    argv = (["--database-url", url] if url is not None else []) + list(args)
    code = main(argv)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_one_error_line(result: Result, code: int = 2) -> str:
    """An expected error: the exit code, one line on stderr, no traceback, no output."""
    assert result.code == code, result
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith(PREFIX), result.err
    assert "Traceback" not in result.err
    assert result.out == ""
    return result.err_lines[0]


def subprocess_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipeline_coverage ARGS`` as a real process."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PIPELINE_COVERAGE_DEBUG")
    }
    env["PIPELINE_COVERAGE_DATA_DIR"] = str(tmp_path / "embedded")
    return subprocess.run(
        [sys.executable, "-m", "pipeline_coverage", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def run_count(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM dyno_crm.report_run"))


def no_floats(value: str) -> NoReturn:
    raise AssertionError(f"a float in JSON output: {value}")


def parse_json(text: str) -> Any:
    """JSON output, refusing any float (amounts must be decimal strings)."""
    return json.loads(text, parse_float=no_floats)


@dataclass(frozen=True)
class Scenario:
    tenant: uuid.UUID
    other_tenant: uuid.UUID
    alice: uuid.UUID
    bob: uuid.UUID
    carl: uuid.UUID
    east: uuid.UUID
    west: uuid.UUID
    pipeline: uuid.UUID
    bea: uuid.UUID
    north: uuid.UUID
    other_pipeline: uuid.UUID

    def fill(self, args: tuple[str, ...]) -> list[str]:
        values = {name: str(value) for name, value in vars(self).items()}
        return [arg.format(**values) for arg in args]


@pytest.fixture
def scenario(conn: psycopg.Connection[Any]) -> Scenario:
    """Tenant "Acme Corp": Alice (1,250.50 open against a 1,000.00 target), Bob, and Carl
    (inactive, nothing in scope); two teams. Tenant "Beta GmbH": Bea and team North."""
    crm = Crm(conn)
    tenant = crm.tenant("Acme Corp")
    alice = crm.user(tenant, "Alice Andersen")
    bob = crm.user(tenant, "Bob Becker")
    carl = crm.user(tenant, "Carl Cold", active=False)
    east = crm.group(tenant, "East Team")
    west = crm.group(tenant, "West Team")
    crm.member(tenant, east, alice)
    pipeline = crm.pipeline(tenant, "New Business")
    open_stage = crm.stage(tenant, pipeline, "IN_PROGRESS")
    won = crm.stage(tenant, pipeline, "DONE_SUCCESS")
    crm.deal(
        tenant,
        pipeline,
        open_stage,
        "1250.50",
        expected=dt.date(2026, 2, 15),
        owner=alice,
        owner_group=east,
    )
    crm.deal(tenant, pipeline, won, "500.00", expected=dt.date(2026, 2, 1), owner=bob)
    crm.target(tenant, "USER", alice, dt.date(2026, 1, 1), dt.date(2026, 4, 1), "1000.00")
    crm.target(tenant, "GROUP", east, dt.date(2026, 1, 1), dt.date(2026, 4, 1), "2000.00")
    other = crm.tenant("Beta GmbH")
    bea = crm.user(other, "Bea Brown")
    north = crm.group(other, "North Team")
    other_pipeline = crm.pipeline(other, "Beta Sales")
    return Scenario(
        tenant, other, alice, bob, carl, east, west, pipeline, bea, north, other_pipeline
    )


def single_run(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario, *extra: str
) -> Result:
    return cli(
        capsys,
        db_url,
        "run",
        "--tenant",
        str(scenario.tenant),
        *Q1,
        "--principal-type",
        "USER",
        "--principal-id",
        str(scenario.alice),
        *extra,
    )


# --- db ------------------------------------------------------------------------------


def test_db_status_on_a_migrated_database(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    result = cli(capsys, db_url, "db", "status")

    assert result.code == 0, result
    assert f"schema revision: {migrate.head_revision()}" in result.out
    assert "up to date" in result.out
    assert result.err == ""


@pytest.mark.parametrize("url", ["", "   "])
def test_an_empty_database_url_is_a_usage_error_not_the_embedded_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str
) -> None:
    """``--database-url "$URL"`` with the variable unset must not quietly start (and
    load into) a throwaway embedded server."""
    error = assert_one_error_line(cli(capsys, url, "tenants"))
    assert "--database-url is empty" in error
    assert not (tmp_path / "embedded").exists()


def test_a_principal_without_a_row_in_the_run_is_an_error_not_an_empty_list(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    """``show --deals`` and ``compare`` for a principal id: one the runs have no row for
    (a user's id given as a group's, say) is reported, not answered with nothing."""
    assert cli(capsys, db_url, "demo", "--deals", "300").code == 0
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT f.run_id, f.principal_id FROM dyno_crm.report_pipeline_coverage_fact AS f"
            " JOIN dyno_crm.report_run AS r ON r.tenant_id = f.tenant_id AND r.id = f.run_id"
            # (the demo's run, not one of its made-up past quarters: those have no deals)
            " WHERE f.principal_type = 'USER' AND NOT r.parameters ? 'demo_history' LIMIT 1"
        ).fetchone()
    assert row is not None
    run, user = str(row[0]), str(row[1])
    assert cli(capsys, db_url, "show", run, "--deals", "--principal-type", "user",
               "--principal-id", user, "--format", "json").code == 0  # fmt: skip
    shown = cli(capsys, db_url, "show", run, "--deals", "--principal-type", "group",
                "--principal-id", user)  # fmt: skip
    error = assert_one_error_line(shown)
    assert f"principal_id: run {run} has no row for GROUP {user}" in error
    compared = cli(capsys, db_url, "compare", run, run, "--principal-type", "group",
                   "--principal-id", user)  # fmt: skip
    error = assert_one_error_line(compared)
    assert f"principal_id: neither run has a row for GROUP {user}" in error


def test_db_status_on_an_empty_database(
    capsys: pytest.CaptureFixture[str], empty_db_url: str
) -> None:
    result = cli(capsys, empty_db_url, "db", "status")

    # Not current is a failure, for scripts and health checks.
    assert result.code == 1, result
    assert "none (not migrated)" in result.out
    assert "db upgrade" in result.out


def test_db_upgrade_is_idempotent(capsys: pytest.CaptureFixture[str], empty_db_url: str) -> None:
    head = migrate.head_revision()

    first = cli(capsys, empty_db_url, "db", "upgrade")
    assert first.code == 0, first
    assert f"schema at revision {head}" in first.out
    assert scalar(empty_db_url, "SELECT to_regclass('dyno_crm.deal') IS NOT NULL") is True

    second = cli(capsys, empty_db_url, "db", "upgrade")
    assert second.code == 0, second
    assert f"schema at revision {head}" in second.out
    assert scalar(empty_db_url, "SELECT count(*) FROM dyno_crm.pipeline_coverage_version") == 1

    status = cli(capsys, empty_db_url, "db", "status")
    assert status.code == 0
    assert "up to date" in status.out


def test_db_sql_needs_no_database(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, UNREACHABLE, "db", "sql")

    assert result.code == 0, result
    assert "CREATE TABLE dyno_crm.deal" in result.out
    assert "CREATE TABLE dyno_crm.report_pipeline_coverage_fact" in result.out
    assert result.err == ""


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--tenant", str(uuid.uuid4()), *Q1, "--all"),
        ("run", "--tenant", str(uuid.uuid4()), *Q1, "--principal-type", "USER",
         "--principal-id", str(uuid.uuid4())),
        ("runs",),
        ("show", str(uuid.uuid4())),
    ],
    ids=["run-all", "run-single", "runs", "show"],
)  # fmt: skip
def test_commands_on_a_database_without_schema_ask_for_db_upgrade(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str], empty_db_url: str
) -> None:
    result = cli(capsys, empty_db_url, *args)

    line = assert_one_error_line(result)
    assert "db upgrade" in line
    assert scalar(empty_db_url, "SELECT to_regnamespace('dyno_crm') IS NULL") is True


# --- load ----------------------------------------------------------------------------


def write_csv(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def test_load_prints_one_line_per_file(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    tenant, alice, bob = (str(uuid.uuid4()) for _ in range(3))
    write_csv(data_dir / "tenants.csv", ("id", "name"), [[tenant, "Loaded Co"]])
    write_csv(
        data_dir / "users.csv",
        ("id", "tenant_id", "name", "email", "is_active"),
        [[alice, tenant, "Alice", "", "true"], [bob, tenant, "Bob", "b@x.test", "false"]],
    )

    first = cli(capsys, db_url, "load", str(data_dir))

    assert first.code == 0, first
    assert first.out.splitlines() == [
        "tenants.csv: 1 rows -> tenant (1 new, 0 updated, 0 unchanged)",
        "users.csv: 2 rows -> crm_user (2 new, 0 updated, 0 unchanged)",
        f"tenant Loaded Co: {tenant} (2 reps, 0 teams, 0 deals)",  # the id, to use next
    ]
    assert first.err == ""
    assert scalar(db_url, "SELECT name FROM dyno_crm.tenant WHERE id = %s", (tenant,)) == (
        "Loaded Co"
    )

    write_csv(
        data_dir / "users.csv",
        ("id", "tenant_id", "name", "email", "is_active"),
        [[alice, tenant, "Alice", "", "true"], [bob, tenant, "Bob", "b@x.test", "true"]],
    )
    second = cli(capsys, db_url, "load", str(data_dir))

    assert second.code == 0, second
    assert second.out.splitlines() == [
        "tenants.csv: 1 rows -> tenant (0 new, 0 updated, 1 unchanged)",
        "users.csv: 2 rows -> crm_user (0 new, 1 updated, 1 unchanged)",
        f"tenant Loaded Co: {tenant} (2 reps, 0 teams, 0 deals)",
    ]


def test_load_of_a_bad_folder_writes_nothing(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    tenant, pipeline, stage = (str(uuid.uuid4()) for _ in range(3))
    write_csv(data_dir / "tenants.csv", ("id", "name"), [[tenant, "Never Loaded"]])
    write_csv(data_dir / "pipelines.csv", ("id", "tenant_id", "name"), [[pipeline, tenant, "P"]])
    write_csv(
        data_dir / "pipeline_stages.csv",
        ("id", "tenant_id", "pipeline_id", "name", "stage_state", "probability", "position"),
        [[stage, tenant, pipeline, "Open", "IN_PROGRESS", "10", "1"]],
    )
    deal_header = (
        "id",
        "tenant_id",
        "pipeline_id",
        "stage_id",
        "name",
        "amount",
        "expected_close_date",
        "close_date",
        "owned_by_user_id",
        "assigned_user_id",
        "owned_by_group_id",
        "assigned_group_id",
    )
    good = [
        str(uuid.uuid4()),
        tenant,
        pipeline,
        stage,
        "Good",
        "10.00",
        "2026-02-01",
        "",
        "",
        "",
        "",
        "",
    ]
    write_csv(data_dir / "deals.csv", deal_header, [
        good,
        [str(uuid.uuid4()), tenant, pipeline, stage, "Bad amount", "12,5", "", "", "", "", "", ""],
        [str(uuid.uuid4()), tenant, pipeline, stage, "Bad date", "1", "2026-02-30", "", "", "", "",
         ""],
    ])  # fmt: skip

    result = cli(capsys, db_url, "load", str(data_dir))

    assert result.code == 2, result
    assert result.out == ""
    assert "Traceback" not in result.err
    lines = result.err_lines
    assert len(lines) == 1, lines  # one line (SPEC.md §6), every bad row located in it
    problems = lines[0].removeprefix(f"{PREFIX} ").split("; ")
    assert problems[0].startswith("deals.csv:3: amount: ")
    assert problems[1].startswith("deals.csv:4: expected_close_date: ")
    assert len(problems) == 2
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.tenant") == 0


def test_load_of_a_file_cut_short_by_an_end_marker_exits_2(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    """On PostgreSQL 15 a line holding only \\. ended COPY: 2 of 5 rows, exit 0."""
    lines = ["id,name"] + [f"{uuid.uuid4()},Tenant {n}" for n in range(5)]
    lines.insert(3, "\\.")
    (data_dir / "tenants.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    line = assert_one_error_line(cli(capsys, db_url, "load", str(data_dir)))

    assert line.startswith(f"{PREFIX} tenants.csv:4: malformed CSV: a line holding only \\.")
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.tenant") == 0


def test_load_of_huge_bad_values_prints_a_short_line(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    """Two 1 MB ids that are not UUIDs: two problems, not 2 MB of error output."""
    huge = ["x" * (1 << 20), "y" * (1 << 20)]
    write_csv(data_dir / "tenants.csv", ("id", "name"), [[value, "T"] for value in huge])

    line = assert_one_error_line(cli(capsys, db_url, "load", str(data_dir)))

    assert len(line) < 300, len(line)
    assert line.count("(1048576 characters)") == 2
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.tenant") == 0


def test_load_reports_the_problems_of_every_file_in_one_line(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    tenant = str(uuid.uuid4())
    write_csv(data_dir / "tenants.csv", ("id", "name"), [[tenant, "T"], ["not-a-uuid", "U"]])
    write_csv(data_dir / "users.csv", ("id", "tenant_id", "name", "mail", "is_active"), [])
    write_csv(
        data_dir / "groups.csv", ("id", "tenant_id", "name"), [[str(uuid.uuid4()), tenant, ""]]
    )

    line = assert_one_error_line(cli(capsys, db_url, "load", str(data_dir)))

    assert line.removeprefix(f"{PREFIX} ").split("; ") == [
        "tenants.csv:3: id: not a UUID: 'not-a-uuid'",
        "users.csv:1: mail: unknown column (expected: id,tenant_id,name,email,is_active)",
        "users.csv:1: email: missing column",
        "groups.csv:2: name: required",
    ]
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.tenant") == 0


def test_a_load_of_another_formats_export_is_one_short_line(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    """A CRM's export dropped into a load folder (eleven columns the format does not
    know, none of those it needs): one line that names the file, the line and each
    column once, and lists the expected columns once."""
    export = ("Opportunity ID", "Opportunity Name", "Opportunity Owner", "Stage", "Amount",
              "Opportunity Currency", "Close Date", "Forecast Category", "Probability (%)",
              "Opportunity Record Type", "Account Name")  # fmt: skip
    write_csv(data_dir / "deals.csv", export, [])

    line = assert_one_error_line(cli(capsys, db_url, "load", str(data_dir)))

    expected = (
        "id,tenant_id,pipeline_id,stage_id,name,amount,expected_close_date,close_date,"
        "owned_by_user_id,assigned_user_id,owned_by_group_id,assigned_group_id"
    )
    assert line.count(expected) == 1
    assert line.removeprefix(f"{PREFIX} ") == (
        f"deals.csv:1: {', '.join(export)}: 11 unknown columns (expected: {expected};"
        " optional: forecast_category,currency); deals.csv:1: id, tenant_id, pipeline_id,"
        " stage_id, name, amount, expected_close_date, close_date, owned_by_user_id,"
        " assigned_user_id, owned_by_group_id, assigned_group_id: 12 missing columns"
    )
    assert all(line.count(name) == 1 for name in export)
    assert len(line) < 700
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.deal") == 0


def test_load_of_a_missing_folder_is_an_input_error(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    line = assert_one_error_line(cli(capsys, db_url, "load", str(data_dir / "absent")))

    assert "not a directory" in line


# --- run, show, runs -----------------------------------------------------------------


def test_run_single_principal_as_a_table(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    result = single_run(capsys, db_url, scenario)

    assert result.code == 0, result
    assert result.err == ""
    assert "Alice Andersen" in result.out
    assert str(scenario.alice) not in result.out  # the name, not only the UUID
    assert "Acme Corp" in result.out
    for cell in ("1,000.00", "1,250.50", "1.25x"):
        assert cell in result.out
    # The title is one line, however narrow the table (piped output does not wrap it).
    assert (
        "Pipeline coverage · Acme Corp · 2026-01-01 to 2026-04-01 (end exclusive) · amounts"
        " in USD" in result.out.splitlines()
    )
    assert run_count(db_url) == 1
    run_id = scalar(db_url, "SELECT id FROM dyno_crm.report_run")
    assert str(run_id) in result.out


def test_run_single_principal_as_json(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    result = single_run(capsys, db_url, scenario, "--format", "json")

    assert result.code == 0, result
    document = parse_json(result.out)
    assert uuid.UUID(document["run_id"]) == scalar(db_url, "SELECT id FROM dyno_crm.report_run")
    assert document["run"]["tenant_id"] == str(scenario.tenant)
    assert (document["run"]["period_start"], document["run"]["period_end"]) == (
        "2026-01-01",
        "2026-04-01",
    )
    assert document["run"]["period_label"] == "2026-Q1 · 2026-01-01 \u2013 2026-03-31"
    assert len(document["rows"]) == 1
    row = document["rows"][0]
    assert row["principal_type"] == "USER"
    assert row["principal_id"] == str(scenario.alice)
    assert row["principal_name"] == "Alice Andersen"
    assert row["target_amount"] == "1000.00"
    assert row["open_amount"] == "1250.50"
    assert row["coverage_ratio"] == "1.2505"
    assert '"1250.50"' in result.out


def test_run_single_principal_as_csv(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    result = single_run(capsys, db_url, scenario, "--format", "csv")

    assert result.code == 0, result
    records = list(csv.reader(io.StringIO(result.out)))
    assert records[0] == list(CSV_COLUMNS)
    assert len(records) == 2
    row = dict(zip(records[0], records[1], strict=True))
    assert row["principal_name"] == "Alice Andersen"
    assert (row["target_amount"], row["open_amount"], row["coverage_ratio"]) == (
        "1000.00", "1250.50", "1.2505",
    )  # fmt: skip
    assert row["pipeline_id"] == ""


def test_show_prints_a_stored_run(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    created = single_run(capsys, db_url, scenario, "--format", "json")
    run_id = parse_json(created.out)["run_id"]

    table = cli(capsys, db_url, "show", run_id)
    assert table.code == 0, table
    assert "Alice Andersen" in table.out
    assert run_id in table.out
    assert "1,250.50" in table.out

    as_json = cli(capsys, db_url, "show", run_id, "--format", "json")
    assert as_json.code == 0, as_json
    assert parse_json(as_json.out) == parse_json(created.out)

    as_csv = cli(capsys, db_url, "show", run_id, "--format", "csv")
    assert as_csv.code == 0
    assert len(as_csv.out.splitlines()) == 2
    assert run_count(db_url) == 1  # show writes nothing


def test_runs_lists_stored_runs(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    run_a1 = parse_json(single_run(capsys, db_url, scenario, "--format", "json").out)["run_id"]
    all_a = cli(
        capsys, db_url, "run", "--tenant", str(scenario.tenant), *Q1, "--all", "--format", "json"
    )
    run_a2 = parse_json(all_a.out)["run_id"]
    run_b = parse_json(
        cli(
            capsys,
            db_url,
            "run",
            "--tenant",
            str(scenario.other_tenant),
            *Q1,
            "--all",
            "--format",
            "json",
        ).out
    )["run_id"]

    table = cli(capsys, db_url, "runs")
    assert table.code == 0, table
    for run_id in (run_a1, run_a2, run_b):
        assert run_id in table.out
    assert "Acme Corp" in table.out
    assert "Beta GmbH" in table.out

    only_a = cli(capsys, db_url, "runs", "--tenant", str(scenario.tenant))
    assert only_a.code == 0, only_a
    assert run_a1 in only_a.out
    assert run_a2 in only_a.out
    assert run_b not in only_a.out

    as_json = cli(capsys, db_url, "runs", "--format", "json")
    assert as_json.code == 0, as_json
    listed = parse_json(as_json.out)["runs"]
    assert {entry["run_id"] for entry in listed} == {run_a1, run_a2, run_b}
    by_id = {entry["run_id"]: entry for entry in listed}
    assert by_id[run_a1]["row_count"] == 1
    assert by_id[run_b]["tenant_id"] == str(scenario.other_tenant)

    b_json = cli(capsys, db_url, "runs", "--tenant", str(scenario.other_tenant), "--format", "json")
    assert [entry["run_id"] for entry in parse_json(b_json.out)["runs"]] == [run_b]


def test_run_all_prints_one_row_per_principal(
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    conn: psycopg.Connection[Any],
    scenario: Scenario,
) -> None:
    as_json = cli(
        capsys, db_url, "run", "--tenant", str(scenario.tenant), *Q1, "--all", "--format", "json"
    )

    assert as_json.code == 0, as_json
    rows = parse_json(as_json.out)["rows"]
    found = [(row["principal_type"], uuid.UUID(row["principal_id"])) for row in rows]
    expected = {
        ("USER", scenario.alice),
        ("USER", scenario.bob),
        ("GROUP", scenario.east),
        ("GROUP", scenario.west),
    }
    assert len(found) == len(set(found))  # one row per principal
    assert set(found) == expected
    assert set(found) == Oracle(conn, scenario.tenant).principals(
        dt.date(2026, 1, 1), dt.date(2026, 4, 1)
    )
    by_principal = {(row["principal_type"], row["principal_id"]): row for row in rows}
    assert by_principal[("GROUP", str(scenario.east))]["open_amount"] == "1250.50"
    assert by_principal[("GROUP", str(scenario.east))]["coverage_ratio"] == "0.6253"
    assert by_principal[("USER", str(scenario.bob))]["open_amount"] == "0.00"
    assert by_principal[("USER", str(scenario.bob))]["target_amount"] is None

    table = cli(capsys, db_url, "run", "--tenant", str(scenario.tenant), *Q1, "--all")
    assert table.code == 0, table
    for name in ("Alice Andersen", "Bob Becker", "East Team", "West Team"):
        assert table.out.count(name) == 1, name
    assert "Carl Cold" not in table.out  # inactive, with nothing in scope
    assert run_count(db_url) == 2


# --- exit codes and error lines ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("run", *Q1, "--all"), id="missing-tenant"),
        pytest.param(("run", "--tenant", "not-a-uuid", *Q1, "--all"), id="unknown-tenant-name"),
        pytest.param(("run", "--tenant", "{tenant}", "--period-start", "2026-13-01",
                      "--period-end", "2026-04-01", "--all"), id="bad-date"),
        pytest.param(("run", "--tenant", "{tenant}", "--period-start", "2026-02-30",
                      "--period-end", "2026-04-01", "--all"), id="impossible-date"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--all", "--principal-type", "USER",
                      "--principal-id", "{alice}"), id="all-and-principal"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--all", "--principal-id", "{alice}"),
                     id="all-and-principal-id"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1), id="neither-all-nor-principal"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--principal-id", "{alice}"),
                     id="principal-id-without-type"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--principal-type", "USER",
                      "--principal-id", "{alice}", "--by-pipeline"), id="by-pipeline-without-all"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--principal-type", "TEAM",
                      "--principal-id", "{alice}"), id="bad-principal-type"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--all", "--format", "xml"),
                     id="bad-format"),
        pytest.param(("show", "not-a-uuid"), id="show-bad-uuid"),
        pytest.param(("runs", "--limit", "0"), id="runs-limit-0"),
        pytest.param(("frobnicate",), id="unknown-command"),
        pytest.param(("db", "downgrade"), id="unknown-db-command"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_with_one_line(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    result = cli(capsys, db_url, *scenario.fill(args))

    assert_one_error_line(result)
    assert run_count(db_url) == 0


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param(("run", "--tenant", "{tenant}", "--period-start", "2026-04-01",
                      "--period-end", "2026-01-01", "--principal-type", "USER",
                      "--principal-id", "{alice}"), "period_end", id="end-before-start"),
        pytest.param(("run", "--tenant", "{tenant}", "--period-start", "2026-04-01",
                      "--period-end", "2026-04-01", "--all"), "period_end", id="empty-period"),
        pytest.param(("run", "--tenant", "{tenant}", "--period-start", "0001-01-01",
                      "--period-end", "9999-12-31", "--all"), "at most 366 days",
                     id="period-over-a-year"),
        pytest.param(("run", "--tenant", "{tenant}", "--period-start", "2026-01-01",
                      "--period-end", "2027-01-03", "--principal-type", "USER",
                      "--principal-id", "{alice}"), "at most 366 days",
                     id="single-run-over-a-year"),
        pytest.param(("run", "--tenant", "{carl}", *Q1, "--all"), "no tenant {carl}",
                     id="unknown-tenant-all"),
        pytest.param(("run", "--tenant", "{alice}", *Q1, "--principal-type", "USER",
                      "--principal-id", "{alice}"), "no tenant {alice}", id="unknown-tenant"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--principal-type", "USER",
                      "--principal-id", "{bea}"), "no user {bea}",
                     id="principal-of-another-tenant"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--principal-type", "GROUP",
                      "--principal-id", "{north}"), "no group {north}",
                     id="group-of-another-tenant"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--principal-type", "GROUP",
                      "--principal-id", "{alice}"), "no group {alice}", id="user-as-group"),
        pytest.param(("run", "--tenant", "{tenant}", *Q1, "--all", "--pipeline",
                      "{other_pipeline}"), "no pipeline {other_pipeline}",
                     id="pipeline-of-another-tenant"),
        pytest.param(("show", "{carl}"), "no run {carl}", id="unknown-run"),
    ],
)  # fmt: skip
def test_validation_errors_exit_2_and_write_nothing(
    args: tuple[str, ...],
    mentions: str,
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    scenario: Scenario,
) -> None:
    result = cli(capsys, db_url, *scenario.fill(args))

    line = assert_one_error_line(result)
    assert scenario.fill((mentions,))[0] in line
    assert run_count(db_url) == 0
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact") == 0


def test_a_bad_run_id_is_a_usage_error_even_without_a_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A usage error wins over an unreachable database: nothing needs connecting."""
    result = cli(capsys, UNREACHABLE, "show", "nope")

    assert_one_error_line(result, code=2)


def test_an_unreachable_database_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = cli(capsys, UNREACHABLE, "runs")

    line = assert_one_error_line(result, code=1)
    assert "cannot connect" in line


@pytest.mark.parametrize(
    "args",
    [("db", "status"), ("db", "upgrade"), ("load", "."), ("show", str(uuid.uuid4())),
     ("run", "--tenant", str(uuid.uuid4()), *Q1, "--all")],
    ids=["db-status", "db-upgrade", "load", "show", "run"],
)  # fmt: skip
def test_every_command_fails_cleanly_without_a_database(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, UNREACHABLE, *args)

    assert result.code == 1, result
    assert len(result.err_lines) == 1, result.err
    assert result.err.startswith("pipeline-coverage: ")
    assert "Traceback" not in result.err
    assert result.out == ""


def test_main_emits_no_deprecation_warning(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        result = cli(capsys, UNREACHABLE, "db", "sql")

    assert result.code == 0


# --- help ----------------------------------------------------------------------------


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, None, "--help")

    assert result.code == 0, result
    listed = set()
    in_commands = False
    for line in result.out.splitlines():
        if line.strip() == "Commands:":
            in_commands = True
        elif in_commands and line.startswith("  ") and line.strip():
            listed.add(line.split()[0])
    assert listed >= set(COMMANDS), result.out


@pytest.mark.parametrize(
    "command",
    [("db",), ("db", "upgrade"), ("db", "status"), ("db", "sql"), ("load",), ("run",), ("show",),
     ("runs",), ("demo",)],
    ids=lambda command: "-".join(command),
)  # fmt: skip
def test_every_command_has_help(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, UNREACHABLE, *command, "--help")

    assert result.code == 0, result
    assert result.out.startswith(f"Usage: pipeline-coverage {' '.join(command)}")
    assert result.err == ""


# --- demo ----------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_loads_once_and_prints_a_table(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    tenant_by_name = "SELECT count(*) FROM dyno_crm.tenant WHERE name = %s"

    first = cli(capsys, db_url, "demo", "--deals", "300")

    assert first.code == 0, first
    assert demo_data.TENANT_NAME in first.out
    assert "Pipeline coverage" in first.out
    assert "Coverage of remaining" in first.out  # a column header of the table
    assert "Enterprise East" in first.out  # a team, by name
    assert scalar(db_url, tenant_by_name, (demo_data.TENANT_NAME,)) == 1
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.deal") == 300
    run_rows = scalar(db_url, "SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact")
    assert run_rows >= 4 + 20  # every team and every active rep

    second = cli(capsys, db_url, "demo", "--deals", "300")

    assert second.code == 0, second
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.tenant") == 1
    assert scalar(db_url, tenant_by_name, (demo_data.TENANT_NAME,)) == 1
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.deal") == 300
    # the two demos' runs, and one made-up history of 8 past quarters (8 x 13 weekly runs
    # and a closing run each), which the second demo replaced
    assert run_count(db_url) == 2 + 8 * 14
    open_total = scalar(db_url, "SELECT sum(amount) FROM dyno_crm.deal")
    assert isinstance(open_total, Decimal)


# --- real processes ------------------------------------------------------------------


@pytest.mark.slow
def test_subprocess_usage_error(tmp_path: Path, db_url: str) -> None:
    done = subprocess_cli(tmp_path, "--database-url", db_url, "run", *Q1, "--all")

    assert done.returncode == 2, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"{PREFIX} ")
    assert "--tenant" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_subprocess_unreachable_database(tmp_path: Path) -> None:
    done = subprocess_cli(tmp_path, "--database-url", UNREACHABLE, "runs")

    assert done.returncode == 1, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"{PREFIX} cannot connect")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_subprocess_unknown_run(tmp_path: Path, db_url: str) -> None:
    missing = str(uuid.uuid4())

    done = subprocess_cli(tmp_path, "--database-url", db_url, "show", missing)

    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [f"{PREFIX} run_id: no run {missing}"]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_subprocess_database_url_from_the_environment(
    tmp_path: Path, db_url: str, scenario: Scenario
) -> None:
    env_run = subprocess.run(
        [sys.executable, "-m", "pipeline_coverage", "run", "--tenant", str(scenario.tenant), *Q1,
         "--principal-type", "USER", "--principal-id", str(scenario.alice), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "DATABASE_URL": db_url,
             "PIPELINE_COVERAGE_DATA_DIR": str(tmp_path / "embedded")},
    )  # fmt: skip

    assert env_run.returncode == 0, env_run
    assert env_run.stderr == ""
    assert parse_json(env_run.stdout)["rows"][0]["open_amount"] == "1250.50"
    assert run_count(db_url) == 1


# --- names instead of ids -------------------------------------------------------------


def test_tenants_and_principals_list_names_and_ids(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    listed = cli(capsys, db_url, "tenants", "--format", "json")
    assert listed.code == 0, listed
    tenants = parse_json(listed.out)["tenants"]
    acme = next(t for t in tenants if t["id"] == str(scenario.tenant))
    assert (acme["name"], acme["currency"]) == ("Acme Corp", "USD")
    assert acme["users"] >= 2

    people = cli(capsys, db_url, "principals", "--tenant", "acme corp", "--type", "USER",
                 "--format", "json")  # fmt: skip
    assert people.code == 0, people
    found = {(p["name"], p["id"]) for p in parse_json(people.out)["principals"]}
    assert ("Alice Andersen", str(scenario.alice)) in found
    assert all(p["principal_type"] == "USER" for p in parse_json(people.out)["principals"])
    table = cli(capsys, db_url, "principals", "--tenant", str(scenario.tenant))
    assert "East Team" in table.out
    assert str(scenario.east) in table.out


def test_run_takes_names_for_tenant_principal_and_pipeline(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    by_name = cli(capsys, db_url, "run", "--tenant", "Acme Corp", *Q1, "--principal", "alice",
                  "--format", "json")  # fmt: skip
    assert by_name.code == 0, by_name
    [row] = parse_json(by_name.out)["rows"]
    assert (row["principal_type"], row["principal_id"]) == ("USER", str(scenario.alice))
    by_id = single_run(capsys, db_url, scenario, "--format", "json")
    assert parse_json(by_id.out)["rows"][0]["open_amount"] == row["open_amount"]

    team = cli(capsys, db_url, "run", "--tenant", "acme", *Q1, "--principal", "East Team",
               "--format", "json")  # fmt: skip
    assert parse_json(team.out)["rows"][0]["principal_id"] == str(scenario.east)


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param(("run", "--tenant", "Nobody Inc", *Q1, "--all"),
                     ["no tenant named 'Nobody Inc'", "Acme Corp ("], id="unknown-tenant"),
        pytest.param(("run", "--tenant", "Acme Corp", *Q1, "--principal", "Team"),
                     ["could be 2 rep or teams", "East Team (GROUP", "West Team (GROUP"],
                     id="ambiguous-principal"),
        pytest.param(("run", "--tenant", "Acme Corp", *Q1, "--principal", "Zed"),
                     ["no rep or team named 'Zed'", "Alice Andersen"], id="unknown-principal"),
        pytest.param(("run", "--tenant", "Acme Corp", *Q1, "--all", "--pipeline", "Nope"),
                     ["no pipeline named 'Nope'"], id="unknown-pipeline"),
    ],
)  # fmt: skip
def test_unknown_or_ambiguous_names_exit_2_listing_the_candidates(
    args: tuple[str, ...],
    mentions: list[str],
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    scenario: Scenario,
) -> None:
    result = cli(capsys, db_url, *args)
    line = assert_one_error_line(result)
    for text in mentions:
        assert text in line
    assert run_count(db_url) == 0


def test_run_takes_a_period_expression_in_the_fiscal_calendar(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE dyno_crm.tenant SET fiscal_year_start_month = 7 WHERE id = %s",
            (scenario.tenant,),
        )
    fiscal = cli(capsys, db_url, "run", "--tenant", "Acme Corp", "--period", "FY2027-Q1",
                 "--all", "--format", "json")  # fmt: skip
    assert fiscal.code == 0, fiscal
    document = parse_json(fiscal.out)
    header = document["run"]
    assert (header["period_start"], header["period_end"]) == ("2026-07-01", "2026-10-01")
    assert header["parameters"]["period"] == "FY2027-Q1"
    assert header["period_label"].startswith("FY2027-Q1 · 2026-07-01")
    calendar = cli(capsys, db_url, "run", "--tenant", "Acme Corp", "--period", "2026-Q1",
                   "--principal", "Alice Andersen", "--format", "json")  # fmt: skip
    assert parse_json(calendar.out)["rows"][0]["open_amount"] == "1250.50"  # as with dates
    relative = cli(capsys, db_url, "run", "--tenant", "Acme Corp", "--period", "this-quarter",
                   "--as-of", "2026-08-15", "--all", "--format", "json")  # fmt: skip
    assert parse_json(relative.out)["run"]["period_start"] == "2026-07-01"

    both = cli(capsys, db_url, "run", "--tenant", "Acme Corp", "--period", "2026-Q1", *Q1,
               "--all")  # fmt: skip
    assert "not both" in assert_one_error_line(both)
    bad = cli(capsys, db_url, "run", "--tenant", "Acme Corp", "--period", "Q5", "--all")
    assert "not a period expression" in assert_one_error_line(bad)


def test_show_deals_takes_a_principal_by_name(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    made = cli(capsys, db_url, "run", "--tenant", "Acme Corp", *Q1, "--all", "--format", "json")
    run_id = parse_json(made.out)["run_id"]
    by_name = cli(capsys, db_url, "show", run_id, "--deals", "--principal", "Alice",
                  "--format", "json")  # fmt: skip
    assert by_name.code == 0, by_name
    deals = parse_json(by_name.out)["deals"]
    assert {(d["principal_type"], d["principal_id"]) for d in deals} == {
        ("USER", str(scenario.alice))
    }
    by_id = cli(capsys, db_url, "show", run_id, "--deals", "--principal-type", "user",
                "--principal-id", str(scenario.alice), "--format", "json")  # fmt: skip
    assert parse_json(by_id.out)["deals"] == deals
    # A team by name; a name the tenant does not have, and a principal without --deals.
    team = cli(capsys, db_url, "show", run_id, "--deals", "--principal", "East Team")
    assert team.code == 0, team
    assert "Alice" in team.out or "East Team" in team.out
    for args, message in (
        (("--deals", "--principal", "Nobody"), "Nobody"),
        (("--principal", "Alice"), "go with --deals"),
    ):
        refused = cli(capsys, db_url, "show", run_id, *args)
        assert (refused.code, refused.out) == (2, ""), refused
        assert message in assert_one_error_line(refused)


def test_runs_tell_apart_the_runs_of_one_period(
    capsys: pytest.CaptureFixture[str], db_url: str, scenario: Scenario
) -> None:
    """Runs of one quarter differ by their as-of day, roll-up and target matching: the
    list shows each."""
    made = {}
    for name, extra in (
        ("plain", ("--as-of", "2026-02-03")),
        ("rolled", ("--as-of", "2026-02-10", "--rollup")),
        ("within", ("--as-of", "2026-02-17", "--target-match", "within")),
    ):
        result = cli(capsys, db_url, "run", "--tenant", "Acme Corp", *Q1, "--all", *extra,
                     "--format", "json")  # fmt: skip
        assert result.code == 0, result
        made[name] = parse_json(result.out)["run_id"]
    listed = cli(capsys, db_url, "runs", "--tenant", "Acme Corp")
    assert listed.code == 0, listed
    assert "As of" in listed.out
    assert "Options" in listed.out
    lines = {name: next(line for line in listed.out.splitlines() if run_id[:8] in line)
             for name, run_id in made.items()}  # fmt: skip
    assert "2026-02-03" in lines["plain"]
    assert "rolled up" not in lines["plain"]
    assert "2026-02-10" in lines["rolled"]
    assert "rolled up" in lines["rolled"]
    assert "2026-02-17" in lines["within"]
    assert "targets within" in lines["within"]
