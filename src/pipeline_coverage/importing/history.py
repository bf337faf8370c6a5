"""``import --history FILE``: the CRM's own field history of its deals (Salesforce's
``OpportunityHistory`` export) read as versions of the export's deals (SPEC.md §13).

Each line says what a deal's stage, amount, close date, probability and forecast
category became at its ``CreatedDate``. The lines are streamed by COPY into a temporary
table (:data:`LINES`) in the import's transaction, after the export's deals: a line's
deal is the export's deal of the same id (``OpportunityId``, through the id the import
derives from it) or, when the file names deals only, of the same name (any case).
Then, in SQL (``sql/queries/crm_history.sql``), each deal's lines are ordered by time
(then line) and each holds from its time to the next line's, the first from the deal's
created date when that is earlier, the last until the **clip**: the tenant's first
recorded export (``tenant.recorded_since``), from which on recorded history speaks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_coverage.db.connection import Cursor
from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.deals import DealFormat, _Unmapped, unmapped_problem
from pipeline_coverage.importing.tabular import Column, open_table
from pipeline_coverage.importing.values import (
    DateFormat,
    Problems,
    ValueProblem,
    cell_text,
    fold,
    parse_amount,
    parse_currency,
    parse_date,
    parse_moment,
    parse_probability,
    remembering,
    shown,
)
from pipeline_coverage.sql import query

_QUERIES = "crm_history"
#: The title problems name the file's kind by.
TITLE = "Salesforce OpportunityHistory"
#: A history's fields → the columns that may hold them (header names in any case).
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "id": ("OpportunityId", "Opportunity ID", "Opportunity.Id"),
    "name": ("OpportunityName", "Opportunity Name", "Opportunity.Name"),
    "at": ("CreatedDate", "Created Date"),
    "stage": ("StageName", "Stage"),
    "amount": ("Amount",),
    "close_date": ("CloseDate", "Close Date"),
    "probability": ("Probability", "Probability (%)"),
    "forecast_category": ("ForecastCategory", "ForecastCategoryName", "Forecast Category"),
    "currency": ("CurrencyIsoCode", "Currency"),
}
#: The fields every history file has (besides its deal's id or name).
REQUIRED = ("at", "stage", "amount", "close_date", "probability", "forecast_category")
_ISO = DateFormat("%Y-%m-%d")


@dataclass(frozen=True)
class HistoryRead:
    """A history file as read into :data:`LINES`."""

    file: str
    #: The column a line's deal is found by (an id column, else a name column).
    matched_by: str
    by_name: bool
    #: The column its stages come from (named in an unmapped stage's problem).
    stage_column: str
    lines: int


@dataclass(frozen=True)
class HistoryOutcome:
    """What a history import did: its lines used and skipped, the versions written."""

    file: str
    lines: int
    deals: int
    skipped_lines: int
    skipped_opportunities: int
    first_skipped_line: int | None
    #: versions written (from history lines, and a deal without any as it is now)
    versions: int
    #: the deals' versions end here at the latest: the tenant's first recorded export
    clip: dt.datetime


def _bind(columns: list[Column], names: tuple[str, ...]) -> Column | None:
    folded = {fold(name) for name in names}
    return next((column for column in columns if column.key in folded), None)


def stream_history(
    cur: Cursor,
    path: Path,
    fmt: DealFormat,
    *,
    at: dt.datetime,
    keyed_by_name: bool,
    key_column: str,
    deal_id_of: Callable[[str], str],
) -> HistoryRead:
    """Read the history file into :data:`LINES` (a deal's id, when the file has ids, is
    ``deal_id_of(id)``); :class:`LoadError` for every problem of the file, located: a
    missing column, a value that does not parse, a time after the import's ``at``, an
    unmapped forecast category. (Lines of deals not in the export are found later.)"""
    table = open_table(path)
    file = table.file
    try:
        columns = list(table.columns)
        bound = {name: _bind(columns, names) for name, names in COLUMNS.items()}
        missing = [
            f"{file}:1: {' or '.join(COLUMNS[name])}: missing column ({TITLE})"
            for name in REQUIRED
            if bound[name] is None
        ]
        id_column, name_column = bound["id"], bound["name"]
        if id_column is None and name_column is None:
            missing.insert(
                0,
                f"{file}:1: {' or '.join(COLUMNS['id'] + COLUMNS['name'])}: missing column"
                f" ({TITLE}: each line names its deal)",
            )
        elif name_column is None and keyed_by_name:
            assert id_column is not None
            missing.insert(
                0,
                f"{file}:1: {id_column.name}: the export's deals have no id (they are told"
                f" apart by {key_column}): add the id column to the export, or give the"
                f" history's {' or '.join(COLUMNS['name'])} column",
            )
        if missing:
            raise LoadError(missing)
        by_name = id_column is None or keyed_by_name
        key = name_column if by_name else id_column
        assert key is not None
        return _stream(cur, table.rows(), file, fmt, bound, key, by_name, at, deal_id_of)
    finally:
        table.close()


def _stream(
    cur: Cursor,
    rows: Any,
    file: str,
    fmt: DealFormat,
    bound: Mapping[str, Column | None],
    key: Column,
    by_name: bool,
    at: dt.datetime,
    deal_id_of: Callable[[str], str],
) -> HistoryRead:
    problems = Problems()
    unmapped = _Unmapped(label=_label(bound["forecast_category"]))
    date_format = fmt.date_format
    moment = remembering(lambda cell: parse_moment(cell, date_format))

    def close_date(cell: object) -> dt.date | None:
        try:
            return parse_date(cell, date_format)  # type: ignore[arg-type]
        except ValueProblem:
            if date_format.pattern == _ISO.pattern:
                raise
            return parse_date(cell, _ISO)  # type: ignore[arg-type]

    parsers: dict[str, Callable[[Any], Any]] = {
        "at": moment,
        "amount": parse_amount,
        "close_date": remembering(close_date),
        "probability": remembering(parse_probability),
        "currency": remembering(parse_currency),
    }
    ids: dict[str, str] = {}
    count = 0
    cur.execute(query(_QUERIES, "create_history_lines"))
    copier: Any = cur
    try:
        with copier.copy(query(_QUERIES, "copy_history_lines")) as copy:
            for row in rows:
                if row.blank:
                    continue
                count += 1
                line = row.line
                if row.problems:
                    for column, reason in row.problems:
                        problems.add(file, line, column, reason)
                    continue
                cells = row.cells

                def cell(name: str, cells: tuple[Any, ...] = cells) -> Any:
                    column = bound[name]
                    if column is None or column.index >= len(cells):
                        return None
                    return cells[column.index]

                values: dict[str, Any] = {}
                bad = False
                for name, parse in parsers.items():
                    if bound[name] is None:
                        values[name] = None
                        continue
                    try:
                        values[name] = parse(cell(name))
                    except ValueProblem as problem:
                        problems.add(file, line, _label(bound[name]), str(problem))
                        bad = True
                opportunity = cell_text(cell("name" if by_name else "id"))
                stage = cell_text(cell("stage"))
                if not opportunity:
                    problems.add(file, line, key.name, "blank (every line names its deal)")
                    bad = True
                if not stage:
                    problems.add(
                        file, line, _label(bound["stage"]), "blank (every line needs its stage)"
                    )
                    bad = True
                when: dt.datetime | None = values["at"]
                if when is None and bound["at"] is not None and not bad:
                    problems.add(
                        file, line, _label(bound["at"]), "blank (every line needs its time)"
                    )
                    bad = True
                elif when is not None and when > at:
                    problems.add(
                        file, line, _label(bound["at"]),
                        f"{_shown_time(when)}: in the future (the import's time is"
                        f" {_shown_time(at)})",
                    )  # fmt: skip
                    bad = True
                category = None
                written = cell_text(cell("forecast_category"))
                if written:
                    folded = fold(written)
                    if folded in fmt.categories:
                        category = fmt.categories[folded]
                    else:
                        unmapped.add(written, line)
                        bad = True
                if bad or problems:
                    continue
                deal_id = None
                if not by_name:
                    deal_id = ids.get(opportunity)
                    if deal_id is None:
                        deal_id = ids[opportunity] = deal_id_of(opportunity)
                copy.write_row((
                    line, opportunity, deal_id, when, stage, values["amount"],
                    values["close_date"], values["probability"], category, values["currency"],
                ))  # fmt: skip
    except LoadError as exc:  # a malformed record ends the reading
        for malformed in exc.problems:
            problems.add_first(malformed)
    if unmapped.counts:
        problems.first.insert(0, unmapped_problem(file, fmt, "forecast_category", unmapped))
        problems.total += 1
    problems.raise_if_any()
    cur.execute(query(_QUERIES, "analyze_history_lines"))
    return HistoryRead(
        file=file, matched_by=key.name, by_name=by_name,
        stage_column=_label(bound["stage"]), lines=count,
    )  # fmt: skip


def _label(column: Column | None) -> str:
    return column.name if column is not None else ""


def _shown_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def match_history(cur: Cursor, read: HistoryRead) -> None:
    """Find each line's deal among the export's by name (when the file names deals
    only); :class:`LoadError` for a line whose name several of the export's deals
    bear."""
    if not read.by_name:
        return
    cur.execute(query(_QUERIES, "history_names_of_several_deals"))
    found = cur.fetchall()
    if found:
        problems = Problems()
        for line, opportunity, deals in found:
            problems.add(
                read.file, int(line), read.matched_by,
                f"{shown(str(opportunity))} is the name of {int(deals)} deals of the export:"
                " give the history's OpportunityId to tell them apart",
            )  # fmt: skip
        problems.raise_if_any()
    cur.execute(query(_QUERIES, "match_history_names"))


@dataclass(frozen=True)
class Unmatched:
    lines: int
    opportunities: int
    first_line: int | None


def unmatched(cur: Cursor) -> Unmatched:
    """The lines of opportunities the export does not have (skipped, counted)."""
    cur.execute(query(_QUERIES, "history_unmatched"))
    lines, opportunities, first = cur.fetchone()
    return Unmatched(int(lines), int(opportunities), int(first) if first is not None else None)


def history_stages(cur: Cursor) -> list[tuple[int, str, int, int | None]]:
    """(kind of deal, stage as written, first line, probability of that line) for each
    stage the matched lines name within each kind of the export's deals."""
    cur.execute(query(_QUERIES, "history_stages_named"))
    return [
        (int(kind), str(stage), int(line), None if probability is None else int(probability))
        for kind, stage, line, probability in cur.fetchall()
    ]


def set_history_stages(cur: Cursor, stages: list[tuple[int, str, str, bool]]) -> None:
    """Each (kind, stage as written) → (stage id, closed) for the versions' SQL."""
    cur.execute(query(_QUERIES, "drop_history_stages"))
    cur.execute(
        query(_QUERIES, "create_history_stages"),
        {"kinds": [kind for kind, _, _, _ in stages], "stages": [s for _, s, _, _ in stages],
         "ids": [i for _, _, i, _ in stages], "closed": [c for _, _, _, c in stages]},
    )  # fmt: skip


def write_versions(
    cur: Cursor, tenant_id: str, at: dt.datetime, read: HistoryRead, skipped: Unmatched
) -> HistoryOutcome:
    """Replace the CRM-history versions of the export's deals (after the import wrote
    its deals): each line holds until the next line of its deal, the last until the
    clip; a deal without lines is as it is now from its created date (from always
    without one). A value recorded as known since always is, for these deals, known
    from the clip on: the CRM's history speaks of the time before."""
    cur.execute(query(_QUERIES, "tenant_clip"), {"tenant_id": tenant_id, "at": at})
    clip = cur.fetchone()[0]
    params = {"tenant_id": tenant_id, "clip": clip}
    cur.execute(query(_QUERIES, "drop_crm_versions"), params)
    cur.execute(query(_QUERIES, "drop_recorded_before_clip"), params)
    cur.execute(query(_QUERIES, "recorded_from_clip"), params)
    cur.execute(query(_QUERIES, "deals_recorded_from_clip"), params)
    cur.execute(query(_QUERIES, "write_crm_versions"), params)
    versions = int(cur.fetchone()[0])
    cur.execute(query(_QUERIES, "history_lines_used"))
    lines, deals = cur.fetchone()
    return HistoryOutcome(
        file=read.file, lines=int(lines), deals=int(deals), skipped_lines=skipped.lines,
        skipped_opportunities=skipped.opportunities, first_skipped_line=skipped.first_line,
        versions=versions, clip=clip,
    )  # fmt: skip


def history_summary(outcome: HistoryOutcome, *, dry_run: bool) -> list[str]:
    """The summary's lines of a history import."""
    line = f"history: {outcome.lines:,} lines, {outcome.deals:,} deals"
    if outcome.skipped_lines:
        s = "s" if outcome.skipped_opportunities != 1 else ""
        line += (
            f"; {outcome.skipped_lines:,} lines of {outcome.skipped_opportunities:,}"
            f" opportunit{'ies' if s else 'y'} not in the export skipped"
            f" (first at line {outcome.first_skipped_line})"
        )
    would = "would be " if dry_run else ""
    return [
        line,
        f"history versions: {outcome.versions:,} {would}written, up to"
        f" {_shown_time(outcome.clip)} (the tenant's first export: recorded history from"
        " then on)",
    ]


__all__ = [
    "COLUMNS",
    "HistoryOutcome",
    "HistoryRead",
    "Unmatched",
    "history_stages",
    "history_summary",
    "match_history",
    "set_history_stages",
    "stream_history",
    "unmatched",
    "write_versions",
]
