"""A CRM export's deals, read into normalized records through a format (a preset of
:mod:`.presets` or a mapping file of :mod:`.mapping`), with their source lines.

A :class:`DealFormat` says which column (or template of columns) holds each field of a
deal, how a deal's state is told (its stage, a status column, or Salesforce's
``IsWon``/``IsClosed``), the value maps for stages, statuses and forecast categories,
and how dates are written. :class:`DealReader` streams the file through it: each good
row becomes an :class:`ExportDeal`; every problem is collected and raised once, as a
:class:`~pipeline_coverage.errors.LoadError`, after the last row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.tabular import Row, open_table
from pipeline_coverage.importing.values import (
    REMEMBERED_TEXTS,
    Cell,
    DateFormat,
    Problems,
    ValueProblem,
    cell_text,
    fold,
    parse_amount,
    parse_bool,
    parse_currency,
    parse_date,
    parse_moment,
    parse_probability,
    remembering,
    shown,
)

State = Literal["open", "won", "lost"]
_T = TypeVar("_T")
STATES: tuple[State, ...] = ("open", "won", "lost")
#: A status mapped to ``skip`` leaves its deals out (counted): Pipedrive's ``deleted``.
SKIP = "skip"
CATEGORIES = ("COMMIT", "BEST_CASE", "PIPELINE", "OMITTED")

#: The fields a format may read, in the order problems and docs name them.
FIELDS = (
    "key",
    "name",
    "owner",
    "stage",
    "status",
    "is_won",
    "is_closed",
    "amount",
    "currency",
    "close_date",
    "won_date",
    "lost_date",
    "forecast_category",
    "probability",
    "pipeline",
    "created_date",
)

#: Forecast categories as CRMs write them (folded) → the category (None: no category).
FORECAST_CATEGORIES: Mapping[str, str | None] = {
    "pipeline": "PIPELINE",
    "bestcase": "BEST_CASE",
    "best case": "BEST_CASE",
    "best_case": "BEST_CASE",
    "forecast": "COMMIT",
    "commit": "COMMIT",
    "omitted": "OMITTED",
    "not forecasted": "OMITTED",
    "closed": None,
    "closed won": None,
}


class ExportDeal(NamedTuple):
    """One deal of an export, normalized. ``state`` is the deal's own (a won Pipedrive
    deal may sit in any stage); ``close_date`` is the close date of a won or lost deal,
    the expected close date of an open one; ``probability`` is 0-100."""

    line: int
    key: str
    name: str
    owner: str | None
    stage: str
    state: State
    amount: Decimal | None
    currency: str | None
    close_date: dt.date | None
    forecast_category: str | None
    probability: int | None
    pipeline: str
    #: When the deal was created in the CRM (read only for ``import --history``).
    created: dt.datetime | None = None
    #: The digest of its row (with :attr:`DealReader.known`; None for a workbook's).
    digest: int | None = None


class KnownRows:
    """Rows an import has read before: the digests of the export rows whose deals are
    stored as those rows gave them. A row of a CSV export whose digest is found is not
    read again (it is counted in :attr:`unchanged`, and its digest leaves
    :attr:`stored`: a second such row is read in full); every other row's digest goes
    with its deal, to be stored with it.

    ``fingerprint`` holds everything besides the row that makes its deal (the tenant,
    the source, the format, the header, this version of the reader): with another one,
    no row is found. A row's digest is 64 bits of BLAKE2b over its cells, as a signed
    integer (a ``bigint``): a million of them take 9 MB here. Two rows of an
    export tell apart at the odds of 2^-64 a pair; were a changed row to take the
    digest of another stored deal, that deal's own row is then read in full and found
    read twice, and the import reads every row again."""

    __slots__ = ("_base", "_matched", "_stored", "unchanged")

    def __init__(self, fingerprint: bytes, stored: array[int]) -> None:
        self._base = hashlib.blake2b(fingerprint, digest_size=8)
        # Sorted, searched by bisection: 8 bytes a digest (a set of a million ints would
        # take about 70 MB), and a byte each for whether a row matched it.
        self._stored = stored  # (in order: the database sorts them)
        self._matched = bytearray(len(self._stored))
        self.unchanged = 0

    def take(self, digest: int) -> bool:
        """Whether a stored row has this digest and no row took it yet (it is taken now:
        a second such row is read in full)."""
        stored = self._stored
        at = bisect_left(stored, digest)
        if at == len(stored) or stored[at] != digest or self._matched[at]:
            return False
        self._matched[at] = 1
        self.unchanged += 1
        return True

    def unmatched(self) -> Iterator[int]:
        """The stored digests no row took."""
        matched = self._matched
        return (digest for at, digest in enumerate(self._stored) if not matched[at])

    def digest(self, cells: Sequence[str]) -> int:
        joined = "\x1f".join(cells)
        if joined.count("\x1f") != len(cells) - 1:  # a cell holds the separator
            joined = repr(tuple(cells))
        digest = self._base.copy()
        digest.update(joined.encode("utf-8", "surrogatepass"))
        return int.from_bytes(digest.digest(), "big", signed=True)


@dataclass(frozen=True)
class StageGiven:
    """A stage as the export and its format give it: its state (the format's for the
    stage, else its deals' when they agree and no status column gives each deal its
    own, else open) and its probability (the
    format's default or mapping's for the stage; None when neither gives one)."""

    state: State
    probability: int | None


@dataclass(frozen=True)
class ReadSummary:
    """What a read did besides its deals."""

    file: str
    format: str
    #: The column the deals' keys come from (a name column when the export has no id).
    key_column: str
    keyed_by_name: bool
    rows: int
    deals: int
    #: Deals left out, by reason (``"Deal - Status deleted": 3``).
    skipped: Mapping[str, int]
    #: Lines of a recognised report footer (Salesforce's), skipped.
    footer_lines: int
    #: Header columns the format does not use, as written.
    ignored_columns: tuple[str, ...]
    #: ``(pipeline, stage)`` → the stage as given, in the order first seen.
    stages: Mapping[tuple[str, str], StageGiven]


@dataclass(frozen=True)
class TeamColumns:
    """The teams file's columns (a mapping file may rename them)."""

    rep: str = "rep"
    team: str = "team"
    parent_team: str = "parent_team"


@dataclass(frozen=True)
class DealFormat:
    """How to read one kind of export (see the module's docstring)."""

    name: str
    title: str
    #: field → the columns that may hold it, first present wins; a name holding
    #: ``{column}`` is a template of columns.
    columns: Mapping[str, tuple[str, ...]]
    #: Fields that must be found in the header (what format detection checks).
    required: tuple[str, ...]
    date_format: DateFormat
    #: Without a key column, deals are keyed by their name (duplicates are an error).
    key_falls_back_to_name: bool = False
    #: Folded stage → its state; with ``every_stage_mapped`` a stage not listed is an
    #: unmapped value, else it is open.
    stage_states: Mapping[str, State] = field(default_factory=dict)
    every_stage_mapped: bool = False
    #: Folded stage → probability 0-100, used when a deal has none.
    stage_probabilities: Mapping[str, int] = field(default_factory=dict)
    #: Folded status → state or ``skip`` (with a status column).
    statuses: Mapping[str, str] = field(default_factory=dict)
    categories: Mapping[str, str | None] = field(default_factory=lambda: FORECAST_CATEGORIES)
    #: 100 when probabilities are written 0-1.
    probability_scale: int = 1
    default_pipeline: str = "Sales"
    #: Recognise and skip Salesforce's report footer.
    footer: bool = False
    #: Fields whose column must be in the header (those a mapping file names).
    strict_fields: frozenset[str] = frozenset()
    #: Where a fix for an unmapped value goes: a mapping file's name, or None for a preset.
    mapping_file: str | None = None
    teams: TeamColumns = field(default_factory=TeamColumns)

    def with_date_format(self, pattern: str | None) -> DealFormat:
        """The format with ``--date-format`` (a ``strptime`` pattern) when given."""
        if pattern is None:
            return self
        return replace(self, date_format=replace(self.date_format, pattern=pattern))

    def missing(self, keys: set[str] | tuple[str, ...]) -> list[str]:
        """The required columns a header (its folded names) lacks, as ``A or B``."""
        return [columns for _, columns in self.missing_fields(keys)]

    def missing_fields(self, keys: set[str] | tuple[str, ...]) -> list[tuple[str, str]]:
        """``(field, its columns as A or B)`` for each required field a header lacks."""
        present = set(keys)
        missing = []
        for name in self.required:
            candidates = self.columns.get(name, ())
            if name == "key" and self.key_falls_back_to_name:
                candidates = candidates + self.columns.get("name", ())
            if not any(_available(candidate, present) for candidate in candidates):
                missing.append((name, " or ".join(candidates)))
        return missing


# --- templates ------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """``"{product} / {account}"``: literal text and columns (``{{``/``}}`` are braces)."""

    text: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for _, column in self.parts if column is not None)

    def render(self, values: Mapping[str, Cell]) -> str:
        """The template filled in; empty when every column it names is empty."""
        texts = {column: cell_text(values.get(fold(column))) for column in self.columns}
        if not any(texts.values()):
            return ""
        return "".join(
            literal + (texts[column] if column is not None else "")
            for literal, column in self.parts
        ).strip()


def parse_template(text: str) -> Template | None:
    """The template ``text`` is, or None when it names no column (a plain column name).
    Raises :class:`ValueError` for a malformed one."""
    if "{" not in text and "}" not in text:
        return None
    parts: list[tuple[str, str | None]] = []
    for literal, column, spec, conversion in string.Formatter().parse(text):
        if column is not None and (spec or conversion):
            raise ValueError(f"{{{column}}}: a template names columns only, no format")
        if column is not None and not column.strip():
            raise ValueError("{}: a template's braces name a column")
        parts.append((literal, column.strip() if column is not None else None))
    template = Template(text, tuple(parts))
    if not template.columns:
        return None
    return template


def _available(candidate: str, present: set[str]) -> bool:
    template = _template(candidate)
    if template is None:
        return fold(candidate) in present
    return all(fold(column) in present for column in template.columns)


def _template(candidate: str) -> Template | None:
    try:
        return parse_template(candidate)
    except ValueError:
        return None


# --- reading --------------------------------------------------------------------


@dataclass(frozen=True)
class _Bound:
    """A field bound to the header: its label in problems and how to read it."""

    label: str
    columns: tuple[str, ...]  # the header names it uses, as written
    get: Callable[[Row], Cell]
    #: The column's position, for a plain column (not a template).
    index: int | None = None


_FOOTER_COPYRIGHT = re.compile(r"copyright \(c\).*salesforce\.com", re.IGNORECASE)
_FOOTER_MOST_LINES = 10


@dataclass
class _Unmapped:
    counts: Counter[str] = field(default_factory=Counter)
    first_line: dict[str, int] = field(default_factory=dict)
    label: str = ""

    def add(self, value: str, line: int) -> None:
        self.counts[value] += 1
        self.first_line.setdefault(value, line)


_DATE_FIELDS = ("close_date", "won_date", "lost_date")


@dataclass(frozen=True)
class _KindRead:
    """What a combination of a deal's kind cells read as (see :meth:`DealReader._deal`)."""

    stage: str
    state: State
    currency: str | None
    category: str | None
    probability: int | None
    pipeline: str
    #: The field its date is read from (None: the format reads no date).
    date_field: str | None = None


class DealReader:
    """Read ``path`` through ``fmt``: iterate for the deals (streamed, in file order);
    after the last one, :class:`LoadError` if anything was wrong (iterate inside the
    transaction that writes them), else :attr:`summary` is set.

    With ``created``, the deals' created dates are read too (the format's
    ``created_date`` column, when the export has it); else that column is ignored.

    Raises :class:`LoadError` on opening for a bad header or missing columns.
    """

    def __init__(
        self,
        path: Path | str,
        fmt: DealFormat,
        *,
        sheet: str | None = None,
        track_duplicates: bool = True,
        created: bool = False,
    ) -> None:
        self.format = fmt
        self._read_created = created
        #: Whether the reader keeps every key to find those given twice; a caller that
        #: stores the deals finds them there instead, and hands them to :meth:`finish`.
        self._track_duplicates = track_duplicates
        self._table = open_table(path, sheet=sheet)
        self._file = self._table.file
        try:
            self._bind()
        except BaseException:
            self._table.close()
            raise
        self._summary: ReadSummary | None = None
        #: Rows read before, left unread (set by the caller before :meth:`stream`).
        self.known: KnownRows | None = None

    @property
    def file(self) -> str:
        return self._table.file

    @property
    def header(self) -> tuple[tuple[int, str], ...]:
        """The header's columns: each one's position and name as written."""
        return tuple((column.index, column.name) for column in self._table.columns)

    @property
    def digested(self) -> bool:
        """Whether rows are digested (:attr:`known` set, a CSV export)."""
        return self.known is not None and self._table.kind == "csv"

    @property
    def created_column(self) -> str | None:
        """The column the deals' created dates are read from (None: not read)."""
        bound = self._fields.get("created_date")
        return bound.label if bound else None

    @property
    def summary(self) -> ReadSummary:
        if self._summary is None:
            raise RuntimeError("the summary is known once every deal was read")
        return self._summary

    def _bind(self) -> None:
        table, fmt = self._table, self.format
        missing = [
            columns
            for name, columns in fmt.missing_fields(table.keys)
            if name not in fmt.strict_fields  # (named below, column by column)
        ]
        if missing:
            raise LoadError(
                [f"{table.file}:1: {name}: missing column ({fmt.title})" for name in missing]
            )
        bound: dict[str, _Bound] = {}
        problems = []
        for name in FIELDS:
            if name == "created_date" and not self._read_created:
                continue
            candidates = fmt.columns.get(name, ())
            chosen = next((c for c in candidates if _available(c, set(table.keys))), None)
            if chosen is None and name in fmt.strict_fields and candidates:
                template = _template(candidates[0])
                absent = (
                    [c for c in template.columns if table.column(c) is None]
                    if template
                    else [candidates[0]]
                )
                problems += [
                    f"{table.file}:1: {column}: missing column (the {name} of "
                    f"{fmt.mapping_file or fmt.title})"
                    for column in absent
                ]
            if chosen is not None:
                bound[name] = self._bound(chosen)
        if problems:
            raise LoadError(problems)
        self._key_by_name = "key" not in bound
        if self._key_by_name:
            bound["key"] = bound["name"]
        self._fields = bound
        date_format, scale = fmt.date_format, fmt.probability_scale
        #: Each parsed field's parser, remembering what it said of each text.
        self._parsers: dict[str, Callable[[Cell], object]] = {
            "is_won": remembering(parse_bool),
            "is_closed": remembering(parse_bool),
            "amount": parse_amount,
            "currency": remembering(parse_currency),
            "close_date": remembering(lambda cell: parse_date(cell, date_format)),
            "probability": remembering(lambda cell: parse_probability(cell, scale)),
            "created_date": remembering(lambda cell: parse_moment(cell, date_format)),
        }
        for name in ("won_date", "lost_date"):
            self._parsers[name] = self._parsers["close_date"]
        # A row's fields are picked from its cells in one step (see _picked): a plain
        # column by its index, a template filled in after, a field not read as the
        # None past the header's last cell.
        self._width = len(table.columns) and max(c.index for c in table.columns) + 1
        positions, self._templates = [], []
        for position, name in enumerate(FIELDS):
            field_bound = bound.get(name)
            if field_bound is not None and field_bound.index is not None:
                positions.append(field_bound.index)
            else:
                positions.append(self._width)
                if field_bound is not None:
                    self._templates.append((position, field_bound))
        self._pick = itemgetter(*positions)
        used = {fold(column) for item in bound.values() for column in item.columns}
        self._ignored = tuple(column.name for column in table.columns if column.key not in used)

    def _bound(self, candidate: str) -> _Bound:
        template = _template(candidate)
        if template is None:
            column = self._table.column(candidate)
            assert column is not None
            index = column.index

            def cell(row: Row) -> Cell:
                cells = row.cells
                return cells[index] if index < len(cells) else None

            return _Bound(column.name, (column.name,), cell, index)
        names = tuple(
            self._table.column(name).name  # type: ignore[union-attr]
            for name in template.columns
        )
        return _Bound(template.text, names, lambda row: template.render(row.values))

    def close(self) -> None:
        self._table.close()

    def __iter__(self) -> Iterator[ExportDeal]:
        yield from self.stream()
        self.finish()

    def stream(self) -> Iterator[ExportDeal]:
        """The good deals, in file order, without the end of the read: the caller then
        calls :meth:`finish` (which raises the problems of every row)."""
        try:
            yield from self._read()
        finally:
            self._table.close()

    def finish(self, duplicates: Iterable[tuple[str, Sequence[int]]] = ()) -> ReadSummary:
        """End the read after :meth:`stream`: :class:`LoadError` if anything was wrong,
        else the summary. ``duplicates`` are the keys given more than once with their
        lines in order, the keys in the order of their second line (what a reader made
        with ``track_duplicates=False`` cannot know)."""
        if not self._track_duplicates:
            for key, lines in duplicates:
                self._duplicates[key] = list(lines)
        self._finish()
        return self.summary

    def _read(self) -> Iterator[ExportDeal]:
        table, fmt = self._table, self.format
        self._problems = Problems()
        self._unmapped: dict[str, _Unmapped] = {}
        self._skipped: Counter[str] = Counter()
        self._stages: dict[tuple[str, str], set[State]] = {}
        self._first_line: dict[str, int] = {}
        self._duplicates: dict[str, list[int]] = {}
        self._rows = self._deals = self._footer_lines = 0
        self._kinds_read: dict[tuple[object, ...], _KindRead] = {}
        self._typed_cells = table.kind != "csv"
        pending: list[Row] = []  # rows after a blank one: maybe the report's footer
        try:
            for row in table.rows():
                if (
                    fmt.footer
                    and (row.blank or (pending and self._footer_like(row)))
                    and len(pending) < _FOOTER_MOST_LINES
                ):
                    pending.append(row)
                    continue
                for earlier in pending:
                    yield from self._row(earlier)
                pending = []
                yield from self._row(row)
        except LoadError as exc:  # a malformed record ends the reading
            for problem in exc.problems:
                self._problems.add_first(problem)
        if pending and any(
            _FOOTER_COPYRIGHT.search(cell_text(cell))
            for earlier in pending
            for cell in earlier.cells
        ):
            self._footer_lines = sum(1 for earlier in pending if not earlier.blank)
        else:
            for earlier in pending:
                yield from self._row(earlier)

    def _footer_like(self, row: Row) -> bool:
        return (
            sum(1 for cell in row.cells if cell_text(cell)) == 1 and cell_text(row.cells[0]) != ""
        )

    def _row(self, row: Row) -> Iterator[ExportDeal]:
        if row.blank:
            return
        self._rows += 1
        problems = self._problems
        file = self._file
        if row.problems:
            for column, reason in row.problems:
                problems.add(file, row.line, column, reason)
            return
        digest = None
        known = self.known
        if known is not None and not self._typed_cells:
            digest = known.digest(row.cells)  # type: ignore[arg-type]
            if known.take(digest):
                self._deals += 1
                return
        deal = self._deal(row, digest)
        if deal is not None:
            self._deals += 1
            yield deal

    def _picked(self, row: Row) -> Sequence[Cell]:
        """The row's cell of each field of FIELDS, in that order (None when the format
        does not read it): one pick of the cells, templates filled in."""
        cells = row.cells
        width = self._width
        if len(cells) < width:  # (a workbook's row may end early)
            cells = cells + (None,) * (width - len(cells))
        picked: Sequence[Cell] = self._pick((*cells[:width], None))
        if self._templates:
            picked = list(picked)
            for position, bound in self._templates:
                picked[position] = bound.get(row)
        return picked

    def _deal(self, row: Row, digest: int | None = None) -> ExportDeal | None:
        fmt, fields, file, line = self.format, self._fields, self._file, row.line
        bad: list[tuple[str, str]] = []
        unmapped = False
        parsers = self._parsers
        (
            key_cell, name_cell, owner_cell, stage_cell, status_cell, won_cell, closed_cell,
            amount_cell, currency_cell, close_cell, won_date_cell, lost_date_cell,
            category_cell, probability_cell, pipeline_cell, created_cell,
        ) = self._picked(row)  # fmt: skip
        # The cells that say a deal's kind (its state, stage, pipeline, currency,
        # category, probability) repeat across an export: a combination already read
        # without a problem is not read again.
        kind_cells: tuple[object, ...] = (
            stage_cell, status_cell, won_cell, closed_cell, currency_cell, category_cell,
            probability_cell, pipeline_cell,
        )  # fmt: skip
        if self._typed_cells:
            # A workbook's TRUE equals its 1 (and hashes alike) but reads otherwise: a
            # cell's type is part of what it says.
            kind_cells = (*kind_cells, *map(type, kind_cells))
        known = self._kinds_read.get(kind_cells)
        if known is not None:
            return self._known_kind(row, known, key_cell, name_cell, owner_cell, amount_cell,
                                    (close_cell, won_date_cell, lost_date_cell),
                                    created_cell, digest)  # fmt: skip

        def parse(name: str, cell: Cell) -> _T | None:
            bound = fields.get(name)
            if bound is None:
                return None
            try:
                return parsers[name](cell)  # type: ignore[return-value]
            except ValueProblem as problem:
                bad.append((bound.label, str(problem)))
                return None

        name = cell_text(name_cell)
        key = name if self._key_by_name else cell_text(key_cell)
        stage = cell_text(stage_cell)
        if not key and not self._key_by_name:
            bad.append((fields["key"].label, "blank (every deal needs its key)"))
        if not name:
            bad.append((fields["name"].label, "blank (every deal needs its name)"))
        if not stage:
            bad.append((fields["stage"].label, "blank (every deal needs its stage)"))
        state: str | None = None
        if "status" in fields:
            status = cell_text(status_cell)
            state = fmt.statuses.get(fold(status))
            if state is None:
                self._unmapped_value("status", status, line)
            elif state == SKIP:
                self._skipped[f"{fields['status'].label} {status}"] += 1
                return None
        elif "is_won" in fields or "is_closed" in fields:
            won: bool | None = parse("is_won", won_cell)
            closed: bool | None = parse("is_closed", closed_cell)
            if won is None and closed is None:
                state = self._stage_state(stage, line)
            else:
                state = "won" if won else "lost" if closed else "open"
        elif stage:
            state = self._stage_state(stage, line)
        amount: Decimal | None = parse("amount", amount_cell)
        currency: str | None = parse("currency", currency_cell)
        date_field = {"won": "won_date", "lost": "lost_date"}.get(state or "", "close_date")
        if date_field not in fields:
            date_field = "close_date"
        date_cell = (close_cell, won_date_cell, lost_date_cell)[_DATE_FIELDS.index(date_field)]
        close_date: dt.date | None = parse(date_field, date_cell)
        category: str | None = None
        if "forecast_category" in fields:
            written = cell_text(category_cell)
            if written:
                folded = fold(written)
                if folded in fmt.categories:
                    category = fmt.categories[folded]
                else:
                    self._unmapped_value("forecast_category", written, line)
                    unmapped = True
        probability: int | None = parse("probability", probability_cell)
        if probability is None:
            probability = fmt.stage_probabilities.get(fold(stage))
        pipeline = cell_text(pipeline_cell) or fmt.default_pipeline
        created: dt.datetime | None = parse("created_date", created_cell)
        for column, reason in bad:
            self._problems.add(file, line, column, reason)
        if bad or unmapped or state is None:
            return None
        self._track(key, line)
        self._stages.setdefault((pipeline, stage), set()).add(state)  # type: ignore[arg-type]
        if len(self._kinds_read) < REMEMBERED_TEXTS:
            self._kinds_read[kind_cells] = _KindRead(
                stage, state, currency, category, probability, pipeline,  # type: ignore[arg-type]
                date_field if date_field in fields else None,
            )  # fmt: skip
        return ExportDeal(
            line, key, name, cell_text(owner_cell) or None, stage,
            state,  # type: ignore[arg-type]
            amount, currency, close_date, category, probability, pipeline, created, digest,
        )  # fmt: skip

    def _known_kind(
        self, row: Row, kind: _KindRead, key_cell: Cell, name_cell: Cell, owner_cell: Cell,
        amount_cell: Cell, date_cells: tuple[Cell, Cell, Cell], created_cell: Cell,
        digest: int | None,
    ) -> ExportDeal | None:  # fmt: skip
        """:meth:`_deal` of a row whose kind was read before without a problem: only
        its own cells (key, name, owner, amount, date) are read, in the same order."""
        fields, line = self._fields, row.line
        bad: list[tuple[str, str]] = []
        name = cell_text(name_cell)
        key = name if self._key_by_name else cell_text(key_cell)
        if not key and not self._key_by_name:
            bad.append((fields["key"].label, "blank (every deal needs its key)"))
        if not name:
            bad.append((fields["name"].label, "blank (every deal needs its name)"))
        amount: Decimal | None = None
        if "amount" in fields:
            try:
                amount = parse_amount(amount_cell)
            except ValueProblem as problem:
                bad.append((fields["amount"].label, str(problem)))
        date_name = kind.date_field
        close_date: dt.date | None = None
        if date_name is not None:
            try:
                close_date = self._parsers[date_name](  # type: ignore[assignment]
                    date_cells[_DATE_FIELDS.index(date_name)]
                )
            except ValueProblem as problem:
                bad.append((fields[date_name].label, str(problem)))
        created: dt.datetime | None = None
        if "created_date" in fields:
            try:
                created = self._parsers["created_date"](created_cell)  # type: ignore[assignment]
            except ValueProblem as problem:
                bad.append((fields["created_date"].label, str(problem)))
        if bad:
            for column, reason in bad:
                self._problems.add(self._file, line, column, reason)
            return None
        self._track(key, line)
        return ExportDeal(
            line, key, name, cell_text(owner_cell) or None, kind.stage, kind.state, amount,
            kind.currency, close_date, kind.category, kind.probability, kind.pipeline, created,
            digest,
        )  # fmt: skip

    def _track(self, key: str, line: int) -> None:
        """Keep the key's line, to find those given twice (when this reader does)."""
        if self._track_duplicates:
            if key in self._first_line:
                self._duplicates.setdefault(key, [self._first_line[key]]).append(line)
            else:
                self._first_line[key] = line

    def _stage_state(self, stage: str, line: int) -> str | None:
        state = self.format.stage_states.get(fold(stage))
        if state is not None:
            return state
        if self.format.every_stage_mapped:
            self._unmapped_value("stage", stage, line)
            return None
        return "open"

    def _unmapped_value(self, name: str, value: str, line: int) -> None:
        unmapped = self._unmapped.setdefault(name, _Unmapped(label=self._fields[name].label))
        unmapped.add(value, line)

    def _finish(self) -> None:
        fmt, file = self.format, self._table.file
        for name, unmapped in self._unmapped.items():
            self._problems.first.insert(0, unmapped_problem(file, fmt, name, unmapped))
            self._problems.total += 1
        for key, lines in self._duplicates.items():
            shown_lines = ", ".join(str(line) for line in lines[:10])
            more = f" and {len(lines) - 10} more" if len(lines) > 10 else ""
            label = self._fields["key"].label
            hint = ""
            if self._key_by_name:
                id_column = " or ".join(fmt.columns.get("key", ())) or "an id"
                hint = (
                    f"; without an id column deals are told apart by name: add the "
                    f"{id_column} column to the export"
                )
            self._problems.add(
                file,
                lines[1],
                label,
                f"{shown(key)} appears {len(lines)} times (lines {shown_lines}{more}){hint}",
            )
        if self._table.unlisted_cell_problems:
            self._problems.add(
                file, None, None, f"{self._table.unlisted_cell_problems:,} more cells like these"
            )
        self._problems.raise_if_any()
        stages = {}
        for (pipeline, stage), states in self._stages.items():
            given = fmt.stage_states.get(fold(stage))
            agreed = (
                next(iter(states)) if len(states) == 1 and "status" not in self._fields else None
            )
            state = given or agreed or "open"
            stages[(pipeline, stage)] = StageGiven(
                state,
                fmt.stage_probabilities.get(fold(stage)),
            )
        self._summary = ReadSummary(
            file=file,
            format=fmt.name,
            key_column=self._fields["key"].label,
            keyed_by_name=self._key_by_name,
            rows=self._rows,
            deals=self._deals,
            skipped=dict(self._skipped),
            footer_lines=self._footer_lines,
            ignored_columns=self._ignored,
            stages=stages,
        )


#: What each kind of unmapped value may be mapped to, and the mapping file's table.
_FIXES = {
    "stage": ("stages", "open|won|lost"),
    "status": ("statuses", "open|won|lost|skip"),
    "forecast_category": ("categories", "commit|best_case|pipeline|omitted|none"),
}
_MOST_VALUES = 20


def unmapped_problem(file: str, fmt: DealFormat, name: str, unmapped: _Unmapped) -> str:
    """One problem for every distinct unmapped value of a field: each value, its count,
    its first line, and the mapping line that maps it."""
    table, choices = _FIXES[name]
    where = (
        f"add to [{table}] of {fmt.mapping_file}"
        if fmt.mapping_file
        else f'add to [{table}] of a mapping file with preset = "{fmt.name}"'
    )
    kind = name.replace("_", " ")
    listed = []
    for value, count in unmapped.counts.most_common(_MOST_VALUES):
        line = _toml_key(value) + f' = "{choices}"'
        listed.append(
            f"{shown(value)} ({count} deal{'s' if count != 1 else ''}, first at line "
            f"{unmapped.first_line[value]}): {line}"
        )
    rest = len(unmapped.counts) - _MOST_VALUES
    more = f", and {rest} more values" if rest > 0 else ""
    distinct = len(unmapped.counts)
    return (
        f"{file}: {unmapped.label}: {distinct} unmapped {kind} value{'s' if distinct != 1 else ''}"
        f" ({where}): " + ", ".join(listed) + more
    )


def _toml_key(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def read_deals(
    path: Path | str, fmt: DealFormat, *, sheet: str | None = None
) -> tuple[list[ExportDeal], ReadSummary]:
    """Every deal of ``path`` in a list, and the summary (for files that fit in
    memory; :class:`DealReader` streams). Raises :class:`LoadError`."""
    reader = DealReader(path, fmt, sheet=sheet)
    deals = list(reader.stream())
    return deals, reader.finish()
