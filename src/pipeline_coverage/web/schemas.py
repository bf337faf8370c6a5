"""Request and response bodies of the HTTP API (they are its OpenAPI schema).

Amounts are decimal strings (``"1250.50"``), never JSON numbers, so no client ever
rounds money through a float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pipeline_coverage.errors import ValidationError
from pipeline_coverage.reports.pipeline_coverage import (
    CoverageRow,
    CoverageRun,
    HistoryPoint,
    parse_date,
)

Amount = Annotated[str, Field(pattern=r"^\d+(\.\d+)?$", examples=["1250.50"])]
PrincipalType = Literal["USER", "GROUP"]


def _iso_date(value: Any) -> dt.date:
    """The core's one date parser: "YYYY-MM-DD" text (or a date); not 0, not a datetime."""
    try:
        return parse_date(value, "date")
    except ValidationError:
        raise ValueError("must be a date as YYYY-MM-DD") from None


#: A date in a body or a query string alike.
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _amounts(source: CoverageRow | HistoryPoint) -> dict[str, Any]:
    """Target, open amount and ratio as exact decimal strings (None stays None)."""
    return {
        "target_amount": _text(source.target_amount),
        "open_amount": str(source.open_amount),
        "coverage_ratio": _text(source.coverage_ratio),
    }


class RunRequest(BaseModel):
    """What to compute. With a principal: one principal's report; without: the batch."""

    model_config = ConfigDict(extra="forbid")

    # Strict: a date is "YYYY-MM-DD" and a flag is true/false, not 0, "yes" or a datetime.
    period_start: IsoDate = Field(examples=["2026-10-01"])
    period_end: IsoDate = Field(
        description="Exclusive: Q4 2026 ends 2027-01-01.", examples=["2027-01-01"]
    )
    principal_type: PrincipalType | None = None
    principal_id: uuid.UUID | None = None
    pipeline_id: uuid.UUID | None = None
    by_pipeline: bool = Field(
        False, description="Batch only: one row per principal and pipeline.", strict=True
    )


class Run(BaseModel):
    """A stored run's header."""

    run_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    report_type: str
    generated_at: dt.datetime
    period_start: dt.date
    period_end: dt.date
    parameters: dict[str, Any]
    row_count: int | None

    @classmethod
    def of(cls, run: CoverageRun) -> Run:
        return cls(
            run_id=run.run_id,
            tenant_id=run.tenant_id,
            tenant_name=run.tenant_name,
            report_type=run.report_type,
            generated_at=run.generated_at,
            period_start=run.period_start,
            period_end=run.period_end,
            parameters=dict(run.parameters),
            row_count=run.row_count,
        )


class Row(BaseModel):
    """One principal's (and pipeline's) coverage in a run."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    principal_name: str | None
    pipeline_id: uuid.UUID | None
    pipeline_name: str | None
    target_amount: Amount | None
    open_amount: Amount
    coverage_ratio: Amount | None

    @classmethod
    def of(cls, row: CoverageRow) -> Row:
        return cls.model_construct(
            principal_type=row.principal_type,
            principal_id=row.principal_id,
            principal_name=row.principal_name,
            pipeline_id=row.pipeline_id,
            pipeline_name=row.pipeline_name,
            **_amounts(row),
        )


class RunWithRows(BaseModel):
    """A run and its rows, best coverage first."""

    run: Run
    rows: list[Row]

    @classmethod
    def of(cls, run: CoverageRun) -> RunWithRows:
        return cls(run=Run.of(run), rows=[Row.of(row) for row in run.rows])


class CreatedRun(BaseModel):
    """A new run (or, replaying an Idempotency-Key, the first one)."""

    run_id: uuid.UUID
    run: Run
    rows: list[Row]


class RunPage(BaseModel):
    """Runs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[Run]
    next_cursor: str | None


class Point(BaseModel):
    """The principal's coverage in one stored run."""

    run_id: uuid.UUID
    generated_at: dt.datetime
    pipeline_id: uuid.UUID | None
    target_amount: Amount | None
    open_amount: Amount
    coverage_ratio: Amount | None

    @classmethod
    def of(cls, point: HistoryPoint) -> Point:
        return cls(
            run_id=point.run_id,
            generated_at=point.generated_at,
            pipeline_id=point.pipeline_id,
            **_amounts(point),
        )


class History(BaseModel):
    """A principal's coverage for one period across stored runs, oldest first."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    period_start: dt.date
    period_end: dt.date
    pipeline_id: uuid.UUID | None
    points: list[Point]


class FieldProblem(BaseModel):
    """One invalid input."""

    field: str
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldProblem] | None = None


class Health(BaseModel):
    status: Literal["ok"]


class Session(BaseModel):
    """The dashboard's signed-in tenant and display settings."""

    tenant_id: uuid.UUID
    tenant_name: str
    low: float
    healthy: float
    period_start: dt.date
    period_end: dt.date


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, max_length=200)
