"""A run (and its drill-down, history, movement, snapshots) in the terminal: Rich
tables and lines. A row's status, band, order and labels are what
:mod:`pipeline_coverage.presentation` decides, as on the dashboard; every name from the
CRM is printed literally (:func:`plain`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline_coverage.history import HistoryPoint, SamePoint
from pipeline_coverage.metrics import BY_NAME, HEADLINE, Metric
from pipeline_coverage.presentation import (
    BANDED,
    DEFAULT_BANDS,
    HEALTHY,
    MOVEMENT_BASIS,
    MOVEMENT_SIDES,
    NO_TARGET,
    QUOTA_MET,
    SHORT,
    STATUS_TEXT,
    WATCH,
    Bands,
    calibration_notes,
    end_shown,
    movement_end,
    ratio_cell,
    run_marks,
    shown_rows,
    team_parents,
)
from pipeline_coverage.render.values import _day, _text
from pipeline_coverage.reports.movement import DealNow, DealState, Movement
from pipeline_coverage.reports.snapshot import Snapshot
from pipeline_coverage.store import CoverageRow, CoverageRun, DealCredit, Value
from pipeline_coverage.text import printable
from pipeline_coverage.totals import rep_totals

#: A band's colour in the terminal (the dashboard's red, amber and green).
BAND_STYLE = {SHORT: "red", WATCH: "yellow", HEALTHY: "green"}
#: A status without a ratio, as the terminal shows it.
NOTE_STYLE = {QUOTA_MET: "green", NO_TARGET: "dim"}


def money(value: Decimal | None) -> str:
    """``1,234,567.89``; an em dash for no value."""
    return "—" if value is None else f"{value:,.2f}"


def coverage_text(ratio: Decimal | None, bands: Bands = DEFAULT_BANDS) -> Text:
    """``2.35x``, coloured by band; ``no target`` when there is no ratio."""
    if ratio is None:
        return Text(STATUS_TEXT[NO_TARGET], style=NOTE_STYLE[NO_TARGET])
    return Text(f"{ratio:,.2f}x", style=BAND_STYLE[bands.of(ratio) or SHORT])


def metric_cell(
    metric: Metric, row: CoverageRow | HistoryPoint, bands: Bands = DEFAULT_BANDS
) -> str | Text:
    """How the terminal shows one metric of a row (a banded ratio as
    :func:`pipeline_coverage.presentation.ratio_cell` decides)."""
    value = row.values.get(metric.name)
    if metric.kind == "count":
        return "—" if value is None else f"{value:,}"
    if metric.kind == "money":
        assert value is None or isinstance(value, Decimal)
        if metric.name == "pipeline_gap" and row.values.get("remaining_target") == 0:
            # (stored by SPEC.md §8's formula: minus the open pipeline once quota is met,
            # which is no gap at all)
            return Text(STATUS_TEXT[QUOTA_MET], style=NOTE_STYLE[QUOTA_MET])
        return money(value)
    assert value is None or isinstance(value, Decimal)
    if metric.name in BANDED:
        cell = ratio_cell(metric.name, row.values, bands)
        if cell.ratio is not None:
            return Text(f"{cell.ratio:,.2f}x", style=BAND_STYLE[cell.band or SHORT])
        if cell.note is not None:
            note = QUOTA_MET if cell.note == STATUS_TEXT[QUOTA_MET] else NO_TARGET
            return Text(cell.note, style=NOTE_STYLE[note])
        return "—"
    if value is None:
        return "—"
    return f"{value * 100:,.1f}%" if metric.unit == "%" else f"{value:,.2f}x"


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
    if run.as_recorded:  # (SPEC.md §13: a run as recorded says so wherever it is shown)
        title += f" · as recorded at the end of {run.parameters.get('as_of')}"
    caption = f"run {run.run_id} · generated {run.generated_at:%Y-%m-%d %H:%M:%S %Z}"
    if scope:
        caption += f" · pipeline {scope}"
    return plain(title), plain(caption)


def run_table(
    run: CoverageRun, columns: Sequence[str] = HEADLINE, bands: Bands = DEFAULT_BANDS
) -> Table:
    """The run as a Rich table: names first, then the chosen metrics (by default what a
    sales manager reads first: target, won, open, coverage of the remaining quota, gap),
    its rows in the default order (:func:`pipeline_coverage.presentation.default_order`)."""
    table = Table()
    with_pipeline = any(row.pipeline_id is not None for row in run.rows)
    table.add_column("Type")
    table.add_column("Principal")
    if with_pipeline:
        table.add_column("Pipeline")
    metrics = [BY_NAME[name] for name in columns]
    for metric in metrics:
        table.add_column(metric.label, justify="right")
    by_pipeline = bool(run.parameters.get("by_pipeline"))
    parents = team_parents(run.parameters)
    for row, shown in shown_rows(run.rows, by_pipeline=by_pipeline, bands=bands, parents=parents):
        # A rolled-up run's teams as their tree: each indented under the team above it.
        tree = "  " * (shown.depth - 1) + "└ " if shown.depth else ""
        cells: list[str | Text] = [row.principal_type, tree + shown.principal_label]
        if with_pipeline:
            cells.append(shown.pipeline_label or "all")
        cells += [metric_cell(metric, row, bands) for metric in metrics]
        add_row(table, *cells)
    return table


def exclusion_lines(run: CoverageRun) -> list[Text]:
    """The exclusions report, one ``Note:`` per flag (empty when nothing was flagged),
    printed literally (:func:`plain`); then what the rows' hit probabilities stand on,
    per principal type the run has rows of (SPEC.md §14)."""
    lines = [plain(f"Note: {i.describe(run.currency)}") for i in run.exclusions]
    kinds = {row.principal_type for row in run.rows}
    for kind, note in calibration_notes(run.parameters).items():
        if kind in kinds:
            who = "Reps" if kind == "USER" else "Teams"
            lines.append(plain(f"Hit probability · {who}: {note}"))
    return lines


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
    for name in ("Run", "Tenant", "Generated", "Period", "As of", "Scope", "Options", "Rows"):
        table.add_column(name, justify="right" if name == "Rows" else "left")
    for run in runs:
        add_row(
            table,
            str(run.run_id),
            run.tenant_name,
            f"{run.generated_at:%Y-%m-%d %H:%M:%S}",
            f"{run.period_start.isoformat()} to {run.period_end.isoformat()}",
            str(run.parameters.get("as_of") or "—"),
            describe_scope(run.parameters),
            ", ".join(run_marks(run.parameters)) or "—",
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
                closing = " (closing run)" if one.closing else ""
                refit = f", calibration refitted: {one.calibrated}" if one.calibrated else ""
                parts.append(f"{one.period}{closing} run {one.run_id} {done}{refit}")
        first = periods[0]
        lines.append(f"{first.tenant_name} ({first.tenant_id}): " + "; ".join(parts))
    return lines


#: A trend's table columns: what moves over a quarter.
TREND_COLUMNS = ("target_amount", "won_amount", "open_amount", "remaining_coverage_ratio",
                 "attainment_ratio")  # fmt: skip


def _trend_cells(point: HistoryPoint | None, bands: Bands) -> list[str | Text]:
    if point is None:
        return [Text("no run", style="dim"), *("—" for _ in TREND_COLUMNS)]
    cells = (metric_cell(BY_NAME[name], point, bands) for name in TREND_COLUMNS)
    return [point.as_of.isoformat(), *cells]


def history_table(
    title: str, points: Sequence[HistoryPoint], bands: Bands = DEFAULT_BANDS
) -> Table:
    """A principal's history: a line per point (per run, or per day)."""
    table = Table(title=plain(title), title_justify="left")
    table.add_column("Day (as of)")
    for name in TREND_COLUMNS:
        table.add_column(BY_NAME[name].label, justify="right")
    table.add_column("Run")
    for point in points:
        add_row(table, *_trend_cells(point, bands), str(point.run_id))
    return table


def same_point_table(title: str, found: SamePoint, bands: Bands = DEFAULT_BANDS) -> Table:
    """The same point of each quarter: a line per quarter, its day and its run's numbers."""
    table = Table(title=plain(title), title_justify="left")
    for column in ("Quarter", "Day", "Run as of"):
        table.add_column(column)
    for name in TREND_COLUMNS:
        table.add_column(BY_NAME[name].label, justify="right")
    for quarter in found.quarters:
        add_row(table, quarter.period, quarter.day.isoformat(), *_trend_cells(quarter.point, bands))
    return table


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


def end_text(values: Mapping[str, Value] | None, bands: Bands = DEFAULT_BANDS) -> Text:
    """One end's coverage of its remaining quota (:data:`MOVEMENT_BASIS`): ``2.35x`` in
    its band's colour, ``quota met``, ``no target``; a dash for a run without the row."""
    if values is None:
        return Text("—")
    cell = end_shown(values, bands).cell
    if cell.ratio is not None:
        return Text(f"{cell.ratio:,.2f}x", style=BAND_STYLE[cell.band or SHORT])
    if cell.note is not None:
        note = QUOTA_MET if cell.note == STATUS_TEXT[QUOTA_MET] else NO_TARGET
        return Text(cell.note, style=NOTE_STYLE[note])
    return Text("—")


def _ends(start: Text, end: Text) -> Text:
    return Text.assemble(start, " → ", end)


def movement_table(movement: Movement, bands: Bands = DEFAULT_BANDS) -> Table:
    """The waterfall per row: the coverage of the remaining quota then and now (the run
    table's basis, judged as each run's row is), start, each step's effect, end."""
    table = Table()
    with_pipeline = any(row.pipeline_id is not None for row in movement.rows)
    for column in ("Type", "Principal", *(["Pipeline"] if with_pipeline else [])):
        table.add_column(column)
    table.add_column(MOVEMENT_BASIS[0].upper() + MOVEMENT_BASIS[1:])
    for label in ("Start", "Won", "Lost", "Left", "Entered", "Changed", "End"):
        table.add_column(label, justify="right")
    for row in movement.rows:
        cells: list[str | Text] = [row.principal_type, row.principal_name or str(row.principal_id)]
        if with_pipeline:
            cells.append(row.pipeline_name or _text(row.pipeline_id) or "all")
        ends = [
            end_text(movement_end(row.values, side) if present else None, bands)
            for side, present in zip(MOVEMENT_SIDES, (row.in_a, row.in_b), strict=True)
        ]
        cells.append(_ends(*ends))
        cells.append(money(row.amount("start_amount")))
        cells += [signed(-row.amount(f"{step}_amount")) for step in ("won", "lost", "left")]
        cells += [signed(row.amount(f"{step}_amount")) for step in ("entered", "changed")]
        cells.append(money(row.amount("end_amount")))
        add_row(table, *cells)
    return table


def movement_total_line(movement: Movement, bands: Bands = DEFAULT_BANDS) -> Text | None:
    """The reps added up at both ends, on the run table's basis (as each run's own
    totals: the net remaining quota); None when the movement has no rep row."""
    if not any(row.principal_type == "USER" for row in movement.rows):
        return None
    ends = [end_text(movement.rep_totals(side).values, bands) for side in MOVEMENT_SIDES]
    return Text.assemble(f"Reps' total, {MOVEMENT_BASIS}: ", _ends(*ends))


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
