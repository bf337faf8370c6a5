"""A run (and its drill-down, history, movement, snapshots) as JSON and CSV values —
all from the metric registry (``pipeline_coverage.metrics``), so a new metric shows
everywhere at once — and the one pydantic model of a run's JSON document, which the
CLI prints and the HTTP API serves.

Money stays ``Decimal`` until here; JSON and CSV carry it as decimal strings
(``"1234.50"``), never floats; counts are integers.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BaseModel, Field, create_model

from pipeline_coverage.history import HistoryPoint, SamePoint
from pipeline_coverage.metrics import BY_NAME, IDENTITY, METRICS, NAMES, Metric
from pipeline_coverage.presentation import (
    BANDS,
    DEFAULT_BANDS,
    MOVEMENT_SIDES,
    PRINCIPAL_TYPES,
    STATUSES,
    Bands,
    Shown,
    calibration_notes,
    end_shown,
    movement_end,
    period_label,
    shown_rows,
    team_parents,
)
from pipeline_coverage.reports.movement import (
    MOVEMENT_METRICS,
    MOVEMENT_NAMES,
    DealNow,
    DealState,
    Movement,
    MovementDeal,
    MovementRow,
)
from pipeline_coverage.reports.snapshot import Snapshot
from pipeline_coverage.store import CoverageRow, CoverageRun, DealCredit
from pipeline_coverage.text import csv_text
from pipeline_coverage.totals import RepTotals, rep_totals

#: Money and ratios: exact decimal strings. Signed: a pipeline gap below zero is a surplus.
Amount = Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$", examples=["1250.50"])]
PrincipalType = Literal[PRINCIPAL_TYPES]  # type: ignore[valid-type]
Status = Literal[STATUSES]  # type: ignore[valid-type]
Band = Literal[BANDS]  # type: ignore[valid-type]


FORMATS = ("table", "json", "csv")

#: The run's identity on every CSV line.
RUN_COLUMNS = ("run_id", "tenant_id", "period_start", "period_end")
CSV_COLUMNS = (*RUN_COLUMNS, *IDENTITY, *NAMES, "flags", "status", "band")
#: A drill-down row's fields, in JSON and CSV (SPEC names).
DEAL_COLUMNS = (
    "principal_type",
    "principal_id",
    "pipeline_id",
    "deal_id",
    "deal_name",
    "class",
    "credit_reason",
    "forecast_category",
    "probability",
    "amount",
    "currency",
    "reporting_amount",
    "placed_on",
    "flags",
    "stage_name",
    "deal_pipeline_name",
)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def metric_value(metric: Metric, value: Any) -> Any:
    """A metric as JSON carries it: counts as integers, money and ratios as strings."""
    if value is None:
        return None
    return int(value) if metric.kind == "count" else str(value)


# --- the run document: one shape, one model ---------------------------------------------


def metric_fields(metrics: tuple[Metric, ...] = METRICS) -> dict[str, Any]:
    """One model field per metric of a registry: counts are integers, the rest strings."""
    fields: dict[str, Any] = {}
    for metric in metrics:
        kind: Any = int if metric.kind == "count" else Amount
        if metric.nullable:
            kind = kind | None
        fields[metric.name] = (kind, Field(description=f"{metric.label}: {metric.description}"))
    return fields


def metric_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every metric of the registry as JSON carries it (:func:`metric_value`)."""
    return {metric.name: metric_value(metric, values.get(metric.name)) for metric in METRICS}


class Run(BaseModel):
    """A stored run's header."""

    run_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    report_type: str
    generated_at: dt.datetime
    period_start: dt.date
    period_end: dt.date
    period_label: str = Field(
        description="The period as shown: its name in the tenant's calendar when one "
        "names it, and its first and last day (FY2027-Q1 · 2026-07-01 \u2013 2026-09-30)."
    )
    parameters: dict[str, Any]
    row_count: int | None
    as_recorded: bool = Field(
        False,
        description="Computed from the deals as they stood at the end of its as_of in "
        "recorded history, not as they were when it was made.",
    )
    calibration_notes: dict[str, str] = Field(
        default_factory=dict,
        description="Per principal type (USER, GROUP): what the rows' hit_probability "
        'stands on ("needs 2.4x at week 6 for 80% ..."), or why they have none; the '
        "fits' numbers are in parameters.calibration (SPEC.md §14).",
    )

    @classmethod
    def of(cls, run: CoverageRun) -> Self:
        return cls.model_construct(
            run_id=run.run_id,
            tenant_id=run.tenant_id,
            tenant_name=run.tenant_name,
            report_type=run.report_type,
            generated_at=run.generated_at,
            period_start=run.period_start,
            period_end=run.period_end,
            period_label=period_label(
                run.period_start, run.period_end, run.fiscal_year_start_month
            ),
            parameters=dict(run.parameters),
            row_count=run.row_count,
            as_recorded=run.as_recorded,
            calibration_notes=calibration_notes(run.parameters),
        )


class FlagNote(BaseModel):
    """A row's flag as shown: a short label and what it means."""

    flag: str
    label: str
    description: str


class RowBase(BaseModel):
    """One principal's (and pipeline's) numbers in a run: every metric of SPEC.md §8
    under its column name (amounts and ratios as decimal strings, counts as integers),
    the row's flags, and how it is shown (decided by the server, once: the CLI and the
    dashboard render it)."""

    principal_type: PrincipalType
    principal_id: uuid.UUID
    principal_name: str | None
    pipeline_id: uuid.UUID | None
    pipeline_name: str | None
    flags: list[str]
    status: Status = Field(
        description="coverage: it has a coverage of its remaining quota; quota_met: the "
        "target is won; no_target: it has no target; legacy: a run stored before "
        "remaining_target existed, judged by its coverage_ratio."
    )
    band: Band | None = Field(
        description="The band (PIPELINE_COVERAGE_BANDS) of the coverage the row is judged "
        "by: remaining_coverage_ratio, or a legacy row's coverage_ratio; null when quota "
        "met or no target."
    )
    coverage_band: Band | None = Field(description="The band of coverage_ratio; null for none.")
    order: int = Field(
        description="The row's place in the default order, from 0: quota met first, then "
        "the best coverage, no target last (a by-pipeline run: by principal, then pipeline; "
        "a rolled-up run: the reps so, then the teams as their tree)."
    )
    principal_label: str = Field(description="The principal's name, else the start of its id.")
    pipeline_label: str = Field(
        description="The pipeline's name, else the start of its id; empty for none."
    )
    label: str = Field(
        description="The row as charts label it: Ann, or Ann · Renewals by pipeline."
    )
    flag_notes: list[FlagNote] = Field(description="Each of flags, with its label and meaning.")
    depth: int = Field(
        0,
        description="A team's depth in the team tree of a rolled-up run (the teams are "
        "listed as that tree, each followed by the teams below it): how many teams above "
        "it have a row; 0 at the top, for a rep, and in a run without a tree.",
    )
    parent_label: str | None = Field(
        None, description="The label of the nearest team above it that has a row; null at the top."
    )

    @classmethod
    def of(cls, row: CoverageRow, shown: Shown) -> Self:
        return cls.model_construct(
            principal_type=row.principal_type,
            principal_id=row.principal_id,
            principal_name=row.principal_name,
            pipeline_id=row.pipeline_id,
            pipeline_name=row.pipeline_name,
            flags=list(row.flags),
            status=shown.status,
            band=shown.band,
            coverage_band=shown.coverage_band,
            order=shown.order,
            principal_label=shown.principal_label,
            pipeline_label=shown.pipeline_label,
            label=shown.label,
            flag_notes=[
                FlagNote.model_construct(flag=n.flag, label=n.label, description=n.description)
                for n in shown.flag_notes
            ],
            depth=shown.depth,
            parent_label=shown.parent_label,
            **metric_values(row.values),
        )


# The model with the metric fields is made from the registry; type checkers see its
# base, which carries everything but the metrics.
if TYPE_CHECKING:
    Row = RowBase
else:
    Row = create_model("Row", __base__=RowBase, __doc__=RowBase.__doc__, **metric_fields())


class ExclusionItem(BaseModel):
    """One line of a run's exclusions report (SPEC.md §8)."""

    flag: str
    #: Deals flagged (rows, for TARGET_PERIOD_MISMATCH).
    count: int
    #: Their amount in the reporting currency (of those with a rate in force).
    amount: Amount | None
    #: How many of them have no exchange rate in force (NO_RATE: in no amount).
    no_rate_count: int
    message: str


class Totals(BaseModel):
    """The reps' rows added up (:mod:`pipeline_coverage.totals`): the net remaining
    target (reps over quota offset reps short of it) and, apart, the shortfall of the
    reps still short with their own open pipeline and its coverage."""

    rows: int
    rows_with_target: int
    target_amount: Amount
    won_amount: Amount
    open_amount: Amount
    attainment_ratio: Amount | None
    remaining_target: Amount
    remaining_coverage_ratio: Amount | None
    short_rows: int
    shortfall_amount: Amount
    short_open_amount: Amount
    shortfall_coverage_ratio: Amount | None

    @classmethod
    def of(cls, totals: RepTotals) -> Self:
        values: dict[str, Any] = {
            name: value if isinstance(value, int) else _text(value)
            for name, value in vars(totals).items()
        }
        return cls.model_construct(**values)


class EndTotals(Totals):
    """The reps' rows of one end of a movement added up, as that run's ``totals`` are,
    with the status and band of their net coverage of the remaining quota."""

    status: Status
    band: Band | None

    @classmethod
    def shown(cls, totals: RepTotals, bands: Bands = DEFAULT_BANDS) -> Self:
        shown = end_shown(totals.values, bands)
        base = Totals.of(totals)
        return cls.model_construct(**base.__dict__, status=shown.status, band=shown.band)


class MovementTotals(BaseModel):
    """The reps added up at each end of a movement: run A's (``start``), run B's (``end``)."""

    start: EndTotals
    end: EndTotals


class RunDocument(BaseModel):
    """A run: its id, its header, its exclusions report, the reps' totals, and its rows
    in the default order. The one JSON shape of a run: ``run --format json``, ``show``,
    and the API's ``POST`` and ``GET`` of a run."""

    run_id: uuid.UUID
    run: Run
    exclusions: list[ExclusionItem]
    totals: Totals
    rows: list[Row]


def identity_values(row: CoverageRow | MovementRow) -> dict[str, Any]:
    """Whose row it is (``IDENTITY``) as JSON-ready values."""
    return {
        "principal_type": row.principal_type,
        "principal_id": str(row.principal_id),
        "principal_name": row.principal_name,
        "pipeline_id": _text(row.pipeline_id),
        "pipeline_name": row.pipeline_name,
    }


def row_values(row: CoverageRow) -> dict[str, Any]:
    """A fact row as JSON-ready values: identity, every metric, flags."""
    values = identity_values(row)
    for name in NAMES:
        values[name] = metric_value(BY_NAME[name], row.values.get(name))
    values["flags"] = list(row.flags)
    return values


def run_header(run: CoverageRun) -> dict[str, Any]:
    """A run's header as JSON-ready values."""
    return {
        "run_id": str(run.run_id),
        "tenant_id": str(run.tenant_id),
        "tenant_name": run.tenant_name,
        "report_type": run.report_type,
        "generated_at": run.generated_at.isoformat(),
        "period_start": run.period_start.isoformat(),
        "period_end": run.period_end.isoformat(),
        "period_label": period_label(run.period_start, run.period_end, run.fiscal_year_start_month),
        "parameters": dict(run.parameters),
        "row_count": run.row_count,
    }


def exclusions_values(run: CoverageRun) -> list[dict[str, Any]]:
    return [
        {
            "flag": item.flag,
            "count": item.count,
            "amount": _text(item.amount),
            "no_rate_count": item.no_rate,
            "message": item.describe(run.currency),
        }
        for item in run.exclusions
    ]


def run_document(run: CoverageRun, bands: Bands = DEFAULT_BANDS) -> RunDocument:
    """A run as JSON has it, in the one shape the CLI and the API share:
    ``{"run_id", "run": {header}, "exclusions": [...], "rows": [...]}``, its rows in the
    default order, each with what :mod:`pipeline_coverage.presentation` decided."""
    return RunDocument.model_construct(
        run_id=run.run_id,
        run=Run.of(run),
        exclusions=[ExclusionItem.model_construct(**item) for item in exclusions_values(run)],
        totals=Totals.of(rep_totals(run.rows)),
        rows=[Row.of(row, shown) for row, shown in _shown(run, bands)],
    )


def run_json(run: CoverageRun, bands: Bands = DEFAULT_BANDS) -> str:
    """:func:`run_document` as one JSON document."""
    return run_document(run, bands).model_dump_json(indent=2)


def _shown(run: CoverageRun, bands: Bands) -> list[tuple[CoverageRow, Shown]]:
    return shown_rows(
        run.rows,
        by_pipeline=bool(run.parameters.get("by_pipeline")),
        bands=bands,
        parents=team_parents(run.parameters),
    )


def _csv(columns: Sequence[str], lines: Iterable[dict[str, Any]]) -> str:
    """The product's CSV (:func:`pipeline_coverage.text.csv_text`: every cell defused
    against formulas, a field with a line break quoted); a list joined with ``|``."""

    def cell(value: Any) -> Any:
        return "|".join(value) if isinstance(value, list) else value

    return csv_text(columns, ([cell(line.get(name)) for name in columns] for line in lines))


def run_csv(run: CoverageRun, bands: Bands = DEFAULT_BANDS) -> str:
    """One CSV line per fact row, in the default order, with a header; empty field
    for NULL; each row's status and band last."""

    def lines() -> Iterable[dict[str, Any]]:
        identity = {
            "run_id": str(run.run_id),
            "tenant_id": str(run.tenant_id),
            "period_start": run.period_start.isoformat(),
            "period_end": run.period_end.isoformat(),
        }
        for row, shown in _shown(run, bands):
            yield {**identity, **row_values(row), "status": shown.status, "band": shown.band}

    return _csv(CSV_COLUMNS, lines())


def deal_values(deal: DealCredit) -> dict[str, Any]:
    """A drill-down row as JSON-ready values (SPEC names)."""
    return {
        "principal_type": deal.principal_type,
        "principal_id": str(deal.principal_id),
        "pipeline_id": _text(deal.pipeline_id),
        "deal_id": str(deal.deal_id),
        "deal_name": deal.deal_name,
        "class": deal.deal_class,
        "credit_reason": deal.credit_reason,
        "forecast_category": deal.forecast_category,
        "probability": deal.probability,
        "amount": _text(deal.amount),
        "currency": deal.currency,
        "reporting_amount": _text(deal.reporting_amount),
        "placed_on": deal.placed_on.isoformat() if deal.placed_on else None,
        "flags": list(deal.flags),
        "stage_name": deal.stage_name,
        "deal_pipeline_name": deal.pipeline_name,
    }


def deals_json(run_id: Any, deals: Sequence[DealCredit]) -> str:
    return json.dumps(
        {"run_id": str(run_id), "deals": [deal_values(deal) for deal in deals]}, indent=2
    )


def deals_csv(deals: Sequence[DealCredit]) -> str:
    return _csv(DEAL_COLUMNS, (deal_values(deal) for deal in deals))


def runs_json(runs: Sequence[CoverageRun]) -> str:
    """``{"runs": [...]}``: the headers of stored runs."""
    return json.dumps({"runs": [run_header(run) for run in runs]}, indent=2)


def runs_csv(runs: Sequence[CoverageRun]) -> str:
    """One CSV line per stored run."""
    fields = (
        "run_id",
        "tenant_id",
        "tenant_name",
        "report_type",
        "generated_at",
        "period_start",
        "period_end",
        "row_count",
        "parameters",
    )

    def lines() -> Iterable[dict[str, Any]]:
        for run in runs:
            header = run_header(run)
            header["parameters"] = json.dumps(header["parameters"], sort_keys=True)
            yield {name: header[name] for name in fields}

    return _csv(fields, lines())


def snapshots_json(as_of: Any, snapshots: Sequence[Snapshot]) -> str:
    """``{"as_of": ..., "snapshots": [...], "created": n, "replayed": n, "failed": n}``."""
    items = [
        {
            "tenant_id": str(one.tenant_id),
            "tenant_name": one.tenant_name,
            "period": one.period,
            "period_start": one.period_start.isoformat(),
            "period_end": one.period_end.isoformat(),
            "status": one.status,
            "run_id": _text(one.run_id),
            "error": one.error,
            "closing": one.closing,
            "calibrated": one.calibrated,
        }
        for one in snapshots
    ]
    counts = {status: sum(one.status == status for one in snapshots)
              for status in ("created", "replayed", "failed")}  # fmt: skip
    return json.dumps({"as_of": as_of.isoformat(), "snapshots": items, **counts}, indent=2)


POINT_COLUMNS = ("run_id", "generated_at", "as_of", *NAMES)


def point_values(point: HistoryPoint | None) -> dict[str, Any]:
    """A history point as JSON-ready values (every metric); all None for no point."""
    if point is None:
        return dict.fromkeys(POINT_COLUMNS)
    values: dict[str, Any] = {
        "run_id": str(point.run_id),
        "generated_at": point.generated_at.isoformat(),
        "as_of": point.as_of.isoformat(),
    }
    for name in NAMES:
        values[name] = metric_value(BY_NAME[name], point.values.get(name))
    return values


def history_json(header: dict[str, Any], points: Sequence[HistoryPoint]) -> str:
    """``{...header, "points": [...]}``: every metric of every point."""
    return json.dumps({**header, "points": [point_values(p) for p in points]}, indent=2)


def history_csv(points: Sequence[HistoryPoint]) -> str:
    return _csv(POINT_COLUMNS, (point_values(point) for point in points))


def _quarter_values(found: SamePoint, *, nested: bool) -> list[dict[str, Any]]:
    """Each quarter's bounds and day, and its point: nested (JSON, as the API has it, or
    null) or flat (a CSV line, empty when there is no run)."""
    lines = []
    for quarter in found.quarters:
        line: dict[str, Any] = {
            "period": quarter.period,
            "period_start": quarter.period_start.isoformat(),
            "period_end": quarter.period_end.isoformat(),
            "day": quarter.day.isoformat(),
        }
        if nested:
            line["point"] = None if quarter.point is None else point_values(quarter.point)
        else:
            line.update(point_values(quarter.point))
        lines.append(line)
    return lines


def same_point_json(header: dict[str, Any], found: SamePoint) -> str:
    """``{...header, "as_of", "day_of_quarter", "quarters": [{..., "point"}]}``."""
    document = {**header, "as_of": found.as_of.isoformat(), "day_of_quarter": found.day_of_quarter}
    return json.dumps({**document, "quarters": _quarter_values(found, nested=True)}, indent=2)


def same_point_csv(found: SamePoint) -> str:
    return _csv(("period", "period_start", "period_end", "day", *POINT_COLUMNS),
                _quarter_values(found, nested=False))  # fmt: skip


#: A movement row's CSV columns: both runs, the row's identity, then every number.
#: How each end of a movement row is shown (as a run's row's ``status`` and ``band``).
MOVEMENT_SHOWN = tuple(f"{side}_{what}" for side in MOVEMENT_SIDES for what in ("status", "band"))
MOVEMENT_CSV_COLUMNS = ("run_a_id", "run_b_id", "tenant_id", "period_start", "period_end",
                        *IDENTITY, "in_a", "in_b", *MOVEMENT_NAMES, *MOVEMENT_SHOWN)  # fmt: skip
_DEAL_STATE_FIELDS = ("class", "amount", "native_amount", "currency", "placed_on",
                      "stage_name", "pipeline_name", "owner_user_id", "owner_name")  # fmt: skip
_DEAL_NOW_FIELDS = ("exists", "native_amount", "currency", "placed_on", "stage_name",
                    "stage_state", "pipeline_name", "owner_user_id", "owner_name")  # fmt: skip
#: A step's deal in CSV: who, which deal, its movement, and A's, B's and today's view.
MOVEMENT_DEAL_COLUMNS = (
    "principal_type", "principal_id", "pipeline_id", "step", "deal_id", "deal_name",
    "movement_amount", "reason",
    *(f"a_{name}" for name in _DEAL_STATE_FIELDS),
    *(f"b_{name}" for name in _DEAL_STATE_FIELDS),
    *(f"now_{name}" for name in _DEAL_NOW_FIELDS),
)  # fmt: skip


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def movement_row_values(row: MovementRow, bands: Bands = DEFAULT_BANDS) -> dict[str, Any]:
    """A movement row as JSON-ready values: identity, where it is, every number, and
    each end's status and band (none for a run without the row)."""
    values = {**identity_values(row), "in_a": row.in_a, "in_b": row.in_b}
    for metric in MOVEMENT_METRICS:
        values[metric.name] = metric_value(metric, row.values.get(metric.name))
    for side, present in zip(MOVEMENT_SIDES, (row.in_a, row.in_b), strict=True):
        shown = end_shown(movement_end(row.values, side), bands) if present else None
        values[f"{side}_status"] = shown.status if shown else None
        values[f"{side}_band"] = shown.band if shown else None
    return values


def _state_values(state: DealState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "class": state.deal_class,
        "amount": _text(state.amount),
        "native_amount": _text(state.native_amount),
        "currency": state.currency,
        "placed_on": _day(state.placed_on),
        "stage_name": state.stage_name,
        "pipeline_name": state.pipeline_name,
        "owner_user_id": _text(state.owner_user_id),
        "owner_name": state.owner_name,
    }


def _now_values(now: DealNow | None) -> dict[str, Any] | None:
    if now is None:
        return None
    return {
        "exists": now.exists,
        "native_amount": _text(now.native_amount),
        "currency": now.currency,
        "placed_on": _day(now.placed_on),
        "stage_name": now.stage_name,
        "stage_state": now.stage_state,
        "pipeline_name": now.pipeline_name,
        "owner_user_id": _text(now.owner_user_id),
        "owner_name": now.owner_name,
    }


def movement_deal_values(deal: MovementDeal) -> dict[str, Any]:
    """A step's deal as JSON-ready values: ``a`` and ``b`` as the runs stored it,
    ``now`` (left and entered only) as the CRM holds it today."""
    return {
        "principal_type": deal.principal_type,
        "principal_id": str(deal.principal_id),
        "pipeline_id": _text(deal.pipeline_id),
        "step": deal.step,
        "deal_id": str(deal.deal_id),
        "deal_name": deal.deal_name,
        "movement_amount": str(deal.movement_amount),
        "reason": deal.reason,
        "a": _state_values(deal.in_a),
        "b": _state_values(deal.in_b),
        "now": _now_values(deal.now),
    }


def movement_header(movement: Movement) -> dict[str, Any]:
    """Both runs' headers and the principal the comparison is restricted to."""
    return {
        "run_a": run_header(movement.run_a),
        "run_b": run_header(movement.run_b),
        "principal_type": movement.principal_type,
        "principal_id": _text(movement.principal_id),
    }


def movement_document(movement: Movement, bands: Bands = DEFAULT_BANDS) -> dict[str, Any]:
    """``{"run_a": ..., "run_b": ..., "totals": {"start", "end"}, "rows": [...]}`` (and
    ``"deals"`` when listed)."""
    document = movement_header(movement)
    document["totals"] = {
        side: EndTotals.shown(movement.rep_totals(side), bands).model_dump(mode="json")
        for side in MOVEMENT_SIDES
    }
    document["rows"] = [movement_row_values(row, bands) for row in movement.rows]
    if movement.deals is not None:
        document["deals"] = [movement_deal_values(deal) for deal in movement.deals]
    return document


def movement_json(movement: Movement, bands: Bands = DEFAULT_BANDS) -> str:
    """:func:`movement_document` as one JSON document."""
    return json.dumps(movement_document(movement, bands), indent=2)


def movement_csv(movement: Movement, bands: Bands = DEFAULT_BANDS) -> str:
    """One CSV line per movement row, with a header."""

    def lines() -> Iterable[dict[str, Any]]:
        identity = {
            "run_a_id": str(movement.run_a.run_id),
            "run_b_id": str(movement.run_b.run_id),
            "tenant_id": str(movement.run_a.tenant_id),
            "period_start": movement.run_a.period_start.isoformat(),
            "period_end": movement.run_a.period_end.isoformat(),
        }
        for row in movement.rows:
            yield {**identity, **movement_row_values(row, bands)}

    return _csv(MOVEMENT_CSV_COLUMNS, lines())


def movement_deals_csv(deals: Sequence[MovementDeal]) -> str:
    """One CSV line per deal of a step: the runs' and today's views side by side."""

    def lines() -> Iterable[dict[str, Any]]:
        for deal in deals:
            values = movement_deal_values(deal)
            flat = {k: v for k, v in values.items() if k not in ("a", "b", "now")}
            for side in ("a", "b", "now"):
                for name, value in (values[side] or {}).items():
                    flat[f"{side}_{name}"] = value
            yield flat

    return _csv(MOVEMENT_DEAL_COLUMNS, lines())
