"""Periods: half-open date ranges ``[start, end)`` and the calendar arithmetic behind
them (quarters today; the fiscal calendar grows here)."""

from __future__ import annotations

import datetime as dt


def add_months(day: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def quarter_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar quarter containing ``day``, half-open: ``[start, next quarter's start)``."""
    first_month = 3 * ((day.month - 1) // 3) + 1
    start = dt.date(day.year, first_month, 1)
    return start, add_months(start, 3)
