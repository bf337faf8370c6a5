"""History, read from stored runs: a principal's numbers for one period across the
runs of it (every run, or one point per day), and the same point of several quarters
— day 14 of this quarter against day 14 of the ones before — the comparison a sales
manager asks for when a quarter "feels behind". Both read one statement
(``runs.sql``'s ``principal_points``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline_coverage.db.connection import Connection, as_uuid, records, unit_of_work
from pipeline_coverage.directory import fiscal_year_start_month
from pipeline_coverage.errors import ValidationError
from pipeline_coverage.metrics import NAMES
from pipeline_coverage.periods import quarter_name, quarters_back
from pipeline_coverage.sql import query
from pipeline_coverage.store import SeedMetrics, Value, optional_uuid
from pipeline_coverage.tenants import run_defaults
from pipeline_coverage.validation import (
    TARGET_MATCHES,
    parse_choice,
    parse_date,
    parse_flag,
    parse_period,
    parse_principal_type,
    parse_uuid,
    parse_whole,
    required_uuid,
)


@dataclass(frozen=True)
class HistoryPoint(SeedMetrics):
    """A principal's numbers in one stored run, with the run's period and its day
    (its ``as_of``)."""

    run_id: uuid.UUID
    generated_at: dt.datetime
    as_of: dt.date
    period_start: dt.date
    period_end: dt.date
    pipeline_id: uuid.UUID | None
    values: Mapping[str, Value]


#: How a history is sampled: every run, or each day's last run (``principal_history``).
GRANULARITIES = ("run", "day")


def principal_history(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    principal_type: str,
    principal_id: uuid.UUID | str,
    period_start: dt.date | str,
    period_end: dt.date | str,
    pipeline_id: uuid.UUID | str | None = None,
    *,
    granularity: str = "run",
    target_match: str | None = None,
    rollup: bool | str | None = None,
) -> list[HistoryPoint]:
    """A principal's numbers for one period across the tenant's stored runs: the trend
    of how its pipeline built up (or drained) over time.

    ``granularity="run"``: every run's row, oldest first. ``"day"``: one point per day,
    the day's last run (by ``generated_at``), in order of day — where a run's day is
    its ``as_of``, the day it speaks for (see docs/decisions.md). Only the runs made
    with ``target_match`` and ``rollup`` count: each is a value, ``"any"`` (every run),
    or None, the tenant's default run option (:func:`run_filters`).
    """
    start, end = parse_period(period_start, period_end)
    pick = parse_choice(granularity, "granularity", GRANULARITIES)
    target_match, rollup = run_filters(conn, tenant_id, target_match, rollup)
    return principal_points(
        conn, tenant_id, principal_type, principal_id, [(start, end, None)], pick,
        pipeline_id=pipeline_id, target_match=target_match, rollup=rollup,
    )  # fmt: skip


#: A trend's run filter that keeps every run, whatever it was made with.
ANY = "any"


def run_filters(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    target_match: str | None,
    rollup: bool | str | None,
) -> tuple[str | None, bool | None]:
    """The runs a trend keeps, as ``principal_points`` takes them (None: any): a value
    given is kept, ``"any"`` is any, and None is the tenant's default run option — so a
    trend follows the runs the tenant's runs and snapshots make, and a team's line does
    not jump between rolled-up runs and runs without roll-up."""
    if target_match is not None and target_match != ANY:
        target_match = parse_choice(target_match, "target_match", (*TARGET_MATCHES, ANY))
    if rollup is not None and rollup != ANY:
        rollup = parse_flag(rollup, "rollup")
    if target_match is None or rollup is None:
        defaults = run_defaults(conn, required_uuid(tenant_id, "tenant_id"))
        target_match = defaults.target_match if target_match is None else target_match
        rollup = defaults.rollup if rollup is None else rollup
    return (
        None if target_match == ANY else target_match,
        None if rollup == ANY else bool(rollup),
    )


def principal_points(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    principal_type: str,
    principal_id: uuid.UUID | str,
    periods: Sequence[tuple[dt.date, dt.date, dt.date | None]],
    pick: str,
    *,
    pipeline_id: uuid.UUID | str | None = None,
    target_match: str | None = None,
    rollup: bool | None = None,
) -> list[HistoryPoint]:
    """A principal's rows in the runs of several periods, each (start, end, cut-off
    day or None): every run's (``pick="run"``), each day's last (``"day"``), or each
    period's last run on or before its cut-off (``"last"``). One statement for all.
    ``target_match`` and ``rollup`` keep the runs made so; None here is any run."""
    pipeline = parse_uuid(pipeline_id, "pipeline_id", optional=True)
    params = {
        "tenant_id": str(required_uuid(tenant_id, "tenant_id")),
        "principal_type": parse_principal_type(principal_type),
        "principal_id": str(required_uuid(principal_id, "principal_id")),
        "pipeline_id": str(pipeline) if pipeline else None,
        "starts": [start for start, _, _ in periods],
        "ends": [end for _, end, _ in periods],
        "cutoffs": [cutoff for _, _, cutoff in periods],
        "pick": parse_choice(pick, "pick", ("run", "day", "last")),
        "target_match": None
        if target_match is None
        else parse_choice(target_match, "target_match", TARGET_MATCHES),
        "rollup": None if rollup is None else parse_flag(rollup, "rollup"),
    }
    with unit_of_work(conn) as cur:
        cur.execute(query("runs", "principal_points"), params)
        found = records(cur)
    return [
        HistoryPoint(
            run_id=as_uuid(r["run_id"]),
            generated_at=r["generated_at"],
            as_of=r["as_of"],
            period_start=r["period_start"],
            period_end=r["period_end"],
            pipeline_id=optional_uuid(r["pipeline_id"]),
            values={name: r[name] for name in NAMES},
        )
        for r in found
    ]


# --- the same point of several quarters ----------------------------------------------

#: At most this many quarters are compared (ten years).
MAX_QUARTERS = 40
#: The longest quarter has 92 days.
MAX_DAY_OF_QUARTER = 92


@dataclass(frozen=True)
class QuarterPoint:
    """One quarter of a same-point comparison: its bounds, its cut-off day, and the
    principal's numbers in the run that was the latest as of that day (or None)."""

    period: str
    period_start: dt.date
    period_end: dt.date
    #: Day ``day_of_quarter`` of the quarter (its last day when the quarter is shorter).
    day: dt.date
    point: HistoryPoint | None


@dataclass(frozen=True)
class SamePoint:
    """A principal at the same day of several fiscal quarters, oldest quarter first."""

    as_of: dt.date
    day_of_quarter: int
    quarters: tuple[QuarterPoint, ...]


def same_point_of_quarter(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    principal_type: str,
    principal_id: uuid.UUID | str,
    *,
    quarters: int = 4,
    as_of: dt.date | str | None = None,
    day_of_quarter: int | None = None,
    pipeline_id: uuid.UUID | str | None = None,
    target_match: str | None = None,
    rollup: bool | str | None = None,
) -> SamePoint:
    """The principal at day k of the tenant's fiscal quarter containing ``as_of``
    (default today) and of the ``quarters - 1`` quarters before it.

    k is ``day_of_quarter``, else ``as_of``'s own day of its quarter (the 1st is day
    1). For each quarter, the cut-off is its day k (its last day if it has fewer
    days), and the point is the principal's row in the last run whose period is
    exactly that quarter and whose day (``as_of``) is on or before the cut-off —
    the latest day, then the latest generated; None when there is no such run. A
    run's options narrow it as in ``principal_history`` (``pipeline_id``, and
    ``target_match`` and ``rollup``: a value, ``"any"``, or None for the tenant's
    default run option).
    """
    tenant = required_uuid(tenant_id, "tenant_id")
    parse_principal_type(principal_type)
    required_uuid(principal_id, "principal_id")
    day = parse_date(as_of, "as_of") if as_of is not None else dt.date.today()
    count = parse_whole(quarters, "quarters", 1, MAX_QUARTERS)
    if day_of_quarter is not None:
        parse_whole(day_of_quarter, "day_of_quarter", 1, MAX_DAY_OF_QUARTER)
    month = fiscal_year_start_month(conn, tenant)
    target_match, rollup = run_filters(conn, tenant, target_match, rollup)
    try:
        asked = quarters_back(day, month, count)
    except (ValueError, OverflowError):  # quarters the calendar has no room for
        raise ValidationError(f"as_of: out of range for {count} quarters: {day}") from None
    k = (day - asked[-1][0]).days + 1 if day_of_quarter is None else day_of_quarter
    bounds = [
        (start, end, min(start + dt.timedelta(days=k - 1), end - dt.timedelta(days=1)))
        for start, end in asked
    ]
    found = principal_points(
        conn, tenant, principal_type, principal_id, bounds, "last",
        pipeline_id=pipeline_id, target_match=target_match, rollup=rollup,
    )  # fmt: skip
    by_start = {point.period_start: point for point in found}
    return SamePoint(
        as_of=day,
        day_of_quarter=k,
        quarters=tuple(
            QuarterPoint(quarter_name(start, end, month), start, end, cutoff, by_start.get(start))
            for start, end, cutoff in bounds
        ),
    )
