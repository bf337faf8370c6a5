"""Request and response bodies of the HTTP API (they are its OpenAPI schema).

Amounts are decimal strings (``"1250.50"``), never JSON numbers, so no client ever
rounds money through a float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from pipeline_coverage import history
from pipeline_coverage.errors import ValidationError
from pipeline_coverage.history import HistoryPoint
from pipeline_coverage.periods import EXAMPLES
from pipeline_coverage.presentation import Bands, judged_ratio, status
from pipeline_coverage.render.values import (
    Amount,
    Band,
    MovementTotals,
    PrincipalType,
    Run,
    RunDocument,
    Status,
    metric_fields,
    metric_values,
)
from pipeline_coverage.reports.movement import MOVEMENT_METRICS, REASONS, STEPS
from pipeline_coverage.validation import MAX_LOOKBACK_DAYS, parse_date

Granularity = Literal["run", "day"]
TargetMatch = Literal["exact", "within"]
#: A trend's filter on a run option: that value, or "any" run.
TargetMatchFilter = Literal["exact", "within", "any"]


def _iso_date(value: Any) -> dt.date:
    """The core's one date parser: "YYYY-MM-DD" text (or a date); not 0, not a datetime."""
    try:
        return parse_date(value, "date")
    except ValidationError:
        raise ValueError("must be a date as YYYY-MM-DD") from None


#: A date in a body or a query string alike.
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


class RunRequest(BaseModel):
    """What to compute. With a principal: one principal's report; without: the batch."""

    model_config = ConfigDict(extra="forbid")

    # Strict: a date is "YYYY-MM-DD" and a flag is true/false, not 0, "yes" or a datetime.
    period_start: IsoDate | None = Field(
        None, description="With period_end, or give `period`.", examples=["2026-10-01"]
    )
    period_end: IsoDate | None = Field(
        None, description="Exclusive: Q4 2026 ends 2027-01-01.", examples=["2027-01-01"]
    )
    period: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        description="Instead of the dates: a period expression in the tenant's fiscal "
        f"calendar ({EXAMPLES}).",
        examples=["FY2027-Q1"],
    )
    principal_type: PrincipalType | None = None
    principal_id: uuid.UUID | None = None
    pipeline_id: uuid.UUID | None = None
    by_pipeline: bool = Field(
        False, description="Batch only: one row per principal and pipeline.", strict=True
    )
    rollup: bool | None = Field(
        None,
        description="A team is also credited with the deals of its members and of the "
        "teams below it; its rows carry member_target_amount. Absent or null: the "
        "tenant's default (run_defaults of GET /session).",
        strict=True,
    )
    as_of: IsoDate | None = Field(
        None, description="Open deals dated before this day are past due (default: today)."
    )
    target_match: TargetMatch | None = Field(
        None,
        description="exact: targets of exactly this period; within: every target inside it. "
        "Absent or null: the tenant's default.",
    )
    win_rate_lookback_days: int | None = Field(
        None,
        ge=1,
        le=MAX_LOOKBACK_DAYS,
        strict=True,
        description="The win rate counts deals closed this many days before the period. "
        "Absent or null: the tenant's default.",
    )
    as_recorded: bool = Field(
        False,
        strict=True,
        description="From the deals as they stood at the end of as_of in recorded history "
        "(what the imports and loads up to then said), not as they are now.",
    )


class PointBase(BaseModel):
    """The principal's numbers in one stored run (every metric, by name), and the
    run's day: its ``as_of``."""

    run_id: uuid.UUID
    generated_at: dt.datetime
    as_of: dt.date
    pipeline_id: uuid.UUID | None
    status: Status = Field(description="As a run's row's status.")
    band: Band | None = Field(description="As a run's row's band.")

    @classmethod
    def of(cls, point: HistoryPoint, bands: Bands) -> Self:
        return cls.model_construct(
            run_id=point.run_id,
            generated_at=point.generated_at,
            as_of=point.as_of,
            pipeline_id=point.pipeline_id,
            status=status(point.values),
            band=bands.of(judged_ratio(point.values)),
            **metric_values(point.values),
        )


# The models with the metric fields are made from the registry; type checkers see
# their bases, which carry everything but the metrics.
if TYPE_CHECKING:
    Point = PointBase
else:
    Point = create_model("Point", __base__=PointBase, __doc__=PointBase.__doc__, **metric_fields())


class MovementRowBase(BaseModel):
    """One principal's (and pipeline's) waterfall from run A to run B (SPEC.md §11):
    ``start_amount`` - won - lost - left + entered + changed = ``end_amount``, a count
    per step, and both runs' target and coverage."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    principal_name: str | None
    pipeline_id: uuid.UUID | None
    pipeline_name: str | None
    in_a: bool = Field(description="Whether run A has this row (else it starts at 0).")
    in_b: bool = Field(description="Whether run B has this row (else it ends at 0).")
    start_status: Status | None = Field(
        description="Run A's row's status (as a run's row's: coverage, quota_met, "
        "no_target, legacy); null when run A has no such row."
    )
    start_band: Band | None = Field(
        description="The band of run A's row's coverage of its remaining quota; null "
        "when quota met, without a target or without the row."
    )
    end_status: Status | None = Field(description="Run B's row's status, as start_status.")
    end_band: Band | None = Field(description="Run B's row's band, as start_band.")


class DealView(BaseModel):
    """A deal as one run stored it (amount in the reporting currency; owner's name today's)."""

    class_: str = Field(alias="class", serialization_alias="class")
    amount: Amount | None
    native_amount: Amount | None
    currency: str
    placed_on: dt.date | None
    stage_name: str
    pipeline_name: str
    owner_user_id: uuid.UUID | None
    owner_name: str | None


class DealToday(BaseModel):
    """A deal as the CRM holds it now (``exists`` false: deleted since)."""

    exists: bool
    native_amount: Amount | None
    currency: str | None
    placed_on: dt.date | None
    stage_name: str | None
    stage_state: str | None
    pipeline_name: str | None
    owner_user_id: uuid.UUID | None
    owner_name: str | None


class MovementDeal(BaseModel):
    """A deal of one step of a row: its effect on the open amount, why it left or
    entered, and how run A, run B and (left and entered only) the CRM today see it."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    pipeline_id: uuid.UUID | None
    step: Literal[STEPS]  # type: ignore[valid-type]
    deal_id: uuid.UUID
    deal_name: str
    movement_amount: Amount
    reason: Literal[REASONS] | None  # type: ignore[valid-type]
    a: DealView | None
    b: DealView | None
    now: DealToday | None


if TYPE_CHECKING:
    MovementRowModel = MovementRowBase
else:
    MovementRowModel = create_model(
        "MovementRow", __base__=MovementRowBase, __doc__=MovementRowBase.__doc__,
        **metric_fields(MOVEMENT_METRICS),
    )  # fmt: skip


class Comparison(BaseModel):
    """The movement between two runs: both headers, a waterfall per row, and (with
    ``deals=true``) the deals of every step."""

    run_a: Run
    run_b: Run
    principal_type: PrincipalType | None
    principal_id: uuid.UUID | None
    totals: MovementTotals = Field(
        description="The reps' rows added up at each end, as each run's own totals: the "
        "net remaining quota and its coverage, with their status and band."
    )
    rows: list[MovementRowModel]
    deals: list[MovementDeal] | None = None


#: A run as ``POST /v1/coverage-runs`` and ``GET /v1/coverage-runs/{id}`` return it:
#: the one run document (``render.values.RunDocument``), which the CLI prints too.
CreatedRun = RunDocument
RunWithRows = RunDocument


class Deal(BaseModel):
    """A deal behind a run's row, as the run saw it (SPEC.md §7)."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    pipeline_id: uuid.UUID | None
    deal_id: uuid.UUID
    deal_name: str
    class_: str = Field(alias="class", serialization_alias="class")
    credit_reason: str
    forecast_category: str
    probability: int | None
    amount: Amount | None
    currency: str
    #: None when no exchange rate was in force (flag NO_RATE).
    reporting_amount: Amount | None
    placed_on: dt.date | None
    flags: list[str]
    stage_name: str
    deal_pipeline_name: str


class DealPage(BaseModel):
    """Deals behind a run's rows; pass ``next_cursor`` as ``cursor`` for the next page."""

    run_id: uuid.UUID
    deals: list[Deal]
    next_cursor: str | None


class RunPage(BaseModel):
    """Runs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[Run]
    next_cursor: str | None


class History(BaseModel):
    """A principal's coverage for one period across stored runs: every run's, oldest
    first, or (``granularity`` day) each day's last run's, by day."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    period_start: dt.date
    period_end: dt.date
    pipeline_id: uuid.UUID | None
    granularity: Granularity = "run"
    points: list[Point]


class QuarterPoint(BaseModel):
    """One quarter at the same point: its bounds, its day k, and the principal's
    numbers in the latest run of that quarter as of that day (null: no such run)."""

    period: str = Field(examples=["FY2027-Q1"])
    period_start: dt.date
    period_end: dt.date
    day: dt.date
    point: Point | None

    @classmethod
    def of(cls, quarter: history.QuarterPoint, bands: Bands) -> QuarterPoint:
        return cls.model_construct(
            period=quarter.period,
            period_start=quarter.period_start,
            period_end=quarter.period_end,
            day=quarter.day,
            point=None if quarter.point is None else Point.of(quarter.point, bands),
        )


class SamePoint(BaseModel):
    """A principal at the same day of several fiscal quarters, oldest quarter first."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    pipeline_id: uuid.UUID | None
    as_of: dt.date
    day_of_quarter: int
    quarters: list[QuarterPoint]


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


class MetricInfo(BaseModel):
    """A metric of the registry, for clients that show them (the dashboard)."""

    name: str
    kind: Literal["money", "count", "ratio"]
    label: str
    description: str
    unit: Literal["", "x", "%"]


class RunDefaults(BaseModel):
    """A tenant's default run options: what a run, history and same-point use for an
    option they are not given (``pipeline-coverage tenant settings``)."""

    rollup: bool
    target_match: TargetMatch
    win_rate_lookback_days: int


class Session(BaseModel):
    """The dashboard's signed-in tenant and display settings, and the metrics it can
    show (``headline``: the default columns, in order)."""

    tenant_id: uuid.UUID
    tenant_name: str
    run_defaults: RunDefaults
    low: float
    healthy: float
    period_start: dt.date
    period_end: dt.date
    metrics: list[MetricInfo]
    headline: list[str]


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, max_length=200)


class PeriodInfo(BaseModel):
    """A period the tenant has targets or runs for (the dashboard's period picker)."""

    period_start: dt.date
    period_end: dt.date
    name: str | None = Field(
        description="Its period expression in the tenant's calendar (FY2027-Q1, 2026-Q3, "
        "2026-11), when one names it."
    )
    label: str = Field(
        description="The period as shown: its name when it has one, and its first and last "
        "day (as a run's period_label)."
    )
    targets: int = Field(description="Target rows of exactly this period.")
    runs: int = Field(description="Stored runs of this period.")
    last_run: dt.datetime | None
    current: bool = Field(description="The fiscal quarter containing today.")


class PeriodList(BaseModel):
    """Known periods, newest first, and the one to open on."""

    items: list[PeriodInfo]
    default: PeriodInfo


# --- imports -------------------------------------------------------------------------

StageState = Literal["IN_PROGRESS", "DONE_SUCCESS", "DONE_FAILED"]


class ImportedDeals(BaseModel):
    """What an import did to the deals (a dry run: what it would do)."""

    new: int
    updated: int
    unchanged: int
    #: By a full sync: deals of the same source the export no longer has.
    deleted: int
    #: Left out on purpose, e.g. Pipedrive's deleted deals.
    skipped: int
    skipped_by_reason: dict[str, int] = Field(
        description="Skipped deals by reason, e.g. {'Deal - Status deleted': 3}"
    )


class CreatedStage(BaseModel):
    """A stage an import created, with the state and probability it was given."""

    pipeline: str
    stage: str
    state: StageState
    probability: int | None


class ImportResult(BaseModel):
    """What ``POST /v1/imports`` did (``dry_run``: what it would do; nothing written)."""

    dry_run: bool
    tenant_id: uuid.UUID
    tenant_name: str
    format: str = Field(description="The format read, e.g. 'Salesforce report export'")
    source: str = Field(description="The source the deals' identities are kept under")
    file: str = Field(description="The deals file's own name")
    key_column: str = Field(description="The column the deals are identified by")
    deals_read: int
    footer_lines: int = Field(description="Lines of a report footer recognised and skipped")
    deals: ImportedDeals
    reps_created: list[str]
    teams_created: list[str]
    pipelines_created: list[str]
    stages_created: list[CreatedStage]
    memberships_added: int
    targets_set: int
    ignored_columns: list[str]
    summary: list[str] = Field(
        description="The same summary as `pipeline-coverage import` prints, one line each"
    )
