"""The pipeline coverage report: compute and store runs, read them back.

Semantics are SPEC.md §1. Every function takes the caller's connection (psycopg 3 or
psycopg2) and never opens one of its own; writes happen in one unit of work, so a
failed run leaves nothing behind and the connection usable.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipeline_coverage.db.connection import as_uuid, unit_of_work
from pipeline_coverage.errors import NotFoundError, ValidationError
from pipeline_coverage.sql import query

REPORT_TYPE = "PIPELINE_COVERAGE"
PRINCIPAL_TYPES = ("USER", "GROUP")
#: The longest retention ``prune`` takes (a century), and the longest list of runs.
MAX_RETENTION_DAYS = 36_500
MAX_LIST_LIMIT = 10_000
#: The longest period a run may span: a year (a leap year, or any fiscal year). A
#: longer run is almost certainly a mistake, and one over all time reads every deal.
MAX_PERIOD_DAYS = 366
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_QUERIES = "pipeline_coverage"


@dataclass(frozen=True)
class CoverageRow:
    """One fact row: a principal's (and optionally a pipeline's) coverage in a run."""

    principal_type: str
    principal_id: uuid.UUID
    principal_name: str | None
    pipeline_id: uuid.UUID | None
    pipeline_name: str | None
    target_amount: Decimal | None
    open_amount: Decimal
    coverage_ratio: Decimal | None


@dataclass(frozen=True)
class CoverageRun:
    """A stored run: its header and (when read with rows) its fact rows."""

    run_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    report_type: str
    generated_at: dt.datetime
    period_start: dt.date
    period_end: dt.date
    parameters: Mapping[str, Any]
    rows: tuple[CoverageRow, ...] = field(default=())
    row_count: int | None = None


# --- argument validation (before the database is touched) -------------------------


def parse_uuid(value: object, name: str, *, optional: bool = False) -> uuid.UUID | None:
    """A UUID from a ``uuid.UUID`` or its canonical text; a :class:`ValidationError` else."""
    if value is None or value == "":
        if optional:
            return None
        raise ValidationError(f"{name}: required")
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"{name}: not a UUID: {value!r}")


def parse_date(value: object, name: str) -> dt.date:
    """A date from a ``datetime.date`` or ISO ``YYYY-MM-DD`` text (a datetime is refused)."""
    if isinstance(value, dt.datetime):
        raise ValidationError(f"{name}: expected a date, got a datetime: {value!r}")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(f"{name}: not a date (YYYY-MM-DD): {value!r}")


def parse_period(period_start: object, period_end: object) -> tuple[dt.date, dt.date]:
    """A half-open period ``[start, end)``; ``end`` must be after ``start``."""
    start = parse_date(period_start, "period_start")
    end = parse_date(period_end, "period_end")
    if end <= start:
        raise ValidationError(
            f"period_end: must be after period_start ({end.isoformat()} <= {start.isoformat()}); "
            "periods are half-open, e.g. Q1 2026 is 2026-01-01 to 2026-04-01"
        )
    return start, end


def parse_run_period(period_start: object, period_end: object) -> tuple[dt.date, dt.date]:
    """A period a run may be computed for: valid, and at most ``MAX_PERIOD_DAYS`` long."""
    start, end = parse_period(period_start, period_end)
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ValidationError(
            f"period_end: a run spans at most {MAX_PERIOD_DAYS} days, got "
            f"{(end - start).days} ({start.isoformat()} to {end.isoformat()})"
        )
    return start, end


def parse_principal_type(value: object) -> str:
    """``USER`` or ``GROUP`` (exactly, as stored)."""
    if value not in PRINCIPAL_TYPES:
        raise ValidationError(f"principal_type: must be USER or GROUP, got {value!r}")
    return str(value)


def quarter_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar quarter containing ``day``, half-open: ``[start, next quarter's start)``."""
    first_month = 3 * ((day.month - 1) // 3) + 1
    start = dt.date(day.year, first_month, 1)
    return start, add_months(start, 3)


def add_months(day: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


# --- writing runs ------------------------------------------------------------------


def _check_scope(cur: Any, params: Mapping[str, Any]) -> None:
    cur.execute(query(_QUERIES, "check_scope"), params)
    tenant_exists, principal_exists, pipeline_exists = cur.fetchone()
    if not tenant_exists:
        raise NotFoundError(f"tenant_id: no tenant {params['tenant_id']}")
    if not principal_exists:
        kind = "user" if params["principal_type"] == "USER" else "group"
        raise NotFoundError(
            f"principal_id: no {kind} {params['principal_id']} in tenant {params['tenant_id']}"
        )
    if not pipeline_exists:
        raise NotFoundError(
            f"pipeline_id: no pipeline {params['pipeline_id']} in tenant {params['tenant_id']}"
        )


def run_pipeline_coverage_report(
    conn: Any,
    tenant_id: uuid.UUID | str,
    period_start: dt.date | str,
    period_end: dt.date | str,
    principal_type: str,
    principal_id: uuid.UUID | str,
    pipeline_id: uuid.UUID | str | None = None,
) -> uuid.UUID:
    """Compute one principal's pipeline coverage for a period and store it as a run.

    The seed's entry point, with its signature and meaning. ``conn`` is a psycopg 3
    or psycopg2 connection. Arguments are validated before the database is touched;
    header and fact row are written in one unit of work (see ``unit_of_work``).
    Returns the new run's id.
    """
    tenant = parse_uuid(tenant_id, "tenant_id")
    start, end = parse_run_period(period_start, period_end)
    kind = parse_principal_type(principal_type)
    principal = parse_uuid(principal_id, "principal_id")
    pipeline = parse_uuid(pipeline_id, "pipeline_id", optional=True)
    params: dict[str, Any] = {
        "tenant_id": str(tenant),
        "period_start": start,
        "period_end": end,
        "principal_type": kind,
        "principal_id": str(principal),
        "pipeline_id": str(pipeline) if pipeline else None,
    }
    params["parameters"] = json.dumps(
        {
            "mode": "single",
            "principal_type": kind,
            "principal_id": params["principal_id"],
            "pipeline_id": params["pipeline_id"],
        }
    )
    with unit_of_work(conn) as cur:
        _check_scope(cur, params)
        cur.execute(query(_QUERIES, "insert_run"), params)
        run_id = as_uuid(cur.fetchone()[0])
        cur.execute(query(_QUERIES, "insert_single_fact"), {**params, "run_id": str(run_id)})
    return run_id


def run_pipeline_coverage_batch(
    conn: Any,
    tenant_id: uuid.UUID | str,
    period_start: dt.date | str,
    period_end: dt.date | str,
    pipeline_id: uuid.UUID | str | None = None,
    by_pipeline: bool = False,
) -> uuid.UUID:
    """Compute coverage for every principal in scope (SPEC.md §5) and store it as one run.

    One fact row per principal (with ``by_pipeline``: per principal and pipeline of the
    tenant), each equal to what ``run_pipeline_coverage_report`` gives for it. All rows
    are computed by one set-based statement; when the connection is idle the unit of
    work runs at REPEATABLE READ, so header and rows see one snapshot. Returns the id.
    """
    tenant = parse_uuid(tenant_id, "tenant_id")
    start, end = parse_run_period(period_start, period_end)
    pipeline = parse_uuid(pipeline_id, "pipeline_id", optional=True)
    if not isinstance(by_pipeline, bool):
        raise ValidationError(f"by_pipeline: must be true or false, got {by_pipeline!r}")
    params: dict[str, Any] = {
        "tenant_id": str(tenant),
        "period_start": start,
        "period_end": end,
        "principal_type": None,
        "principal_id": None,
        "pipeline_id": str(pipeline) if pipeline else None,
        "by_pipeline": by_pipeline,
    }
    params["parameters"] = json.dumps(
        {"mode": "batch", "pipeline_id": params["pipeline_id"], "by_pipeline": by_pipeline}
    )
    with unit_of_work(conn, isolation="REPEATABLE READ") as cur:
        _check_scope(cur, params)
        cur.execute(query(_QUERIES, "insert_run"), params)
        run_id = as_uuid(cur.fetchone()[0])
        cur.execute(query(_QUERIES, "insert_batch_facts"), {**params, "run_id": str(run_id)})
    return run_id


@dataclass(frozen=True)
class Pruned:
    """What a prune deleted."""

    runs: int
    fact_rows: int


def prune_runs(conn: Any, older_than_days: int, tenant_id: uuid.UUID | str | None = None) -> Pruned:
    """Delete whole runs generated more than ``older_than_days`` days ago.

    Deleting the header cascades to its fact rows, so a run is never left half gone.
    Without ``tenant_id`` every tenant's old runs go (a retention job).
    """
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, int):
        raise ValidationError(f"older_than_days: not a whole number of days: {older_than_days!r}")
    if not 0 <= older_than_days <= MAX_RETENTION_DAYS:
        raise ValidationError(
            f"older_than_days: must be 0 to {MAX_RETENTION_DAYS}, got {older_than_days}"
        )
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    params = {"older_than_days": older_than_days, "tenant_id": str(tenant) if tenant else None}
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "prune_runs"), params)
        runs, fact_rows = cur.fetchone()
    return Pruned(runs=int(runs), fact_rows=int(fact_rows))


# --- reading runs ------------------------------------------------------------------


def _run_from_header(row: tuple[Any, ...], **extra: Any) -> CoverageRun:
    return CoverageRun(
        run_id=as_uuid(row[0]),
        tenant_id=as_uuid(row[1]),
        tenant_name=row[2],
        report_type=row[3],
        generated_at=row[4],
        period_start=row[5],
        period_end=row[6],
        parameters=json.loads(row[7]),
        **extra,
    )


def get_run(
    conn: Any, run_id: uuid.UUID | str, tenant_id: uuid.UUID | str | None = None
) -> CoverageRun:
    """A stored run with its rows (sorted by coverage, best first) and principal names.

    With ``tenant_id``, a run of another tenant is reported as not found.
    """
    run = parse_uuid(run_id, "run_id")
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    params = {"run_id": str(run), "tenant_id": str(tenant) if tenant else None}
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "get_run"), params)
        header = cur.fetchone()
        if header is None:
            raise NotFoundError(f"run_id: no run {run}")
        cur.execute(query(_QUERIES, "get_run_rows"), {**params, "tenant_id": str(header[1])})
        fact_rows = cur.fetchall()
    rows = tuple(
        CoverageRow(
            principal_type=r[0],
            principal_id=as_uuid(r[1]),
            principal_name=r[2],
            pipeline_id=as_uuid(r[3]) if r[3] is not None else None,
            pipeline_name=r[4],
            target_amount=r[5],
            open_amount=r[6],
            coverage_ratio=r[7],
        )
        for r in fact_rows
    )
    return _run_from_header(header, rows=rows, row_count=len(rows))


def list_runs(
    conn: Any,
    tenant_id: uuid.UUID | str | None = None,
    limit: int = 50,
    *,
    before: tuple[dt.datetime, uuid.UUID] | None = None,
    period: tuple[dt.date, dt.date] | None = None,
    mode: str | None = None,
) -> list[CoverageRun]:
    """Stored runs, newest first (headers and row counts, without rows).

    ``before`` is a keyset cursor (the last run's ``generated_at`` and id) for
    paging; ``period`` and ``mode`` ("single" or "batch") narrow the list.
    """
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValidationError(f"limit: must be 1 to {MAX_LIST_LIMIT}, got {limit}")
    if mode not in (None, "single", "batch"):
        raise ValidationError(f"mode: must be single or batch, got {mode!r}")
    if period is not None:
        period = parse_period(*period)
    params = {
        "tenant_id": str(tenant) if tenant else None,
        "limit": limit,
        "before_at": before[0] if before else None,
        "before_id": str(before[1]) if before else None,
        "period_start": period[0] if period else None,
        "period_end": period[1] if period else None,
        "mode": mode,
    }
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "list_runs"), params)
        headers = cur.fetchall()
    return [_run_from_header(row, row_count=int(row[8])) for row in headers]


@dataclass(frozen=True)
class HistoryPoint:
    """A principal's coverage in one stored run."""

    run_id: uuid.UUID
    generated_at: dt.datetime
    pipeline_id: uuid.UUID | None
    target_amount: Decimal | None
    open_amount: Decimal
    coverage_ratio: Decimal | None


def principal_history(
    conn: Any,
    tenant_id: uuid.UUID | str,
    principal_type: str,
    principal_id: uuid.UUID | str,
    period_start: dt.date | str,
    period_end: dt.date | str,
    pipeline_id: uuid.UUID | str | None = None,
) -> list[HistoryPoint]:
    """A principal's coverage for one period across the tenant's stored runs, oldest
    first: the trend of how its pipeline built up (or drained) over time."""
    tenant = parse_uuid(tenant_id, "tenant_id")
    kind = parse_principal_type(principal_type)
    principal = parse_uuid(principal_id, "principal_id")
    start, end = parse_period(period_start, period_end)
    pipeline = parse_uuid(pipeline_id, "pipeline_id", optional=True)
    params = {
        "tenant_id": str(tenant),
        "principal_type": kind,
        "principal_id": str(principal),
        "period_start": start,
        "period_end": end,
        "pipeline_id": str(pipeline) if pipeline else None,
    }
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "principal_history"), params)
        rows = cur.fetchall()
    return [
        HistoryPoint(
            run_id=as_uuid(r[0]),
            generated_at=r[1],
            pipeline_id=as_uuid(r[2]) if r[2] is not None else None,
            target_amount=r[3],
            open_amount=r[4],
            coverage_ratio=r[5],
        )
        for r in rows
    ]
