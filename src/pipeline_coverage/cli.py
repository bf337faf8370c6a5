"""The ``pipeline-coverage`` command: thin commands over the core (SPEC.md §6).

Exit status: 0 success, 2 bad input (usage, validation, data), 1 anything unexpected.
Expected errors print one line on stderr and write nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from pipeline_coverage import demo as demo_data
from pipeline_coverage.apikeys import create_api_key, list_api_keys, revoke_api_key
from pipeline_coverage.calibration import DEFAULT_QUARTERS as DEFAULT_CALIBRATION_QUARTERS
from pipeline_coverage.calibration import MAX_QUARTERS as MAX_CALIBRATION_QUARTERS
from pipeline_coverage.calibration import calibrate
from pipeline_coverage.config import WORKERS_VARIABLE, Settings, WebSettings
from pipeline_coverage.db import distribute as citus
from pipeline_coverage.db import migrate
from pipeline_coverage.db.connection import Connection, connect
from pipeline_coverage.db.embedded import embedded_server
from pipeline_coverage.directory import (
    known_periods,
    list_principals,
    list_tenants,
    principal_name,
    require_known,
    resolve_pipeline,
    resolve_principal,
    resolve_tenant,
    tenant_period,
)
from pipeline_coverage.errors import (
    InputError,
    LoadError,
    PipelineCoverageError,
    ValidationError,
)
from pipeline_coverage.history import (
    ANY,
    GRANULARITIES,
    MAX_DAY_OF_QUARTER,
    MAX_QUARTERS,
    principal_history,
    same_point_of_quarter,
)
from pipeline_coverage.importing.crm import (
    DEFAULT_MAX_DELETE,
    ImportRequest,
    import_export,
    import_summary,
)
from pipeline_coverage.importing.load import load_directory
from pipeline_coverage.metrics import HEADLINE, NAMES, headline, parse_columns
from pipeline_coverage.periods import EXAMPLES
from pipeline_coverage.presentation import PRINCIPAL_TYPES, Bands
from pipeline_coverage.render import (
    FORMATS,
    add_row,
    deals_csv,
    deals_json,
    deals_table,
    exclusion_lines,
    history_csv,
    history_json,
    history_table,
    make_console,
    movement_csv,
    movement_deals_csv,
    movement_deals_table,
    movement_heading,
    movement_json,
    movement_table,
    movement_total_line,
    plain,
    run_csv,
    run_heading,
    run_json,
    run_table,
    runs_csv,
    runs_json,
    runs_table,
    same_point_csv,
    same_point_json,
    same_point_table,
    snapshot_lines,
    snapshots_json,
    total_lines,
)
from pipeline_coverage.render.calibration import (
    calibration_csv,
    calibration_json,
    calibration_lines,
    calibration_table,
)
from pipeline_coverage.reports.coverage import run_coverage, run_pipeline_coverage_batch
from pipeline_coverage.reports.movement import compare_runs
from pipeline_coverage.reports.requests import resolve_request
from pipeline_coverage.reports.snapshot import (
    BACKFILL_STEPS,
    Snapshot,
    backfill_days,
    take_snapshots,
)
from pipeline_coverage.reports.snapshot import backfill as backfill_snapshots
from pipeline_coverage.store import (
    MAX_LIST_LIMIT,
    MAX_RETENTION_DAYS,
    CoverageRun,
    get_run,
    list_runs,
    prune_runs,
    run_deals,
)
from pipeline_coverage.tenants import delete_tenant, run_defaults, set_run_defaults
from pipeline_coverage.text import csv_text, printable
from pipeline_coverage.validation import (
    MAX_LOOKBACK_DAYS,
    TARGET_MATCHES,
    parse_date,
    parse_timestamp,
)

PROG = "pipeline-coverage"


class _IsoDate(click.ParamType[dt.date, Any]):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_date(value, "date")
        except ValidationError:
            self.fail(f"not a date (YYYY-MM-DD): {value!r}", param, ctx)


ISO_DATE = _IsoDate()


class _Timestamp(click.ParamType[dt.datetime, Any]):
    name = "TIMESTAMP"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_timestamp(value, "time")
        except ValidationError as exc:
            self.fail(str(exc).removeprefix("time: "), param, ctx)


TIMESTAMP = _Timestamp()
EXPORTED_AT_OPTION = click.option(
    "--exported-at",
    type=TIMESTAMP,
    help="When the data was taken (default: now): what changed holds from, in recorded"
    " history; a tenant's exports go in oldest first.",
)
FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format; json and csv carry amounts as exact decimal strings.",
)


class _App:
    """Per-invocation state: settings, and the database (started on first use)."""

    def __init__(self, settings: Settings, resources: ExitStack) -> None:
        self.settings = settings
        self._resources = resources
        self._url: str | None = None

    def url(self, *, migrate_embedded: bool = True) -> str:
        """The database URL; with no URL configured, the embedded server (migrated)."""
        if self._url is None:
            if self.settings.database_url is not None:
                self._url = self.settings.database_url
            else:
                with _working(make_console(), "starting the embedded PostgreSQL"):
                    self._url = self._resources.enter_context(
                        embedded_server(self.settings.data_dir)
                    )
                    if migrate_embedded:
                        migrate.upgrade(self._url)
        return self._url

    @property
    def bands(self) -> Bands:
        """The coverage bands (PIPELINE_COVERAGE_BANDS), as the dashboard has them."""
        return Bands(*self.settings.bands)

    def connection(self, *, require_schema: bool = True) -> psycopg.Connection[Any]:
        """A psycopg 3 connection, closed when the command ends."""
        conn = self._resources.enter_context(connect(self.url()))
        if require_schema:
            migrate.require_current(conn)
        return conn

    @property
    def where(self) -> str:
        if self.settings.database_url is None:
            return f"embedded PostgreSQL in {self.settings.data_dir}"
        return _redact(self.settings.database_url)


def _redact(url: str) -> str:
    """The connection target without its password (URI or key=value form)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(database URL)"
    shown = [f"{key}={params[key]}" for key in ("host", "port", "dbname", "user") if key in params]
    return " ".join(shown) or "(default libpq connection)"


def _app() -> _App:
    return click.get_current_context().find_object(_App)  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="PostgreSQL URL (else $DATABASE_URL; with neither, an embedded server is used).",
)
@click.version_option(package_name="pipeline-coverage", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Pipeline coverage: open pipeline against sales targets, per rep and team.

    With no --database-url and no DATABASE_URL, an embedded PostgreSQL 18 server is
    started in a per-user data directory, migrated, and stopped when the command ends.
    """
    if database_url is not None and not database_url.strip():
        # (an unset variable passed on, --database-url "$URL"): not the embedded server
        raise click.UsageError(
            "--database-url is empty: give a URL, or leave the option out for"
            " $DATABASE_URL or the embedded server"
        )
    settings = Settings.from_env(database_url=database_url)
    ctx.obj = _App(settings, ctx.with_resource(ExitStack()))


@cli.group()
def db() -> None:
    """Database schema: apply, inspect or print the migrations."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (safe to repeat)."""
    app = _app()
    url = app.url(migrate_embedded=False)
    migrate.upgrade(url)
    click.echo(f"schema at revision {migrate.head_revision()} (head) on {app.where}")


@db.command("status")
def db_status() -> None:
    """Show the schema revision of the database and the one this version needs."""
    app = _app()
    state = migrate.status(app.connection(require_schema=False))
    current = state.current or "none (not migrated)"
    verdict = "up to date" if state.up_to_date else "run 'pipeline-coverage db upgrade'"
    click.echo(f"database: {app.where}")
    click.echo(f"schema revision: {current}; this version needs {state.head}: {verdict}")
    if not state.up_to_date:
        # For scripts and health checks: a schema that is not current is a failure.
        raise click.exceptions.Exit(1)


@db.command("distribute")
def db_distribute() -> None:
    """On a Citus coordinator: shard every table by tenant, co-located; runs execute on
    their tenant's worker (safe to repeat)."""
    app = _app()
    done = citus.distribute(app.connection(require_schema=False))
    if done.distributed:
        click.echo(f"distributed {len(done.distributed)} tables by tenant on {app.where}")
    if done.routed:
        click.echo(
            f"created {' and '.join(_function_name(f) for f in done.routed)}: each run's"
            " statement runs on its tenant's worker"
        )
    if done.refreshed:
        click.echo(
            f"updated {' and '.join(_function_name(f) for f in done.refreshed)} to this"
            " version's definition (its run settings and body)"
        )
    if not done.distributed and not done.routed and not done.refreshed:
        click.echo(f"nothing to do: every table is distributed by tenant on {app.where}")


def _function_name(signature: str) -> str:
    """``dyno_crm.f(uuid, text)`` -> ``dyno_crm.f``."""
    return signature.split("(", 1)[0]


@db.command("sql")
def db_sql() -> None:
    """Print the SQL of all migrations for a DBA to review (needs no database)."""
    click.echo(migrate.offline_sql(), nl=False)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@EXPORTED_AT_OPTION
def load(directory: Path, exported_at: dt.datetime | None) -> None:
    """Import a folder of CSV files (tenants.csv, users.csv, deals.csv, ...), all or nothing."""
    conn = _app().connection()
    console = make_console()
    with _file_progress(console) as progress:
        loads = load_directory(conn, directory, progress=progress, recorded_at=exported_at)
    for item in loads:
        _echo(
            f"{item.file}: {item.rows} rows -> {item.table} "
            f"({item.inserted} new, {item.updated} updated, {item.unchanged} unchanged)"
        )
    touched = {tenant for item in loads for tenant in item.tenant_ids}
    for tenant in list_tenants(conn):
        if tenant.id in touched:
            _echo(f"tenant {tenant.name}: {tenant.id} ({tenant.users} reps, "
                  f"{tenant.groups} teams, {tenant.deals} deals)")  # fmt: skip


@cli.command("import")
@click.option(
    "--tenant", "tenant_name", required=True, help="The tenant, by name (created when new)."
)
@click.option(
    "--format",
    "format_name",
    metavar="salesforce|hubspot|pipedrive|MAPPING.toml",
    help="The export's format (default: told from its header).",
)
@click.argument("deals_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--teams", type=click.Path(path_type=Path, dir_okay=False),
              help="rep,team[,parent_team] per line.")  # fmt: skip
@click.option("--targets", type=click.Path(path_type=Path, dir_okay=False),
              help="A quota sheet, long or wide.")  # fmt: skip
@click.option("--currency", help="A new tenant's reporting currency (default USD).")
@click.option("--fiscal-year-start-month", type=click.IntRange(1, 12),
              help="A new tenant's fiscal year start (default 1).")  # fmt: skip
@click.option("--date-format", metavar="FMT", help="The export's dates (strptime, e.g. %d.%m.%Y).")
@click.option("--sheet", help="An .xlsx file's sheet (default: the first).")
@click.option("--full", is_flag=True, help="The export is complete: deals absent from it go.")
@click.option("--max-delete", type=click.FloatRange(0, 100), default=DEFAULT_MAX_DELETE,
              show_default=True, metavar="PCT",
              help="With --full: refuse to delete over PCT% of the source's deals.")  # fmt: skip
@click.option("--history", "history_file", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE",
              help="The CRM's own history of the deals (Salesforce's OpportunityHistory"
              " export): versions of the deals before the tenant's first export.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Check and count everything, write nothing.")
@click.option("--reread", is_flag=True,
              help="Read every row in full, even one unchanged since it was imported.")  # fmt: skip
@EXPORTED_AT_OPTION
def import_(
    tenant_name: str, format_name: str | None, deals_file: Path, teams: Path | None,
    targets: Path | None, currency: str | None, fiscal_year_start_month: int | None,
    date_format: str | None, sheet: str | None, full: bool, max_delete: float,
    history_file: Path | None, dry_run: bool, reread: bool, exported_at: dt.datetime | None,
) -> None:  # fmt: skip
    """Import a CRM's own export (Salesforce, HubSpot, Pipedrive, or any CSV/XLSX with a
    mapping file), with a teams file and a quota sheet, all or nothing."""
    if max_delete != DEFAULT_MAX_DELETE and not full:
        raise click.UsageError("--max-delete goes with --full")
    if not tenant_name.strip():
        raise click.UsageError("--tenant is empty")
    conn = _app().connection()
    request = ImportRequest(
        tenant=tenant_name, deals=deals_file, format=format_name, teams=teams,
        targets=targets, currency=currency, fiscal_year_start_month=fiscal_year_start_month,
        date_format=date_format, sheet=sheet, full=full, max_delete=max_delete,
        dry_run=dry_run, exported_at=exported_at, history=history_file, reread=reread,
    )  # fmt: skip
    with _working(make_console(), f"importing {deals_file.name}"):
        outcome = import_export(conn, request)
    for line in import_summary(outcome):
        _echo(line)


@contextmanager
def _working(console: Any, message: str) -> Iterator[None]:
    """A spinner for one long step, on a terminal only."""
    if not console.is_terminal:
        yield
        return
    with console.status(message + " ..."):
        yield


@contextmanager
def _file_progress(console: Any, *, counted: bool = False) -> Iterator[Any]:
    """A progress callback that draws bars on a terminal and stays silent elsewhere
    (bytes of a file, or with ``counted`` items done of how many)."""
    if not console.is_terminal:
        yield None
        return
    done_column = MofNCompleteColumn() if counted else DownloadColumn()
    columns = (TextColumn("{task.description}"), BarColumn(), done_column, TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        yield update


COLUMNS_OPTION = click.option(
    "--columns",
    metavar="NAMES",
    help="Table columns: metric names, comma-separated (default: "
    + ",".join(HEADLINE)
    + "; every metric: "
    + ",".join(NAMES)
    + ").",
)


TENANT_HELP = "Tenant: its id or its name."


@cli.command()
@click.option("--tenant", "tenant_text", required=True, metavar="NAME|ID", help=TENANT_HELP)
@click.option(
    "--period",
    "period_text",
    metavar="EXPR",
    help=f"The period as an expression, in the tenant's fiscal calendar ({EXAMPLES}).",
)
@click.option("--period-start", type=ISO_DATE, help="First day of the period (or --period).")
@click.option(
    "--period-end",
    type=ISO_DATE,
    help="Day after the period (periods are half-open: Q1 is 01-01 to 04-01).",
)
@click.option(
    "--principal-type",
    type=click.Choice(PRINCIPAL_TYPES, case_sensitive=False),
    help="USER (a rep) or GROUP (a team), with --principal-id.",
)
@click.option("--principal-id", type=click.UUID, help="The user's or group's id.")
@click.option(
    "--principal",
    "principal_text",
    metavar="NAME",
    help="A rep or team by name (instead of --principal-id; --principal-type narrows it).",
)
@click.option(
    "--all",
    "everyone",
    is_flag=True,
    help="Every rep and team in scope, as one run (instead of one principal).",
)
@click.option(
    "--pipeline", "pipeline_text", metavar="NAME|ID", help="Only this pipeline (name or id)."
)
@click.option("--by-pipeline", is_flag=True, help="With --all: one row per principal and pipeline.")
@click.option(
    "--rollup/--no-rollup",
    default=None,
    help="A team also counts the deals of its members and of the teams below it, or not "
    "[default: the tenant's, see 'tenant settings'].",
)
@click.option(
    "--as-of",
    type=ISO_DATE,
    help="The day the run is as of: open deals dated before it are past due [default: today].",
)
@click.option(
    "--target-match",
    type=click.Choice(TARGET_MATCHES),
    help="exact: targets of exactly this period; within: every target inside it "
    "(monthly targets for a quarter) [default: the tenant's].",
)
@click.option(
    "--win-rate-lookback-days",
    type=click.IntRange(1, MAX_LOOKBACK_DAYS),
    help="The win rate counts deals closed this many days before the period "
    "[default: the tenant's].",
)
@click.option(
    "--as-recorded",
    is_flag=True,
    help="From the deals as they stood at the end of --as-of in recorded history, not as"
    " they are now.",
)
@COLUMNS_OPTION
@FORMAT_OPTION
def run(
    tenant_text: str,
    period_text: str | None,
    period_start: dt.date | None,
    period_end: dt.date | None,
    principal_type: str | None,
    principal_id: uuid.UUID | None,
    principal_text: str | None,
    everyone: bool,
    pipeline_text: str | None,
    by_pipeline: bool,
    rollup: bool | None,
    as_of: dt.date | None,
    target_match: str | None,
    win_rate_lookback_days: int | None,
    as_recorded: bool,
    columns: str | None,
    output_format: str,
) -> None:
    """Compute a coverage run, store it, and print it. A run option not given is the
    tenant's default ('tenant settings'); the run records the options it was made with."""
    chosen = parse_columns(columns) if columns is not None else None
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    request = resolve_request(
        conn, tenant_id, period=period_text, period_start=period_start, period_end=period_end,
        principal_type=principal_type.upper() if principal_type else None,
        principal_id=principal_id, principal_name=principal_text, everyone=everyone,
        pipeline_name=pipeline_text, by_pipeline=by_pipeline, rollup=rollup, as_of=as_of,
        target_match=target_match, win_rate_lookback_days=win_rate_lookback_days,
        as_recorded=as_recorded,
    )  # fmt: skip
    with _working(make_console(), "computing coverage"):
        outcome = run_coverage(conn, request)
    _print_run(get_run(conn, outcome.run_id, tenant_id), output_format, chosen)


@cli.command()
@click.option(
    "--tenant",
    "tenant_texts",
    multiple=True,
    metavar="NAME|ID",
    help="Only this tenant (repeat for several) [default: every tenant].",
)
@click.option(
    "--as-of",
    type=ISO_DATE,
    help="The snapshots' day: their quarters, past-due deals and idempotency [default: today].",
)
@click.option("--by-pipeline", is_flag=True, help="One row per principal and pipeline.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("table", "json")),
    default="table",
    show_default=True,
    help="A line per tenant, or one JSON document.",
)
def snapshot(
    tenant_texts: tuple[str, ...], as_of: dt.date | None, by_pipeline: bool, output_format: str
) -> None:
    """Take the day's snapshots: every tenant's batch run for this and next fiscal
    quarter, once per day (a repeat the same day makes no new run), for cron or a timer.

    A tenant that fails does not stop the others; the exit status is then 2 when every
    failure was bad input or data, else 1.
    """
    conn = _app().connection()
    tenant_ids = [resolve_tenant(conn, text) for text in tenant_texts] or None
    day = as_of or dt.date.today()
    with _file_progress(make_console(), counted=True) as progress:
        taken = take_snapshots(
            conn, tenant_ids, as_of=day, by_pipeline=by_pipeline, progress=progress
        )
    if output_format == "json":
        _document(snapshots_json(day, taken))
    else:
        for line in snapshot_lines(taken):
            _echo(line)
    _exit_on_failures(taken)


@cli.command()
@click.option("--tenant", "tenant_text", required=True, metavar="NAME|ID", help="The tenant.")
@click.option("--from", "start", type=ISO_DATE, required=True, help="The first day.")
@click.option("--to", "end", type=ISO_DATE, help="The last day [default: today].")
@click.option(
    "--every",
    type=click.Choice(tuple(BACKFILL_STEPS)),
    default="week",
    show_default=True,
    help="A snapshot every day, or every week from --from.",
)
@click.option("--by-pipeline", is_flag=True, help="One row per principal and pipeline.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("table", "json")),
    default="table",
    show_default=True,
    help="A line per day, or one JSON document.",
)
def backfill(
    tenant_text: str, start: dt.date, end: dt.date | None, every: str, by_pipeline: bool,
    output_format: str,
) -> None:  # fmt: skip
    """The snapshots 'snapshot' would have taken on each day (or week) of a range, as
    recorded: from the deals as they stood at the end of each day (recorded history:
    the imports and loads up to then). A day done before is not made again.

    A run that fails does not stop the others; the exit status is then 2 when every
    failure was bad input or data, else 1.
    """
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    days = backfill_days(start, end, every)
    with _file_progress(make_console(), counted=True) as progress:
        taken = backfill_snapshots(
            conn, tenant_id, days, by_pipeline=by_pipeline, progress=progress
        )
    if output_format == "json":
        _document(json.dumps([json.loads(snapshots_json(day, runs)) for day, runs in taken],
                             indent=2))  # fmt: skip
    else:
        for day, runs in taken:
            for line in snapshot_lines(runs):
                _echo(f"{day.isoformat()} {line}")
    _exit_on_failures([one for _, runs in taken for one in runs])


def _exit_on_failures(taken: Sequence[Snapshot]) -> None:
    """After snapshots: the error line and exit status when any failed (2 when every
    failure was bad input or data, else 1)."""
    failed = [one for one in taken if one.error is not None]
    if failed:
        names = ", ".join(f"{one.tenant_name} {one.period}" for one in failed)
        _echo(f"{PROG}: error: {len(failed)} of {len(taken)} snapshots failed: {names}", err=True)
        raise click.exceptions.Exit(2 if all(one.bad_input for one in failed) else 1)


def _principal_options(command: Any) -> Any:
    """One rep or team: --principal NAME, or --principal-type and --principal-id (read
    with :func:`_principal`)."""
    options = [
        click.option(
            "--principal", "principal_text", metavar="NAME", help="A rep or team by name."
        ),
        click.option(
            "--principal-type",
            type=click.Choice(PRINCIPAL_TYPES, case_sensitive=False),
            help="USER (a rep) or GROUP (a team); with --principal-id, or to narrow --principal.",
        ),
        click.option("--principal-id", type=click.UUID, help="The user's or group's id."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _principal(
    conn: Connection,
    tenant_id: Callable[[], uuid.UUID],
    text: str | None,
    kind: str | None,
    given: uuid.UUID | None,
) -> tuple[str, uuid.UUID] | None:
    """The principal _principal_options name, or None when they name none; a name is
    looked up in the tenant ``tenant_id()`` gives."""
    if text is not None and given is not None:
        raise click.UsageError("give --principal or --principal-id, not both")
    if text is not None:
        return resolve_principal(conn, tenant_id(), text, kind.upper() if kind else None)
    if given is not None and kind is None:
        raise click.UsageError("--principal-id goes with --principal-type")
    if kind is not None and given is None:
        raise click.UsageError("--principal-type goes with --principal-id (or --principal)")
    return (kind.upper(), given) if kind is not None and given is not None else None


def _trend_options(command: Any) -> Any:
    """What the trend commands share: the tenant, the principal (--principal NAME, or
    --principal-type and --principal-id), --pipeline, and the runs they read:
    --target-match and --rollup/--no-rollup/--any-rollup (read with :func:`_rollup`)."""
    options: list[Callable[[Any], Any]] = [
        click.option("--tenant", "tenant_text", required=True, metavar="NAME|ID", help=TENANT_HELP),
        _principal_options,
        click.option(
            "--pipeline",
            "pipeline_text",
            metavar="NAME|ID",
            help="That pipeline's rows (name or id).",
        ),
        click.option(
            "--target-match",
            type=click.Choice((*TARGET_MATCHES, ANY)),
            help="Only the runs made with this target matching, or any run "
            "[default: the tenant's, see 'tenant settings'].",
        ),
        click.option(
            "--rollup/--no-rollup",
            default=None,
            help="Only rolled-up runs, or only runs without roll-up [default: the tenant's].",
        ),
        click.option(
            "--any-rollup",
            is_flag=True,
            help="Runs with and without roll-up alike (instead of --rollup/--no-rollup).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _rollup(rollup: bool | None, any_rollup: bool) -> bool | str | None:
    """The roll-up filter of a trend command: given, any, or None (the tenant's)."""
    if any_rollup and rollup is not None:
        raise click.UsageError("give --rollup, --no-rollup or --any-rollup, not two")
    return ANY if any_rollup else rollup


def _who(
    conn: Connection,
    tenant_id: uuid.UUID,
    text: str | None,
    kind: str | None,
    given: uuid.UUID | None,
) -> tuple[str, uuid.UUID]:
    """The principal a trend command names (it needs one)."""
    found = _principal(conn, lambda: tenant_id, text, kind, given)
    if found is None:
        raise click.UsageError("give --principal NAME, or --principal-type and --principal-id")
    return found


def _whom(conn: Connection, tenant_id: uuid.UUID, kind: str, who: uuid.UUID) -> str:
    """A trend's principal in its title: ``Tess (rep)``, ``West (team)``; the type and id
    of one the tenant no longer names."""
    name = principal_name(conn, tenant_id, kind, who)
    if name is None:
        return f"{kind} {who}"
    return f"{name} ({'rep' if kind == 'USER' else 'team'})"


@cli.command()
@_trend_options
@click.option(
    "--period",
    "period_text",
    metavar="EXPR",
    help=f"The period, in the tenant's fiscal calendar ({EXAMPLES}) [default: this-quarter].",
)
@click.option("--period-start", type=ISO_DATE, help="First day of the period (or --period).")
@click.option("--period-end", type=ISO_DATE, help="Day after the period.")
@click.option(
    "--by",
    "granularity",
    type=click.Choice(GRANULARITIES),
    default="day",
    show_default=True,
    help="day: one point per day, the day's last run; run: every run.",
)
@FORMAT_OPTION
def history(
    tenant_text: str,
    principal_text: str | None,
    principal_type: str | None,
    principal_id: uuid.UUID | None,
    period_text: str | None,
    period_start: dt.date | None,
    period_end: dt.date | None,
    pipeline_text: str | None,
    granularity: str,
    target_match: str | None,
    rollup: bool | None,
    any_rollup: bool,
    output_format: str,
) -> None:
    """A rep's or team's coverage for one period across stored runs: by day (each day's
    last run, a run's day being its as-of day) or every run; of the runs made with the
    tenant's default roll-up and target matching unless told otherwise."""
    chosen_rollup = _rollup(rollup, any_rollup)
    if period_text is not None and (period_start is not None or period_end is not None):
        raise click.UsageError("give --period, or --period-start and --period-end, not both")
    if (period_start is None) != (period_end is None):
        raise click.UsageError("--period-start and --period-end go together")
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    kind, who = _who(conn, tenant_id, principal_text, principal_type, principal_id)
    if period_start is None or period_end is None:
        period_start, period_end = tenant_period(conn, tenant_id, period_text or "this-quarter")
    pipeline_id = resolve_pipeline(conn, tenant_id, pipeline_text) if pipeline_text else None
    points = principal_history(
        conn, tenant_id, kind, who, period_start, period_end, pipeline_id,
        granularity=granularity, target_match=target_match, rollup=chosen_rollup,
    )  # fmt: skip
    if not points:  # nothing stored: maybe an id the tenant does not have
        require_known(conn, tenant_id, (kind, who), pipeline_id)
    header = {
        "tenant_id": str(tenant_id), "principal_type": kind, "principal_id": str(who),
        "period_start": period_start.isoformat(), "period_end": period_end.isoformat(),
        "pipeline_id": str(pipeline_id) if pipeline_id else None, "granularity": granularity,
    }  # fmt: skip
    if output_format == "json":
        _document(history_json(header, points))
    elif output_format == "csv":
        _document(history_csv(points), nl=False)
    else:
        each = "each day's last run" if granularity == "day" else "every run"
        title = (
            f"History · {_whom(conn, tenant_id, kind, who)} · {period_start.isoformat()} to"
            f" {period_end.isoformat()}"
            f" · {each} ({len(points)})"
        )
        make_console().print(history_table(title, points, _app().bands))


@cli.command("same-point")
@_trend_options
@click.option(
    "--quarters",
    type=click.IntRange(1, MAX_QUARTERS),
    default=4,
    show_default=True,
    help="This fiscal quarter and the ones before it, this many in all.",
)
@click.option("--as-of", type=ISO_DATE, help="The reference day [default: today].")
@click.option(
    "--day",
    type=click.IntRange(1, MAX_DAY_OF_QUARTER),
    help="Day k of each quarter [default: the reference day's own day of its quarter].",
)
@FORMAT_OPTION
def same_point(
    tenant_text: str,
    principal_text: str | None,
    principal_type: str | None,
    principal_id: uuid.UUID | None,
    quarters: int,
    as_of: dt.date | None,
    day: int | None,
    pipeline_text: str | None,
    target_match: str | None,
    rollup: bool | None,
    any_rollup: bool,
    output_format: str,
) -> None:
    """A rep or team at the same day of this and the previous fiscal quarters: each
    quarter's last run of that quarter on or before its day k (of the runs made with the
    tenant's default roll-up and target matching unless told otherwise)."""
    chosen_rollup = _rollup(rollup, any_rollup)
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    kind, who = _who(conn, tenant_id, principal_text, principal_type, principal_id)
    pipeline_id = resolve_pipeline(conn, tenant_id, pipeline_text) if pipeline_text else None
    found = same_point_of_quarter(
        conn, tenant_id, kind, who, quarters=quarters, as_of=as_of, day_of_quarter=day,
        pipeline_id=pipeline_id, target_match=target_match, rollup=chosen_rollup,
    )  # fmt: skip
    if not any(quarter.point for quarter in found.quarters):
        require_known(conn, tenant_id, (kind, who), pipeline_id)
    header = {
        "tenant_id": str(tenant_id), "principal_type": kind, "principal_id": str(who),
        "pipeline_id": str(pipeline_id) if pipeline_id else None,
    }  # fmt: skip
    if output_format == "json":
        _document(same_point_json(header, found))
    elif output_format == "csv":
        _document(same_point_csv(found), nl=False)
    else:
        title = (
            f"Same point of the quarter · {_whom(conn, tenant_id, kind, who)} · day"
            f" {found.day_of_quarter}"
            f" of {len(found.quarters)} quarters (as of {found.as_of.isoformat()})"
        )
        make_console().print(same_point_table(title, found, _app().bands))


@cli.command()
@click.option("--tenant", "tenant_text", required=True, metavar="NAME|ID", help=TENANT_HELP)
@click.option(
    "--type",
    "principal_type",
    type=click.Choice(PRINCIPAL_TYPES, case_sensitive=False),
    default="USER",
    show_default=True,
    help="Calibrate the reps (USER) or the teams (GROUP).",
)
@click.option(
    "--quarters",
    type=click.IntRange(1, MAX_CALIBRATION_QUARTERS),
    default=DEFAULT_CALIBRATION_QUARTERS,
    show_default=True,
    help="The fiscal quarters before the current one to learn from.",
)
@click.option("--as-of", type=ISO_DATE, help="The current day [default: today].")
@click.option(
    "--dry-run", is_flag=True, help="Print the calibration; keep the stored fits as they are."
)
@FORMAT_OPTION
def calibration(
    tenant_text: str,
    principal_type: str,
    quarters: int,
    as_of: dt.date | None,
    dry_run: bool,
    output_format: str,
) -> None:
    """Which coverage of the remaining quota made the number, per week of the quarter,
    in this tenant's past quarters: the coverage at which the fitted chance is 50% and
    80%, the hit rate at 3x, and a leave-one-quarter-out backtest of the fit against the
    3x rule. Stores the fits, which every run from then on applies to its rows
    (hit_probability). Learns from the tenant's batch runs made with its default
    roll-up and target matching; a quarter counts once a run of it as of its end or
    later exists (docs/calibration.md)."""
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    with _working(make_console(), "calibrating"):
        found = calibrate(
            conn, tenant_id, principal_type.upper(), quarters=quarters, as_of=as_of,
            store=not dry_run,
        )  # fmt: skip
    if output_format == "json":
        _document(calibration_json(found))
    elif output_format == "csv":
        _document(calibration_csv(found), nl=False)
    else:
        console = make_console()
        kind = "reps" if found.principal_type == "USER" else "teams"
        console.print(
            plain(f"Coverage calibration · {kind} · {len(found.quarters_used)} past quarters"
                  f" (as of {found.as_of.isoformat()})"),
            style="bold", soft_wrap=True, highlight=False,
        )  # fmt: skip
        console.print(calibration_table(found))
        for line in calibration_lines(found):
            console.print(line, soft_wrap=True, highlight=False)


@cli.command()
@click.argument("run_id", type=click.UUID)
@click.option(
    "--tenant", "tenant_text", metavar="NAME|ID", help="The run's tenant (a safety check)."
)
@click.option("--deals", is_flag=True, help="List the deals behind the run's rows instead.")
@_principal_options
@COLUMNS_OPTION
@FORMAT_OPTION
def show(
    run_id: uuid.UUID,
    tenant_text: str | None,
    deals: bool,
    principal_text: str | None,
    principal_type: str | None,
    principal_id: uuid.UUID | None,
    columns: str | None,
    output_format: str,
) -> None:
    """Print a stored run, or (--deals) the deals behind it (all of them, or one rep's
    or team's: --principal NAME, or --principal-type and --principal-id)."""
    if (principal_text or principal_type or principal_id) and not deals:
        raise click.UsageError("--principal, --principal-type and --principal-id go with --deals")
    if deals and columns is not None:
        raise click.UsageError("--columns chooses a run's metrics: not with --deals")
    chosen = parse_columns(columns) if columns is not None else None
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text) if tenant_text is not None else None
    found = get_run(conn, run_id, tenant_id)
    if not deals:
        _print_run(found, output_format, chosen)
        return
    one = _principal(conn, lambda: found.tenant_id, principal_text, principal_type, principal_id)
    behind = run_deals(
        conn,
        run_id,
        found.tenant_id,
        principal_type=one[0] if one else None,
        principal_id=one[1] if one else None,
    )
    if output_format == "json":
        _document(deals_json(run_id, behind))
    elif output_format == "csv":
        _document(deals_csv(behind), nl=False)
    else:
        make_console().print(deals_table(found, behind))


@cli.command()
@click.argument("run_a", type=click.UUID)
@click.argument("run_b", type=click.UUID)
@click.option(
    "--tenant", "tenant_text", metavar="NAME|ID", help="The runs' tenant (a safety check)."
)
@click.option("--deals", is_flag=True, help="List the deals of every step instead.")
@_principal_options
@FORMAT_OPTION
def compare(
    run_a: uuid.UUID,
    run_b: uuid.UUID,
    tenant_text: str | None,
    deals: bool,
    principal_text: str | None,
    principal_type: str | None,
    principal_id: uuid.UUID | None,
    output_format: str,
) -> None:
    """Show how open pipeline moved from run A to run B: won, lost, left, entered, changed
    (for everyone, or only one rep's or team's rows)."""
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text) if tenant_text is not None else None
    one = _principal(
        conn, lambda: tenant_id or get_run(conn, run_a).tenant_id, principal_text,
        principal_type, principal_id,
    )  # fmt: skip
    kind, principal_id = one if one is not None else (None, None)
    movement = compare_runs(
        conn, run_a, run_b, tenant_id, principal_type=kind, principal_id=principal_id,
        deals=deals,
    )  # fmt: skip
    bands = _app().bands
    if output_format == "json":
        _document(movement_json(movement, bands))
    elif output_format == "csv":
        text = movement_deals_csv(movement.deals or ()) if deals else movement_csv(movement, bands)
        _document(text, nl=False)
    else:
        console = make_console()
        title, caption = movement_heading(movement)
        console.print(title, style="bold", soft_wrap=True, highlight=False)
        console.print(movement_deals_table(movement) if deals else movement_table(movement, bands))
        total = None if deals else movement_total_line(movement, bands)
        if total is not None:
            console.print(total, soft_wrap=True, highlight=False)
        console.print(caption, style="dim", soft_wrap=True, highlight=False)


@cli.command()
@click.option("--tenant", "tenant_text", metavar="NAME|ID", help="Only this tenant's runs.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST_LIMIT),
    default=50,
    show_default=True,
    help="At most this many runs.",
)
@FORMAT_OPTION
def runs(tenant_text: str | None, limit: int, output_format: str) -> None:
    """List stored runs, newest first."""
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text) if tenant_text is not None else None
    found = list_runs(conn, tenant_id, limit=limit)
    if output_format == "json":
        _document(runs_json(found))
    elif output_format == "csv":
        _document(runs_csv(found), nl=False)
    else:
        make_console().print(runs_table(found))


@cli.command()
@FORMAT_OPTION
def tenants(output_format: str) -> None:
    """List the tenants: ids, names, reporting currency and sizes."""
    found = list_tenants(_app().connection())
    columns = ("id", "name", "currency", "users", "groups", "deals")
    rows = [[str(t.id), t.name, t.currency, t.users, t.groups, t.deals] for t in found]
    _print_listing("Tenants", columns, rows, output_format, "tenants")


@cli.group()
def tenant() -> None:
    """One tenant: its default run options, or its removal ('tenants' lists them)."""


@tenant.command("settings")
@click.argument("tenant_text", metavar="TENANT")
@click.option(
    "--rollup/--no-rollup",
    default=None,
    help="Runs credit a team with its members' and sub-teams' deals by default, or not.",
)
@click.option(
    "--target-match",
    type=click.Choice(TARGET_MATCHES),
    help="The default target matching: exact (the period's own targets) or within.",
)
@click.option(
    "--win-rate-lookback-days",
    type=click.IntRange(1, MAX_LOOKBACK_DAYS),
    help="The default win-rate lookback, in days.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("table", "json")),
    default="table",
    show_default=True,
    help="A table, or one JSON document.",
)
def tenant_settings(
    tenant_text: str,
    rollup: bool | None,
    target_match: str | None,
    win_rate_lookback_days: int | None,
    output_format: str,
) -> None:
    """Show the tenant's default run options, after changing those given: what run,
    snapshot, history, same-point, the API and the dashboard use unless told otherwise."""
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    if rollup is None and target_match is None and win_rate_lookback_days is None:
        found = run_defaults(conn, tenant_id)
    else:
        found = set_run_defaults(
            conn, tenant_id, rollup=rollup, target_match=target_match,
            win_rate_lookback_days=win_rate_lookback_days,
        )  # fmt: skip
    if output_format == "json":
        _document(json.dumps({"tenant_id": str(tenant_id), "run_defaults": found.as_dict()},
                             indent=2))  # fmt: skip
        return
    table = Table(title=f"Default run options · tenant {tenant_id}", title_justify="left")
    table.add_column("option")
    table.add_column("default")
    for name, value in found.as_dict().items():
        add_row(table, name, json.dumps(value) if isinstance(value, bool) else str(value))
    make_console().print(table)


@tenant.command("delete")
@click.argument("tenant_text", metavar="TENANT")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
def tenant_delete(tenant_text: str, dry_run: bool, yes: bool) -> None:
    """Delete a tenant and everything of it (reps, teams, pipelines, deals, targets,
    rates, runs, API keys and sessions, settings), in one transaction.

    On a terminal it asks first unless --yes; without a terminal it needs --yes.
    """
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    if dry_run or not yes:
        if not dry_run and not sys.stdin.isatty():
            raise click.ClickException(
                f"tenant delete: not on a terminal, so not asked: add --yes to delete tenant"
                f" {tenant_id} and everything of it (--dry-run counts it)"
            )
        would = delete_tenant(conn, tenant_id, dry_run=True)
        what = _deletion(would.rows)
        if dry_run:
            _echo(f"would delete tenant {tenant_id}: {what}")
            return
        if not click.confirm(
            printable(f"delete tenant {tenant_id} and everything of it: {what}?"), default=False
        ):
            click.echo("nothing deleted")
            return
    deleted = delete_tenant(conn, tenant_id)
    _echo(f"deleted tenant {tenant_id}: {_deletion(deleted.rows)}")


def _deletion(rows: dict[str, int]) -> str:
    """A tenant's rows, table by table ('3 crm_user, 120 deal, ...'), those it has."""
    shown = [f"{n} {table}" for table, n in rows.items() if n]
    return f"{sum(rows.values())} rows ({', '.join(shown)})"


@cli.command()
@click.option("--tenant", "tenant_text", required=True, metavar="NAME|ID", help=TENANT_HELP)
@click.option(
    "--type",
    "kind",
    type=click.Choice(PRINCIPAL_TYPES, case_sensitive=False),
    help="Only reps (USER) or only teams (GROUP).",
)
@FORMAT_OPTION
def principals(tenant_text: str, kind: str | None, output_format: str) -> None:
    """List a tenant's reps and teams: type, id, name, active, and a team's parent."""
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text)
    found = list_principals(conn, tenant_id, kind.upper() if kind else None)
    columns = ("principal_type", "id", "name", "active", "parent_group_id", "parent_name")
    rows = [
        [p.principal_type, str(p.id), p.name, p.active,
         str(p.parent_id) if p.parent_id else None, p.parent_name]
        for p in found
    ]  # fmt: skip
    _print_listing("Reps and teams", columns, rows, output_format, "principals")


@cli.command()
@click.option("--tenant", "tenant_text", required=True, metavar="NAME|ID", help=TENANT_HELP)
@FORMAT_OPTION
def periods(tenant_text: str, output_format: str) -> None:
    """List the periods a tenant has targets or runs for, named in its fiscal calendar."""
    conn = _app().connection()
    found = known_periods(conn, resolve_tenant(conn, tenant_text))
    columns = ("name", "period_start", "period_end", "targets", "runs", "last_run", "current")
    rows = [
        [p.name, p.period_start.isoformat(), p.period_end.isoformat(), p.targets, p.runs,
         p.last_run.isoformat() if p.last_run else None, p.current]
        for p in found
    ]  # fmt: skip
    _print_listing("Periods with targets or runs", columns, rows, output_format, "periods")


def _print_listing(
    title: str, columns: Sequence[str], rows: list[list[Any]], output_format: str, key: str
) -> None:
    if output_format == "json":
        _document(json.dumps({key: [dict(zip(columns, row, strict=True)) for row in rows]},
                             indent=2))  # fmt: skip
    elif output_format == "csv":
        _document(csv_text(columns, rows), nl=False)
    else:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            add_row(table, *("" if value is None else str(value) for value in row))
        make_console().print(table)


@cli.group()
def apikey() -> None:
    """Tenant API keys for the HTTP API and dashboard."""


@apikey.command("create")
@click.option("--tenant", "tenant_text", required=True, metavar="NAME|ID", help=TENANT_HELP)
@click.option("--name", default="default", show_default=True, help="A label for the key.")
def apikey_create(tenant_text: str, name: str) -> None:
    """Create a key; it is printed once, alone on the last line (only a hash is kept)."""
    conn = _app().connection()
    key, secret = create_api_key(conn, resolve_tenant(conn, tenant_text), name)
    _echo(f"created API key {key.id} ({key.name!r}) for tenant {key.tenant_id}")
    click.echo("store it now: it cannot be shown again")
    click.echo(secret)


@apikey.command("list")
@click.option("--tenant", "tenant_text", metavar="NAME|ID", help="Only this tenant's keys.")
def apikey_list(tenant_text: str | None) -> None:
    """List keys (never the keys themselves), newest first."""
    table = Table(title="API keys", title_justify="left")
    for column in ("Key id", "Tenant", "Name", "Created", "Revoked"):
        table.add_column(column)
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text) if tenant_text is not None else None
    for key in list_api_keys(conn, tenant_id):
        add_row(
            table,
            str(key.id),
            str(key.tenant_id),
            key.name,
            f"{key.created_at:%Y-%m-%d %H:%M:%S}",
            f"{key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "-",
        )
    make_console().print(table)


@apikey.command("revoke")
@click.argument("key_id", type=click.UUID)
@click.option(
    "--tenant", "tenant_text", metavar="NAME|ID", help="The key's tenant (a safety check)."
)
def apikey_revoke(key_id: uuid.UUID, tenant_text: str | None) -> None:
    """Revoke a key; requests with it get 401 from now on."""
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text) if tenant_text is not None else None
    key = revoke_api_key(conn, key_id, tenant_id)
    _echo(f"revoked API key {key.id} ({key.name!r}) of tenant {key.tenant_id}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes sharing the port (each with its own pool; tenant shares are split).",
)
def serve(host: str, port: int, workers: int) -> None:
    """Run the HTTP API and the dashboard until Ctrl-C / SIGTERM (graceful shutdown)."""
    import os

    from pipeline_coverage.web import server

    app = _app()
    migrate.require_current(app.connection())
    settings = WebSettings.from_env()
    click.echo(
        f"serving {app.where} on http://{host}:{port}/ (API at /v1, docs at /docs)"
        + (f" with {workers} worker processes" if workers > 1 else ""),
        err=True,
    )
    if workers == 1:
        from pipeline_coverage.web.app import create_app

        server.configure_access_log()
        web: object = create_app(app.url(), settings)
    else:
        # Each worker builds the app from the environment: the same database, and the
        # same session key, so a cookie signed by one worker is good at every other.
        os.environ[server.DATABASE_URL_VARIABLE] = app.url()
        os.environ[server.SECRET_KEY_VARIABLE] = settings.secret_key
        os.environ[WORKERS_VARIABLE] = str(workers)
        web = server.APP_FACTORY
    config = server.uvicorn_config(web, host, port, settings, workers=workers, factory=workers > 1)
    if not server.run(config):
        raise click.ClickException(f"the server could not start on {host}:{port}")


@cli.command()
@click.option(
    "--older-than",
    "older_than_days",
    type=click.IntRange(0, MAX_RETENTION_DAYS),
    required=True,
    metavar="DAYS",
    help="Delete runs generated more than DAYS days ago.",
)
@click.option("--tenant", "tenant_text", metavar="NAME|ID", help="Only this tenant's runs.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
def prune(older_than_days: int, tenant_text: str | None, dry_run: bool, yes: bool) -> None:
    """Delete whole old runs (their fact rows and deals go with them)."""
    conn = _app().connection()
    tenant_id = resolve_tenant(conn, tenant_text) if tenant_text is not None else None
    scope = f"older than {older_than_days} days" + (f" of tenant {tenant_id}" if tenant_id else "")
    if dry_run or (not yes and sys.stdin.isatty()):
        would = prune_runs(conn, older_than_days, tenant_id, dry_run=True)
        what = f"{would.runs} runs ({would.fact_rows} fact rows) {scope}"
        if dry_run:
            click.echo(f"would delete {what}")
            return
        if would.runs == 0:
            click.echo(f"no runs {scope}")
            return
        if not click.confirm(f"delete {what}?", default=False):
            click.echo("nothing deleted")
            return
    pruned = prune_runs(conn, older_than_days, tenant_id)
    click.echo(f"deleted {pruned.runs} runs ({pruned.fact_rows} fact rows) {scope}")


@cli.command()
@click.option(
    "--deals",
    type=click.IntRange(min=1, max=1_000_000),
    default=4000,
    show_default=True,
    help="How many deals the demo tenant gets.",
)
def demo(deals: int) -> None:
    """Load a demo tenant and show coverage for every rep and team this quarter (teams
    rolled up over their members and sub-teams)."""
    app = _app()
    console = make_console()
    conn = app.connection()
    today = dt.date.today()
    with tempfile.TemporaryDirectory(prefix="pipeline-coverage-demo-") as folder:
        with _working(console, f"generating a demo tenant with {deals:,} deals"):
            summary = demo_data.write_demo(Path(folder), today, deals=deals)
        with _file_progress(console) as progress:
            loads = load_directory(conn, Path(folder), progress=progress)
    console.print(
        f"Loaded demo tenant [bold]{demo_data.TENANT_NAME}[/] ({summary.tenant_id}) into "
        f"{app.where}: {summary.users} reps, {summary.groups} teams, "
        f"{sum(item.rows for item in loads if item.table == 'deal')} deals."
    )
    # Its teams come with members, like an imported tenant's: rolled up by default, so
    # that run, snapshot, history and the dashboard show them as this table does.
    set_run_defaults(conn, summary.tenant_id, rollup=True)
    # Past quarters (made-up runs, marked demo_history) for calibration to learn from,
    # so that this quarter's rows carry their chance of making the number (SPEC.md §14).
    with _working(console, "calibrating on the demo's past quarters"):
        demo_data.write_past_runs(conn, today)
        calibrate(conn, summary.tenant_id, "USER", as_of=today)
    with _working(console, "computing coverage for every rep and team"):
        # Rolled up: the Enterprise region counts its two teams' deals (SPEC.md §10).
        run_id = run_pipeline_coverage_batch(
            conn,
            summary.tenant_id,
            summary.period_start,
            summary.period_end,
            rollup=True,
            as_of=today,
        )
    _print_run(get_run(conn, run_id, summary.tenant_id), "table")
    me = _invoked_as()
    console.print(
        f"Next: {me} show {run_id} --deals --format json\n"
        f"      {me} run --tenant '{demo_data.TENANT_NAME}' --period this-quarter --all"
        " --by-pipeline\n"
        f"      {me} run --tenant '{demo_data.TENANT_NAME}' --period this-quarter --all"
        " --no-rollup   # a team counts only the deals stamped with it\n"
        f"      {me} calibration --tenant '{demo_data.TENANT_NAME}'   # which coverage made"
        " the number, week by week\n"
        f"      {me} apikey create --tenant '{demo_data.TENANT_NAME}'   "
        f"# then: {me} serve, and sign in at http://127.0.0.1:8000/",
        soft_wrap=True,
        highlight=False,
    )


def _invoked_as() -> str:
    """How to run this command again from here: its name when it is on PATH, else the
    path it was started by (``.venv/bin/pipeline-coverage`` after ``make demo``)."""
    started = Path(sys.argv[0])
    if shutil.which(PROG) or started.name != PROG or not started.exists():
        return PROG
    try:
        return str(started.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(started)


def _print_run(
    found: CoverageRun, output_format: str, columns: Sequence[str] | None = None
) -> None:
    bands = _app().bands
    if output_format == "json":
        _document(run_json(found, bands))
    elif output_format == "csv":
        _document(run_csv(found, bands), nl=False)
    else:
        console = make_console()
        title, caption = run_heading(found)
        console.print(title, style="bold", soft_wrap=True, highlight=False)
        chosen = columns or headline(rollup=bool(found.parameters.get("rollup")))
        console.print(run_table(found, chosen, bands))
        for line in total_lines(found):
            console.print(line, soft_wrap=True, highlight=False)
        console.print(caption, style="dim", soft_wrap=True, highlight=False)
        # What the numbers leave out, whenever anything was left out (SPEC.md §8).
        for line in exclusion_lines(found):
            console.print(line, soft_wrap=True, highlight=False)


def _echo(line: str, *, err: bool = False) -> None:
    """A line of text that may quote data (a name, a value read from a file) as the
    terminal gets it: its control characters replaced (:func:`printable`), so that it
    cannot restyle, retitle or clear the terminal. Not for JSON or CSV output, which
    carry the exact text."""
    click.echo(printable(line), err=err)


def _document(text: str, *, nl: bool = True) -> None:
    """A JSON or CSV document on stdout, exactly: not through :func:`printable`, and
    with ``color=True`` since off a terminal click would strip what looks like a colour
    code (``ESC [ 31 m``) out of a name."""
    click.echo(text, nl=nl, color=True)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _error(message: str) -> None:
    """The one line of an error on stderr: ``pipeline-coverage: error: ...``."""
    _echo(f"{PROG}: error: {_one_line(message)}", err=True)


#: Set once a signal interrupted the command (its rollbacks may then fail, unheard).
_INTERRUPTED = threading.Event()


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    # Unwinds the stack like Ctrl-C, so the embedded server is stopped on the way out.
    _INTERRUPTED.set()
    raise KeyboardInterrupt


class _QuietAfterInterrupt(logging.Filter):
    """Drops psycopg's 'error ignored in rollback' when the rollback failed because an
    interrupt stopped a query midway (a transaction's, or a connection's as its ``with``
    block ends): the command ends with its one line, 'interrupted'."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _INTERRUPTED.is_set() and str(record.msg).startswith("error ignored in rollback"):
            return False
        failed = sys.exc_info()[1]
        return not (failed is not None and isinstance(failed.__context__, KeyboardInterrupt))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, map errors to exit codes, never show a traceback for
    an expected error (set PIPELINE_COVERAGE_DEBUG=1 to see one for unexpected ones)."""
    # SIGINT too: a shell may start us with SIGINT ignored (a background job), and
    # Python then installs no KeyboardInterrupt handler of its own.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)
    for name in ("psycopg", "psycopg.transaction"):
        rollbacks = logging.getLogger(name)
        if not any(isinstance(f, _QuietAfterInterrupt) for f in rollbacks.filters):
            rollbacks.addFilter(_QuietAfterInterrupt())
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        _error(exc.format_message() + hint)
        return 2
    except LoadError as exc:
        # One line (SPEC.md §6), naming every bad row listed, so all can be fixed at once.
        shown = "; ".join(_one_line(problem) for problem in exc.problems)
        more = exc.total - len(exc.problems)
        _error(shown + (f"; and {more} more" if more else ""))
        return 2
    except InputError as exc:
        _error(str(exc))
        return 2
    except PipelineCoverageError as exc:
        _error(str(exc))
        return 1
    except Exception as exc:
        if os.environ.get("PIPELINE_COVERAGE_DEBUG"):
            raise
        _echo(
            f"{PROG}: unexpected error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(set PIPELINE_COVERAGE_DEBUG=1 for a traceback)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
