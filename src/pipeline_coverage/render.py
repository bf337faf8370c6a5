"""One run, several shapes: a terminal table, JSON and CSV.

Money stays ``Decimal`` throughout; JSON and CSV carry it as decimal strings
(``"1234.50"``), never floats.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline_coverage.reports.pipeline_coverage import CoverageRow, CoverageRun

FORMATS = ("table", "json", "csv")

#: Coverage bands used to colour the table: below 1x is short, 3x and above is healthy.
LOW_COVERAGE = Decimal(1)
HEALTHY_COVERAGE = Decimal(3)

CSV_COLUMNS = (
    "run_id",
    "tenant_id",
    "period_start",
    "period_end",
    "principal_type",
    "principal_id",
    "principal_name",
    "pipeline_id",
    "pipeline_name",
    "target_amount",
    "open_amount",
    "coverage_ratio",
)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def row_dict(run: CoverageRun, row: CoverageRow) -> dict[str, str | None]:
    """A fact row as strings (amounts as exact decimal strings), keyed like CSV_COLUMNS."""
    return {
        "run_id": str(run.run_id),
        "tenant_id": str(run.tenant_id),
        "period_start": run.period_start.isoformat(),
        "period_end": run.period_end.isoformat(),
        "principal_type": row.principal_type,
        "principal_id": str(row.principal_id),
        "principal_name": row.principal_name,
        "pipeline_id": _text(row.pipeline_id),
        "pipeline_name": row.pipeline_name,
        "target_amount": _text(row.target_amount),
        "open_amount": str(row.open_amount),
        "coverage_ratio": _text(row.coverage_ratio),
    }


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


def run_json(run: CoverageRun) -> str:
    """``{"run_id": ..., ..., "rows": [...]}`` as one JSON document."""
    document = run_header(run)
    document["rows"] = [
        {
            k: v
            for k, v in row_dict(run, row).items()
            if k not in ("run_id", "tenant_id", "period_start", "period_end")
        }
        for row in run.rows
    ]
    return json.dumps(document, indent=2)


def spreadsheet_safe(text: str | None) -> str | None:
    """A name that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab,
    CR) gets a leading apostrophe: CSV exports are opened in Excel by their readers."""
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


def run_csv(run: CoverageRun) -> str:
    """One CSV line per fact row, with a header; empty field for NULL."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in run.rows:
        values = row_dict(run, row)
        for name in ("principal_name", "pipeline_name"):
            values[name] = spreadsheet_safe(values[name])
        writer.writerow(values)
    return buffer.getvalue()


def money(value: Decimal | None) -> str:
    """``1,234,567.89``; an em dash for no value."""
    return "—" if value is None else f"{value:,.2f}"


def coverage_text(ratio: Decimal | None) -> Text:
    """``2.35x``, coloured by band; ``no target`` when there is no ratio."""
    if ratio is None:
        return Text("no target", style="dim")
    style = "red" if ratio < LOW_COVERAGE else "yellow" if ratio < HEALTHY_COVERAGE else "green"
    return Text(f"{ratio:,.2f}x", style=style)


def run_table(run: CoverageRun) -> Table:
    """The run as a Rich table: names first, amounts right-aligned, coverage coloured."""
    scope = run.parameters.get("pipeline_id")
    title = (
        f"Pipeline coverage · {run.tenant_name} · {run.period_start.isoformat()} to "
        f"{run.period_end.isoformat()} (end exclusive)"
    )
    caption = f"run {run.run_id} · generated {run.generated_at:%Y-%m-%d %H:%M:%S %Z}"
    if scope:
        caption += f" · pipeline {scope}"
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    with_pipeline = any(row.pipeline_id is not None for row in run.rows)
    table.add_column("Type")
    table.add_column("Principal")
    if with_pipeline:
        table.add_column("Pipeline")
    table.add_column("Target", justify="right")
    table.add_column("Open pipeline", justify="right")
    table.add_column("Coverage", justify="right")
    for row in run.rows:
        cells: list[str | Text] = [
            row.principal_type,
            row.principal_name or str(row.principal_id),
        ]
        if with_pipeline:
            cells.append(row.pipeline_name or _text(row.pipeline_id) or "all")
        cells += [
            money(row.target_amount),
            money(row.open_amount),
            coverage_text(row.coverage_ratio),
        ]
        table.add_row(*cells)
    return table


def runs_table(runs: Sequence[CoverageRun]) -> Table:
    """Stored runs, newest first."""
    table = Table(title="Stored runs (newest first)", title_justify="left")
    for name in ("Run", "Tenant", "Generated", "Period", "Scope", "Rows"):
        table.add_column(name, justify="right" if name == "Rows" else "left")
    for run in runs:
        table.add_row(
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
    buffer = io.StringIO()
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
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        header = run_header(run)
        header["parameters"] = json.dumps(header["parameters"], sort_keys=True)
        writer.writerow(header)
    return buffer.getvalue()


def make_console(file: Any = None) -> Console:
    """A console for stdout; off a terminal, tables keep their full width."""
    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=200)
    return console
