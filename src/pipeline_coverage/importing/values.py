"""The values of a CRM export: text, dates, amounts and probabilities as a spreadsheet
or a CSV file holds them, read strictly (a value that does not parse is a problem at
its line and column, never a guess), and the problems collected for one error.

A cell is what :mod:`.tabular` gives: ``str`` for a CSV field; for an XLSX cell its
typed value (``str``, ``int``, ``float``, ``bool``, ``datetime.datetime``,
``datetime.date``, ``datetime.time``) or ``None`` when empty.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

import pycountry

from pipeline_coverage.errors import LoadError
from pipeline_coverage.presentation import SHOWN_CHARS

Cell = str | int | float | bool | dt.datetime | dt.date | dt.time | None

#: Problems listed in one error (then the count of the rest), as ``load`` does.
MAX_PROBLEMS = 20
#: ISO 4217's currency codes (pycountry keeps the standard's list).
CURRENCY_CODES = frozenset(currency.alpha_3 for currency in pycountry.currencies)
#: Money as the import format holds it: 16 digits before the point, 2 after.
MAX_WHOLE_DIGITS = 16


def shown(value: Cell) -> str:
    """``value`` as a problem quotes it: ``repr`` of its text, cut after 60 characters."""
    text = value if isinstance(value, str) else cell_text(value)
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}… ({len(text)} characters)"


class ValueProblem(Exception):
    """A value that does not parse; its message is the reason (the caller locates it)."""


_T = TypeVar("_T")
#: A remembering parser keeps at most this many texts (an export's dates, flags,
#: currencies and probabilities take a few thousand; its amounts and names are not
#: worth keeping).
REMEMBERED_TEXTS = 50_000


def remembering(parse: Callable[[Cell], _T]) -> Callable[[Cell], _T]:
    """``parse`` with what it said of each text cell remembered (its value, or its
    problem raised again): a column of an export repeats a few values a million times.
    Cells of other types (a spreadsheet's numbers and dates) are parsed each time."""
    said: dict[str, _T | ValueProblem] = {}

    def remembered(value: Cell) -> _T:
        if type(value) is not str:
            return parse(value)
        found = said.get(value, said)
        if found is said:
            try:
                found = parse(value)
            except ValueProblem as problem:
                found = problem
            if len(said) < REMEMBERED_TEXTS:
                said[value] = found
        if isinstance(found, ValueProblem):
            raise ValueProblem(str(found))
        return found  # type: ignore[return-value]

    return remembered


@dataclass
class Problems:
    """The located problems of one read, raised together as one :class:`LoadError`."""

    #: Problems that stand before every located one (the unmapped values' summary).
    first: list[str] = field(default_factory=list)
    located: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, file: str, line: int | None, column: str | None, reason: str) -> None:
        self.total += 1
        if len(self.first) + len(self.located) < MAX_PROBLEMS:
            where = file if line is None else f"{file}:{line}"
            self.located.append(f"{where}: {column}: {reason}" if column else f"{where}: {reason}")

    def add_first(self, problem: str) -> None:
        self.total += 1
        self.first.append(problem)

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total:
            listed = (self.first + self.located)[:MAX_PROBLEMS]
            raise LoadError(listed, total=self.total)


def cell_text(value: Cell) -> str:
    """A cell as text, stripped: ``""`` for an empty cell, a whole float without its
    ``.0`` (an id typed as a number), a date or time in ISO form."""
    if type(value) is str:  # a CSV cell: the common case first
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


def text_or_none(value: Cell) -> str | None:
    text = cell_text(value)
    return text or None


# --- dates ------------------------------------------------------------------------

_DIRECTIVES = {
    "%Y": "YYYY",
    "%y": "YY",
    "%m": "M",
    "%d": "D",
    "%b": "Mon",
    "%B": "Month",
    "%H": "hh",
    "%M": "mm",
    "%S": "ss",
}
_TIME_PART = re.compile(
    r"(?P<date>.+?)(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[AaPp][Mm])?"
    r"(?:\s*(?:Z|[+-]\d{2}(?::?\d{2})?|UTC|GMT))?)$"
)


@dataclass(frozen=True)
class DateFormat:
    """How the dates of a file are written: a ``strptime`` format (``%m/%d/%Y``), and
    whether a time after the date is ignored (HubSpot's ``2026-03-31 00:00``)."""

    pattern: str
    ignore_time: bool = False

    def __str__(self) -> str:
        readable = self.pattern
        for directive, name in _DIRECTIVES.items():
            readable = readable.replace(directive, name)
        return f"{readable} ({self.pattern})" if readable != self.pattern else self.pattern


def check_date_format(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a date format (None when it can): it needs a year, a
    month and a day directive, and must parse the date it formats."""
    has = {directive for directive in ("%Y", "%y", "%m", "%b", "%B", "%d") if directive in pattern}
    if not has & {"%Y", "%y"} or not has & {"%m", "%b", "%B"} or "%d" not in has:
        return (
            f"not a date format: {shown(pattern)} "
            "(a strftime format with a year, a month and a day, e.g. %d.%m.%Y)"
        )
    sample = dt.date(2026, 11, 23)
    try:
        if dt.datetime.strptime(sample.strftime(pattern), pattern).date() != sample:
            raise ValueError
    except ValueError:
        return f"not a date format: {shown(pattern)} (it does not read back the dates it writes)"
    return None


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_date(value: Cell, fmt: DateFormat) -> dt.date | None:
    """A cell as a date: a spreadsheet's date (its time dropped), or text in ``fmt``;
    ``None`` for an empty cell. Raises :class:`ValueProblem`."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bool | int | float | dt.time):
        raise ValueProblem(f"not a date: {shown(value)} (a {type(value).__name__} cell)")
    text = value.strip()
    if not text:
        return None
    if fmt.pattern == "%Y-%m-%d" and _ISO_DATE.fullmatch(text):
        try:  # what strptime reads of it, without its cost
            return dt.date(int(text[:4]), int(text[5:7]), int(text[8:]))
        except ValueError:
            pass  # (no such day: strptime says so below)
    try:
        return dt.datetime.strptime(text, fmt.pattern).date()
    except ValueError:
        pass
    if fmt.ignore_time and (found := _TIME_PART.fullmatch(text)):
        try:
            return dt.datetime.strptime(found["date"], fmt.pattern).date()
        except ValueError:
            pass
    raise ValueProblem(f"not a date in the format {fmt}: {shown(text)}")


#: Times of day that may follow a date written in an export's own date format.
_TIMES_OF_DAY = (" %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")


def parse_moment(value: Cell, fmt: DateFormat) -> dt.datetime | None:
    """A cell as a point in time, timezone-aware (None when empty): a spreadsheet's
    date or datetime, ISO 8601 text (``2026-01-05T09:00:00.000+0000``), or text in
    ``fmt``'s date format, optionally followed by a time of day. A date alone is its
    day's start, and a time without an offset is UTC. Raises :class:`ValueProblem`."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    if isinstance(value, bool | int | float | dt.time):
        raise ValueProblem(f"not a date or time: {shown(value)} (a {type(value).__name__} cell)")
    text = value.strip()
    if not text:
        return None
    moment: dt.datetime | None = None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        for pattern in (fmt.pattern, *(fmt.pattern + time for time in _TIMES_OF_DAY)):
            try:
                moment = dt.datetime.strptime(text, pattern)
                break
            except ValueError:
                continue
    if moment is None:
        raise ValueProblem(f"not a date or time (ISO 8601, or the format {fmt}): {shown(text)}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


# --- numbers ----------------------------------------------------------------------

_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
_GROUPED_NUMBER = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")


def _decimal_of(value: Cell, *, thousands: bool) -> Decimal | None:
    """A cell as an exact decimal (None when empty): a spreadsheet number, or text of
    digits with at most one point (and ``,`` between groups of three when
    ``thousands``). Signs other than a leading ``-``, symbols and words are refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueProblem(f"not a number: {shown(value)}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueProblem(f"not a number: {shown(value)}")
        return Decimal(repr(value))
    text = value.strip()
    if not text:
        return None
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if _PLAIN_NUMBER.fullmatch(digits) or (thousands and _GROUPED_NUMBER.fullmatch(digits)):
        number = Decimal(digits.replace(",", ""))
        return -number if negative else number
    grouping = ", with , between thousands" if thousands else ""
    raise ValueProblem(
        f"not a number: {shown(text)} (digits and a decimal point{grouping}, no symbols)"
    )


_CENT = Decimal("0.01")
#: Money as most exports write it: read as it is, without the general rules below.
_PLAIN_MONEY = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,2})?")


def parse_amount(value: Cell, *, thousands: bool = False) -> Decimal | None:
    """A cell as money (None when empty): ``>= 0``, at most 16 digits before the point
    and 2 after. A spreadsheet's float is taken to the cent when it is a cent amount
    but for binary noise (``1234.5000000001``); a real third decimal is refused."""
    if type(value) is str and _PLAIN_MONEY.fullmatch(value):
        return Decimal(value).quantize(_CENT)
    try:
        number = _decimal_of(value, thousands=thousands)
    except ValueProblem as problem:
        raise ValueProblem(str(problem).replace("not a number", "not an amount", 1)) from None
    if number is None:
        return None
    if number < 0:
        raise ValueProblem(f"must be >= 0, got {shown(value)}")
    cents = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    noise = Decimal("0.000001") if isinstance(value, float) else Decimal(0)
    if abs(cents - number) > noise:
        raise ValueProblem(f"more than 2 decimal places: {shown(value)}")
    if cents >= Decimal(10) ** MAX_WHOLE_DIGITS:
        raise ValueProblem(f"more than {MAX_WHOLE_DIGITS} digits: {shown(value)}")
    return cents


def parse_probability(value: Cell, scale: int = 1) -> int | None:
    """A cell as a probability 0-100 (None when empty): a number, optionally followed
    by ``%``, times ``scale`` (100 for a 0-1 fraction), to the nearest whole percent."""
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
    try:
        number = _decimal_of(value, thousands=False)
    except ValueProblem:
        raise ValueProblem(f"not a probability: {shown(value)}") from None
    if number is None:
        return None
    percent = (number * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if not 0 <= percent <= 100:
        limits = "0 to 1" if scale == 100 else "0 to 100"
        raise ValueProblem(f"must be {limits}, got {shown(value)}")
    return int(percent)


def parse_currency(value: Cell) -> str | None:
    """A cell as an ISO 4217 code (None when empty); lower case is taken as upper."""
    text = cell_text(value).upper()
    if not text:
        return None
    if text not in CURRENCY_CODES:
        raise ValueProblem(f"not an ISO 4217 currency code: {shown(cell_text(value))}")
    return text


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def parse_bool(value: Cell) -> bool | None:
    """A cell as a boolean (None when empty): ``true``/``false`` (any case), 1/0."""
    if isinstance(value, bool):
        return value
    text = cell_text(value).casefold()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueProblem(f"not true or false: {shown(cell_text(value))}")


def fold(text: str) -> str:
    """A value or header name as the import matches it: any case, outer spaces ignored."""
    return text.strip().casefold()
