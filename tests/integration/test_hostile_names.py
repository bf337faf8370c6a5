"""Names from a CRM export that try to break the outputs: quotes, line breaks, spreadsheet
formulas, Rich markup, terminal escape sequences — for a tenant, rep, team, pipeline,
stage and deal, loaded with ``load``.

Every CSV reads back (Python's ``csv``) to exactly the names, in their columns and with
one record per row, a formula defused by a leading apostrophe; every table and text
line prints them literally, with no control character; JSON carries them exactly.
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pipeline_coverage.apikeys import create_api_key
from pipeline_coverage.cli import main

PREFIX = "pipeline-coverage: error:"
Q1 = ("--period-start", "2026-01-01", "--period-end", "2026-04-01")
#: One name per hazard (each a rep, a team, a pipeline, a stage and a deal).
HOSTILE = (
    "Ann\rRoe",
    "Ann\nRoe",
    'Ann "The Closer" Roe',
    "=1+1",
    "\r=1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "[/bold]",
    "[/]",
    "[link=http://evil.example]click me[/link]",
    "\x1b]0;title\x07",
    "\x1b[2J",
    "\x1b[31m",
    ":thumbs_up:, 1",
)
#: The tenant: every hazard at once, starting with a formula.
TENANT = "=cmd|' /C calc'!A0 [/] [link=http://evil.example]x[/link]\x1b]0;title\x07\x1b[2J\r\n\""
FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("DATABASE_URL", "PIPELINE_COVERAGE_DEBUG", "FORCE_COLOR", "TTY_COMPATIBLE",
                 "TTY_INTERACTIVE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIPELINE_COVERAGE_DATA_DIR", str(tmp_path / "embedded"))
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> Result:
    code = main(["--database-url", url, *args])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert result.err == "", result.err
    return result


def assert_inert(text: str) -> None:
    """Terminal output: no escape sequence (so no OSC 8 link, no title, no colour
    change), no BEL, no bare CR, no other control character but the line ends."""
    assert "\x1b" not in text, text
    assert "\x07" not in text, text
    assert "\x9b" not in text, text  # CSI
    assert "\x9d" not in text, text  # OSC
    assert "\r" not in text, text
    assert not any(ch < " " and ch != "\n" for ch in text), text
    assert "MarkupError" not in text


def defused(name: str) -> str:
    """A name as a CSV cell carries it."""
    return "'" + name if name.startswith(FORMULA) else name


def read_csv(text: str) -> list[dict[str, str]]:
    """The records of a CSV, each cell checked: none starts a formula unless defused (a
    number such as -12.50 is a number)."""
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    for record in records:
        assert None not in record, record  # a record with more fields than the header
        assert None not in record.values(), record  # or fewer: a line break split it
        for column, cell in record.items():
            assert not cell.startswith(FORMULA) or NUMBER.fullmatch(cell), (column, cell)
    return records


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def run_count(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM dyno_crm.report_run"))


def write_csv(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    """An export as a CRM writes one: CRLF records, a field holding a line break,
    a comma or a quote quoted."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


@dataclass(frozen=True)
class Names:
    """The loaded tenant: the i-th rep, team, pipeline, stage and deal are named HOSTILE[i]."""

    tenant: str
    reps: list[str]
    teams: list[str]
    pipelines: list[str]
    deals: list[str]
    others: dict[str, str]  # a tenant per hostile name: id -> name

    def name_of(self, principal_type: str, principal_id: str) -> str:
        where = self.reps if principal_type == "USER" else self.teams
        return HOSTILE[where.index(principal_id)]


def write_export(folder: Path) -> Names:
    tenant = str(uuid.uuid4())
    others = {str(uuid.uuid4()): name for name in HOSTILE}
    reps, teams, pipelines, stages, deals = ([str(uuid.uuid4()) for _ in HOSTILE]
                                             for _ in range(5))  # fmt: skip
    write_csv(folder / "tenants.csv", ("id", "name"),
              [[tenant, TENANT], *([i, name] for i, name in others.items())])  # fmt: skip
    named = {
        kind: list(zip(ids, HOSTILE, strict=True))
        for kind, ids in (("reps", reps), ("teams", teams), ("pipelines", pipelines))
    }
    write_csv(folder / "users.csv", ("id", "tenant_id", "name", "email", "is_active"),
              [[rep, tenant, name, "", "true"] for rep, name in named["reps"]])  # fmt: skip
    write_csv(folder / "groups.csv", ("id", "tenant_id", "name"),
              [[team, tenant, name] for team, name in named["teams"]])  # fmt: skip
    write_csv(folder / "group_members.csv", ("tenant_id", "group_id", "user_id"),
              [[tenant, team, rep] for team, rep in zip(teams, reps, strict=True)])  # fmt: skip
    write_csv(folder / "pipelines.csv", ("id", "tenant_id", "name"),
              [[pipeline, tenant, name] for pipeline, name in named["pipelines"]])  # fmt: skip
    write_csv(
        folder / "pipeline_stages.csv",
        ("id", "tenant_id", "pipeline_id", "name", "stage_state", "probability", "position"),
        [[stage, tenant, pipeline, name, "IN_PROGRESS", "50", "1"]
         for stage, pipeline, name in zip(stages, pipelines, HOSTILE, strict=True)],
    )  # fmt: skip
    write_csv(
        folder / "deals.csv",
        ("id", "tenant_id", "pipeline_id", "stage_id", "name", "amount", "expected_close_date",
         "close_date", "owned_by_user_id", "assigned_user_id", "owned_by_group_id",
         "assigned_group_id"),
        [[deal, tenant, pipeline, stage, name, f"{100 + i}.50", "2026-02-01", "", rep, "", team,
          ""]
         for i, (deal, pipeline, stage, name, rep, team)
         in enumerate(zip(deals, pipelines, stages, HOSTILE, reps, teams, strict=True))],
    )  # fmt: skip
    write_csv(
        folder / "sales_targets.csv",
        ("id", "tenant_id", "principal_type", "principal_id", "pipeline_id", "period_start",
         "period_end", "target_amount"),
        [[str(uuid.uuid4()), tenant, "USER", rep, "", "2026-01-01", "2026-04-01", "1000"]
         for rep in reps],
    )  # fmt: skip
    return Names(tenant, reps, teams, pipelines, deals, others)


@pytest.fixture
def names(capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path) -> Names:
    """The export, loaded, the names exactly as they were."""
    names = write_export(data_dir)
    ok(cli(capsys, db_url, "load", str(data_dir)))
    assert scalar(db_url, "SELECT name FROM dyno_crm.tenant WHERE id = %s", (names.tenant,)) == (
        TENANT
    )
    return names


def run_all(capsys: pytest.CaptureFixture[str], db_url: str, names: Names, *extra: str) -> str:
    """A batch run as JSON (its names exact); returns its id (RUN_ROWS: its row count)."""
    before = run_count(db_url)
    result = ok(cli(capsys, db_url, "run", "--tenant", names.tenant, *Q1, "--all", *extra,
                    "--format", "json"))  # fmt: skip
    document = json.loads(result.out)
    assert document["run"]["tenant_name"] == TENANT
    for row in document["rows"]:
        assert row["principal_name"] == names.name_of(row["principal_type"], row["principal_id"])
    assert run_count(db_url) == before + 1
    RUN_ROWS[str(document["run_id"])] = len(document["rows"])
    return str(document["run_id"])


RUN_ROWS: dict[str, int] = {}


# --- tables and text lines ---------------------------------------------------------


def test_run_all_prints_a_table_of_hostile_names_and_stores_its_run_once(
    capsys: pytest.CaptureFixture[str], db_url: str, names: Names
) -> None:
    for extra in ((), ("--by-pipeline",)):
        before = run_count(db_url)
        result = ok(cli(capsys, db_url, "run", "--tenant", names.tenant, *Q1, "--all", *extra))
        assert_inert(result.out)
        assert run_count(db_url) == before + 1
        heading = result.out.splitlines()[0]
        assert "[/] [link=http://evil.example]x[/link]" in heading  # literally
        assert "[/bold]" in result.out
        assert ":thumbs_up:" in result.out  # not an emoji


def test_show_and_compare_print_hostile_names_inert(
    capsys: pytest.CaptureFixture[str], db_url: str, names: Names
) -> None:
    run_a = run_all(capsys, db_url, names, "--by-pipeline")
    with psycopg.connect(db_url, autocommit=True) as db:  # every deal changes; one leaves
        db.execute("UPDATE dyno_crm.deal SET amount = amount + 1")
        db.execute("UPDATE dyno_crm.deal SET expected_close_date = '2026-05-01' WHERE id = %s",
                   (names.deals[3],))  # fmt: skip
    run_b = run_all(capsys, db_url, names, "--by-pipeline")
    runs = run_count(db_url)

    for args in (
        ("show", run_a),
        ("show", run_a, "--deals"),
        ("compare", run_a, run_b),
        ("compare", run_a, run_b, "--deals"),
        ("principals", "--tenant", names.tenant),
        ("snapshot", "--tenant", names.tenant, "--as-of", "2026-02-01"),
    ):
        result = ok(cli(capsys, db_url, *args))
        assert_inert(result.out)
        assert "[/bold]" in result.out or args[0] == "snapshot", args
    assert run_count(db_url) == runs + 2  # the snapshot's two quarters


def test_tenants_and_runs_list_tenants_named_with_markup(
    capsys: pytest.CaptureFixture[str], db_url: str, names: Names
) -> None:
    [markup] = [tenant for tenant, name in names.others.items() if name == "[/]"]
    ok(cli(capsys, db_url, "run", "--tenant", markup, *Q1, "--all"))
    run_all(capsys, db_url, names)

    listed = ok(cli(capsys, db_url, "tenants"))
    assert_inert(listed.out)
    assert "[/]" in listed.out
    assert "[/bold]" in listed.out
    for args in (("runs",), ("runs", "--tenant", markup)):
        result = ok(cli(capsys, db_url, *args))
        assert_inert(result.out)
        assert "[/]" in result.out


# --- CSV -----------------------------------------------------------------------------


def test_every_csv_reads_back_to_the_exact_names(
    capsys: pytest.CaptureFixture[str], db_url: str, names: Names
) -> None:
    run_a = run_all(capsys, db_url, names, "--by-pipeline")
    with psycopg.connect(db_url, autocommit=True) as db:
        db.execute("UPDATE dyno_crm.deal SET amount = amount + 1")
        db.execute("UPDATE dyno_crm.deal SET expected_close_date = '2026-05-01' WHERE id = %s",
                   (names.deals[3],))  # fmt: skip
    run_b = run_all(capsys, db_url, names, "--by-pipeline")
    pipeline_names = dict(zip(names.pipelines, HOSTILE, strict=True))
    deal_names = dict(zip(names.deals, HOSTILE, strict=True))

    def csv_of(*args: str) -> list[dict[str, str]]:
        return read_csv(ok(cli(capsys, db_url, *args, "--format", "csv")).out)

    rows = csv_of("show", run_a)
    assert len(rows) == RUN_ROWS[run_a] > 2 * len(HOSTILE)
    for row in rows:
        assert row["principal_name"] == defused(
            names.name_of(row["principal_type"], row["principal_id"])
        )
        assert row["pipeline_name"] == defused(pipeline_names[row["pipeline_id"]])

    deals = csv_of("show", run_a, "--deals")
    assert len(deals) == 2 * len(HOSTILE)  # each deal credited to its rep and its team
    for deal in deals:
        name = deal_names[deal["deal_id"]]
        assert deal["deal_name"] == defused(name)
        assert deal["stage_name"] == deal["deal_pipeline_name"] == defused(name)
        assert NUMBER.fullmatch(deal["amount"])

    movement = csv_of("compare", run_a, run_b)
    assert len(movement) == RUN_ROWS[run_a]
    for row in movement:
        assert row["principal_name"] == defused(
            names.name_of(row["principal_type"], row["principal_id"])
        )
        assert row["pipeline_name"] == defused(pipeline_names[row["pipeline_id"]])
    assert any(row["left_amount"].startswith("103") for row in movement)

    moved = csv_of("compare", run_a, run_b, "--deals")
    assert len(moved) == 2 * len(HOSTILE)  # ten changed and one left, for rep and team
    assert {row["step"] for row in moved} == {"changed", "left"}
    for row in moved:
        name = defused(deal_names[row["deal_id"]])
        assert row["deal_name"] == row["a_stage_name"] == row["a_pipeline_name"] == name
        owner = row["a_owner_name"]
        assert owner == defused(HOSTILE[names.reps.index(row["a_owner_user_id"])])
        if row["step"] == "left":
            assert row["now_stage_name"] == row["now_pipeline_name"] == name
            assert row["now_owner_name"] == owner
        else:
            assert row["b_stage_name"] == name

    listed = csv_of("runs")
    assert len(listed) == 2
    assert {row["tenant_name"] for row in listed} == {defused(TENANT)}
    assert listed[0]["tenant_name"].startswith("'=cmd")

    tenants = {row["id"]: row["name"] for row in csv_of("tenants")}
    assert tenants == {names.tenant: defused(TENANT)} | {
        tenant: defused(name) for tenant, name in names.others.items()
    }
    principals = csv_of("principals", "--tenant", names.tenant)
    assert len(principals) == 2 * len(HOSTILE)
    for row in principals:
        assert row["name"] == defused(names.name_of(row["principal_type"], row["id"]))


def test_the_api_csvs_read_back_to_the_exact_names(
    live_server: str, conn: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str],
    db_url: str, names: Names,
) -> None:  # fmt: skip
    run_a = run_all(capsys, db_url, names)
    conn.execute("UPDATE dyno_crm.deal SET amount = amount + 1")
    conn.commit()
    run_b = run_all(capsys, db_url, names)
    _, key = create_api_key(conn, uuid.UUID(names.tenant), "csv")
    deal_names = dict(zip(names.deals, HOSTILE, strict=True))
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/csv"}
    with httpx.Client(base_url=live_server, headers=headers, timeout=30) as api:

        def csv_of(path: str, **params: str) -> list[dict[str, str]]:
            response = api.get(path, params=params)
            assert response.status_code == 200, response.text
            return read_csv(response.text)

        run = csv_of(f"/v1/coverage-runs/{run_a}")
        assert sorted(row["principal_name"] for row in run) == sorted(
            [defused(name) for name in HOSTILE] * 2
        )
        deals = csv_of(f"/v1/coverage-runs/{run_a}/deals", limit="1000")
        assert len(deals) == 2 * len(HOSTILE)
        for deal in deals:
            assert deal["deal_name"] == defused(deal_names[deal["deal_id"]])
        rows = csv_of(f"/v1/coverage-runs/{run_a}/compare/{run_b}")
        assert len(rows) == 2 * len(HOSTILE)
        moved = csv_of(f"/v1/coverage-runs/{run_a}/compare/{run_b}", deals="true")
        assert len(moved) == 2 * len(HOSTILE)
        for deal in moved:
            assert deal["deal_name"] == defused(deal_names[deal["deal_id"]])
            assert deal["b_stage_name"] == deal["b_pipeline_name"] == deal["deal_name"]


# --- error lines ---------------------------------------------------------------------


def test_error_lines_listing_hostile_names_are_inert(
    capsys: pytest.CaptureFixture[str], db_url: str, names: Names
) -> None:
    for args in (
        ("run", "--tenant", names.tenant, *Q1, "--principal", "["),  # ambiguous: candidates
        ("run", "--tenant", names.tenant, *Q1, "--principal", "nobody"),  # unknown: the reps
        ("principals", "--tenant", "nobody"),  # unknown: the tenants
    ):
        result = cli(capsys, db_url, *args)
        assert result.code == 2, result
        assert result.out == ""
        [line] = result.err.splitlines()
        assert line.startswith(PREFIX)
        assert_inert(result.err)


def test_a_loader_error_echoing_a_hostile_value_is_inert(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    tenant = str(uuid.uuid4())
    write_csv(data_dir / "tenants.csv", ("id", "name", "currency"),
              [[tenant, "T", "\x1b]0;title\x07\x1b[2J"]])  # fmt: skip
    write_csv(data_dir / "users.csv", ("id", "tenant_id", "name", "email", "is_active"),
              [[str(uuid.uuid4()), tenant, "Ann", "", "\x1b[31myes"]])  # fmt: skip

    result = cli(capsys, db_url, "load", str(data_dir))

    assert result.code == 2, result
    [line] = result.err.splitlines()
    assert line.startswith(PREFIX)
    assert "currency" in line
    assert "is_active" in line
    assert_inert(result.err)
    assert scalar(db_url, "SELECT count(*) FROM dyno_crm.tenant") == 0


def test_the_load_line_of_a_tenant_named_with_escapes_is_inert(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    tenant = str(uuid.uuid4())
    write_csv(data_dir / "tenants.csv", ("id", "name"),
              [[tenant, "\x1b]0;owned\x07\x1b[2J\x1b[31mRed Co\r\nnext"]])  # fmt: skip

    result = ok(cli(capsys, db_url, "load", str(data_dir)))

    assert_inert(result.out)
    assert len(result.out.splitlines()) == 2  # the file's line, the tenant's line
    assert result.out.splitlines()[-1] == (
        f"tenant \ufffd]0;owned\ufffd\ufffd[2J\ufffd[31mRed Co\ufffd\ufffdnext: {tenant}"
        " (0 reps, 0 teams, 0 deals)"
    )


def test_run_all_with_a_markup_rep_exits_0(
    capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    """A rep named [/bold] failed the print after the run was stored: exit 1 for a run
    that exists."""
    tenant, rep = str(uuid.uuid4()), str(uuid.uuid4())
    write_csv(data_dir / "tenants.csv", ("id", "name"), [[tenant, "Plain"]])
    write_csv(data_dir / "users.csv", ("id", "tenant_id", "name", "email", "is_active"),
              [[rep, tenant, "[/bold]", "", "true"]])  # fmt: skip
    write_csv(
        data_dir / "sales_targets.csv",
        ("id", "tenant_id", "principal_type", "principal_id", "pipeline_id", "period_start",
         "period_end", "target_amount"),
        [[str(uuid.uuid4()), tenant, "USER", rep, "", "2026-01-01", "2026-04-01", "10"]],
    )  # fmt: skip
    ok(cli(capsys, db_url, "load", str(data_dir)))

    result = ok(cli(capsys, db_url, "run", "--tenant", "Plain", *Q1, "--all"))

    assert "[/bold]" in result.out
    assert run_count(db_url) == 1
    shown = ok(cli(capsys, db_url, "principals", "--tenant", "Plain"))
    assert "[/bold]" in shown.out
