"""Argument validation, before the database is touched.

Every public function of the package parses its arguments here, so the library, the
CLI and the HTTP API accept and refuse exactly the same values, with the same
``field: reason`` messages (a :class:`ValidationError`).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

from pipeline_coverage.errors import ValidationError
from pipeline_coverage.presentation import PRINCIPAL_TYPES, SHOWN_CHARS

TARGET_MATCHES = ("exact", "within")
#: The longest period a run may span: a year (a leap year, or any fiscal year). A
#: longer run is almost certainly a mistake, and one over all time reads every deal.
MAX_PERIOD_DAYS = 366
#: The win rate looks back this many days before the period by default, and at most
#: ten years.
DEFAULT_LOOKBACK_DAYS = 365
MAX_LOOKBACK_DAYS = 3650
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


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
    raise ValidationError(f"{name}: not a UUID: {shown(value)}")


def required_uuid(value: object, name: str) -> uuid.UUID:
    """Like ``parse_uuid``, for an argument that may not be left out."""
    parsed = parse_uuid(value, name)
    assert parsed is not None
    return parsed


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
    raise ValidationError(f"{name}: not a date (YYYY-MM-DD): {shown(value)}")


def parse_timestamp(value: object, name: str) -> dt.datetime:
    """A moment: a timezone-aware ``datetime``, or ISO 8601 text — a date (its start,
    UTC), or a date and time with an offset or ``Z`` (without one: UTC)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValidationError(f"{name}: a datetime needs its timezone: {value!r}")
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            if _ISO_DATE.fullmatch(text):
                return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
            if len(text) > 10 and text[10] in "T ":
                moment = dt.datetime.fromisoformat(text)
                return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    raise ValidationError(
        f"{name}: not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM|Z]):"
        f" {shown(value)}"
    )


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
        raise ValidationError(f"principal_type: must be USER or GROUP, got {shown(value)}")
    return str(value)


def parse_flag(value: object, name: str) -> bool:
    """A real boolean (not 0, not "yes")."""
    if not isinstance(value, bool):
        raise ValidationError(f"{name}: must be true or false, got {shown(value)}")
    return value


def parse_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(f"{name}: must be one of {', '.join(choices)}, got {shown(value)}")
    return str(value)


def parse_whole(value: object, name: str, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name}: not a whole number: {shown(value)}")
    if not low <= value <= high:
        raise ValidationError(f"{name}: must be {low} to {high}, got {value}")
    return value


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A value as an error message shows it: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
