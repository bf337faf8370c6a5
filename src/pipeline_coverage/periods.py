"""Periods: half-open date ranges ``[start, end)``, the calendar arithmetic behind
them, and period expressions in the calendar and a tenant's fiscal calendar
(SPEC.md §10).

Expressions: ``2026-Q3``, ``2026-11``, ``2026`` (calendar quarter, month, year);
``FY2027``, ``FY2027-Q1``, ``FY2027-H2`` (fiscal year, quarter, half; a fiscal year
is named by the calendar year in which it ends); ``this-quarter``, ``last-quarter``,
``next-quarter``, ``this-fiscal-year`` (fiscal, relative to a day, the run's
``as_of``).
"""

from __future__ import annotations

import datetime as dt
import re

from pipeline_coverage.errors import ValidationError
from pipeline_coverage.presentation import SHOWN_CHARS

RELATIVE = ("this-quarter", "last-quarter", "next-quarter", "this-fiscal-year")
_CALENDAR = re.compile(r"(?P<year>[0-9]{4})(?:-Q(?P<quarter>[1-4])|-(?P<month>0[1-9]|1[0-2]))?")
_FISCAL = re.compile(r"FY(?P<year>[0-9]{4})(?:-Q(?P<quarter>[1-4])|-H(?P<half>[12]))?")
EXAMPLES = "2026-Q3, 2026-11, 2026, FY2027, FY2027-Q1, FY2027-H2, " + ", ".join(RELATIVE)


def add_months(day: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def quarter_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar quarter containing ``day``, half-open: ``[start, next quarter's start)``."""
    first_month = 3 * ((day.month - 1) // 3) + 1
    start = dt.date(day.year, first_month, 1)
    return start, add_months(start, 3)


def fiscal_year_start(fiscal_year: int, start_month: int) -> dt.date:
    """The first day of fiscal year ``fiscal_year`` (named by the year it ends in)."""
    if start_month == 1:
        return dt.date(fiscal_year, 1, 1)
    return dt.date(fiscal_year - 1, start_month, 1)


def fiscal_year_of(day: dt.date, start_month: int) -> int:
    """The fiscal year ``day`` falls in."""
    if start_month == 1:
        return day.year
    return day.year + 1 if day.month >= start_month else day.year


def fiscal_quarter_of(day: dt.date, start_month: int) -> tuple[dt.date, dt.date]:
    """The fiscal quarter containing ``day``."""
    year_start = fiscal_year_start(fiscal_year_of(day, start_month), start_month)
    months = (day.year - year_start.year) * 12 + day.month - year_start.month
    start = add_months(year_start, 3 * (months // 3))
    return start, add_months(start, 3)


def period_name(start: dt.date, end: dt.date, fiscal_year_start_month: int = 1) -> str | None:
    """The expression that names ``[start, end)`` (``FY2027-Q1``, ``2026-Q3``,
    ``2026-11``, ...), in the fiscal calendar when the tenant's year does not start in
    January; None for a period no expression names."""
    months = (end.year - start.year) * 12 + end.month - start.month
    if start.day != 1 or end.day != 1 or months < 1:
        return None
    month = fiscal_year_start_month
    if months == 1:
        return f"{start.year}-{start.month:02d}"
    if month != 1 and months in (3, 6, 12):
        year = fiscal_year_of(start, month)
        offset = (start.year - fiscal_year_start(year, month).year) * 12 + start.month - month
        if offset % months == 0:
            if months == 12:
                return f"FY{year}"
            return f"FY{year}-{'Q' if months == 3 else 'H'}{offset // months + 1}"
    if months == 3 and start.month % 3 == 1:
        return f"{start.year}-Q{start.month // 3 + 1}"
    if months == 6 and month == 1 and start.month in (1, 7):  # (no calendar halves)
        return f"FY{start.year}-H{start.month // 6 + 1}"
    if months == 12 and start.month == 1:
        return f"{start.year}"
    return None


def quarter_name(start: dt.date, end: dt.date, fiscal_year_start_month: int) -> str:
    """A quarter of the tenant's calendar by name (``period_name``: ``FY2027-Q1``, or
    ``2026-Q3`` when the year starts in January), as snapshots record their period and
    the same-point comparison labels its quarters: it reads the same whenever it is
    looked at (``this-quarter`` would not)."""
    name = period_name(start, end, fiscal_year_start_month)
    if name is None:
        raise ValueError(f"not a quarter of the calendar: {start} to {end}")
    return name


def quarters_back(day: dt.date, start_month: int, count: int) -> list[tuple[dt.date, dt.date]]:
    """The fiscal quarter containing ``day`` and the ``count - 1`` before it, oldest first."""
    start, _ = fiscal_quarter_of(day, start_month)
    starts = [add_months(start, -3 * back) for back in range(count - 1, -1, -1)]
    return [(first, add_months(first, 3)) for first in starts]


def resolve_period(
    expression: str, *, fiscal_year_start_month: int = 1, as_of: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The half-open period an expression names (see the module's docstring)."""
    try:
        return _resolve(expression.strip(), fiscal_year_start_month, as_of)
    except (ValueError, OverflowError):  # a year the calendar has no room for
        raise ValidationError(f"period: out of range: {expression!r}") from None


def _resolve(
    text: str, fiscal_year_start_month: int, as_of: dt.date | None
) -> tuple[dt.date, dt.date]:
    expression = text
    month = fiscal_year_start_month
    if not 1 <= month <= 12:
        raise ValidationError(f"fiscal_year_start_month: must be 1 to 12, got {month}")
    if text in RELATIVE:
        day = as_of or dt.date.today()
        quarter = fiscal_quarter_of(day, month)
        if text == "this-quarter":
            return quarter
        if text == "last-quarter":
            return add_months(quarter[0], -3), quarter[0]
        if text == "next-quarter":
            return quarter[1], add_months(quarter[1], 3)
        start = fiscal_year_start(fiscal_year_of(day, month), month)
        return start, add_months(start, 12)
    found = _FISCAL.fullmatch(text)
    if found:
        start = fiscal_year_start(int(found["year"]), month)
        if found["quarter"]:
            start = add_months(start, 3 * (int(found["quarter"]) - 1))
            return start, add_months(start, 3)
        if found["half"]:
            start = add_months(start, 6 * (int(found["half"]) - 1))
            return start, add_months(start, 6)
        return start, add_months(start, 12)
    found = _CALENDAR.fullmatch(text)
    if found and int(found["year"]) >= 1:
        year = int(found["year"])
        if found["quarter"]:
            start = dt.date(year, 3 * (int(found["quarter"]) - 1) + 1, 1)
            return start, add_months(start, 3)
        if found["month"]:
            start = dt.date(year, int(found["month"]), 1)
            return start, add_months(start, 1)
        return dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    raise ValidationError(
        f"period: not a period expression: {expression[:SHOWN_CHARS]!r} (for example: {EXAMPLES})"
    )
