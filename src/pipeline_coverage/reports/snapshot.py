"""Scheduled snapshots: every tenant's batch run for this and next fiscal quarter,
at most once a day, so cron or a systemd timer can take them without a scheduler of
its own.

``take_snapshots`` makes one unit of work per tenant and period (each tenant's
``this-quarter`` and ``next-quarter`` in its own fiscal calendar). Each run carries an
idempotency key derived from the day (``as_of``) and the request, so a second call
the same day with the same parameters replays the first run instead of storing
another (``run_coverage``'s idempotency keys). A tenant-period that fails is reported
in its result and the others go on. Each tenant's runs are made with its default run
options (``tenants.run_defaults``), read when the snapshots start; the key covers
them, so a snapshot after the defaults changed is a new run, not the day's old one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline_coverage.db.connection import Connection, as_uuid, records, unit_of_work
from pipeline_coverage.errors import (
    InputError,
    NotFoundError,
    PipelineCoverageError,
    ValidationError,
)
from pipeline_coverage.periods import fiscal_quarter_of, quarter_name, resolve_period
from pipeline_coverage.presentation import PRINCIPAL_TYPES
from pipeline_coverage.reports.coverage import CoverageRequest, coverage_request, run_coverage
from pipeline_coverage.sql import query
from pipeline_coverage.tenants import RunDefaults
from pipeline_coverage.validation import parse_date, parse_flag, required_uuid

#: The periods a snapshot takes, relative to its day, in the tenant's fiscal calendar.
SNAPSHOT_PERIODS = ("this-quarter", "next-quarter")
#: In the first days of a fiscal quarter, a snapshot also takes the quarter that just
#: ended: its closing run, as of a day on or after its end, is the quarter's outcome
#: (won against target) that coverage calibration learns from (SPEC.md §14).
CLOSING_DAYS = 7
CLOSING_PERIOD = "last-quarter"
#: Called after each tenant-period: (what, done, total), as ``load``'s progress is.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Snapshot:
    """What one tenant-period's snapshot did: a new run, the day's run again, or a failure."""

    tenant_id: uuid.UUID
    tenant_name: str
    #: The fiscal quarter's name (``FY2027-Q1``), recorded as the run's period.
    period: str
    period_start: dt.date
    period_end: dt.date
    run_id: uuid.UUID | None = None
    #: The day's snapshot existed already: ``run_id`` is that run, nothing was written.
    replayed: bool = False
    error: str | None = None
    #: The failure was caused by input or data (an ``InputError``), not unexpected.
    bad_input: bool = False
    #: The quarter that just ended (its closing run, the quarter's outcome).
    closing: bool = False
    #: A closing run's refit of the tenant's calibration: what came of it.
    calibrated: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return "replayed" if self.replayed else "created"


def snapshot_key(request: CoverageRequest) -> str:
    """The idempotency key of a snapshot: its day and a digest of the whole request,
    so the same day and parameters always give the same key, and anything else another."""
    assert request.as_of is not None
    return f"snapshot/{request.as_of.isoformat()}/{request.fingerprint().hex()}"


def take_snapshots(
    conn: Connection,
    tenant_ids: Sequence[uuid.UUID | str] | None = None,
    *,
    as_of: dt.date | str | None = None,
    by_pipeline: bool = False,
    progress: Progress | None = None,
    as_recorded: bool = False,
    refit: bool = True,
) -> list[Snapshot]:
    """Take the day's snapshots: for every tenant (or those of ``tenant_ids``), the
    batch run of its this and next fiscal quarter as of ``as_of`` (default today);
    ``as_recorded``: from the deals as they stood at the end of that day (SPEC.md §13).
    In the first :data:`CLOSING_DAYS` days of a tenant's fiscal quarter, also the
    quarter that just ended (its closing run); when one is made, and ``refit``, the
    tenant's coverage calibration is fitted again (``calibration.refit``).

    Idempotent per day: a repeat with the same day and parameters makes no new run
    (its results are ``replayed``). Each tenant-period is its own unit of work, so a
    failure (reported in its :class:`Snapshot`) leaves the others' runs in place. An
    unknown tenant id is a :class:`NotFoundError` before anything is written.
    """
    day = parse_date(as_of, "as_of") if as_of is not None else dt.date.today()
    by_pipeline = parse_flag(by_pipeline, "by_pipeline")
    wanted = None if tenant_ids is None else [required_uuid(t, "tenant_id") for t in tenant_ids]
    tenants: list[dict[str, Any]] = []
    with unit_of_work(conn) as cur:
        for asked in [None] if wanted is None else wanted:
            cur.execute(
                query("directory", "tenant_calendars"),
                {"tenant_id": None if asked is None else str(asked)},
            )
            found = records(cur)
            if not found:
                raise NotFoundError(f"tenant_id: no tenant {asked}")
            tenants += [t for t in found if t not in tenants]
    periods = {
        str(tenant["id"]): _periods_of(day, int(tenant["fiscal_year_start_month"]))
        for tenant in tenants
    }
    total = sum(len(wanted) for wanted in periods.values())
    taken: list[Snapshot] = []
    for tenant in tenants:
        for expression in periods[str(tenant["id"])]:
            one = _take(conn, tenant, expression, day, by_pipeline, as_recorded)
            if expression == CLOSING_PERIOD and refit and one.status == "created":
                one = replace(one, calibrated=_refit(conn, one.tenant_id, day))
            taken.append(one)
            if progress is not None:
                progress("snapshots", len(taken), total)
    return taken


def _periods_of(day: dt.date, fiscal_year_start_month: int) -> tuple[str, ...]:
    """The periods a snapshot of ``day`` takes (with the closing one, early in a quarter)."""
    start, _ = fiscal_quarter_of(day, fiscal_year_start_month)
    if (day - start).days < CLOSING_DAYS:
        return (*SNAPSHOT_PERIODS, CLOSING_PERIOD)
    return SNAPSHOT_PERIODS


def _refit(conn: Connection, tenant_id: uuid.UUID, day: dt.date) -> str:
    """Fit the tenant's calibration again (reps and teams) now that a quarter closed;
    what came of it, in words (a fit, or why there is none)."""
    from pipeline_coverage.calibration import calibrate  # (statsmodels: loaded only here)

    said = []
    for kind in PRINCIPAL_TYPES:
        try:
            found = calibrate(conn, tenant_id, kind, as_of=day)
        except PipelineCoverageError as exc:
            said.append(f"{kind}: not fitted ({exc})")
            continue
        said.append(f"{kind}: " + (f"no fit ({found.reason})" if found.reason else "fitted"))
    return "; ".join(said)


def _take(
    conn: Connection,
    tenant: dict[str, Any],
    expression: str,
    day: dt.date,
    by_pipeline: bool,
    as_recorded: bool = False,
) -> Snapshot:
    """One tenant-period's run (or the day's run again), or the reason it failed."""
    month = int(tenant["fiscal_year_start_month"])
    start, end = resolve_period(expression, fiscal_year_start_month=month, as_of=day)
    found = Snapshot(
        as_uuid(tenant["id"]), tenant["name"], quarter_name(start, end, month), start, end,
        closing=expression == CLOSING_PERIOD,
    )  # fmt: skip
    defaults = RunDefaults(
        rollup=bool(tenant["rollup"]),
        target_match=str(tenant["target_match"]),
        win_rate_lookback_days=int(tenant["win_rate_lookback_days"]),
    )
    try:
        request = coverage_request(
            found.tenant_id, start, end, by_pipeline=by_pipeline, as_of=day,
            period_expression=found.period, as_recorded=as_recorded,
        ).with_defaults(defaults)  # fmt: skip
        outcome = run_coverage(conn, request, idempotency_key=snapshot_key(request))
    except PipelineCoverageError as exc:
        return replace(found, error=str(exc), bad_input=isinstance(exc, InputError))
    return replace(found, run_id=outcome.run_id, replayed=outcome.replayed)


#: How far apart a backfill's days are.
BACKFILL_STEPS = {"day": 1, "week": 7}


def backfill_days(
    start: dt.date | str, end: dt.date | str | None = None, every: str = "week"
) -> list[dt.date]:
    """The days a backfill takes snapshots on: ``start``, then every day or week up to
    ``end`` (default today), both included; never after today (history only holds
    the past). :class:`ValidationError` for a range that is empty or in the future."""
    first = parse_date(start, "from")
    last = parse_date(end, "to") if end is not None else dt.date.today()
    step = BACKFILL_STEPS.get(every)
    if step is None:
        raise ValidationError(f"every: day or week, got {every!r}")
    if last > dt.date.today():
        raise ValidationError(f"to: {last.isoformat()} is in the future")
    if first > last:
        raise ValidationError(f"from: {first.isoformat()} is after to {last.isoformat()}")
    return [first + dt.timedelta(days=n) for n in range(0, (last - first).days + 1, step)]


def backfill(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    days: Sequence[dt.date],
    *,
    by_pipeline: bool = False,
    progress: Progress | None = None,
) -> list[tuple[dt.date, list[Snapshot]]]:
    """The snapshots ``snapshot`` would have taken on each of ``days`` (SPEC.md §13):
    each day's runs as recorded at its end, with the tenant's default run options.
    Idempotent per day and options, as snapshots are: a day already backfilled (or a
    run of it failed and is retried) replays its runs. Each run is its own unit of
    work; a failure is reported in its :class:`Snapshot` and the others go on."""
    tenant = required_uuid(tenant_id, "tenant_id")
    taken: list[tuple[dt.date, list[Snapshot]]] = []
    for n, day in enumerate(days, 1):
        taken.append(
            (day, take_snapshots(conn, [tenant], as_of=day, by_pipeline=by_pipeline,
                                 as_recorded=True, refit=False))
        )  # fmt: skip
        if progress is not None:
            progress("backfill", n, len(days))
    # The quarters it closed feed the calibration once, as of today (not of each past
    # day: the fit runs use is the one of the quarters before today).
    last = None
    for n, (_, runs) in enumerate(taken):
        for i, one in enumerate(runs):
            if one.status == "created" and one.closing:
                last = (n, i)
    if last is not None:
        runs = taken[last[0]][1]
        runs[last[1]] = replace(runs[last[1]], calibrated=_refit(conn, tenant, dt.date.today()))
    return taken
