"""How a run's row is shown — its status, coverage band, order and labels — decided
once, here, and served alike to the terminal table, the JSON and CSV documents and
the dashboard (which renders what the server decided rather than deciding again).

Also the product's words that more than one output uses: the principal types, the
length a quoted name is cut to, the period label, the sentences of the exclusions
report and of a row's flags.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar

#: A rep, and a team.
USER = "USER"
GROUP = "GROUP"
PRINCIPAL_TYPES = (USER, GROUP)

#: A name (or any value) quoted in a message is cut after this many characters.
SHOWN_CHARS = 60

# --- a row's status and band -----------------------------------------------------------

#: The row has a coverage of its remaining quota (``remaining_coverage_ratio``).
COVERAGE = "coverage"
#: The target is won: nothing remains to cover (the best there is).
QUOTA_MET = "quota_met"
#: No target: there is nothing to cover.
NO_TARGET = "no_target"
#: A run stored before ``remaining_target`` existed: judged by its seed coverage.
LEGACY = "legacy"
STATUSES = (COVERAGE, QUOTA_MET, NO_TARGET, LEGACY)
#: How the table and the charts say a status that has no ratio to show.
STATUS_TEXT = {QUOTA_MET: "quota met", NO_TARGET: "no target"}

#: Coverage below the low band is short, from the healthy band up it is healthy.
SHORT = "short"
WATCH = "watch"
HEALTHY = "healthy"
BANDS = (SHORT, WATCH, HEALTHY)

#: The ratios coloured by band, in the table and the dashboard.
BANDED = ("coverage_ratio", "remaining_coverage_ratio")


@dataclass(frozen=True)
class Bands:
    """The coverage thresholds (``PIPELINE_COVERAGE_BANDS``, ``LOW,HEALTHY``)."""

    low: Decimal = Decimal(1)
    healthy: Decimal = Decimal(3)

    def of(self, ratio: Decimal | int | None) -> str | None:
        """The band of a coverage ratio; None for no ratio."""
        if ratio is None:
            return None
        if ratio < self.low:
            return SHORT
        return WATCH if ratio < self.healthy else HEALTHY


DEFAULT_BANDS = Bands()

Value = Decimal | int | None


def status(values: Mapping[str, Value]) -> str:
    """A row's status from its metrics (a history point's too)."""
    if values.get("target_amount") is None:
        return NO_TARGET
    if values.get("remaining_coverage_ratio") is not None:
        return COVERAGE
    remaining = values.get("remaining_target")
    if remaining is not None and remaining == 0:
        return QUOTA_MET
    if remaining is None and values.get("coverage_ratio") is not None:
        return LEGACY
    return NO_TARGET


def judged_ratio(values: Mapping[str, Value]) -> Decimal | None:
    """The coverage a row is judged (banded and ordered) by: of its remaining quota,
    or a legacy row's seed coverage; None when quota met or no target."""
    name = {COVERAGE: "remaining_coverage_ratio", LEGACY: "coverage_ratio"}.get(status(values))
    value = values.get(name) if name else None
    return value if isinstance(value, Decimal) else None


@dataclass(frozen=True)
class RatioCell:
    """How a banded ratio's cell reads: the ratio and its band, or a note instead
    (``quota met``, ``no target``), or neither (a dash)."""

    ratio: Decimal | None
    band: str | None
    note: str | None


def ratio_cell(metric: str, values: Mapping[str, Value], bands: Bands) -> RatioCell:
    """The cell of ``metric`` (one of :data:`BANDED`) in a row."""
    value = values.get(metric)
    if isinstance(value, Decimal):
        return RatioCell(value, bands.of(value), None)
    kind = status(values)
    if kind == NO_TARGET:
        return RatioCell(None, None, STATUS_TEXT[NO_TARGET])
    if kind == QUOTA_MET and metric == "remaining_coverage_ratio":
        return RatioCell(None, None, STATUS_TEXT[QUOTA_MET])
    return RatioCell(None, None, None)


# --- labels and order --------------------------------------------------------------------


class Row(Protocol):
    """What a shown row has (a run's fact row)."""

    @property
    def principal_type(self) -> str: ...
    @property
    def principal_id(self) -> uuid.UUID: ...
    @property
    def principal_name(self) -> str | None: ...
    @property
    def pipeline_id(self) -> uuid.UUID | None: ...
    @property
    def pipeline_name(self) -> str | None: ...
    @property
    def values(self) -> Mapping[str, Value]: ...
    @property
    def flags(self) -> tuple[str, ...]: ...


R = TypeVar("R", bound=Row)

#: An id stands for a missing name by its first characters.
ID_CHARS = 8


def principal_label(row: Row) -> str:
    """The principal's name as the run saw it, else the start of its id."""
    return row.principal_name or str(row.principal_id)[:ID_CHARS]


def pipeline_label(row: Row) -> str:
    """The row's pipeline's name, else the start of its id; empty for no pipeline."""
    if row.pipeline_name:
        return row.pipeline_name
    return str(row.pipeline_id)[:ID_CHARS] if row.pipeline_id else ""


def row_label(row: Row, *, by_pipeline: bool) -> str:
    """``Ann``, or ``Ann · Renewals`` for a row of a by-pipeline run."""
    pipeline = pipeline_label(row) if by_pipeline else ""
    return f"{principal_label(row)} · {pipeline}" if pipeline else principal_label(row)


def _by_name(row: Row) -> tuple[str, str, str]:
    return (principal_label(row).casefold(), pipeline_label(row).casefold(), str(row.principal_id))


#: The default order's first key: quota met first, then rows with a coverage, no target last.
_RANK = {QUOTA_MET: 0, COVERAGE: 1, LEGACY: 1, NO_TARGET: 2}


def default_order(
    rows: Sequence[R], *, by_pipeline: bool, parents: Mapping[uuid.UUID, uuid.UUID] | None = None
) -> list[R]:
    """The order rows are shown in. By pipeline: grouped by principal (by name), then
    pipeline. Otherwise: quota met first, then the best coverage of the remaining
    quota, principals without a target last; ties by name. With the team tree of a
    rolled-up run (``parents``): the reps so, then the teams as a tree — each team
    followed by the teams below it, siblings in that order."""
    if by_pipeline:
        ordered = sorted(rows, key=_by_name)
    else:

        def key(row: R) -> tuple[int, Decimal, tuple[str, str, str]]:
            ratio = judged_ratio(row.values)
            return (_RANK[status(row.values)], -(ratio or Decimal(0)), _by_name(row))

        ordered = sorted(rows, key=key)
    if parents is None:
        return ordered
    teams = [row for row in ordered if row.principal_type == GROUP]
    return [row for row in ordered if row.principal_type != GROUP] + _as_tree(teams, parents)


def _shown_parent(
    team: uuid.UUID, parents: Mapping[uuid.UUID, uuid.UUID], present: set[uuid.UUID]
) -> uuid.UUID | None:
    """The nearest team above ``team`` that has a row (a team between them may have
    none); None at the top."""
    seen = {team}
    above = parents.get(team)
    while above is not None and above not in present and above not in seen:
        seen.add(above)
        above = parents.get(above)
    return above if above in present and above != team else None


def _as_tree(teams: list[R], parents: Mapping[uuid.UUID, uuid.UUID]) -> list[R]:
    """Teams' rows (in their order) as a tree, depth first; each team's rows (one per
    pipeline) together."""
    present = {row.principal_id for row in teams}
    rows_of: dict[uuid.UUID, list[R]] = {}
    for row in teams:
        rows_of.setdefault(row.principal_id, []).append(row)
    below: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for team in rows_of:
        below.setdefault(_shown_parent(team, parents, present), []).append(team)
    tree: list[R] = []
    done: set[uuid.UUID] = set()

    def walk(team: uuid.UUID) -> None:
        done.add(team)
        tree.extend(rows_of[team])
        for child in below.get(team, []):
            if child not in done:
                walk(child)

    for team in [*below.get(None, []), *rows_of]:  # (a cycle has no top: its teams last)
        if team not in done:
            walk(team)
    return tree


def team_parents(parameters: Mapping[str, Any]) -> dict[uuid.UUID, uuid.UUID] | None:
    """The team tree a rolled-up run recorded (each team's parent); None for a run
    without one (not rolled up, or stored before runs recorded it)."""
    recorded = parameters.get("team_parents") if parameters.get("rollup") else None
    if not isinstance(recorded, Mapping):
        return None
    return {uuid.UUID(str(team)): uuid.UUID(str(parent)) for team, parent in recorded.items()}


# --- flags and the exclusions report ------------------------------------------------------

#: What TARGET_PERIOD_MISMATCH says of a row (the exclusions report and the row's flag).
TARGET_MISMATCH = (
    "no target for exactly this period but targets overlapping it (use target_match=within, "
    "or the targets' own period)"
)
#: A row flag's short label and its explanation.
ROW_FLAGS = {
    "TARGET_PERIOD_MISMATCH": (
        "target period mismatch",
        TARGET_MISMATCH[0].upper() + TARGET_MISMATCH[1:],
    ),
    "TARGET_OVERLAP": (
        "overlapping targets",
        "target_match=within summed target rows whose periods overlap (a year's and its"
        " quarters'): the overlap counts twice; the exclusions report names them",
    ),
}


@dataclass(frozen=True)
class FlagNote:
    """A row flag as shown: its short label and what it means."""

    flag: str
    label: str
    description: str


def flag_note(flag: str) -> FlagNote:
    label, description = ROW_FLAGS.get(flag, (flag.lower().replace("_", " "), flag))
    return FlagNote(flag, label, description)


def exclusion_message(
    flag: str,
    count: int,
    amount: Decimal | None,
    no_rate: int,
    currency: str = "",
    detail: Sequence[str] = (),
) -> str:
    """The exclusions report's sentence for a flag, in the reporting currency. Deals
    without a rate are in no amount: the sentence names them apart, so that its count
    and its amount are of the same deals. ``detail``: TARGET_OVERLAP's rows, each with
    the overlapping target rows it summed."""
    one = count == 1
    if flag == "NO_RATE":
        return f"{count:,} deal{'' if one else 's'} {_without_rate(count)}"
    if flag == "TARGET_PERIOD_MISMATCH":  # counts rows, not deals: no amount
        return f"{count:,} row{'' if one else 's'} {'has' if one else 'have'} {TARGET_MISMATCH}"
    if flag == "OWNER_ASSUMED":  # any class of deal; amounts are not affected
        return (
            f"{count:,} deal{'' if one else 's'} {'takes' if one else 'take'} the owner"
            " known at the time: the CRM's history it comes from has no owner"
        )
    if flag == "TARGET_OVERLAP":  # rows, each naming the target rows it summed
        return (
            f"{count:,} row{'' if one else 's'} {'adds' if one else 'add'} up target rows"
            " whose periods overlap, counting the overlap twice (target_match=within"
            f" sums every target inside the period): {'; '.join(detail)}"
        )
    if flag not in _DEAL_FLAG_PHRASES:
        return f"{flag}: {count:,}"
    what, then = _DEAL_FLAG_PHRASES[flag]
    priced = count - no_rate
    if priced == 0:  # none of them has a rate: there is no amount to give
        return f"{_open_deals(count)} {what[not one]} but {_without_rate(count)}"
    worth = "" if flag == "NO_AMOUNT" or amount is None else (
        f" worth {amount:,.2f}{' ' + currency if currency else ''}"
    )  # fmt: skip
    sentence = f"{_open_deals(priced)}{worth} {what[priced != 1]}{then[priced != 1]}"
    if no_rate:
        sentence += f"; {no_rate:,} more {_without_rate(no_rate)}"
    return sentence


def _without_rate(count: int) -> str:
    """What the report says of ``count`` deals without a rate in force."""
    one = count == 1
    have, are = ("has", "is") if one else ("have", "are")
    return f"{have} no exchange rate in force and {are} left out"


def _open_deals(count: int) -> str:
    return f"{count:,} open deal{'' if count == 1 else 's'}"


#: Per deal flag of the exclusions report, for one deal and for several: what the
#: deals are, and what follows for those with a rate in force (the ones that count).
_DEAL_FLAG_PHRASES = {
    "UNDATED": (("has no close date", "have no close date"),
                (" and counts in no period", " and count in no period")),
    "NO_AMOUNT": (("in the period has no amount", "in the period have no amount"),
                  (" and counts as 0", " and count as 0")),
    "NO_PROBABILITY": (("sits in stages without a probability",
                        "sit in stages without a probability"),
                       (" and weighs 0", " and weigh 0")),
    "PAST_DUE": (("is past its close date", "are past their close date"),
                 (" and still counts as open", " and still count as open")),
}  # fmt: skip


# --- periods -----------------------------------------------------------------------------


def period_label(start: dt.date, end: dt.date, fiscal_year_start_month: int = 1) -> str:
    """The period's name in the tenant's calendar when one names it, and its first and
    last day, joined by an en dash (the end is exclusive): ``FY2027-Q1 · 2026-07-01
    \u2013 2026-09-30``."""
    from pipeline_coverage.periods import period_name  # (periods reads SHOWN_CHARS here)

    last = end - dt.timedelta(days=1)
    span = f"{start.isoformat()} \u2013 {last.isoformat()}"
    name = period_name(start, end, fiscal_year_start_month)
    return f"{name} · {span}" if name else span


# --- a row as shown ----------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """What is decided about one row of a run: its status, bands, place in the default
    order, labels and flag notes."""

    status: str
    #: The band of the coverage the row is judged by (:func:`judged_ratio`).
    band: str | None
    #: The band of its seed ``coverage_ratio``.
    coverage_band: str | None
    #: Its place in the default order, from 0.
    order: int
    principal_label: str
    pipeline_label: str
    label: str
    flag_notes: tuple[FlagNote, ...]
    #: In a rolled-up run's team tree: how many teams above it have a row (0 at the
    #: top, and for every row of a run without a tree) ...
    depth: int = 0
    #: ... and the nearest of them, by its label.
    parent_label: str | None = None


def shown_rows(
    rows: Sequence[R],
    *,
    by_pipeline: bool,
    bands: Bands,
    parents: Mapping[uuid.UUID, uuid.UUID] | None = None,
) -> list[tuple[R, Shown]]:
    """A run's rows in the default order, each with what is decided about it; with a
    rolled-up run's team tree (:func:`team_parents`), each team's place in it."""
    present = {row.principal_id for row in rows if row.principal_type == GROUP}
    labels = {row.principal_id: principal_label(row) for row in rows if row.principal_type == GROUP}

    def tree_place(row: R) -> tuple[int, str | None]:
        if parents is None or row.principal_type != GROUP:
            return 0, None
        above = _shown_parent(row.principal_id, parents, present)
        depth, seen = 0, {row.principal_id}
        while above is not None and above not in seen:
            seen.add(above)
            depth += 1
            above = _shown_parent(above, parents, present)
        parent = _shown_parent(row.principal_id, parents, present)
        return depth, labels[parent] if parent is not None else None

    shown = []
    for place, row in enumerate(default_order(rows, by_pipeline=by_pipeline, parents=parents)):
        values = row.values
        coverage = values.get("coverage_ratio")
        depth, parent_label = tree_place(row)
        shown.append(
            (
                row,
                Shown(
                    status=status(values),
                    band=bands.of(judged_ratio(values)),
                    coverage_band=bands.of(coverage if isinstance(coverage, Decimal) else None),
                    order=place,
                    principal_label=principal_label(row),
                    pipeline_label=pipeline_label(row),
                    label=row_label(row, by_pipeline=by_pipeline),
                    flag_notes=tuple(flag_note(flag) for flag in row.flags),
                    depth=depth,
                    parent_label=parent_label,
                ),
            )
        )
    return shown


def run_marks(parameters: Mapping[str, Any]) -> list[str]:
    """What sets a stored run apart from another of its period, in words: as recorded,
    rolled up, targets within the period."""
    marks = []
    if parameters.get("as_recorded"):
        marks.append(f"as recorded at the end of {parameters.get('as_of')}")
    if parameters.get("rollup"):
        marks.append("rolled up")
    if parameters.get("target_match") == "within":
        marks.append("targets within")
    return marks


# --- a movement's two ends ---------------------------------------------------------------

#: A movement row's two ends: run A's numbers (``start``) and run B's (``end``).
MOVEMENT_SIDES = ("start", "end")
#: What a movement shows of each end's coverage: the run table's own basis.
MOVEMENT_BASIS = "coverage of remaining quota"


def movement_end(values: Mapping[str, Value], side: str) -> dict[str, Value]:
    """One end of a movement row (``start``: run A's, ``end``: run B's) under the names
    of a run's row, so that it is judged as that run's row is: by the coverage of its
    remaining quota, quota met when its target is won."""
    return {
        "target_amount": values.get(f"{side}_target_amount"),
        "won_amount": values.get(f"{side}_won_amount"),
        "open_amount": values.get(f"{side}_amount"),
        "coverage_ratio": values.get(f"{side}_coverage_ratio"),
        "remaining_target": values.get(f"{side}_remaining_target"),
        "remaining_coverage_ratio": values.get(f"{side}_remaining_coverage_ratio"),
    }


@dataclass(frozen=True)
class EndShown:
    """One end of a movement row as shown: its status and band, as its run's row's; and
    its cell on :data:`MOVEMENT_BASIS` (a ratio, or ``quota met``, ``no target``)."""

    status: str
    band: str | None
    cell: RatioCell


def end_shown(values: Mapping[str, Value], bands: Bands) -> EndShown:
    """How an end (:func:`movement_end`, or a total of ends) is shown."""
    return EndShown(
        status=status(values),
        band=bands.of(judged_ratio(values)),
        cell=ratio_cell("remaining_coverage_ratio", values, bands),
    )


def calibration_notes(parameters: Mapping[str, Any]) -> dict[str, str]:
    """What a run's hit probabilities stand on, per principal type (SPEC.md §14), as
    the CLI prints under the table and the dashboard beside the 3x line: "needs 2.4x
    at week 6 for 80%", or why its rows have none. Empty for a run made before
    calibration existed."""
    note = parameters.get("calibration")
    if not isinstance(note, Mapping):
        return {}
    found: dict[str, str] = {}
    for kind in PRINCIPAL_TYPES:
        fit = note.get(kind) if "reason" not in note else {"reason": note["reason"]}
        if not isinstance(fit, Mapping):
            continue
        if fit.get("reason") is not None:
            found[kind] = f"no hit probability: {fit['reason']}"
            continue
        c80, c50 = Decimal(str(fit["coverage_80"])), Decimal(str(fit["coverage_50"]))
        weeks = fit.get("weeks") or [note.get("week")] * 2
        pooled = f", weeks {weeks[0]}-{weeks[1]} pooled" if weeks[0] != weeks[1] else ""
        found[kind] = (
            f"needs {c80:.1f}x at week {note.get('week')} for 80% (50% at {c50:.1f}x;"
            f" fitted on {fit.get('quarters')} quarters{pooled})"
        )
    return found
