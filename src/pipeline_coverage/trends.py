"""Trends over time, read from stored runs: a principal at the same point of several
quarters — day 14 of this quarter against day 14 of the ones before — the comparison
a sales manager asks for when a quarter "feels behind".

The daily history (one point per day) is ``store.principal_history(...,
granularity="day")``; both read the same statement (``runs.sql``'s
``principal_points``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from pipeline_coverage.db.connection import Connection
from pipeline_coverage.directory import fiscal_year_start_month
from pipeline_coverage.errors import ValidationError
from pipeline_coverage.periods import quarter_name, quarters_back
from pipeline_coverage.store import HistoryPoint, principal_points, run_filters
from pipeline_coverage.validation import (
    parse_date,
    parse_principal_type,
    parse_whole,
    required_uuid,
)

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
