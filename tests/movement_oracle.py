"""An independent waterfall between two runs (SPEC.md §11), in plain Python.

It takes two snapshots of a tenant's raw data (``Oracle`` before and after a change)
and the options of the two runs, applies §7's classes and credit to each with the
oracle's own rules, and tells every row's steps and every deal's step, amount and
reason — sharing nothing with the report's SQL or the stored drill-downs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from tests.oracle import ZERO, Deal, Options, Oracle

Key = tuple[str, uuid.UUID, uuid.UUID | None]
STEPS = ("won", "lost", "left", "entered", "changed")


@dataclass(frozen=True)
class ExpectedDeal:
    step: str
    movement_amount: Decimal
    reason: str | None


@dataclass(frozen=True)
class ExpectedRow:
    start_amount: Decimal
    end_amount: Decimal
    amounts: dict[str, Decimal]
    counts: dict[str, int]
    deals: dict[uuid.UUID, ExpectedDeal]


def _run_deals(
    oracle: Oracle, o: Options, principal: tuple[str, uuid.UUID] | None
) -> dict[uuid.UUID, tuple[Deal, str]]:
    """The deals a run stores (its period classes; a single run: those naming its
    principal), with their class."""
    found = {}
    for deal in oracle.all_deals:
        kind_of = oracle.deal_class(deal, o)
        if kind_of not in ("OPEN", "WON", "LOST", "UNDATED"):
            continue
        if principal is not None and principal not in {(k, w) for k, w, _ in oracle.credits(deal)}:
            continue
        found[deal.id] = (deal, kind_of)
    return found


def _keys(
    oracle: Oracle,
    o: Options,
    single: tuple[str, uuid.UUID] | None,
    scope: tuple[str, uuid.UUID] | None,
) -> set[Key]:
    """The fact rows of a run (its principals x its buckets), within the scope."""
    who = {single} if single is not None else oracle.run_principals(o)
    if scope is not None:
        who &= {scope}
    return {(kind, w, bucket) for kind, w in who for bucket in oracle.buckets(o)}


def waterfall(
    before: Oracle,
    after: Oracle,
    o_a: Options,
    o_b: Options,
    single_a: tuple[str, uuid.UUID] | None = None,
    single_b: tuple[str, uuid.UUID] | None = None,
) -> dict[Key, ExpectedRow]:
    """Per row of either run (restricted to the single run's principal when one is):
    start, the steps, end, and the deals of each step with their reason."""
    scope = single_a or single_b
    rows_a = before.drilldown(o_a, scope)
    rows_b = after.drilldown(o_b, scope)
    stored_a = _run_deals(before, o_a, single_a)
    stored_b = _run_deals(after, o_b, single_b)
    now = {deal.id: deal for deal in after.all_deals}
    keys = _keys(before, o_a, single_a, scope) | _keys(after, o_b, single_b, scope)
    result = {}
    for key in keys:
        open_a = {}
        for deal_id, (kind_of, _) in rows_a.get(key, {}).items():
            amount = before.reporting(stored_a[deal_id][0], o_a.as_of)
            if kind_of == "OPEN" and amount is not None:
                open_a[deal_id] = amount
        in_b: dict[uuid.UUID, tuple[str, Decimal | None]] = {}
        for deal_id, (kind_of, _) in rows_b.get(key, {}).items():
            in_b[deal_id] = (kind_of, after.reporting(stored_b[deal_id][0], o_b.as_of))
        open_b = {
            d: amount for d, (k, amount) in in_b.items() if k == "OPEN" and amount is not None
        }
        deals: dict[uuid.UUID, ExpectedDeal] = {}
        amounts = dict.fromkeys(STEPS, ZERO)
        counts = dict.fromkeys(STEPS, 0)
        for deal_id, amount in open_a.items():
            kind_b, amount_b = in_b.get(deal_id, (None, None))
            if kind_b in ("WON", "LOST"):
                step = kind_b.lower()
            elif deal_id in open_b:
                step = "changed"
            else:
                step = "left"
            if step == "changed":
                assert amount_b is not None
                amounts["changed"] += amount_b - amount
                if amount_b != amount:
                    counts["changed"] += 1
                    deals[deal_id] = ExpectedDeal("changed", amount_b - amount, None)
                continue
            amounts[step] += amount
            counts[step] += 1
            reason = (
                _left_reason(deal_id, stored_a, stored_b, now, after, o_b)
                if step == "left"
                else None
            )
            deals[deal_id] = ExpectedDeal(step, -amount, reason)
        for deal_id, amount in open_b.items():
            if deal_id not in open_a:
                amounts["entered"] += amount
                counts["entered"] += 1
                reason = _entered_reason(deal_id, stored_a, stored_b, before, o_a)
                deals[deal_id] = ExpectedDeal("entered", amount, reason)
        result[key] = ExpectedRow(
            start_amount=sum(open_a.values(), ZERO),
            end_amount=sum(open_b.values(), ZERO),
            amounts=amounts,
            counts=counts,
            deals=deals,
        )
    return result


def _left_reason(
    deal_id: uuid.UUID,
    stored_a: dict[uuid.UUID, tuple[Deal, str]],
    stored_b: dict[uuid.UUID, tuple[Deal, str]],
    now: dict[uuid.UUID, Deal],
    after: Oracle,
    o_b: Options,
) -> str:
    if deal_id not in stored_b:
        return "OUT_OF_SCOPE" if deal_id in now else "DELETED"
    deal_b, kind_b = stored_b[deal_id]
    return _other_run_reason(stored_a[deal_id][0], deal_b, kind_b, after, o_b)


def _entered_reason(
    deal_id: uuid.UUID,
    stored_a: dict[uuid.UUID, tuple[Deal, str]],
    stored_b: dict[uuid.UUID, tuple[Deal, str]],
    before: Oracle,
    o_a: Options,
) -> str:
    if deal_id not in stored_a:
        return "OUT_OF_SCOPE"
    deal_a, kind_a = stored_a[deal_id]
    if kind_a == "UNDATED":
        return "UNDATED"
    if kind_a in ("WON", "LOST"):
        return "REOPENED"
    return _other_run_reason(stored_b[deal_id][0], deal_a, kind_a, before, o_a)


def _other_run_reason(
    here: Deal, there: Deal, kind_there: str, oracle_there: Oracle, o_there: Options
) -> str:
    """Why a deal both runs stored is open for this row in one run only: the other run
    saw it undated, without a rate, in another pipeline, or credited to others."""
    if kind_there == "UNDATED":
        return "UNDATED"
    if oracle_there.rate(there, o_there.as_of) is None:
        return "NO_RATE"
    if there.pipeline_id != here.pipeline_id:
        return "PIPELINE_CHANGED"
    return "REASSIGNED"
