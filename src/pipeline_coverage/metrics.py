"""The metric registry: one declaration per metric of a fact row (SPEC.md §8).

Everything that lists metrics is derived from ``METRICS``: the fact table's columns
(``db upgrade`` adds the column of a metric the table lacks, of its ``column_type``:
db/migrate.py), the rows read back from a run, the CSV header, the JSON fields, the
terminal table's columns, the HTTP API's models, the dashboard's columns and the
benchmark's copy of a run (tests/integration/test_registry.py checks them). Adding a
metric is one line here, its computation in ``sql/queries/coverage.sql`` and the same
rule in ``tests/oracle.py`` (docs/metrics.md, "Adding a metric").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline_coverage.errors import ValidationError

Kind = Literal["money", "count", "ratio"]


@dataclass(frozen=True)
class Metric:
    """A fact row's metric: its column name, kind, and how people read it."""

    name: str
    kind: Kind
    label: str
    description: str
    #: How a ratio reads: ``x`` (2.35x, coverage-like) or ``%`` (112%, shares).
    unit: Literal["", "x", "%"] = ""
    #: Whether a row may lack it: a NULL target makes ratios NULL, and runs stored
    #: before a metric existed lack it. Only the seed's open amount is always there.
    nullable: bool = True
    #: The fact table's column type, when not its kind's (``COLUMN_TYPES``).
    column: str | None = None

    @property
    def column_type(self) -> str:
        """The SQL type of its column in report_pipeline_coverage_fact."""
        return self.column or COLUMN_TYPES[self.kind]


#: A kind's column type (SPEC.md §8, migration 0001): sums of money NUMERIC(38,2), which
#: no valid input can overflow; ratios NUMERIC(42,4), which hold the largest sum over
#: the smallest target; counts integer.
COLUMN_TYPES: dict[Kind, str] = {
    "money": "numeric(38,2)",
    "count": "integer",
    "ratio": "numeric(42,4)",
}


METRICS: tuple[Metric, ...] = (
    Metric("target_amount", "money", "Target", "the principal's matched target rows"),
    Metric("open_amount", "money", "Open", "open deals closing in the period", nullable=False),
    Metric("coverage_ratio", "ratio", "Coverage", "open / target", "x"),
    Metric("open_count", "count", "Open deals", "how many open deals"),
    Metric("weighted_amount", "money", "Weighted", "open amounts x stage probability"),
    Metric("commit_amount", "money", "Commit", "open amount in forecast category COMMIT"),
    Metric("best_case_amount", "money", "Best case", "open amount in BEST_CASE"),
    Metric("pipeline_amount", "money", "Pipeline", "open amount in PIPELINE"),
    Metric("omitted_amount", "money", "Omitted", "open amount in OMITTED"),
    Metric("won_amount", "money", "Won", "deals won in the period"),
    Metric("won_count", "count", "Won deals", "how many deals won"),
    Metric("lost_amount", "money", "Lost", "deals lost in the period"),
    Metric("lost_count", "count", "Lost deals", "how many deals lost"),
    Metric("attainment_ratio", "ratio", "Attainment", "won / target", "%"),
    Metric("remaining_target", "money", "Remaining", "target not yet won"),
    Metric("remaining_coverage_ratio", "ratio", "Coverage of remaining", "open / remaining", "x"),
    Metric(
        "win_rate",
        "ratio",
        "Win rate",
        "won / (won + lost) before the period",
        "%",
        column="numeric(5,4)",
    ),
    Metric("history_won_count", "count", "Won before", "deals won in the lookback window"),
    Metric("history_lost_count", "count", "Lost before", "deals lost in the lookback window"),
    Metric(
        "needed_coverage", "ratio", "Needed coverage", "1 / win rate", "x", column="numeric(9,4)"
    ),
    Metric(
        "pipeline_gap",
        "money",
        "Gap",
        "remaining / win rate - open: pipeline to create",
        column="numeric(44,2)",
    ),
    Metric("past_due_amount", "money", "Past due", "open deals whose date has passed"),
    Metric("past_due_count", "count", "Past-due deals", "how many past-due deals"),
    Metric("undated_amount", "money", "Undated", "open deals without any date"),
    Metric("undated_count", "count", "Undated deals", "how many undated deals"),
    Metric(
        "member_target_amount",
        "money",
        "Member targets",
        "with rollup: the targets of a team's members and child teams",
    ),
    Metric(
        "hit_probability",
        "ratio",
        "Hit probability",
        "calibrated chance of making the number, from the tenant's past quarters at this week",
        "%",
        column="numeric(5,4)",
    ),
    Metric(
        "hit_probability_low",
        "ratio",
        "Hit prob. low",
        "its 95% interval's low end",
        "%",
        column="numeric(5,4)",
    ),
    Metric(
        "hit_probability_high",
        "ratio",
        "Hit prob. high",
        "its 95% interval's high end",
        "%",
        column="numeric(5,4)",
    ),
)

BY_NAME = {metric.name: metric for metric in METRICS}
NAMES = tuple(metric.name for metric in METRICS)
#: What a sales manager reads first: the terminal table's and dashboard's default.
HEADLINE = (
    "target_amount",
    "won_amount",
    "open_amount",
    "remaining_coverage_ratio",
    "pipeline_gap",
)


def headline(*, rollup: bool = False) -> tuple[str, ...]:
    """The default columns of a run's table: with rollup, a team's member targets
    stand beside its own target (over- or under-assigned quota shows)."""
    return (HEADLINE[0], "member_target_amount", *HEADLINE[1:]) if rollup else HEADLINE


#: The seed's three columns, unchanged since the first release.
SEED = ("target_amount", "open_amount", "coverage_ratio")

#: A fact row's identity, before its metrics (CSV and JSON put these first).
IDENTITY = (
    "principal_type",
    "principal_id",
    "principal_name",
    "pipeline_id",
    "pipeline_name",
)

#: Flags a drill-down row can carry (SPEC.md §8), and the fact row's own.
DEAL_FLAGS = ("UNDATED", "NO_AMOUNT", "NO_RATE", "NO_PROBABILITY", "PAST_DUE", "OWNER_ASSUMED")
ROW_FLAGS = ("TARGET_PERIOD_MISMATCH", "TARGET_OVERLAP")


def parse_columns(text: str) -> tuple[str, ...]:
    """``--columns won_amount,open_amount``: names checked against the registry."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        what = f"unknown metric {unknown[0]!r}" if unknown else "none given"
        raise ValidationError(f"columns: {what} (choose from {', '.join(NAMES)})")
    return names
