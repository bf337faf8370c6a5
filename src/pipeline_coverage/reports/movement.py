"""Movement between two stored runs (SPEC.md §11): why coverage changed.

``compare_runs`` reads two runs of one tenant and, per principal (and bucket) of
either, the waterfall from run A's open amount to run B's — the deals won, lost,
gone (``left``), come in (``entered``) and re-valued (``changed``) — from the two
stored drill-downs alone, in one statement (``sql/queries/movement.sql``); with
``deals`` also every deal of every step, as both runs saw it and as it is now (a
second statement that describes only the deals the first listed).
The identity ``start - won - lost - left + entered + changed = end`` holds to the
cent because both ends are sums over the very deals the steps are made of.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipeline_coverage.db.connection import (
    Connection,
    as_uuid,
    records,
    set_for_transaction,
    unit_of_work,
)
from pipeline_coverage.errors import NotFoundError, ValidationError
from pipeline_coverage.metrics import Metric
from pipeline_coverage.presentation import movement_end
from pipeline_coverage.sql import query
from pipeline_coverage.store import CoverageRun, Value, identity_from_record, run_from_header
from pipeline_coverage.totals import RepTotals, rep_totals
from pipeline_coverage.validation import parse_principal_type, parse_uuid, required_uuid

_QUERIES = "movement"

#: For the movement's statements only: hash joins (no nested loop or merge join where a
#: hash will do), no JIT, and room to hash in memory. Their inputs are arrays unnested
#: from the two runs' rows, which the planner counts as 10 elements each; it would then
#: rescan one run's deals once per credit of the other (quadratic: minutes on a large
#: tenant), or sort both sides, instead of hashing each once. Refusing the other joins
#: costs every plan a constant that would trip JIT compilation (over a second, for a
#: statement of milliseconds); at the 4 MB default the ~70k pairs of a run spill to disk.
PLANNER_SETTINGS = {
    "enable_nestloop": "off",
    "enable_mergejoin": "off",
    "jit": "off",
    "work_mem": "64MB",
}

#: The waterfall's steps between its two ends, in order.
STEPS = ("won", "lost", "left", "entered", "changed")

#: Every number of a movement row, the ends and the steps first (one registry for
#: the table, JSON, CSV, the API's model and the dashboard, as for a run's metrics).
MOVEMENT_METRICS: tuple[Metric, ...] = (
    Metric("start_amount", "money", "Start", "run A's open_amount", nullable=False),
    Metric("won_amount", "money", "Won", "A's amount of deals open in A, won in B",
           nullable=False),
    Metric("lost_amount", "money", "Lost", "A's amount of deals open in A, lost in B",
           nullable=False),
    Metric("left_amount", "money", "Left", "A's amount of deals open in A and not open, "
           "won or lost in B for this row", nullable=False),
    Metric("entered_amount", "money", "Entered", "B's amount of deals open in B and not in A "
           "for this row", nullable=False),
    Metric("changed_amount", "money", "Changed", "B's minus A's amount of deals open in both",
           nullable=False),
    Metric("end_amount", "money", "End", "run B's open_amount", nullable=False),
    Metric("start_count", "count", "Open deals in A", "run A's open_count", nullable=False),
    Metric("won_count", "count", "Won deals", "deals of the won step", nullable=False),
    Metric("lost_count", "count", "Lost deals", "deals of the lost step", nullable=False),
    Metric("left_count", "count", "Deals left", "deals of the left step", nullable=False),
    Metric("entered_count", "count", "Deals entered", "deals of the entered step",
           nullable=False),
    Metric("changed_count", "count", "Deals changed", "deals open in both whose amount moved",
           nullable=False),
    Metric("end_count", "count", "Open deals in B", "run B's open_count", nullable=False),
    Metric("start_target_amount", "money", "Target in A", "run A's target_amount"),
    Metric("end_target_amount", "money", "Target in B", "run B's target_amount"),
    Metric("start_coverage_ratio", "ratio", "Coverage in A", "run A's coverage_ratio", "x"),
    Metric("end_coverage_ratio", "ratio", "Coverage in B", "run B's coverage_ratio", "x"),
    Metric("start_remaining_target", "money", "Remaining in A", "run A's remaining_target"),
    Metric("end_remaining_target", "money", "Remaining in B", "run B's remaining_target"),
    Metric("start_remaining_coverage_ratio", "ratio", "Coverage of remaining in A",
           "run A's remaining_coverage_ratio", "x"),
    Metric("end_remaining_coverage_ratio", "ratio", "Coverage of remaining in B",
           "run B's remaining_coverage_ratio", "x"),
    Metric("start_won_amount", "money", "Won in A", "run A's won_amount"),
    Metric("end_won_amount", "money", "Won in B", "run B's won_amount"),
)  # fmt: skip
MOVEMENT_NAMES = tuple(metric.name for metric in MOVEMENT_METRICS)
#: Why a deal left or entered a row (``MovementDeal.reason``), see docs/movement.md.
REASONS = ("REASSIGNED", "PIPELINE_CHANGED", "UNDATED", "NO_RATE", "REOPENED", "OUT_OF_SCOPE",
           "DELETED")  # fmt: skip


class IncomparableRunsError(ValidationError):
    """Two runs that do not measure the same thing (tenant, period, scope, options)."""


@dataclass(frozen=True)
class MovementRow:
    """One principal's (and bucket's) waterfall from run A to run B.

    ``values`` holds every number of ``MOVEMENT_METRICS`` by name; a principal in only
    one run has 0 at the other end (``in_a``/``in_b`` say where it is).
    """

    principal_type: str
    principal_id: uuid.UUID
    principal_name: str | None
    pipeline_id: uuid.UUID | None
    pipeline_name: str | None
    in_a: bool
    in_b: bool
    values: Mapping[str, Value] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def amount(self, name: str) -> Decimal:
        value = self.values[name]
        assert isinstance(value, Decimal)
        return value

    @property
    def identity_holds(self) -> bool:
        """``start - won - lost - left + entered + changed = end``, exactly."""
        start = self.amount("start_amount")
        return start - self.amount("won_amount") - self.amount("lost_amount") - self.amount(
            "left_amount"
        ) + self.amount("entered_amount") + self.amount("changed_amount") == self.amount(
            "end_amount"
        )


@dataclass(frozen=True)
class DealState:
    """A deal as one run stored it (the owner's name is today's)."""

    deal_class: str
    #: In the reporting currency; None when that run had no rate for it (NO_RATE).
    amount: Decimal | None
    native_amount: Decimal | None
    currency: str
    placed_on: dt.date | None
    stage_name: str
    pipeline_name: str
    owner_user_id: uuid.UUID | None
    owner_name: str | None


@dataclass(frozen=True)
class DealNow:
    """A deal as the CRM holds it now (``exists`` False: deleted since)."""

    exists: bool
    native_amount: Decimal | None = None
    currency: str | None = None
    placed_on: dt.date | None = None
    stage_name: str | None = None
    stage_state: str | None = None
    pipeline_name: str | None = None
    owner_user_id: uuid.UUID | None = None
    owner_name: str | None = None


@dataclass(frozen=True)
class MovementDeal:
    """One deal of one step of a row: what it moved the open amount by, and why."""

    principal_type: str
    principal_id: uuid.UUID
    pipeline_id: uuid.UUID | None
    step: str
    deal_id: uuid.UUID
    deal_name: str
    #: Its signed contribution: - A's amount (won, lost, left), + B's (entered),
    #: B's - A's (changed).
    movement_amount: Decimal
    #: Why it left or entered (``REASONS``); None for the other steps.
    reason: str | None
    in_a: DealState | None
    in_b: DealState | None
    #: For ``left`` and ``entered`` only: the deal today.
    now: DealNow | None


@dataclass(frozen=True)
class Movement:
    """The comparison of two runs: their headers, a waterfall per row, and (when asked
    for) the deals of every step."""

    run_a: CoverageRun
    run_b: CoverageRun
    principal_type: str | None
    principal_id: uuid.UUID | None
    rows: tuple[MovementRow, ...]
    deals: tuple[MovementDeal, ...] | None = None

    @property
    def currency(self) -> str:
        return self.run_b.currency

    def rep_totals(self, side: str) -> RepTotals:
        """The reps' rows of one end added up (``start``: run A's, ``end``: run B's), as
        that run's own totals add them: the same net remaining quota and its coverage."""
        return rep_totals([_End(row.principal_type, movement_end(row.values, side))
                           for row in self.rows])  # fmt: skip


@dataclass(frozen=True)
class _End:
    """One end of a movement row, as a row to add up."""

    principal_type: str
    values: Mapping[str, Value]


def _optional_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else as_uuid(value)


def _flag(parameters: Mapping[str, Any], name: str) -> bool:
    return bool(parameters.get(name) or False)


def _check_comparable(a: CoverageRun, b: CoverageRun) -> None:
    """Raise :class:`IncomparableRunsError` unless the two runs measure the same thing:
    tenant, period, pipeline filter, by_pipeline, rollup, target_match and currency.
    The day they are as of, their rates and their win-rate lookback may differ."""
    pa, pb = a.parameters, b.parameters

    def refuse(what: str, value_b: object, value_a: object) -> IncomparableRunsError:
        return IncomparableRunsError(
            f"run_b: its {what} is {value_b}, run A's is {value_a}: runs compare only with "
            f"the same {what}"
        )

    if a.tenant_id != b.tenant_id:
        raise refuse("tenant", b.tenant_id, a.tenant_id)
    if (a.period_start, a.period_end) != (b.period_start, b.period_end):
        raise refuse(
            "period",
            f"{b.period_start.isoformat()} to {b.period_end.isoformat()}",
            f"{a.period_start.isoformat()} to {a.period_end.isoformat()}",
        )
    if pa.get("pipeline_id") != pb.get("pipeline_id"):
        raise refuse("pipeline filter", pb.get("pipeline_id") or "none",
                     pa.get("pipeline_id") or "none")  # fmt: skip
    for name in ("by_pipeline", "rollup"):
        if _flag(pa, name) != _flag(pb, name):
            raise refuse(name, str(_flag(pb, name)).lower(), str(_flag(pa, name)).lower())
    match_a, match_b = pa.get("target_match", "exact"), pb.get("target_match", "exact")
    if match_a != match_b:
        raise refuse("target_match", match_b, match_a)
    if a.currency != b.currency:
        raise refuse("reporting currency", b.currency or "unknown", a.currency or "unknown")


def _scope(
    a: CoverageRun, b: CoverageRun, principal: tuple[str, uuid.UUID] | None
) -> tuple[str, uuid.UUID] | None:
    """The principal the comparison is restricted to: the one asked for, and a single
    run's own (a single run knows only its principal's deals)."""
    singles = {
        (str(run.parameters["principal_type"]), as_uuid(run.parameters["principal_id"]))
        for run in (a, b)
        if run.parameters.get("mode") == "single"
    }
    if len(singles) > 1:
        raise IncomparableRunsError(
            "run_b: the two runs are of different principals; compare a principal's run with "
            "another of the same principal, or with a batch"
        )
    if singles and principal is not None and principal not in singles:
        [only] = singles
        raise ValidationError(
            f"principal_id: {principal[1]} is not in the comparison: a run is of "
            f"{only[0]} {only[1]} only"
        )
    return principal or (next(iter(singles)) if singles else None)


def compare_runs(
    conn: Connection,
    run_a: uuid.UUID | str,
    run_b: uuid.UUID | str,
    tenant_id: uuid.UUID | str | None = None,
    *,
    principal_type: str | None = None,
    principal_id: uuid.UUID | str | None = None,
    deals: bool = False,
) -> Movement:
    """The movement from run A to run B (SPEC.md §11), per principal and bucket of
    either run; or one principal's (``principal_type`` + ``principal_id``).

    With ``tenant_id``, a run of another tenant is not found (``NotFoundError``); runs
    that do not measure the same thing are an :class:`IncomparableRunsError`. With
    ``deals``, ``Movement.deals`` lists every deal of every step.
    """
    first = required_uuid(run_a, "run_a")
    second = required_uuid(run_b, "run_b")
    tenant = parse_uuid(tenant_id, "tenant_id", optional=True)
    if (principal_type is None) != (principal_id is None):
        raise ValidationError("principal_id: principal_type and principal_id go together")
    kind = parse_principal_type(principal_type) if principal_type is not None else None
    principal = parse_uuid(principal_id, "principal_id", optional=True)
    with unit_of_work(conn) as cur:
        cur.execute(
            query(_QUERIES, "run_pair"),
            {
                "run_a": str(first),
                "run_b": str(second),
                "tenant_id": str(tenant) if tenant else None,
            },
        )
        found = {as_uuid(r["run_id"]): r for r in records(cur)}
        for name, run in (("run_a", first), ("run_b", second)):
            if run not in found:
                raise NotFoundError(f"{name}: no run {run}")
            if found[run]["without_drilldown"]:
                raise IncomparableRunsError(
                    f"{name}: run {run} was stored before runs kept their deals, so its "
                    "movement cannot be told"
                )
        header_a, header_b = run_from_header(found[first]), run_from_header(found[second])
        _check_comparable(header_a, header_b)
        scope = _scope(header_a, header_b, (kind, principal) if kind and principal else None)
        params = {
            "tenant_id": str(header_a.tenant_id),
            "run_a": str(first),
            "run_b": str(second),
            "principal_type": scope[0] if scope else None,
            "principal_id": str(scope[1]) if scope else None,
        }
        replaced = set_for_transaction(cur, PLANNER_SETTINGS)
        cur.execute(query(_QUERIES, "movement_rows"), {**params, "deals": deals})
        found_rows = records(cur)
        if kind and principal and not found_rows:  # not an empty movement: no such principal
            raise NotFoundError(f"principal_id: neither run has a row for {kind} {principal}")
        rows = tuple(_row(r) for r in found_rows)
        listed = None
        if deals:
            cur.execute(query(_QUERIES, "movement_deals"), {**params, **_listed(found_rows)})
            listed = tuple(_deal(r) for r in records(cur))
        set_for_transaction(cur, replaced)  # (a caller's transaction goes on)
    return Movement(
        run_a=header_a,
        run_b=header_b,
        principal_type=scope[0] if scope else None,
        principal_id=scope[1] if scope else None,
        rows=rows,
        deals=listed,
    )


def _listed(found: list[dict[str, Any]]) -> dict[str, list[str | None]]:
    """The deals of each step movement_rows listed per row, as movement_deals' parallel
    array parameters (one element per row, step and deal)."""
    listed: dict[str, list[str | None]] = {
        "principal_types": [], "principal_ids": [], "pipeline_ids": [], "deal_ids": [],
        "steps": [],
    }  # fmt: skip
    for record in found:
        pipeline = str(record["pipeline_id"]) if record["pipeline_id"] else None
        for step in STEPS:
            deal_ids = record[f"listed_{step}"] or []
            listed["principal_types"] += [record["principal_type"]] * len(deal_ids)
            listed["principal_ids"] += [str(record["principal_id"])] * len(deal_ids)
            listed["pipeline_ids"] += [pipeline] * len(deal_ids)
            listed["deal_ids"] += deal_ids
            listed["steps"] += [step] * len(deal_ids)
    return listed


def _row(record: Mapping[str, Any]) -> MovementRow:
    return MovementRow(
        **identity_from_record(record),
        in_a=record["in_a"],
        in_b=record["in_b"],
        values={name: record[name] for name in MOVEMENT_NAMES},
    )


def _state(record: Mapping[str, Any], side: str) -> DealState | None:
    if record[f"{side}_class"] is None:
        return None
    return DealState(
        deal_class=record[f"{side}_class"],
        amount=record[f"{side}_amount"],
        native_amount=record[f"{side}_native_amount"],
        currency=record[f"{side}_currency"],
        placed_on=record[f"{side}_placed_on"],
        stage_name=record[f"{side}_stage_name"],
        pipeline_name=record[f"{side}_pipeline_name"],
        owner_user_id=_optional_uuid(record[f"{side}_owner_user_id"]),
        owner_name=record[f"{side}_owner_name"],
    )


def _deal(record: Mapping[str, Any]) -> MovementDeal:
    step = record["step"]
    now = None
    if step in ("left", "entered"):
        now = DealNow(
            exists=record["now_exists"],
            native_amount=record["now_native_amount"],
            currency=record["now_currency"] if record["now_exists"] else None,
            placed_on=record["now_placed_on"],
            stage_name=record["now_stage_name"],
            stage_state=record["now_stage_state"],
            pipeline_name=record["now_pipeline_name"],
            owner_user_id=_optional_uuid(record["now_owner_user_id"]),
            owner_name=record["now_owner_name"],
        )
    return MovementDeal(
        principal_type=record["principal_type"],
        principal_id=as_uuid(record["principal_id"]),
        pipeline_id=_optional_uuid(record["pipeline_id"]),
        step=step,
        deal_id=as_uuid(record["deal_id"]),
        deal_name=record["deal_name"],
        movement_amount=record["movement_amount"],
        reason=record["reason"],
        in_a=_state(record, "a"),
        in_b=_state(record, "b"),
        now=now,
    )
