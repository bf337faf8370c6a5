"""One run, several shapes: a terminal table, JSON and CSV — all from the metric
registry (``pipeline_coverage.metrics``), so a new metric shows everywhere at once.

Money stays ``Decimal`` throughout; JSON and CSV carry it as decimal strings
(``"1234.50"``), never floats; counts are integers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline_coverage.metrics import BY_NAME, HEADLINE, IDENTITY, NAMES, Metric
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
from pipeline_coverage.store import CoverageRow, CoverageRun, DealCredit, HistoryPoint, Value
from pipeline_coverage.text import csv_text, printable
from pipeline_coverage.totals import RepTotals, rep_totals
from pipeline_coverage.trends import SamePoint

FORMATS = ("table", "json", "csv")

#: Coverage bands used to colour the table: below 1x is short, 3x and above is healthy.
LOW_COVERAGE = Decimal(1)
HEALTHY_COVERAGE = Decimal(3)
#: The run's identity on every CSV line.
RUN_COLUMNS = ("run_id", "tenant_id", "period_start", "period_end")
CSV_COLUMNS = (*RUN_COLUMNS, *IDENTITY, *NAMES, "flags")
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


def run_json(run: CoverageRun) -> str:
    """``{"run_id": ..., ..., "rows": [...]}`` as one JSON document."""
    document = run_header(run)
    document["exclusions"] = exclusions_values(run)
    document["totals"] = totals_values(rep_totals(run.rows))
    document["rows"] = [row_values(row) for row in run.rows]
    return json.dumps(document, indent=2)


def totals_values(totals: RepTotals) -> dict[str, Any]:
    """The reps' totals (``pipeline_coverage.totals``) as JSON-ready values."""
    return {
        name: value if isinstance(value, int) else _text(value)
        for name, value in vars(totals).items()
    }


def total_lines(run: CoverageRun) -> list[Text]:
    """The reps' totals under a run's table: the net remaining target (reps over quota
    offset reps short) and, apart, the shortfall of the reps still short and their own
    coverage of it."""
    totals = rep_totals(run.rows)
    if not totals.rows_with_target:
        return []
    unit = f" {run.currency}" if run.currency else ""
    coverage = totals.remaining_coverage_ratio
    lines = [
        f"Reps' total: target {money(totals.target_amount)}{unit}, won"
        f" {money(totals.won_amount)}, open {money(totals.open_amount)}; net remaining"
        f" {money(totals.remaining_target)}"
        + (f" ({coverage:,.2f}x covered)" if coverage is not None else " (quota met)")
        + " — reps over quota offset reps short of it"
    ]
    if totals.short_rows:
        short = totals.shortfall_coverage_ratio
        lines.append(
            f"Still short: {totals.short_rows:,} rep row{'' if totals.short_rows == 1 else 's'}"
            f" with {money(totals.shortfall_amount)}{unit} of quota still to win, and"
            f" {money(totals.short_open_amount)} open"
            + (f" ({short:,.2f}x covered)" if short is not None else "")
        )
    return [plain(line) for line in lines]


def _csv(columns: Sequence[str], lines: Iterable[dict[str, Any]]) -> str:
    """The product's CSV (:func:`pipeline_coverage.text.csv_text`: every cell defused
    against formulas, a field with a line break quoted); a list joined with ``|``."""

    def cell(value: Any) -> Any:
        return "|".join(value) if isinstance(value, list) else value

    return csv_text(columns, ([cell(line.get(name)) for name in columns] for line in lines))


def run_csv(run: CoverageRun) -> str:
    """One CSV line per fact row, with a header; empty field for NULL."""

    def lines() -> Iterable[dict[str, Any]]:
        identity = {
            "run_id": str(run.run_id),
            "tenant_id": str(run.tenant_id),
            "period_start": run.period_start.isoformat(),
            "period_end": run.period_end.isoformat(),
        }
        for row in run.rows:
            yield {**identity, **row_values(row)}

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


def money(value: Decimal | None) -> str:
    """``1,234,567.89``; an em dash for no value."""
    return "—" if value is None else f"{value:,.2f}"


def coverage_text(ratio: Decimal | None) -> Text:
    """``2.35x``, coloured by band; ``no target`` when there is no ratio."""
    if ratio is None:
        return Text("no target", style="dim")
    style = "red" if ratio < LOW_COVERAGE else "yellow" if ratio < HEALTHY_COVERAGE else "green"
    return Text(f"{ratio:,.2f}x", style=style)


def metric_cell(metric: Metric, row: CoverageRow | HistoryPoint) -> str | Text:
    """How the terminal shows one metric of a row."""
    value = row.values.get(metric.name)
    if metric.kind == "count":
        return "—" if value is None else f"{value:,}"
    if metric.kind == "money":
        assert value is None or isinstance(value, Decimal)
        if metric.name == "pipeline_gap" and row.values.get("remaining_target") == 0:
            # (stored by SPEC.md §8's formula: minus the open pipeline once quota is met,
            # which is no gap at all)
            return Text("quota met", style="green")
        return money(value)
    assert value is None or isinstance(value, Decimal)
    if metric.name == "remaining_coverage_ratio" and value is None:
        if row.values.get("remaining_target") == 0:
            return Text("quota met", style="green")
        return Text("no target", style="dim")
    if metric.unit == "x" and metric.name in ("coverage_ratio", "remaining_coverage_ratio"):
        return coverage_text(value)
    if value is None:
        return "—"
    return f"{value * 100:,.1f}%" if metric.unit == "%" else f"{value:,.2f}x"


def run_heading(run: CoverageRun) -> tuple[Text, Text]:
    """What a run's table is (printed above it) and where it comes from (below it) —
    lines of their own, so that a narrow table does not wrap them; the tenant's name
    printed literally (:func:`plain`)."""
    scope = run.parameters.get("pipeline_id")
    currency = f" · amounts in {run.currency}" if run.currency else ""
    title = (
        f"Pipeline coverage · {run.tenant_name} · {run.period_start.isoformat()} to "
        f"{run.period_end.isoformat()} (end exclusive){currency}"
    )
    caption = f"run {run.run_id} · generated {run.generated_at:%Y-%m-%d %H:%M:%S %Z}"
    if scope:
        caption += f" · pipeline {scope}"
    return plain(title), plain(caption)


def run_table(run: CoverageRun, columns: Sequence[str] = HEADLINE) -> Table:
    """The run as a Rich table: names first, then the chosen metrics (by default what a
    sales manager reads first: target, won, open, coverage of the remaining quota, gap)."""
    table = Table()
    with_pipeline = any(row.pipeline_id is not None for row in run.rows)
    table.add_column("Type")
    table.add_column("Principal")
    if with_pipeline:
        table.add_column("Pipeline")
    metrics = [BY_NAME[name] for name in columns]
    for metric in metrics:
        table.add_column(metric.label, justify="right")
    for row in _ordered(run.rows, metrics):
        cells: list[str | Text] = [
            row.principal_type,
            row.principal_name or str(row.principal_id),
        ]
        if with_pipeline:
            cells.append(row.pipeline_name or _text(row.pipeline_id) or "all")
        cells += [metric_cell(metric, row) for metric in metrics]
        add_row(table, *cells)
    return table


def _ordered(rows: Sequence[CoverageRow], metrics: Sequence[Metric]) -> list[CoverageRow]:
    """Best first by the first ratio shown (a met quota is best, no target last); the
    stored order (best seed coverage first) when no ratio is shown."""
    ratio = next((metric.name for metric in metrics if metric.kind == "ratio"), None)
    if ratio is None:
        return list(rows)

    def rank(row: CoverageRow) -> tuple[int, Decimal]:
        value = row.values.get(ratio)
        if isinstance(value, Decimal):
            return (1, -value)
        met = ratio == "remaining_coverage_ratio" and row.values.get("remaining_target") == 0
        return (0, Decimal(0)) if met else (2, Decimal(0))

    return sorted(rows, key=rank)  # stable: ties keep the stored order


def exclusion_lines(run: CoverageRun) -> list[Text]:
    """The exclusions report, one ``Note:`` per flag (empty when nothing was flagged),
    printed literally (:func:`plain`)."""
    return [plain(f"Note: {item.describe(run.currency)}") for item in run.exclusions]


def deals_table(run: CoverageRun, deals: Sequence[DealCredit]) -> Table:
    """A run's drill-down as a table: who, which deal, why, and its amount."""
    names = {(row.principal_type, row.principal_id): row.principal_name for row in run.rows}
    table = Table(
        title=f"Deals behind run {run.run_id} ({len(deals):,})",
        title_justify="left",
    )
    for column in ("Principal", "Deal", "Class", "Reason", "Category", "Placed on", "Amount",
                   "Flags"):  # fmt: skip
        table.add_column(column, justify="right" if column == "Amount" else "left")
    for deal in deals:
        add_row(
            table,
            names.get((deal.principal_type, deal.principal_id)) or str(deal.principal_id),
            deal.deal_name,
            deal.deal_class,
            deal.credit_reason,
            deal.forecast_category,
            deal.placed_on.isoformat() if deal.placed_on else "—",
            money(deal.reporting_amount),
            ", ".join(deal.flags),
        )
    return table


def runs_table(runs: Sequence[CoverageRun]) -> Table:
    """Stored runs, newest first."""
    table = Table(title="Stored runs (newest first)", title_justify="left")
    for name in ("Run", "Tenant", "Generated", "Period", "Scope", "Rows"):
        table.add_column(name, justify="right" if name == "Rows" else "left")
    for run in runs:
        add_row(
            table,
            str(run.run_id),
            run.tenant_name,
            f"{run.generated_at:%Y-%m-%d %H:%M:%S}",
            f"{run.period_start.isoformat()} to {run.period_end.isoformat()}",
            describe_scope(run.parameters),
            str(run.row_count),
        )
    return table


def describe_scope(parameters: Any) -> str:
    """A short human description of what a run covered."""
    mode = parameters.get("mode", "single")
    pipeline = parameters.get("pipeline_id")
    if mode == "single":
        text = f"{parameters.get('principal_type')} {parameters.get('principal_id')}"
    else:
        text = "everyone" + (" by pipeline" if parameters.get("by_pipeline") else "")
    return text + (f", pipeline {pipeline}" if pipeline else "")


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


def snapshot_lines(snapshots: Sequence[Snapshot]) -> list[str]:
    """One line per tenant: each of its periods' run, created or taken earlier that day,
    or why it failed."""
    by_tenant: dict[Any, list[Snapshot]] = {}
    for taken in snapshots:
        by_tenant.setdefault(taken.tenant_id, []).append(taken)
    lines = []
    for periods in by_tenant.values():
        parts = []
        for one in periods:
            if one.error is not None:
                parts.append(f"{one.period} failed: {one.error}")
            else:
                done = "already taken for this day" if one.replayed else "created"
                parts.append(f"{one.period} run {one.run_id} {done}")
        first = periods[0]
        lines.append(f"{first.tenant_name} ({first.tenant_id}): " + "; ".join(parts))
    return lines


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
        }
        for one in snapshots
    ]
    counts = {status: sum(one.status == status for one in snapshots)
              for status in ("created", "replayed", "failed")}  # fmt: skip
    return json.dumps({"as_of": as_of.isoformat(), "snapshots": items, **counts}, indent=2)


#: A trend's table columns: what moves over a quarter.
TREND_COLUMNS = ("target_amount", "won_amount", "open_amount", "remaining_coverage_ratio",
                 "attainment_ratio")  # fmt: skip
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


def _trend_cells(point: HistoryPoint | None) -> list[str | Text]:
    if point is None:
        return [Text("no run", style="dim"), *("—" for _ in TREND_COLUMNS)]
    return [point.as_of.isoformat(), *(metric_cell(BY_NAME[n], point) for n in TREND_COLUMNS)]


def history_table(title: str, points: Sequence[HistoryPoint]) -> Table:
    """A principal's history: a line per point (per run, or per day)."""
    table = Table(title=plain(title), title_justify="left")
    table.add_column("Day (as of)")
    for name in TREND_COLUMNS:
        table.add_column(BY_NAME[name].label, justify="right")
    table.add_column("Run")
    for point in points:
        add_row(table, *_trend_cells(point), str(point.run_id))
    return table


def history_json(header: dict[str, Any], points: Sequence[HistoryPoint]) -> str:
    """``{...header, "points": [...]}``: every metric of every point."""
    return json.dumps({**header, "points": [point_values(p) for p in points]}, indent=2)


def history_csv(points: Sequence[HistoryPoint]) -> str:
    return _csv(POINT_COLUMNS, (point_values(point) for point in points))


def same_point_table(title: str, found: SamePoint) -> Table:
    """The same point of each quarter: a line per quarter, its day and its run's numbers."""
    table = Table(title=plain(title), title_justify="left")
    for column in ("Quarter", "Day", "Run as of"):
        table.add_column(column)
    for name in TREND_COLUMNS:
        table.add_column(BY_NAME[name].label, justify="right")
    for quarter in found.quarters:
        add_row(table, quarter.period, quarter.day.isoformat(), *_trend_cells(quarter.point))
    return table


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


def plain(text: str, style: str = "") -> Text:
    """Text from the CRM (a name, or a line quoting one) as Rich prints it: literally —
    Rich markup (``[/bold]``, ``[link=...]``) is not read and emoji codes are not
    replaced — with its control characters replaced (:func:`pipeline_coverage.text.printable`),
    so that it cannot fail the print, restyle, move or erase what the terminal shows."""
    return Text(printable(text), style=style)


def add_row(table: Table, *cells: Any) -> None:
    """``table.add_row`` with every text cell shown by :func:`plain`."""
    table.add_row(*(plain(cell) if isinstance(cell, str) else cell for cell in cells))


def make_console(file: Any = None) -> Console:
    """A console for stdout; off a terminal, tables keep their full width."""
    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=200)
    return console


# --- movement between two runs (SPEC.md §11) -----------------------------------------

#: A movement row's CSV columns: both runs, the row's identity, then every number.
MOVEMENT_CSV_COLUMNS = ("run_a_id", "run_b_id", "tenant_id", "period_start", "period_end",
                        *IDENTITY, "in_a", "in_b", *MOVEMENT_NAMES)  # fmt: skip
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


def movement_row_values(row: MovementRow) -> dict[str, Any]:
    """A movement row as JSON-ready values: identity, where it is, every number."""
    values = {**identity_values(row), "in_a": row.in_a, "in_b": row.in_b}
    for metric in MOVEMENT_METRICS:
        values[metric.name] = metric_value(metric, row.values.get(metric.name))
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


def movement_json(movement: Movement) -> str:
    """``{"run_a": ..., "run_b": ..., "rows": [...]}`` (and ``"deals"`` when listed)."""
    document = movement_header(movement)
    document["rows"] = [movement_row_values(row) for row in movement.rows]
    if movement.deals is not None:
        document["deals"] = [movement_deal_values(deal) for deal in movement.deals]
    return json.dumps(document, indent=2)


def movement_csv(movement: Movement) -> str:
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
            yield {**identity, **movement_row_values(row)}

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


def movement_heading(movement: Movement) -> tuple[Text, Text]:
    """What a movement table is (above it) and which two runs it compares (below), as
    :func:`run_heading` prints them."""
    a, b = movement.run_a, movement.run_b
    currency = f" · amounts in {movement.currency}" if movement.currency else ""
    title = (
        f"Movement · {b.tenant_name} · {b.period_start.isoformat()} to "
        f"{b.period_end.isoformat()} (end exclusive){currency}"
    )
    caption = (
        f"from run {a.run_id} ({a.generated_at:%Y-%m-%d %H:%M}, as of "
        f"{a.parameters.get('as_of', '?')}) to run {b.run_id} ({b.generated_at:%Y-%m-%d %H:%M}, "
        f"as of {b.parameters.get('as_of', '?')})"
    )
    return plain(title), plain(caption)


def signed(value: Decimal | None) -> str:
    """``+1,234.50`` / ``-1,234.50`` (a step's effect on the open amount); ``0.00``."""
    if value is None:
        return "—"
    return f"{value:+,.2f}" if value else "0.00"


def _ratio_text(value: Value) -> str:
    return "—" if not isinstance(value, Decimal) else f"{value:,.2f}x"


def movement_table(movement: Movement) -> Table:
    """The waterfall per row: coverage then and now, start, each step's effect, end."""
    table = Table()
    with_pipeline = any(row.pipeline_id is not None for row in movement.rows)
    for column in ("Type", "Principal", *(["Pipeline"] if with_pipeline else []), "Coverage"):
        table.add_column(column)
    for label in ("Start", "Won", "Lost", "Left", "Entered", "Changed", "End"):
        table.add_column(label, justify="right")
    for row in movement.rows:
        cells = [row.principal_type, row.principal_name or str(row.principal_id)]
        if with_pipeline:
            cells.append(row.pipeline_name or _text(row.pipeline_id) or "all")
        cells.append(
            f"{_ratio_text(row['start_coverage_ratio'])} → {_ratio_text(row['end_coverage_ratio'])}"
        )
        cells.append(money(row.amount("start_amount")))
        cells += [signed(-row.amount(f"{step}_amount")) for step in ("won", "lost", "left")]
        cells += [signed(row.amount(f"{step}_amount")) for step in ("entered", "changed")]
        cells.append(money(row.amount("end_amount")))
        add_row(table, *cells)
    return table


def _state_cell(state: DealState | DealNow | None) -> str:
    if state is None:
        return "—"
    if isinstance(state, DealNow) and not state.exists:
        return "deleted"
    # A run's amount is in the reporting currency; today's is the deal's own.
    amount = (
        money(state.amount)
        if isinstance(state, DealState)
        else f"{money(state.native_amount)} {state.currency}"
    )
    where = [amount, _day(state.placed_on) or "undated", state.stage_name or "?"]
    return " · ".join([*where, state.owner_name or "no owner"])


def movement_deals_table(movement: Movement) -> Table:
    """The deals of every step: their effect, why they left or entered, and how the
    two runs (and, for left and entered, the CRM today) saw them."""
    deals = movement.deals or ()
    names = {(row.principal_type, row.principal_id): row.principal_name for row in movement.rows}
    pipelines = {row.pipeline_id: row.pipeline_name for row in movement.rows}
    with_pipeline = any(deal.pipeline_id is not None for deal in deals)
    table = Table(title=f"Deals of the movement ({len(deals):,})", title_justify="left")
    for column in ("Principal", *(["Pipeline"] if with_pipeline else []), "Step", "Deal", "Why",
                   "Movement", "In run A", "In run B", "Now"):  # fmt: skip
        table.add_column(column, justify="right" if column == "Movement" else "left")
    for deal in deals:
        who = [names.get((deal.principal_type, deal.principal_id)) or str(deal.principal_id)]
        if with_pipeline:
            who.append(pipelines.get(deal.pipeline_id) or _text(deal.pipeline_id) or "all")
        add_row(
            table,
            *who,
            deal.step,
            deal.deal_name,
            deal.reason or "",
            signed(deal.movement_amount),
            _state_cell(deal.in_a),
            _state_cell(deal.in_b),
            _state_cell(deal.now) if deal.now is not None else "",
        )
    return table
