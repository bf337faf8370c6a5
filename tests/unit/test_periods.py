"""Period expressions (SPEC.md §10) against an independent construction of the
calendar: every fiscal start month, leap years, and the relative expressions."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from pipeline_coverage.errors import ValidationError
from pipeline_coverage.periods import (
    period_name,
    quarter_name,
    quarters_back,
    resolve_period,
)


def months_after(year: int, month: int, count: int) -> dt.date:
    """Independent month arithmetic: step month by month."""
    for _ in range(count):
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return dt.date(year, month, 1)


def fiscal_year(name: int, start_month: int) -> tuple[dt.date, dt.date]:
    """FY<name> ends (exclusive) on the first day of the start month after the last
    month of calendar year <name> that belongs to it."""
    end = dt.date(name, start_month, 1) if start_month > 1 else dt.date(name + 1, 1, 1)
    start = dt.date(end.year - 1, end.month, 1)
    return start, end


@pytest.mark.parametrize("month", range(1, 13))
@pytest.mark.parametrize("year", [2024, 2027, 2028])
def test_fiscal_years_quarters_and_halves_for_every_start_month(month: int, year: int) -> None:
    start, end = fiscal_year(year, month)
    assert resolve_period(f"FY{year}", fiscal_year_start_month=month) == (start, end)
    assert (end - start).days in (365, 366)
    assert end.year == year or (month == 1 and end == dt.date(year + 1, 1, 1))
    quarters = [
        resolve_period(f"FY{year}-Q{q}", fiscal_year_start_month=month) for q in (1, 2, 3, 4)
    ]
    assert quarters[0][0] == start
    assert quarters[-1][1] == end
    for (_, a_end), (b_start, _) in itertools.pairwise(quarters):
        assert a_end == b_start  # contiguous
    for q_start, q_end in quarters:
        assert q_start.day == q_end.day == 1
        assert months_after(q_start.year, q_start.month, 3) == q_end
    halves = [resolve_period(f"FY{year}-H{h}", fiscal_year_start_month=month) for h in (1, 2)]
    assert halves == [(quarters[0][0], quarters[1][1]), (quarters[2][0], quarters[3][1])]


def test_spec_examples() -> None:
    assert resolve_period("FY2027", fiscal_year_start_month=7) == (
        dt.date(2026, 7, 1), dt.date(2027, 7, 1))  # fmt: skip
    assert resolve_period("FY2026", fiscal_year_start_month=1) == (
        dt.date(2026, 1, 1), dt.date(2027, 1, 1))  # fmt: skip
    assert resolve_period("FY2027-Q1", fiscal_year_start_month=7) == (
        dt.date(2026, 7, 1), dt.date(2026, 10, 1))  # fmt: skip
    assert resolve_period("FY2027-H2", fiscal_year_start_month=7) == (
        dt.date(2027, 1, 1), dt.date(2027, 7, 1))  # fmt: skip


def test_calendar_expressions_ignore_the_fiscal_year() -> None:
    for month in (1, 4, 7, 11):
        assert resolve_period("2026-Q3", fiscal_year_start_month=month) == (
            dt.date(2026, 7, 1), dt.date(2026, 10, 1))  # fmt: skip
        assert resolve_period("2026-11", fiscal_year_start_month=month) == (
            dt.date(2026, 11, 1), dt.date(2026, 12, 1))  # fmt: skip
        assert resolve_period("2028", fiscal_year_start_month=month) == (
            dt.date(2028, 1, 1), dt.date(2029, 1, 1))  # fmt: skip
    assert resolve_period("2028-02") == (dt.date(2028, 2, 1), dt.date(2028, 3, 1))
    assert (dt.date(2028, 3, 1) - dt.date(2028, 2, 1)).days == 29  # a leap February


@pytest.mark.parametrize("month", range(1, 13))
@pytest.mark.parametrize(
    "day", [dt.date(2028, 2, 29), dt.date(2026, 1, 1), dt.date(2026, 6, 30), dt.date(2026, 12, 31)]
)
def test_relative_periods_are_fiscal_and_contain_the_day(month: int, day: dt.date) -> None:
    # Every fiscal quarter around the day, built independently.
    quarters = []
    for name in (day.year - 1, day.year, day.year + 1, day.year + 2):
        start, _ = fiscal_year(name, month)
        for q in range(4):
            quarters.append(
                (
                    months_after(start.year, start.month, 3 * q),
                    months_after(start.year, start.month, 3 * q + 3),
                )
            )
    [this] = [q for q in quarters if q[0] <= day < q[1]]
    index = quarters.index(this)

    def resolved(text: str) -> tuple[dt.date, dt.date]:
        return resolve_period(text, fiscal_year_start_month=month, as_of=day)

    assert resolved("this-quarter") == this
    assert resolved("last-quarter") == quarters[index - 1]
    assert resolved("next-quarter") == quarters[index + 1]
    [year] = [fiscal_year(n, month) for n in range(day.year - 1, day.year + 3)
              if fiscal_year(n, month)[0] <= day < fiscal_year(n, month)[1]]  # fmt: skip
    assert resolved("this-fiscal-year") == year


@pytest.mark.parametrize(
    "text", ["2026-Q5", "2026-13", "FY2027-Q0", "FY2027-H3", "Q3", "this-month", "", "26", "FY0001",
             "9999"],
)  # fmt: skip
def test_bad_expressions_are_validation_errors(text: str) -> None:
    with pytest.raises(ValidationError, match="period"):
        resolve_period(text, fiscal_year_start_month=7)


@pytest.mark.parametrize("start_month", range(1, 13))
def test_period_names_round_trip_in_every_fiscal_calendar(start_month: int) -> None:
    """The name of a period resolves back to that period, whatever the start month;
    in a fiscal calendar other than January's, quarters, halves and years are fiscal."""
    for expression in ("FY2027", "FY2027-Q1", "FY2027-Q4", "FY2027-H2", "2026-Q3", "2026-11"):
        start, end = resolve_period(expression, fiscal_year_start_month=start_month)
        name = period_name(start, end, start_month)
        assert name is not None
        assert resolve_period(name, fiscal_year_start_month=start_month) == (start, end)
        if start_month != 1 and expression.startswith("FY"):
            assert name == expression


def test_periods_no_expression_names_have_none() -> None:
    assert period_name(dt.date(2026, 1, 15), dt.date(2026, 4, 1)) is None
    assert period_name(dt.date(2026, 2, 1), dt.date(2026, 5, 1)) is None  # a shifted quarter
    assert period_name(dt.date(2026, 1, 1), dt.date(2026, 3, 1)) is None  # two months
    assert period_name(dt.date(2026, 1, 1), dt.date(2026, 1, 1)) is None
    assert period_name(dt.date(2026, 7, 1), dt.date(2026, 10, 1), 7) == "FY2027-Q1"
    assert period_name(dt.date(2026, 7, 1), dt.date(2026, 10, 1), 1) == "2026-Q3"
    assert period_name(dt.date(2026, 1, 1), dt.date(2027, 1, 1), 1) == "2026"


@pytest.mark.parametrize("month", range(1, 13))
def test_a_fiscal_quarters_name_resolves_back_to_it(month: int) -> None:
    quarters = quarters_back(dt.date(2027, 3, 31), month, 9)
    assert len(quarters) == 9
    assert quarters[-1][0] <= dt.date(2027, 3, 31) < quarters[-1][1]
    for (_, a_end), (b_start, _) in itertools.pairwise(quarters):
        assert a_end == b_start
    for start, end in quarters:
        name = quarter_name(start, end, month)
        assert resolve_period(name, fiscal_year_start_month=month) == (start, end)
        assert months_after(start.year, start.month, 3) == end


@pytest.mark.parametrize("start_month", range(1, 13))
def test_every_name_given_names_that_very_period(start_month: int) -> None:
    """Any period of whole months up to a year, starting on any month: when it gets a
    name, the name resolves back to it in that calendar."""
    named = 0
    for first in range(1, 13):
        for months in range(1, 13):
            start = dt.date(2026, first, 1)
            end = months_after(2026, first, months)
            name = period_name(start, end, start_month)
            if name is not None:
                named += 1
                assert resolve_period(name, fiscal_year_start_month=start_month) == (start, end)
    assert named >= 12 + 4 + 1  # every month, every fiscal quarter, the fiscal year
