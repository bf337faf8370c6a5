"""``make bench`` / ``python -m bench --only import``: ``pipeline-coverage import`` of a
CRM export against ``load`` of the same deals.

The bench's large tenant (bench/generate.py) is written twice: as the contract's CSV
files (what ``load`` reads) and as a Salesforce API-names export (what ``import``
reads: one row per deal, names instead of ids), as CSV and as XLSX. Every step runs
as its own ``pipeline-coverage`` process, started as a cron job or an analyst would
start it, and is timed on the wall clock (process start-up included) with the
process's peak RSS:

- ``load`` of the contract's files into a fresh database (the reference), and the
  floors below an import: PostgreSQL's own COPY of the deals into a copy of ``deal``,
  and the export's reader alone (parsing every deal in Python, no database);
- ``import`` of the CSV export into a new tenant of the same database (every deal new);
- the same ``import`` again (every deal unchanged);
- ``import --full`` of the export with 1% of its deals changed (0.5%) or gone (0.5%);
- ``import`` of the XLSX export (a smaller file: writing and reading a workbook is
  slow) into another new tenant.

Figures and ratios, never a pass or fail.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from rich.console import Console

from bench.generate import TenantSpec, generate
from pipeline_coverage.importing.deals import DealReader
from pipeline_coverage.importing.presets import SALESFORCE
from pipeline_coverage.periods import quarter_of

#: The export's columns: Salesforce's API names, as Data Loader writes an Opportunity.
SALESFORCE_COLUMNS = (
    "Id", "Name", "Owner.Name", "StageName", "IsWon", "IsClosed", "Amount",
    "CurrencyIsoCode", "CloseDate", "ForecastCategoryName", "Probability", "RecordType.Name",
)  # fmt: skip
#: A stage state of the contract → (IsWon, IsClosed, ForecastCategoryName).
_STATES = {
    "NOT_STARTED": ("false", "false", "Pipeline"),
    "IN_PROGRESS": ("false", "false", "Best Case"),
    "DONE_SUCCESS": ("true", "true", "Closed"),
    "DONE_FAILED": ("false", "true", "Omitted"),
}
#: An import's peak RSS goal (MB) and the rates' goals.
RSS_GOAL_MB = 200
LOAD_RATIO_GOAL = 0.8
RATE_GOAL = 100_000
#: A figure: its name, value, goal and whether the goal is met (None: no goal).
FigureRow = tuple[str, str, str, bool | None]


@dataclass(frozen=True)
class Measured:
    """One CLI process: its wall time and peak RSS."""

    seconds: float
    peak_mb: float


def measured_cli(url: str, *arguments: str) -> Measured:
    """Run ``pipeline-coverage --database-url URL ARGUMENTS`` as a process of its own:
    its wall time and peak RSS. The CLI is started by a small launcher that reports its
    child's peak (as bench/run.py's ``cli_peak_rss_mb`` does: a child of this large
    process would inherit its resident peak)."""
    launcher = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True,"
        " stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN)"
        ".ru_maxrss)"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", launcher, sys.executable, "-m", "pipeline_coverage",
         "--database-url", url, *arguments],
        check=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return Measured(seconds, int(done.stdout.split()[-1]) / 1024)


def _read(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def export_rows(folder: Path) -> Iterator[list[str]]:
    """The deals of the generated ``folder`` as Salesforce export rows (names, not ids):
    an 18-character Id, the owner's name, the stage's name and state, the pipeline as
    the record type."""
    users = {row["id"]: row["name"] for row in _read(folder / "users.csv")}
    pipelines = {row["id"]: row["name"] for row in _read(folder / "pipelines.csv")}
    stages = {
        row["id"]: (row["name"], row["stage_state"], row["probability"])
        for row in _read(folder / "pipeline_stages.csv")
    }
    for n, deal in enumerate(_read(folder / "deals.csv")):
        stage, state, probability = stages[deal["stage_id"]]
        won, closed, category = _STATES[state]
        owner = users.get(deal["owned_by_user_id"], "") if deal["owned_by_user_id"] else ""
        yield [
            f"006{n:015d}", deal["name"], owner, stage, won, closed, deal["amount"], "USD",
            deal["close_date"] or deal["expected_close_date"], category, probability,
            pipelines[deal["pipeline_id"]],
        ]  # fmt: skip


def write_csv(path: Path, rows: Iterator[list[str]] | list[list[str]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(SALESFORCE_COLUMNS)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def write_xlsx(path: Path, rows: Iterator[list[str]], limit: int) -> int:
    """The first ``limit`` rows as a workbook (openpyxl's write-only mode), typed as a
    CRM writes them: amounts and probabilities as numbers, dates as dates."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Opportunities")
    sheet.append(list(SALESFORCE_COLUMNS))
    count = 0
    for row in rows:
        if count == limit:
            break
        typed: list[object] = list(row)
        typed[6] = float(row[6]) if row[6] else None
        typed[8] = dt.date.fromisoformat(row[8]) if row[8] else None
        typed[10] = int(row[10]) if row[10] else None
        sheet.append(typed)
        count += 1
    workbook.save(path)
    return count


def changed_export(source: Path, target: Path, rng: random.Random) -> tuple[int, int, int]:
    """``source`` with 0.5% of its deals' amounts changed and 0.5% of its deals gone:
    (rows written, changed, deleted)."""
    changed = deleted = written = 0
    with (
        source.open(encoding="utf-8", newline="") as handle,
        target.open("w", encoding="utf-8", newline="") as out,
    ):
        reader, writer = csv.reader(handle), csv.writer(out, lineterminator="\r\n")
        writer.writerow(next(reader))
        for row in reader:
            roll = rng.random()
            if roll < 0.005:
                deleted += 1
                continue
            if roll < 0.01:
                row[6] = f"{float(row[6] or 0) + 1:.2f}"
                changed += 1
            writer.writerow(row)
            written += 1
    return written, changed, deleted


def import_figures(server_url: str, args: argparse.Namespace) -> list[FigureRow]:
    """The import's figures (name, value, goal, met) on a database of their own."""
    from bench.run import BENCH_DB, FLOOR_ROWS, copy_floor, drop_database, fresh_database

    console = Console(stderr=True)
    period = quarter_of(dt.date.today())
    rows: list[FigureRow] = []
    spec = TenantSpec("large", args.large, args.users, args.groups, args.pipelines)
    with tempfile.TemporaryDirectory() as temp:
        folder, exports = Path(temp) / "load", Path(temp)
        console.print(f"import: generating {args.large:,} deals ...")
        generate(folder, [spec], period[0])
        export = exports / "opportunities.csv"
        deals = write_csv(export, export_rows(folder))
        xlsx = exports / "opportunities.xlsx"
        console.print(f"import: writing {min(args.import_xlsx_deals, deals):,} deals as XLSX ...")
        start = time.perf_counter()
        xlsx_deals = write_xlsx(xlsx, export_rows(folder), args.import_xlsx_deals)
        xlsx_write = time.perf_counter() - start
        console.print("import: the reader alone over the CSV export ...")
        start = time.perf_counter()
        reader = DealReader(export, SALESFORCE, track_duplicates=False)
        read_count = sum(1 for _ in reader.stream())
        reader.finish()
        read_rate = read_count / (time.perf_counter() - start)
        changed = exports / "opportunities-changed.csv"
        kept, n_changed, n_deleted = changed_export(export, changed, random.Random(11))

        url = fresh_database(server_url, f"{BENCH_DB}_import")
        console.print("import: load of the contract's files ...")
        load = measured_cli(url, "load", str(folder))
        load_rate = deals / load.seconds
        rows.append(
            (f"load: {deals:,} deals (contract CSV files, fresh database), deal rows/s",
             f"{load_rate:,.0f} ({load.seconds:.1f} s, peak RSS {load.peak_mb:.0f} MB)", "", None)
        )  # fmt: skip
        with psycopg.connect(url) as conn:
            copied, floor_rate = copy_floor(conn, folder / "deals.csv", FLOOR_ROWS)
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
        rows.append(
            (f"import floor: COPY of {copied:,} deals into deal's constraints, rows/s",
             f"{floor_rate:,.0f}", "", None)
        )  # fmt: skip

        def imported(tenant: str, path: Path, *options: str) -> Measured:
            return measured_cli(url, "import", "--tenant", tenant, "--format", "salesforce",
                                *options, str(path))  # fmt: skip

        rows.append(
            ("import read floor: the export's deals read and parsed (no database), rows/s",
             f"{read_rate:,.0f}", "", None)
        )  # fmt: skip
        console.print("import: the CSV export, every deal new ...")
        first = imported("Imported", export)
        first_rate = deals / first.seconds
        ratio = first_rate / load_rate
        rows.append(
            (f"import: {deals:,} deals, Salesforce CSV, new tenant, deal rows/s",
             f"{first_rate:,.0f} ({first.seconds:.1f} s; {ratio:.2f}x load, "
             f"{first_rate / floor_rate:.2f}x the COPY floor)",
             f">= {LOAD_RATIO_GOAL}x load", ratio >= LOAD_RATIO_GOAL)
        )  # fmt: skip
        rows.append(
            ("import: peak RSS, 1 CSV process",
             f"{first.peak_mb:.0f} MB ({deals:,} rows)",
             f"<= {RSS_GOAL_MB} MB", first.peak_mb <= RSS_GOAL_MB)
        )  # fmt: skip
        console.print("import: the same export again ...")
        again = imported("Imported", export)
        again_rate = deals / again.seconds
        rows.append(
            ("import again, unchanged export, deal rows/s",
             f"{again_rate:,.0f} ({again.seconds:.1f} s, peak RSS {again.peak_mb:.0f} MB)",
             f">= {RATE_GOAL:,}", again_rate >= RATE_GOAL)
        )  # fmt: skip
        console.print("import: --full with 1% changed or gone ...")
        full = imported("Imported", changed, "--full")
        full_rate = kept / full.seconds
        rows.append(
            (f"import --full: {n_changed:,} changed, {n_deleted:,} gone, deal rows/s",
             f"{full_rate:,.0f} ({full.seconds:.1f} s, peak RSS {full.peak_mb:.0f} MB)",
             f">= {RATE_GOAL:,}", full_rate >= RATE_GOAL)
        )  # fmt: skip
        console.print(f"import: the XLSX export ({xlsx_deals:,} deals) ...")
        book = imported("Imported XLSX", xlsx)
        rows.append(
            (f"import: {xlsx_deals:,} deals, Salesforce XLSX, new tenant",
             f"{xlsx_deals / book.seconds:,.0f} rows/s ({book.seconds:.1f} s; written in "
             f"{xlsx_write:.0f} s, {xlsx.stat().st_size / 2**20:.0f} MiB)", "", None)
        )  # fmt: skip
        rows.append(
            ("import: peak RSS, 1 XLSX process",
             f"{book.peak_mb:.0f} MB ({xlsx_deals:,} rows)",
             f"<= {RSS_GOAL_MB} MB", book.peak_mb <= RSS_GOAL_MB)
        )  # fmt: skip
    drop_database(server_url, f"{BENCH_DB}_import")
    return rows
