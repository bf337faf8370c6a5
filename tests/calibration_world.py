"""A synthetic history with a known truth, for coverage calibration's tests: stored
batch runs of past quarters (a run per week and one closing each quarter) written
straight into the run store, with fact rows drawn so that the chance of making the
number is a known function of coverage at each week.

The construction: each principal-quarter's outcome Y is drawn first (P(Y=1) = 0.5);
then at each week w, ln(coverage) given Y is normal, N(mu_Y(w), sigma^2), with a
principal's own offset shared across the weeks of its quarter (so that its weeks
move together, as a real rep's do, without changing any one week's distribution).
By Bayes' rule with equal variances, P(Y=1 | coverage c at week w) is then exactly
logistic in ln c: logit = beta * (ln c - ln c50(w)), beta = (mu_1 - mu_0) / sigma^2,
ln c50(w) = (mu_0 + mu_1) / 2 (with P(Y=1) = 0.5). So the coverage at which the
chance is p is c50(w) * exp(logit(p) / beta), known for every week.

Fact rows carry the columns calibration reads (target, won, remaining target and
coverage); their drill-down columns are NULL (``open_count`` NULL), as a run stored
before the drill-down existed: the reconciliation check passes them by.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

TARGET = Decimal("100000.00")


@dataclass(frozen=True)
class Truth:
    """The known P(hit | coverage, week): logistic in ln(coverage), slope ``beta``,
    50% at ``c50(week)``."""

    beta: float = 3.0
    sigma: float = 0.5
    #: c50 at week 1, and how it falls per week (late in a quarter less is needed).
    c50_first: float = 2.6
    c50_decay: float = 0.06
    #: A principal's weeks share this much of their spread.
    shared: float = 0.6

    def c50(self, week: int) -> float:
        return self.c50_first * math.exp(-self.c50_decay * (week - 1))

    def coverage_at(self, probability: float, week: int) -> float:
        return self.c50(week) * math.exp(math.log(probability / (1 - probability)) / self.beta)

    def probability(self, coverage: float, week: int) -> float:
        return 1 / (1 + math.exp(-self.beta * (math.log(coverage) - math.log(self.c50(week)))))

    def means(self, week: int) -> tuple[float, float]:
        """mu_0 and mu_1 of ln(coverage) at the week."""
        half = self.beta * self.sigma**2 / 2
        return math.log(self.c50(week)) - half, math.log(self.c50(week)) + half


def quarter_starts(first: dt.date, count: int) -> list[tuple[dt.date, dt.date]]:
    """``count`` calendar quarters from ``first`` (a quarter's first day)."""
    found = []
    start = first
    for _ in range(count):
        month = start.month + 3
        end = dt.date(start.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
        found.append((start, end))
        start = end
    return found


def insert_run(
    cur: psycopg.Cursor[Any],
    tenant: uuid.UUID,
    period: tuple[dt.date, dt.date],
    as_of: dt.date,
    **options: Any,
) -> uuid.UUID:
    parameters = {
        "mode": "batch", "pipeline_id": None, "by_pipeline": False, "rollup": False,
        "target_match": "exact", "win_rate_lookback_days": 365,
        "period_start": period[0].isoformat(), "period_end": period[1].isoformat(),
        "as_of": as_of.isoformat(), "currency": "USD", "rates": {}, **options,
    }  # fmt: skip
    row = cur.execute(
        "INSERT INTO dyno_crm.report_run (tenant_id, report_type, generated_at, period_start,"
        " period_end, parameters) VALUES (%s, 'PIPELINE_COVERAGE', now(), %s, %s, %s)"
        " RETURNING id",
        (tenant, period[0], period[1], json.dumps(parameters)),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def write_history(
    conn: psycopg.Connection[Any],
    tenant: uuid.UUID,
    principals: Sequence[uuid.UUID],
    quarters: Sequence[tuple[dt.date, dt.date]],
    truth: Truth = Truth(),
    *,
    seed: int = 14,
    principal_type: str = "USER",
    closing: bool = True,
    **options: Any,
) -> list[tuple[dt.date, int, uuid.UUID, float, bool]]:
    """Write the runs; returns every observation written: (quarter start, week,
    principal, coverage, made the number)."""
    rng = random.Random(seed)
    written = []
    rows: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        for start, end in quarters:
            outcome = {p: rng.random() < 0.5 for p in principals}
            offset = {p: rng.gauss(0, 1) for p in principals}
            for week in range(1, 14):
                as_of = start + dt.timedelta(days=7 * (week - 1) + 3)
                run = insert_run(cur, tenant, (start, end), as_of, **options)
                mu0, mu1 = truth.means(week)
                for p in principals:
                    noise = math.sqrt(truth.shared) * offset[p] + math.sqrt(
                        1 - truth.shared
                    ) * rng.gauss(0, 1)
                    coverage = math.exp((mu1 if outcome[p] else mu0) + truth.sigma * noise)
                    won = (TARGET * Decimal(week) / Decimal(40)).quantize(Decimal("0.01"))
                    remaining = TARGET - won
                    open_amount = (remaining * Decimal(repr(coverage))).quantize(Decimal("0.01"))
                    ratio = (open_amount / remaining).quantize(Decimal("0.0001"))
                    rows.append((run, tenant, start, end, principal_type, p, TARGET, open_amount,
                                 won, remaining, ratio))  # fmt: skip
                    written.append((start, week, p, float(ratio), outcome[p]))
            if closing:
                run = insert_run(cur, tenant, (start, end), end + dt.timedelta(days=2), **options)
                for p in principals:
                    won = TARGET if outcome[p] else (TARGET * Decimal("0.7"))
                    remaining = max(TARGET - won, Decimal(0))
                    ratio_left = None if not remaining else Decimal(0)
                    rows.append((run, tenant, start, end, principal_type, p, TARGET, Decimal(0),
                                 won, remaining, ratio_left))  # fmt: skip
        with cur.copy(
            "COPY dyno_crm.report_pipeline_coverage_fact (run_id, tenant_id, period_start,"
            " period_end, principal_type, principal_id, target_amount, open_amount, won_amount,"
            " remaining_target, remaining_coverage_ratio) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
    conn.commit()
    return written
