"""A run's reps added up, and what each total means.

Two totals answer two questions. The **net** remaining target is the reps' summed
target less their summed wins: a rep over quota offsets a rep short of it, so it says
how far the whole team is from the sum of its quotas. The **shortfall** is the
remaining target of the reps still short of theirs, with their own open pipeline and
its coverage: what has yet to be won by the people who have not made their number,
which a rep far over quota does nothing for. Teams are not added in (a team's deals
are its reps' deals too).
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from pipeline_coverage.store import Value

ZERO = Decimal(0)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """As the run's ratios are: 4 decimals, half away from zero; none over 0."""
    if denominator == 0:
        return None
    with decimal.localcontext(prec=60):
        return (numerator / denominator).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


class Totalled(Protocol):
    """What a row added up has: whose it is, and its metrics by a run's row's names (a
    run's fact row, or one end of a movement row)."""

    @property
    def principal_type(self) -> str: ...
    @property
    def values(self) -> Mapping[str, Value]: ...


def _amount(row: Totalled, name: str) -> Decimal:
    value = row.values.get(name)
    return value if isinstance(value, Decimal) else ZERO


@dataclass(frozen=True)
class RepTotals:
    """The reps' rows of a run added up (every rep's every pipeline, by pipeline)."""

    rows: int
    rows_with_target: int
    target_amount: Decimal
    won_amount: Decimal
    open_amount: Decimal
    attainment_ratio: Decimal | None
    #: Net: max(Σ target - Σ won, 0) — reps over quota offset reps short of it.
    remaining_target: Decimal
    remaining_coverage_ratio: Decimal | None
    #: The rows still short of their target (remaining target above 0) ...
    short_rows: int
    #: ... the sum of their remaining targets ...
    shortfall_amount: Decimal
    #: ... their own open pipeline, and its coverage of their shortfall.
    short_open_amount: Decimal
    shortfall_coverage_ratio: Decimal | None

    @property
    def values(self) -> dict[str, Value]:
        """The net totals under a run's row's names, to be judged as a row is (no target
        when none of the rows has one)."""
        return {
            "target_amount": self.target_amount if self.rows_with_target else None,
            "won_amount": self.won_amount,
            "open_amount": self.open_amount,
            "remaining_target": self.remaining_target,
            "remaining_coverage_ratio": self.remaining_coverage_ratio,
        }


def rep_totals(rows: Sequence[Totalled]) -> RepTotals:
    """The reps' (``USER``) rows of a run added up, net and for those still short."""
    reps = [row for row in rows if row.principal_type == "USER"]
    targeted = [row for row in reps if row.values.get("target_amount") is not None]
    target = sum((_amount(row, "target_amount") for row in targeted), ZERO)
    won = sum((_amount(row, "won_amount") for row in reps), ZERO)
    open_amount = sum((_amount(row, "open_amount") for row in reps), ZERO)
    remaining = max(target - won, ZERO)
    short = [row for row in targeted if _amount(row, "remaining_target") > 0]
    shortfall = sum((_amount(row, "remaining_target") for row in short), ZERO)
    short_open = sum((_amount(row, "open_amount") for row in short), ZERO)
    return RepTotals(
        rows=len(reps),
        rows_with_target=len(targeted),
        target_amount=target,
        won_amount=won,
        open_amount=open_amount,
        attainment_ratio=_ratio(won, target),
        remaining_target=remaining,
        remaining_coverage_ratio=_ratio(open_amount, remaining),
        short_rows=len(short),
        shortfall_amount=shortfall,
        short_open_amount=short_open,
        shortfall_coverage_ratio=_ratio(short_open, shortfall),
    )
