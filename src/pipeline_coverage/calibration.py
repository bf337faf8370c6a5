"""Coverage calibration (SPEC.md §14): what coverage of the remaining quota *this*
tenant's reps (or teams) needed, at each week of the quarter, to make their number.

Observations come from stored batch runs of past fiscal quarters (``observations`` in
``sql/queries/calibration.sql``): per quarter, principal and week w = 1..13, the
remaining coverage in the week's last run, and the quarter's outcome (won >= target in
its last run on or after its end). Per week, the outcome is fitted by logistic
regression on ln(coverage) (statsmodels): monotone in coverage, two parameters,
invertible for the coverage at 50% and 80%, with the covariance that gives each row's
interval. A thin week borrows its neighbours' observations (up to two weeks either
side). A leave-one-quarter-out backtest scores the calibrated probability against the
3x rule (as 0/1) and the base rate by their Brier scores. ``calibrate`` stores the fits
(``calibration_fit``); a run applies the fit of its week to its rows, in SQL
(``calibrated`` in ``sql/queries/coverage.sql``). docs/calibration.md says why.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pipeline_coverage.db.connection import (
    Connection,
    Cursor,
    records,
    set_for_transaction,
    unit_of_work,
)
from pipeline_coverage.directory import fiscal_year_start_month
from pipeline_coverage.errors import ValidationError
from pipeline_coverage.periods import fiscal_quarter_of, quarter_name, quarters_back
from pipeline_coverage.sql import query
from pipeline_coverage.tenants import run_defaults
from pipeline_coverage.validation import (
    parse_date,
    parse_principal_type,
    parse_whole,
    required_uuid,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float64]

_QUERIES = "calibration"

WEEKS = 13
#: Fewer past quarters with an outcome than this, and nothing is fitted: a year of
#: quarters, so that one season (a year-end push) cannot pass for the team's normal,
#: and so that each fold of the leave-one-quarter-out backtest still learns from three.
MIN_QUARTERS = 4
#: At a week (with the weeks pooled into it), at least this many quarters that made
#: the number and as many that did not: about ten events per fitted coefficient, the
#: usual floor below which a logistic regression's slope is noise.
MIN_EACH_OUTCOME = 10
#: A thin week borrows the observations of up to this many weeks on either side.
MAX_POOLED = 2
#: Coverage is held within these before its logarithm (ln 0 has no value; a row with
#: no open pipeline is fitted as 0.05x), in the fit and in the run's SQL alike.
COVERAGE_FLOOR = 0.05
COVERAGE_CEILING = 100.0
#: The folklore line the calibration is compared with.
RULE_OF_THUMB = 3.0
#: The most past quarters a calibration reads (ten years).
MAX_QUARTERS = 40
DEFAULT_QUARTERS = 8
#: The interval of a row's hit probability: 95%.
Z_95 = 1.959964

#: The observations' statement reads each run's rows by its index and joins the two
#: lists by hash; without statistics on fresh runs the planner takes them for a row
#: each and joins them in nested loops, quadratic in the tenant's principals.
OBSERVATION_SETTINGS = {"enable_nestloop": "off"}

METHOD = (
    "logistic regression of the quarter's outcome on ln(remaining coverage), per week of"
    " the quarter (statsmodels Logit); a thin week pools up to two weeks either side"
)


@dataclass(frozen=True)
class WeekFit:
    """A week's fit, or why there is none (``reason``)."""

    week: int
    first_week: int
    last_week: int
    observations: int
    hits: int
    intercept: float | None = None
    slope: float | None = None
    var_intercept: float | None = None
    covariance: float | None = None
    var_slope: float | None = None
    reason: str | None = None

    @property
    def fitted(self) -> bool:
        return self.slope is not None

    def probability(self, coverage: float) -> float:
        """The fitted chance of making the number at ``coverage``."""
        assert self.intercept is not None
        assert self.slope is not None
        return _expit(self.intercept + self.slope * _log_coverage(coverage))

    def coverage_at(self, probability: float) -> float | None:
        """The coverage at which the fitted chance is ``probability`` (the inverse)."""
        if self.intercept is None or self.slope is None:
            return None
        x = (math.log(probability / (1 - probability)) - self.intercept) / self.slope
        return math.exp(min(x, 50.0))

    @property
    def coverage_50(self) -> Decimal | None:
        return _ratio(self.coverage_at(0.5))

    @property
    def coverage_80(self) -> Decimal | None:
        return _ratio(self.coverage_at(0.8))


@dataclass(frozen=True)
class Brier:
    """Brier scores (mean squared error of a probability against the 0/1 outcome) over
    ``scored`` observations: the calibrated probability, the 3x rule as 0/1, and the
    base rate (the training quarters' hit rate at the week)."""

    scored: int
    calibrated: float | None
    rule: float | None
    base_rate: float | None


@dataclass(frozen=True)
class WeekReport:
    """One week of the quarter: what was observed, the fit, and its backtest."""

    week: int
    observations: int
    hits: int
    #: Observations at 3x or more, and how many of them made the number.
    at_rule: int
    at_rule_hits: int
    fit: WeekFit
    backtest: Brier

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.observations if self.observations else None

    @property
    def rule_hit_rate(self) -> float | None:
        return self.at_rule_hits / self.at_rule if self.at_rule else None


@dataclass(frozen=True)
class Calibration:
    """A tenant's calibration for one principal type."""

    tenant_id: uuid.UUID
    principal_type: str
    as_of: dt.date
    rollup: bool
    target_match: str
    #: The quarters asked for (names), those with an outcome used, and the others.
    quarters_asked: tuple[str, ...]
    quarters_used: tuple[str, ...]
    quarters_without_outcome: tuple[str, ...]
    last_quarter_end: dt.date | None
    weeks: tuple[WeekReport, ...]
    backtest: Brier
    reason: str | None = None
    method: str = METHOD


# --- observations --------------------------------------------------------------------

#: A quarter's observations by week: (coverages, outcomes as 0.0/1.0).
Quarter = dict[int, tuple["Floats", "Floats"]]


def _expit(value: float) -> float:
    value = max(min(value, 30.0), -30.0)
    return 1.0 / (1.0 + math.exp(-value))


def _log_coverage(coverage: float) -> float:
    return math.log(min(max(coverage, COVERAGE_FLOOR), COVERAGE_CEILING))


def _ratio(value: float | None) -> Decimal | None:
    if value is None:
        return None
    return Decimal(repr(min(value, 99_999_999.0))).quantize(Decimal("0.0001"))


def read_observations(
    cur: Cursor,
    tenant_id: uuid.UUID,
    principal_type: str,
    quarters: Sequence[tuple[dt.date, dt.date]],
    *,
    rollup: bool,
    target_match: str,
) -> dict[dt.date, Quarter]:
    """The observations of each quarter with an outcome, by its first day."""
    import numpy as np

    replaced = set_for_transaction(cur, OBSERVATION_SETTINGS)
    cur.execute(
        query(_QUERIES, "observations"),
        {
            "tenant_id": str(tenant_id),
            "principal_type": principal_type,
            "starts": [start for start, _ in quarters],
            "ends": [end for _, end in quarters],
            "rollup": rollup,
            "target_match": target_match,
        },
    )
    found: dict[dt.date, Quarter] = {}
    rows = records(cur)
    set_for_transaction(cur, replaced)
    for record in rows:
        coverages = np.asarray(record["coverages"], dtype=np.float64)
        hits = np.asarray(record["hits"], dtype=np.float64)
        found.setdefault(record["period_start"], {})[int(record["week"])] = (coverages, hits)
    return found


# --- the fit -------------------------------------------------------------------------


def _pooled(
    by_week: Mapping[int, tuple[Floats, Floats]], week: int, spread: int
) -> tuple[Floats, Floats]:
    import numpy as np

    xs, ys = [], []
    for w in range(max(1, week - spread), min(WEEKS, week + spread) + 1):
        if w in by_week:
            xs.append(by_week[w][0])
            ys.append(by_week[w][1])
    if not xs:
        return np.empty(0), np.empty(0)
    return np.concatenate(xs), np.concatenate(ys)


def fit_week(by_week: Mapping[int, tuple[Floats, Floats]], week: int) -> WeekFit:
    """Week ``week``'s fit on ``by_week`` (coverages and 0/1 outcomes by week), pooling
    up to MAX_POOLED weeks either side until both outcomes have MIN_EACH_OUTCOME."""
    spread = 0
    coverages, outcomes = _pooled(by_week, week, 0)
    while spread < MAX_POOLED and min(outcomes.sum(), len(outcomes) - outcomes.sum()) < (
        MIN_EACH_OUTCOME
    ):
        spread += 1
        coverages, outcomes = _pooled(by_week, week, spread)
    first, last = max(1, week - spread), min(WEEKS, week + spread)
    n, hits = len(outcomes), int(outcomes.sum())
    base = WeekFit(week, first, last, n, hits)
    if min(hits, n - hits) < MIN_EACH_OUTCOME:
        return _without(
            base,
            f"{hits} quarters made the number and {n - hits} did not at weeks"
            f" {first}-{last}; a fit needs {MIN_EACH_OUTCOME} of each (about ten per"
            " coefficient, below which its slope is noise)",
        )
    return _logit(base, coverages, outcomes)


def _without(fit: WeekFit, reason: str) -> WeekFit:
    return WeekFit(fit.week, fit.first_week, fit.last_week, fit.observations, fit.hits,
                   reason=reason)  # fmt: skip


def _logit(base: WeekFit, coverages: Floats, outcomes: Floats) -> WeekFit:
    """Maximum likelihood by statsmodels' Logit (Newton), or why it has no answer."""
    import numpy as np
    import statsmodels.api as sm

    x = np.log(np.clip(coverages, COVERAGE_FLOOR, COVERAGE_CEILING))
    if x[outcomes == 0].max() < x[outcomes == 1].min():
        return _without(base, "the outcomes separate completely by coverage: no probability"
                        " between 0 and 1 can be fitted")  # fmt: skip
    design = np.column_stack([np.ones_like(x), x])
    with warnings.catch_warnings():
        # (statsmodels warns of convergence and separation; both are checked below)
        warnings.simplefilter("ignore")
        try:
            result = sm.Logit(outcomes, design).fit(disp=0, method="newton", maxiter=100)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return _without(base, f"the fit failed: {exc}")
    params = [float(v) for v in result.params]
    cov = np.asarray(result.cov_params(), dtype=np.float64)
    if not result.mle_retvals.get("converged", False) or not np.all(np.isfinite(cov)):
        return _without(base, "the fit did not converge")
    if params[1] <= 0:
        return _without(base, "the chance of making the number does not rise with coverage"
                        " at this week: coverage says nothing here")  # fmt: skip
    return WeekFit(
        base.week, base.first_week, base.last_week, base.observations, base.hits,
        intercept=params[0], slope=params[1], var_intercept=float(cov[0, 0]),
        covariance=float(cov[0, 1]), var_slope=float(cov[1, 1]),
    )  # fmt: skip


# --- the backtest --------------------------------------------------------------------


def _by_week(
    quarters: Mapping[dt.date, Quarter], leave_out: dt.date | None
) -> dict[int, tuple[Floats, Floats]]:
    import numpy as np

    merged: dict[int, tuple[list[Floats], list[Floats]]] = {}
    for start, weeks in quarters.items():
        if start == leave_out:
            continue
        for week, (xs, ys) in weeks.items():
            merged.setdefault(week, ([], []))
            merged[week][0].append(xs)
            merged[week][1].append(ys)
    return {w: (np.concatenate(xs), np.concatenate(ys)) for w, (xs, ys) in merged.items()}


def _brier(errors: Sequence[tuple[Floats, Floats, Floats, Floats]]) -> Brier:
    """Brier scores of (outcomes, calibrated, rule, base) tuples, added up."""
    import numpy as np

    if not errors:
        return Brier(0, None, None, None)
    y = np.concatenate([e[0] for e in errors])
    if not len(y):
        return Brier(0, None, None, None)
    scores = [float(np.mean((np.concatenate([e[i] for e in errors]) - y) ** 2)) for i in (1, 2, 3)]
    return Brier(len(y), *scores)


def _backtest(quarters: Mapping[dt.date, Quarter]) -> dict[int, list[tuple[Any, ...]]]:
    """Leave one quarter out: each quarter's observations scored by the fits of the
    others (calibrated), by the 3x rule, and by the others' hit rate at the week."""
    import numpy as np

    scored: dict[int, list[tuple[Any, ...]]] = {w: [] for w in range(1, WEEKS + 1)}
    for held_out, weeks in quarters.items():
        training = _by_week(quarters, held_out)
        for week, (xs, ys) in weeks.items():
            fit = fit_week(training, week)
            if not fit.fitted or week not in training:
                continue
            assert fit.intercept is not None
            assert fit.slope is not None
            eta = fit.intercept + fit.slope * np.log(np.clip(xs, COVERAGE_FLOOR, COVERAGE_CEILING))
            calibrated = 1 / (1 + np.exp(-np.clip(eta, -30, 30)))
            rule = (xs >= RULE_OF_THUMB).astype(np.float64)
            base = np.full_like(ys, float(training[week][1].mean()))
            scored[week].append((ys, calibrated, rule, base))
    return scored


# --- calibrate -----------------------------------------------------------------------


def calibrate(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    principal_type: str = "USER",
    *,
    quarters: int = DEFAULT_QUARTERS,
    as_of: dt.date | str | None = None,
    store: bool = True,
) -> Calibration:
    """The tenant's calibration over the ``quarters`` fiscal quarters before the one
    containing ``as_of`` (default today), from its batch runs made with its default
    roll-up and target matching; with ``store``, its fits replace the type's stored
    ones (what runs apply from then on)."""
    import numpy as np

    tenant = required_uuid(tenant_id, "tenant_id")
    kind = parse_principal_type(principal_type)
    count = parse_whole(quarters, "quarters", 1, MAX_QUARTERS)
    day = parse_date(as_of, "as_of") if as_of is not None else dt.date.today()
    month = fiscal_year_start_month(conn, tenant)
    defaults = run_defaults(conn, tenant)
    try:
        asked = quarters_back(day, month, count + 1)[:-1]  # (not the quarter of as_of)
    except (ValueError, OverflowError):
        raise ValidationError(f"as_of: out of range for {count} quarters: {day}") from None
    with unit_of_work(conn) as cur:
        observed = read_observations(
            cur, tenant, kind, asked, rollup=defaults.rollup, target_match=defaults.target_match
        )
    used = [q for q in asked if q[0] in observed]
    reason = None
    if len(used) < MIN_QUARTERS:
        reason = (
            f"{len(used)} past quarter{'s' if len(used) != 1 else ''} with an outcome;"
            f" calibration needs {MIN_QUARTERS} (a year, so that one season cannot pass for"
            " the team's normal)"
        )
    everything = _by_week(observed, None)
    scored = _backtest(observed) if reason is None else {}
    reports = []
    for week in range(1, WEEKS + 1):
        xs, ys = everything.get(week, (np.empty(0), np.empty(0)))
        fit = fit_week(everything, week)
        if reason is not None:
            fit = _without(fit, reason)
        at_rule = xs >= RULE_OF_THUMB
        reports.append(
            WeekReport(
                week=week, observations=len(ys), hits=int(ys.sum()), at_rule=int(at_rule.sum()),
                at_rule_hits=int(ys[at_rule].sum()), fit=fit,
                backtest=_brier(scored.get(week, [])),
            )
        )  # fmt: skip
    found = Calibration(
        tenant_id=tenant,
        principal_type=kind,
        as_of=day,
        rollup=defaults.rollup,
        target_match=defaults.target_match,
        quarters_asked=tuple(quarter_name(s, e, month) for s, e in asked),
        quarters_used=tuple(quarter_name(s, e, month) for s, e in used),
        quarters_without_outcome=tuple(
            quarter_name(s, e, month) for s, e in asked if s not in observed
        ),
        last_quarter_end=used[-1][1] if used else None,
        weeks=tuple(reports),
        backtest=_brier([item for items in scored.values() for item in items]),
        reason=reason,
    )
    if store:
        store_fits(conn, found)
    return found


def store_fits(conn: Connection, calibration: Calibration) -> None:
    """Replace the tenant's stored fits of the calibration's principal type."""
    with unit_of_work(conn) as cur:
        params = {
            "tenant_id": str(calibration.tenant_id),
            "principal_type": calibration.principal_type,
        }
        cur.execute(query(_QUERIES, "delete_fits"), params)
        for report in calibration.weeks:
            fit = report.fit
            cur.execute(
                query(_QUERIES, "insert_fit"),
                {
                    **params,
                    "week": fit.week,
                    "rollup": calibration.rollup,
                    "target_match": calibration.target_match,
                    "quarters": len(calibration.quarters_used),
                    "last_quarter_end": calibration.last_quarter_end,
                    "observations": fit.observations,
                    "hits": fit.hits,
                    "first_week": fit.first_week,
                    "last_week": fit.last_week,
                    "intercept": fit.intercept,
                    "slope": fit.slope,
                    "var_intercept": fit.var_intercept,
                    "covariance": fit.covariance,
                    "var_slope": fit.var_slope,
                    "coverage_50": fit.coverage_50,
                    "coverage_80": fit.coverage_80,
                    "reason": fit.reason,
                },
            )


# --- a run's calibration -------------------------------------------------------------


def week_of_quarter(as_of: dt.date, period_start: dt.date) -> int:
    """Week w (1..13) of a quarter that a day falls in: days 1-7 are week 1; the days
    past thirteen full weeks belong to week 13."""
    return min((as_of - period_start).days // 7 + 1, WEEKS)


def calibration_week(
    period: tuple[dt.date, dt.date], as_of: dt.date, *, whole_pipeline: bool
) -> int | None:
    """The week of the quarter whose fits a run may apply (None: it applies none,
    whatever the tenant's calendar): what ``send_week_fits`` can ask for before the
    calendar is known (``run_calibration`` decides)."""
    start, end = period
    if not whole_pipeline or not start <= as_of < end:
        return None
    return week_of_quarter(as_of, start)


def send_week_fits(cur: Cursor, tenant_id: uuid.UUID, week: int) -> None:
    """Ask for the tenant's fits at ``week``; ``run_calibration(..., sent=cur)`` reads
    them (sent along with the run's scope check, they cost no round trip of their own)."""
    cur.execute(query(_QUERIES, "week_fits"), {"tenant_id": str(tenant_id), "week": week})


def run_calibration(
    cur: Cursor,
    tenant_id: uuid.UUID,
    *,
    period: tuple[dt.date, dt.date],
    as_of: dt.date,
    fiscal_year_start_month: int,
    whole_pipeline: bool,
    rollup: bool,
    target_match: str,
    sent: Cursor | None = None,
) -> tuple[str, dict[str, Any]]:
    """What a run applies to its rows (the ``calibration`` JSON of its statement) and
    what it records of it (its parameters' ``calibration``): the fit of each principal
    type at the run's week, or why its rows have no hit probability. ``sent``: the
    cursor ``send_week_fits`` asked on, for the week ``calibration_week`` gave."""
    start, end = period
    if not whole_pipeline:
        return "[]", {"reason": "calibrated on runs of every pipeline; not for one pipeline"}
    if fiscal_quarter_of(start, fiscal_year_start_month) != (start, end):
        return "[]", {"reason": "the run's period is not a quarter of the tenant's calendar"}
    if not start <= as_of < end:
        return "[]", {"reason": "the run's as_of is outside its quarter"}
    week = week_of_quarter(as_of, start)
    if sent is None:
        send_week_fits(cur, tenant_id, week)
    found = records(sent or cur)
    note: dict[str, Any] = {"week": week}
    fits = []
    for kind in ("USER", "GROUP"):
        stored = next((r for r in found if r["principal_type"] == kind), None)
        if stored is None:
            note[kind] = {"reason": "not calibrated yet (pipeline-coverage calibration)"}
        elif stored["reason"] is not None:
            note[kind] = {"reason": stored["reason"]}
        elif (stored["rollup"], stored["target_match"]) != (rollup, target_match):
            note[kind] = {"reason": "calibrated on runs made with other options (roll-up,"
                          " target matching)"}  # fmt: skip
        else:
            note[kind] = {
                "coverage_50": str(stored["coverage_50"]),
                "coverage_80": str(stored["coverage_80"]),
                "fitted_at": stored["fitted_at"].isoformat(),
                "quarters": stored["quarters"],
                "observations": stored["observations"],
                "weeks": [stored["first_week"], stored["last_week"]],
            }
            fits.append(
                {
                    "principal_type": kind,
                    **{name: stored[name] for name in ("intercept", "slope", "var_intercept",
                                                       "covariance", "var_slope")},
                    "floor": COVERAGE_FLOOR,
                    "ceiling": COVERAGE_CEILING,
                }
            )  # fmt: skip
    return json.dumps(fits), note
