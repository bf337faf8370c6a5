"""A calibration (SPEC.md §14) as a table, JSON and CSV: per week of the quarter, the
observations, the hit rate, the coverage at 50% and 80%, the hit rate at 3x or more,
and the leave-one-quarter-out Brier scores."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from pipeline_coverage.calibration import (
    MAX_POOLED,
    MIN_EACH_OUTCOME,
    MIN_QUARTERS,
    RULE_OF_THUMB,
    Brier,
    Calibration,
    WeekReport,
)
from pipeline_coverage.render.terminal import add_row, plain
from pipeline_coverage.text import csv_text

CALIBRATION_COLUMNS = (
    "week", "observations", "hits", "hit_rate", "pooled_weeks", "coverage_50", "coverage_80",
    "at_3x", "hit_rate_at_3x", "backtest_scored", "brier_calibrated", "brier_3x",
    "brier_base_rate", "reason",
)  # fmt: skip


def _share(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def _brier(score: float | None) -> str | None:
    return None if score is None else f"{score:.4f}"


def _brier_values(brier: Brier) -> dict[str, Any]:
    return {
        "scored": brier.scored,
        "calibrated": _brier(brier.calibrated),
        "rule_3x": _brier(brier.rule),
        "base_rate": _brier(brier.base_rate),
    }


def week_values(report: WeekReport) -> dict[str, Any]:
    """One week as JSON-ready values (ratios and scores as decimal strings)."""
    fit = report.fit
    return {
        "week": report.week,
        "observations": report.observations,
        "hits": report.hits,
        "hit_rate": _share(report.hit_rate),
        "pooled_weeks": [fit.first_week, fit.last_week],
        "coverage_50": None if fit.coverage_50 is None else str(fit.coverage_50),
        "coverage_80": None if fit.coverage_80 is None else str(fit.coverage_80),
        "at_3x": report.at_rule,
        "hit_rate_at_3x": _share(report.rule_hit_rate),
        "backtest": _brier_values(report.backtest),
        "reason": fit.reason,
    }


def calibration_document(found: Calibration) -> dict[str, Any]:
    """The calibration as one JSON document."""
    return {
        "tenant_id": str(found.tenant_id),
        "principal_type": found.principal_type,
        "as_of": found.as_of.isoformat(),
        "method": found.method,
        "minimum": {
            "quarters": MIN_QUARTERS,
            "each_outcome_per_week": MIN_EACH_OUTCOME,
            "weeks_pooled_either_side": MAX_POOLED,
        },
        "runs": {"rollup": found.rollup, "target_match": found.target_match},
        "quarters_asked": list(found.quarters_asked),
        "quarters_used": list(found.quarters_used),
        "quarters_without_outcome": list(found.quarters_without_outcome),
        "reason": found.reason,
        "backtest": _brier_values(found.backtest),
        "weeks": [week_values(report) for report in found.weeks],
    }


def calibration_json(found: Calibration) -> str:
    return json.dumps(calibration_document(found), indent=2)


def calibration_csv(found: Calibration) -> str:
    """One CSV line per week."""

    def lines() -> Iterable[list[Any]]:
        for report in found.weeks:
            values = week_values(report)
            pooled = values.pop("pooled_weeks")
            backtest = values.pop("backtest")
            values["pooled_weeks"] = f"{pooled[0]}-{pooled[1]}"
            values["backtest_scored"] = backtest["scored"]
            values["brier_calibrated"] = backtest["calibrated"]
            values["brier_3x"] = backtest["rule_3x"]
            values["brier_base_rate"] = backtest["base_rate"]
            yield [values[name] for name in CALIBRATION_COLUMNS]

    return csv_text(CALIBRATION_COLUMNS, lines())


def _x(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def calibration_table(found: Calibration) -> Table:
    """Per week: what was seen, where the fit reaches 50% and 80%, and the backtest."""
    table = Table()
    rule = f"{RULE_OF_THUMB:g}x"
    for column in ("Week", "Obs.", "Hit rate", "50% at", "80% at", f"Hit rate at ≥{rule}",
                   "Brier: calibrated", f"{rule} rule", "base rate"):  # fmt: skip
        table.add_column(column, justify="left" if column == "Week" else "right")
    for report in found.weeks:
        fit = report.fit
        week: str | Text = str(report.week)
        if fit.first_week != fit.last_week:
            week = f"{report.week} ({fit.first_week}-{fit.last_week})"
        b = report.backtest
        add_row(
            table,
            week,
            f"{report.observations:,}",
            _pct(report.hit_rate),
            _x(fit.coverage_50),
            _x(fit.coverage_80),
            f"{_pct(report.rule_hit_rate)} of {report.at_rule:,}",
            _brier(b.calibrated) or "—",
            _brier(b.rule) or "—",
            _brier(b.base_rate) or "—",
        )
    return table


def calibration_lines(found: Calibration) -> list[Text]:
    """What the table stands on and what it says, under it."""
    kind = "reps" if found.principal_type == "USER" else "teams"
    lines = [
        plain(f"Fit: {found.method}."),
        plain(
            f"Quarters: {len(found.quarters_used)} with an outcome of {len(found.quarters_asked)}"
            f" asked ({', '.join(found.quarters_used) or 'none'}); batch runs made with"
            f" rollup={'on' if found.rollup else 'off'}, target_match={found.target_match}."
        ),
    ]
    if found.quarters_without_outcome:
        lines.append(
            plain(
                "Without an outcome (no run of the quarter as of its end or later): "
                + ", ".join(found.quarters_without_outcome)
            )
        )
    if found.reason is not None:
        lines.append(plain(f"No calibration for {kind}: {found.reason}."))
    for report in found.weeks:
        if found.reason is None and report.fit.reason is not None:
            lines.append(plain(f"Week {report.week}: no fit: {report.fit.reason}."))
    b = found.backtest
    if b.scored:
        verdict = (
            "beats" if (b.calibrated or 0) < min(b.rule or 1, b.base_rate or 1) else "does not beat"
        )
        lines.append(
            plain(
                f"Backtest (leave one quarter out, {b.scored:,} observations): Brier calibrated"
                f" {_brier(b.calibrated)}, {RULE_OF_THUMB:g}x rule {_brier(b.rule)}, base rate"
                f" {_brier(b.base_rate)} — the calibration {verdict} both (lower is better)."
            )
        )
    return lines
