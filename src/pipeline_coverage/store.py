"""The run store: stored runs (``report_run`` + fact rows + drill-down), read back.

Runs are immutable snapshots: once written (by ``reports.coverage``) they are only
listed, read, explained (their deals and exclusions) and pruned. Every reader takes
the caller's connection (psycopg 3 or psycopg2) and reads rows by column name.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, TypeVar

import psycopg

from pipeline_coverage.db.connection import (
    Connection,
    Cursor,
    as_uuid,
    in_transaction,
    one_read,
    pipelined_read,
    pipelines,
    records,
    send_settings,
    set_for_transaction,
    unit_of_work,
)
from pipeline_coverage.errors import NotFoundError, ValidationError
from pipeline_coverage.metrics import NAMES
from pipeline_coverage.presentation import exclusion_message
from pipeline_coverage.sql import query, specialized_query
from pipeline_coverage.validation import (
    parse_period,
    parse_principal_type,
    parse_uuid,
    parse_whole,
    required_uuid,
)

REPORT_TYPE = "PIPELINE_COVERAGE"
#: The longest retention ``prune`` takes (a century), and the longest list of runs.
MAX_RETENTION_DAYS = 36_500
MAX_LIST_LIMIT = 10_000
#: The most drill-down rows one read returns (page through the rest).
MAX_DEALS_LIMIT = 100_000
_QUERIES = "runs"
T = TypeVar("T")
#: Orders a drill-down's NULL bucket (a run not by pipeline) like the statement does.
_NIL_UUID = "00000000-0000-0000-0000-000000000000"

Value = Decimal | int | None


class SeedMetrics:
    """The seed's three numbers as attributes of anything carrying metric ``values``."""

    values: Mapping[str, Value]

    @property
    def target_amount(self) -> Decimal | None:
        return self._money("target_amount")

    @property
    def open_amount(self) -> Decimal:
        value = self._money("open_amount")
        assert value is not None
        return value

    @property
    def coverage_ratio(self) -> Decimal | None:
        return self._money("coverage_ratio")

    def _money(self, name: str) -> Decimal | None:
        value = self.values.get(name)
        assert value is None or isinstance(value, Decimal)
        return value


@dataclass(frozen=True)
class CoverageRow(SeedMetrics):
    """One fact row: a principal's (and optionally a pipeline's) numbers in a run.

    ``values`` holds every metric of the registry (``pipeline_coverage.metrics``) by
    name; the seed's three are also attributes.
    """

    principal_type: str
    principal_id: uuid.UUID
    principal_name: str | None
    pipeline_id: uuid.UUID | None
    pipeline_name: str | None
    values: Mapping[str, Value] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    def __getitem__(self, metric: str) -> Value:
        return self.values[metric]


@dataclass(frozen=True)
class Exclusion:
    """One line of a run's exclusions report: a flag, how many deals (or, for
    TARGET_PERIOD_MISMATCH, rows), their amount in the reporting currency, and how many
    of those deals have no exchange rate in force (they are in no amount)."""

    flag: str
    count: int
    amount: Decimal | None
    no_rate: int = 0
    #: TARGET_OVERLAP: each row's name and the overlapping target rows it summed.
    detail: tuple[str, ...] = ()

    def describe(self, currency: str = "") -> str:
        """The report's sentence for this flag (:func:`presentation.exclusion_message`)."""
        return exclusion_message(
            self.flag, self.count, self.amount, self.no_rate, currency, self.detail
        )


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
    exclusions: tuple[Exclusion, ...] = ()
    #: The tenant's fiscal calendar, which names the run's period.
    fiscal_year_start_month: int = 1

    @property
    def currency(self) -> str:
        return str(self.parameters.get("currency") or "")

    @property
    def as_recorded(self) -> bool:
        """Computed from the deals as they stood at the end of its as_of (SPEC.md §13)."""
        return bool(self.parameters.get("as_recorded"))


@dataclass(frozen=True)
class DealCredit:
    """One drill-down row: a deal behind a fact row, as the run saw it (SPEC.md §7)."""

    principal_type: str
    principal_id: uuid.UUID
    pipeline_id: uuid.UUID | None
    deal_id: uuid.UUID
    deal_name: str
    deal_class: str
    credit_reason: str
    forecast_category: str
    probability: int | None
    amount: Decimal | None
    currency: str
    #: In the reporting currency; None when no rate was in force (flag NO_RATE).
    reporting_amount: Decimal | None
    weighted_amount: Decimal | None
    placed_on: dt.date | None
    flags: tuple[str, ...]
    deal_pipeline_id: uuid.UUID
    pipeline_name: str
    stage_id: uuid.UUID
    stage_name: str
    owner_user_id: uuid.UUID | None


def optional_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else as_uuid(value)


def _flags(value: Any) -> tuple[str, ...]:
    """A text[] (a list from psycopg 3; psycopg2 too) as a tuple."""
    return tuple(value or ())


def identity_from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Whose row a record is (principal and pipeline, with their names), as the
    keywords of a row's dataclass."""
    return {
        "principal_type": record["principal_type"],
        "principal_id": as_uuid(record["principal_id"]),
        "principal_name": record["principal_name"],
        "pipeline_id": optional_uuid(record["pipeline_id"]),
        "pipeline_name": record["pipeline_name"],
    }


def row_from_record(record: Mapping[str, Any]) -> CoverageRow:
    return CoverageRow(
        **identity_from_record(record),
        values={name: record[name] for name in NAMES},
        flags=_flags(record["flags"]),
    )


def run_from_header(record: Mapping[str, Any], **extra: Any) -> CoverageRun:
    """A run's header record (``get_run``'s columns) as a :class:`CoverageRun`."""
    return CoverageRun(
        run_id=as_uuid(record["run_id"]),
        tenant_id=as_uuid(record["tenant_id"]),
        tenant_name=record["tenant_name"],
        report_type=record["report_type"],
        generated_at=record["generated_at"],
        period_start=record["period_start"],
        period_end=record["period_end"],
        parameters=json.loads(record["parameters"]),
        fiscal_year_start_month=int(record["fiscal_year_start_month"]),
        **extra,
    )


# --- writing -------------------------------------------------------------------------


def insert_run(
    cur: Cursor,
    tenant_id: uuid.UUID,
    period: tuple[dt.date, dt.date],
    parameters: Mapping[str, Any],
    report_type: str = REPORT_TYPE,
    run_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Write a run's header inside the caller's unit of work; returns the new id (with
    ``run_id``: that one, without reading the statement's answer, so that it can be
    sent along with the statements after it)."""
    cur.execute(
        query(_QUERIES, "insert_run"),
        {
            "id": str(run_id) if run_id is not None else None,
            "tenant_id": str(tenant_id),
            "report_type": report_type,
            "period_start": period[0],
            "period_end": period[1],
            "parameters": json.dumps(parameters),
        },
    )
    return run_id if run_id is not None else as_uuid(records(cur)[0]["id"])


@dataclass(frozen=True)
class Pruned:
    """What a prune deleted."""

    runs: int
    fact_rows: int


def prune_runs(
    conn: Connection,
    older_than_days: int,
    tenant_id: uuid.UUID | str | None = None,
    *,
    dry_run: bool = False,
) -> Pruned:
    """Delete whole runs generated more than ``older_than_days`` days ago (with
    ``dry_run``: only count what would go).

    Deleting the header takes its fact rows and drill-down with it, so a run is never
    left half gone. Without ``tenant_id`` every tenant's old runs go (a retention job).
    """
    days = parse_whole(older_than_days, "older_than_days", 0, MAX_RETENTION_DAYS)
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    params: dict[str, Any] = {"older_than_days": days, "tenant_id": str(tenant) if tenant else None}
    with unit_of_work(conn) as cur:
        if dry_run:
            cur.execute(query(_QUERIES, "prune_count"), params)
            [counted] = records(cur)
            return Pruned(runs=int(counted["runs"]), fact_rows=int(counted["fact_rows"]))
        # (rows of runs that stay, stored as what changed since a run that goes, are
        # stored complete first: nothing that stays depends on what goes)
        cur.execute(query(_QUERIES, "prune_cutoff"), params)
        params["cutoff"] = records(cur)[0]["cutoff"]
        cur.execute(query(_QUERIES, "prune_rebase_tenants"), params)
        for rebased in records(cur):
            one = {**params, "tenant_id": str(rebased["tenant_id"])}
            for name in ("prune_rebase", "prune_trim_chains", "prune_rebase_credits",
                         "prune_drop_removed_credits", "prune_complete_credits",
                         "prune_trim_credit_chains"):  # fmt: skip
                cur.execute(query(_QUERIES, name), one)
        cur.execute(query(_QUERIES, "prune_facts"), params)
        fact_rows = cur.rowcount
        cur.execute(query(_QUERIES, "prune_runs"), params)
        runs = cur.rowcount
    return Pruned(runs=runs, fact_rows=fact_rows)


# --- reading -------------------------------------------------------------------------


def _header(cur: Cursor, run: uuid.UUID, tenant: uuid.UUID | None) -> Mapping[str, Any]:
    cur.execute(
        query(_QUERIES, "get_run"),
        {"run_id": str(run), "tenant_id": str(tenant) if tenant else None},
    )
    found = records(cur)
    if not found:
        raise NotFoundError(f"run_id: no run {run}")
    return found[0]


def get_run(
    conn: Connection, run_id: uuid.UUID | str, tenant_id: uuid.UUID | str | None = None
) -> CoverageRun:
    """A stored run with its rows (in a fixed order of identity: the order they are
    shown in is presentation.default_order's) and its exclusions report.

    With ``tenant_id``, a run of another tenant is reported as not found.
    """
    run = required_uuid(run_id, "run_id")
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    with unit_of_work(conn) as cur:
        header = _header(cur, run, tenant)
        params = {"run_id": str(run), "tenant_id": str(header["tenant_id"])}
        cur.execute(query(_QUERIES, "get_run_rows"), params)
        rows = tuple(row_from_record(record) for record in records(cur))
        cur.execute(query(_QUERIES, "run_exclusions"), params)
        exclusions = tuple(
            Exclusion(
                r["flag"], int(r["deals"]), r["amount"], int(r["no_rate"]), tuple(r["detail"] or ())
            )
            for r in records(cur)
        )
    return run_from_header(header, rows=rows, row_count=len(rows), exclusions=exclusions)


def list_runs(
    conn: Connection,
    tenant_id: uuid.UUID | str | None = None,
    limit: int = 50,
    *,
    before: tuple[dt.datetime, uuid.UUID] | None = None,
    period: tuple[dt.date, dt.date] | None = None,
    mode: str | None = None,
    report_type: str = REPORT_TYPE,
) -> list[CoverageRun]:
    """Stored runs of one report type, newest first (headers and row counts).

    ``before`` is a keyset cursor (the last run's ``generated_at`` and id) for
    paging; ``period`` and ``mode`` ("single" or "batch") narrow the list.
    """
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    parse_whole(limit, "limit", 1, MAX_LIST_LIMIT)
    if mode not in (None, "single", "batch"):
        raise ValidationError(f"mode: must be single or batch, got {mode!r}")
    if period is not None:
        period = parse_period(*period)
    params = {
        "tenant_id": str(tenant) if tenant else None,
        "report_type": report_type,
        "limit": limit,
        "before_at": before[0] if before else None,
        "before_id": str(before[1]) if before else None,
        "period_start": period[0] if period else None,
        "period_end": period[1] if period else None,
        "mode": mode,
    }
    with unit_of_work(conn) as cur:
        cur.execute(specialized_query(_QUERIES, "list_runs", every_tenant=tenant is None), params)
        found = records(cur)
    return [run_from_header(r, row_count=int(r["row_count"])) for r in found]


#: A drill-down page's position: after this (principal type, principal, bucket, deal).
DealCursor = tuple[str, uuid.UUID, uuid.UUID | None, uuid.UUID]

#: ``run_deals`` joins its page to the run's deals, which it reads from arrays the
#: planner takes for 10 elements: a nested loop there unnests the whole run once per
#: row of the page, whatever the plan (custom, or the generic one a prepared
#: statement gets). Its only other joins are run_deal_rows' (a chunk stored as
#: what changed is resolved by LATERAL unnests, which only a nested loop can do: turned
#: off, the planner prices them at its "disabled" cost, 1e10 each, and takes them all
#: the same). So no JIT either: that cost crosses jit_above_cost, and compiling the
#: statement took 700 ms of a 10 ms read. Nor parallel workers: at that cost the
#: planner splits even the page's one credit row over two workers, whose start took
#: 5 of a principal's 17 ms (EXPLAIN ANALYZE on the bench's main tenant).
DEALS_SETTINGS = {"enable_nestloop": "off", "jit": "off", "max_parallel_workers_per_gather": "0"}


def run_deals(
    conn: Connection,
    run_id: uuid.UUID | str,
    tenant_id: uuid.UUID | str | None = None,
    *,
    principal_type: str | None = None,
    principal_id: uuid.UUID | str | None = None,
    after: DealCursor | None = None,
    limit: int = MAX_DEALS_LIMIT,
) -> list[DealCredit]:
    """The deals behind a run's rows (all rows', or one principal's), ordered by
    principal, bucket and deal; ``after`` continues a page. A run of another tenant
    (when ``tenant_id`` is given) is not found, nor a principal the run has no row for."""
    return _run_deals(
        conn, query(_QUERIES, "run_deals"), _deal_credits, run_id, tenant_id,
        principal_type=principal_type, principal_id=principal_id, after=after, limit=limit,
    )  # fmt: skip


def run_deals_json(
    conn: Connection,
    run_id: uuid.UUID | str,
    tenant_id: uuid.UUID | str | None = None,
    *,
    principal_type: str | None = None,
    principal_id: uuid.UUID | str | None = None,
    after: DealCursor | None = None,
    limit: int = MAX_DEALS_LIMIT,
) -> list[str]:
    """``run_deals``, each deal as the JSON object the API answers with (SPEC names:
    amounts as decimal strings, dates ISO, flags a list), built by the database: a
    page of 1,000 deals then costs the caller a list of strings, not 16,000 typed
    values to convert, validate and encode again."""
    return _run_deals(
        conn, _run_deals_json_query(), _json_texts, run_id, tenant_id,
        principal_type=principal_type, principal_id=principal_id, after=after, limit=limit,
    )  # fmt: skip


@functools.cache
def _run_deals_json_query() -> str:
    """``run_deals`` with each row as ``deal_values``' object, in the same order."""
    inner = query(_QUERIES, "run_deals").strip().removesuffix(";")
    return (
        "SELECT to_json(j)::text FROM ("  # noqa: S608 (our own statement)
        " SELECT d.principal_type, d.principal_id, d.pipeline_id, d.deal_id, d.deal_name,"
        " d.deal_class AS class, d.credit_reason, d.forecast_category, d.probability,"
        " d.amount::text AS amount, d.currency, d.reporting_amount::text AS reporting_amount,"
        " d.placed_on, COALESCE(d.flags, '{}'::text[]) AS flags, d.stage_name,"
        f" d.pipeline_name AS deal_pipeline_name FROM ({inner}) AS d) AS j"
        " ORDER BY j.principal_type, j.principal_id,"
        f" COALESCE(j.pipeline_id, '{_NIL_UUID}'::uuid), j.deal_id"
    )


def _json_texts(cur: Cursor) -> list[str]:
    return [row[0] for row in cur.fetchall()]


def _run_deals(
    conn: Connection,
    statement: str,
    read: Callable[[Cursor], list[T]],
    run_id: uuid.UUID | str,
    tenant_id: uuid.UUID | str | None,
    *,
    principal_type: str | None,
    principal_id: uuid.UUID | str | None,
    after: DealCursor | None,
    limit: int,
) -> list[T]:
    run = required_uuid(run_id, "run_id")
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    kind = parse_principal_type(principal_type) if principal_type is not None else None
    principal = parse_uuid(principal_id, "principal_id", optional=True)
    parse_whole(limit, "limit", 1, MAX_DEALS_LIMIT)

    def values(tenant_of_run: Any) -> dict[str, Any]:
        return {
            "tenant_id": str(tenant_of_run),
            "run_id": str(run),
            "principal_type": kind,
            "principal_id": str(principal) if principal else None,
            "after_type": after[0] if after else None,
            "after_principal": str(after[1]) if after else None,
            "after_pipeline": str(after[2]) if after and after[2] else None,
            "after_deal": str(after[3]) if after else None,
            "limit": limit,
        }

    lookup = {"run_id": str(run), "tenant_id": str(tenant) if tenant else None}
    if tenant is not None and pipelines(conn):
        # The API's hot path: the run's check, the settings and the page go at once.
        with pipelined_read(conn) as cursor:
            check, page = cursor(), cursor()
            check.execute(query(_QUERIES, "run_tenant"), lookup)
            send_settings(page, DEALS_SETTINGS)
            page.execute(statement, values(tenant), binary=True)
        if not records(check):
            raise NotFoundError(f"run_id: no run {run}")
        deals = read(page)
    else:
        callers = in_transaction(conn)
        with unit_of_work(conn) as cur:
            # (a light look-up of the run's tenant, not its header)
            cur.execute(query(_QUERIES, "run_tenant"), lookup)
            found = records(cur)
            if not found:
                raise NotFoundError(f"run_id: no run {run}")
            tenant = as_uuid(found[0]["tenant_id"])
            replaced = set_for_transaction(cur, DEALS_SETTINGS)
            # psycopg 3 takes the rows in binary: PostgreSQL writes a large principal's
            # thousands of UUIDs, amounts and dates faster so than as text.
            binary = {"binary": True} if isinstance(cur, psycopg.Cursor) else {}
            cur.execute(statement, values(tenant), **binary)
            deals = read(cur)
            if callers:  # (a caller's transaction goes on; ours ends with its settings)
                set_for_transaction(cur, replaced)
    if not deals and principal is not None and after is None:
        with one_read(conn) as cur:
            cur.execute(
                query(_QUERIES, "run_has_row"),
                {"tenant_id": str(tenant), "run_id": str(run), "principal_type": kind,
                 "principal_id": str(principal)},
            )  # fmt: skip
            if not records(cur)[0]["found"]:
                raise NotFoundError(f"principal_id: run {run} has no row for {kind} {principal}")
    return deals


#: DealCredit's fields in order; ``run_deals`` selects exactly these columns, by name.
_DEAL_FIELDS = tuple(f.name for f in fields(DealCredit))
_DEAL_UUIDS = tuple(
    _DEAL_FIELDS.index(name)
    for name in ("principal_id", "pipeline_id", "deal_id", "deal_pipeline_id", "stage_id",
                 "owner_user_id")
)  # fmt: skip
_DEAL_FLAGS = _DEAL_FIELDS.index("flags")


def _deal_credits(cur: Cursor) -> list[DealCredit]:
    """The cursor's drill-down rows as DealCredit, matched to its fields by column
    name (checked once per read, not looked up per value: a large principal's
    drill-down is thousands of rows)."""
    names = tuple(column[0] for column in cur.description)
    if names != _DEAL_FIELDS:
        raise RuntimeError(f"run_deals selects {names}, not DealCredit's fields")
    rows = cur.fetchall()
    if rows and not isinstance(rows[0][_DEAL_UUIDS[0]], uuid.UUID):
        # psycopg2 returns uuids as str
        rows = [
            tuple(optional_uuid(v) if i in _DEAL_UUIDS else v for i, v in enumerate(row))
            for row in rows
        ]
    flags = _DEAL_FLAGS
    # (mypy cannot count a starred tuple's items: DealCredit's fields, checked above)
    return [
        DealCredit(*row[:flags], _flags(row[flags]), *row[flags + 1 :])  # type: ignore[call-arg]
        for row in rows
    ]
