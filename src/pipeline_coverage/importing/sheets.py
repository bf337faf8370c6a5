"""The import's side files (SPEC.md §12): the targets file (a quota sheet) and the
teams file, read into records with their lines; problems raised once, as ``load``'s.

- **Targets**, long: ``principal,period,amount[,type][,pipeline]``, one target a row;
  or wide: ``principal,<period>,<period>,...`` (optional ``type`` and ``pipeline``
  columns too), every other header a period expression of SPEC.md §10 in the
  tenant's fiscal calendar (``FY2027-Q1``, ``2026-Q3``, ``2026-11``), an empty cell no
  target. Relative periods (``this-quarter``) are refused: a sheet must mean the same
  whenever it is imported. Amounts may carry ``,`` thousands separators. ``type`` is
  ``rep``/``user`` or ``team``/``group`` (empty: told by the name). The same
  principal, period and pipeline twice is an error naming both lines.
- **Teams**: ``rep,team[,parent_team]`` (or the mapping's columns), a membership a
  row; a team's parent must be the same on every line of the team, and parents may
  not make a cycle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pipeline_coverage.errors import LoadError, ValidationError
from pipeline_coverage.importing.deals import TeamColumns
from pipeline_coverage.importing.tabular import Row, Table, open_table
from pipeline_coverage.importing.values import (
    Problems,
    ValueProblem,
    cell_text,
    fold,
    parse_amount,
    shown,
)
from pipeline_coverage.periods import RELATIVE, resolve_period

_TYPES = {"user": "USER", "rep": "USER", "group": "GROUP", "team": "GROUP"}


@dataclass(frozen=True)
class SheetTarget:
    """A target of the sheet: a principal by name (its type when the sheet gives one),
    a half-open period ``[period_start, period_end)``, an amount, maybe a pipeline."""

    line: int
    principal: str
    principal_type: str | None  # "USER", "GROUP" or None (told by the name)
    period_start: dt.date
    period_end: dt.date
    amount: Decimal
    pipeline: str | None
    #: The period as the sheet names it (``FY2027-Q1``).
    period: str


@dataclass(frozen=True)
class Membership:
    line: int
    rep: str
    team: str


@dataclass(frozen=True)
class TeamParent:
    """A team's parent team, from the team's first line."""

    line: int
    team: str
    parent: str


@dataclass(frozen=True)
class Teams:
    memberships: tuple[Membership, ...]
    parents: tuple[TeamParent, ...]


def readable_rows(table: Table, problems: Problems) -> Iterator[Row]:
    """The table's rows that are not blank and were read without a problem (a row's
    problems are recorded, and the row left out)."""
    for row in table.rows():
        if row.blank:
            continue
        for column_name, reason in row.problems:
            problems.add(table.file, row.line, column_name, reason)
        if not row.problems:
            yield row


def read_targets(
    path: Path | str, *, fiscal_year_start_month: int = 1, sheet: str | None = None
) -> list[SheetTarget]:
    """Every target of a quota sheet, long or wide (told by its header). Raises
    :class:`LoadError` listing the problems (``targets.csv:4: amount: ...``)."""
    with open_table(path, sheet=sheet) as table:
        if table.column("principal") is None:
            raise LoadError([f"{table.file}:1: principal: missing column"])
        if table.column("period") is not None or table.column("amount") is not None:
            return _long(table, fiscal_year_start_month)
        return _wide(table, fiscal_year_start_month)


def _period(text: str, month: int) -> tuple[dt.date, dt.date]:
    if text.strip() in RELATIVE:
        raise ValueProblem(
            f"{shown(text)} is relative to the day it is read: name the period "
            "(FY2027-Q1, 2026-Q3, 2026-11, ...)"
        )
    try:
        return resolve_period(text, fiscal_year_start_month=month)
    except ValidationError as exc:
        raise ValueProblem(str(exc).removeprefix("period: ")) from None


def _type(text: str) -> str | None:
    if not text:
        return None
    try:
        return _TYPES[fold(text)]
    except KeyError:
        raise ValueProblem(f"must be rep or team (user or group), got {shown(text)}") from None


def _long(table: Table, month: int) -> list[SheetTarget]:
    problems = Problems()
    for name in ("period", "amount"):
        if table.column(name) is None:
            problems.add(table.file, 1, name, "missing column (principal,period,amount)")
    problems.raise_if_any()
    known = {"principal", "period", "amount", "type", "pipeline"}
    for column in table.columns:
        if column.key not in known:
            problems.add(
                table.file,
                1,
                column.name,
                "unknown column (principal,period,amount[,type][,pipeline])",
            )
    targets = []
    for row in readable_rows(table, problems):
        principal = cell_text(row.values.get("principal"))
        period_text = cell_text(row.values.get("period"))
        bad = False
        if not principal:
            problems.add(table.file, row.line, _name(table, "principal"), "blank")
            bad = True
        try:
            start, end = _period(period_text, month)
        except ValueProblem as problem:
            problems.add(table.file, row.line, _name(table, "period"), str(problem))
            bad = True
        try:
            amount = parse_amount(row.values.get("amount"), thousands=True)
            if amount is None:
                raise ValueProblem("blank (a target needs an amount)")
        except ValueProblem as problem:
            problems.add(table.file, row.line, _name(table, "amount"), str(problem))
            bad = True
        try:
            kind = _type(cell_text(row.values.get("type")))
        except ValueProblem as problem:
            problems.add(table.file, row.line, _name(table, "type"), str(problem))
            bad = True
        if not bad:
            targets.append(
                SheetTarget(
                    row.line,
                    principal,
                    kind,
                    start,
                    end,
                    amount,  # type: ignore[arg-type]
                    cell_text(row.values.get("pipeline")) or None,
                    period_text,
                )
            )
    _duplicates(table.file, targets, problems)
    problems.raise_if_any()
    return targets


def _name(table: Table, key: str) -> str:
    column = table.column(key)
    return column.name if column else key


def _wide(table: Table, month: int) -> list[SheetTarget]:
    problems = Problems()
    periods = []
    for column in table.columns:
        if column.key in ("principal", "type", "pipeline"):
            continue
        try:
            start, end = _period(column.name, month)
        except ValueProblem as problem:
            problems.add(
                table.file,
                1,
                column.name,
                f"not a period ({problem}); a wide sheet's headers are principal and periods",
            )
            continue
        periods.append((column, start, end))
    problems.raise_if_any()
    targets = []
    for row in readable_rows(table, problems):
        principal = cell_text(row.values.get("principal"))
        try:
            kind = _type(cell_text(row.values.get("type")))
        except ValueProblem as problem:
            problems.add(table.file, row.line, _name(table, "type"), str(problem))
            continue
        pipeline = cell_text(row.values.get("pipeline")) or None
        for column, start, end in periods:
            try:
                amount = parse_amount(row.values.get(column.key), thousands=True)
            except ValueProblem as problem:
                problems.add(table.file, row.line, column.name, str(problem))
                continue
            if amount is None:
                continue
            if not principal:
                problems.add(table.file, row.line, _name(table, "principal"), "blank")
                break
            targets.append(
                SheetTarget(row.line, principal, kind, start, end, amount, pipeline, column.name)
            )
    _duplicates(table.file, targets, problems)
    problems.raise_if_any()
    return targets


def _duplicates(file: str, targets: list[SheetTarget], problems: Problems) -> None:
    first: dict[tuple[str, str | None, dt.date, dt.date, str], SheetTarget] = {}
    for target in targets:
        key = (
            fold(target.principal),
            target.principal_type,
            target.period_start,
            target.period_end,
            fold(target.pipeline or ""),
        )
        if key in first:
            earlier = first[key]
            problems.add(
                file,
                target.line,
                None,
                f"a second target for {shown(target.principal)}, {target.period} "
                f"({target.period_start} to {target.period_end})"
                + (f", pipeline {shown(target.pipeline)}" if target.pipeline else "")
                + f" (also line {earlier.line}, {earlier.period})",
            )
        else:
            first[key] = target


def read_teams(
    path: Path | str, columns: TeamColumns | None = None, *, sheet: str | None = None
) -> Teams:
    """The memberships and team parents of a teams file. Raises :class:`LoadError`:
    a blank rep or team, a team given two parents, parents making a cycle
    (``teams.csv:4: parent_team: makes a cycle: East -> West -> East``)."""
    columns = columns or TeamColumns()
    with open_table(path, sheet=sheet) as table:
        problems = Problems()
        for key in (columns.rep, columns.team):
            if table.column(key) is None:
                problems.add(table.file, 1, key, "missing column")
        problems.raise_if_any()
        rep_column = _name(table, columns.rep)
        team_column = _name(table, columns.team)
        parent_column = table.column(columns.parent_team)
        memberships: list[Membership] = []
        parents: dict[str, TeamParent] = {}
        names: dict[str, str] = {}  # a team's folded name → as first written
        seen: dict[tuple[str, str], int] = {}
        for row in readable_rows(table, problems):
            rep = cell_text(row.values.get(fold(columns.rep)))
            team = cell_text(row.values.get(fold(columns.team)))
            if not rep:
                problems.add(table.file, row.line, rep_column, "blank")
            if not team:
                problems.add(table.file, row.line, team_column, "blank")
            if not rep or not team:
                continue
            team = names.setdefault(fold(team), team)
            pair = (fold(rep), fold(team))
            if pair in seen:
                problems.add(
                    table.file,
                    row.line,
                    None,
                    f"{shown(rep)} in {shown(team)} again (also line {seen[pair]})",
                )
                continue
            seen[pair] = row.line
            memberships.append(Membership(row.line, rep, team))
            if parent_column is None:
                continue
            parent = cell_text(row.values.get(parent_column.key))
            parent = names.setdefault(fold(parent), parent) if parent else ""
            earlier = parents.get(fold(team))
            if earlier is None:
                parents[fold(team)] = TeamParent(row.line, team, parent)
            elif fold(earlier.parent) != fold(parent):
                problems.add(
                    table.file,
                    row.line,
                    parent_column.name,
                    f"{shown(team)}'s parent is {shown(parent) if parent else 'none'} here, "
                    f"{shown(earlier.parent) if earlier.parent else 'none'} on line {earlier.line}"
                    " (a team has one parent)",
                )
        problems.raise_if_any()
        _cycles(table.file, parent_column.name if parent_column else "", parents, problems)
        problems.raise_if_any()
        return Teams(
            tuple(memberships),
            tuple(parent for parent in parents.values() if parent.parent),
        )


def _cycles(file: str, column: str, parents: dict[str, TeamParent], problems: Problems) -> None:
    reported: set[str] = set()
    for start in parents:
        path: list[str] = []
        current: str | None = start
        while current is not None and current not in path:
            path.append(current)
            parent = parents.get(current)
            current = fold(parent.parent) if parent and parent.parent else None
        if current is None or current in reported:
            continue
        cycle = path[path.index(current) :]
        for index, team in enumerate(cycle):
            reported.add(team)
            rotation = cycle[index:] + cycle[:index]
            shown_cycle = " -> ".join(parents[name].team for name in [*rotation, team])
            problems.add(file, parents[team].line, column, f"makes a cycle: {shown_cycle}")
