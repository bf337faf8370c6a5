"""A CRM export's table, read row by row: a ``.csv`` file or an ``.xlsx`` workbook's
sheet, streamed (memory does not grow with the file), each row a ``dict`` of its cells
keyed by header name (any case, outer spaces ignored) with its line number.

- **CSV**: UTF-8 with or without a byte order mark, ``\\n``, ``\\r\\n`` or ``\\r`` line
  breaks, RFC 4180 quoting (a quoted field may span lines). A row's line is the
  physical line its record starts on (the header is line 1). A malformed record, a
  byte that is not UTF-8 or a line longer than 2 MiB stops the reading at its line.
- **XLSX**: the first sheet, or the one named; read with openpyxl in read-only mode,
  cells as typed values (dates as dates, numbers as numbers). Formulas are read as
  the values the workbook saved with them: a formula cell without a saved value (a
  file written by a program that does not compute formulas), and an error cell
  (``#N/A``), are problems at their cell. Merged header cells are an error naming
  them. A row's line is its row number.

Every header name must be unique (any case); an empty header name leaves its column
out. A blank row (every cell empty) is yielded with ``blank`` set, so that a reader
can recognise what follows it (Salesforce's report footer).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from xml.etree import ElementTree

from openpyxl import load_workbook
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.cell import range_boundaries

from pipeline_coverage.errors import LoadError
from pipeline_coverage.importing.values import MAX_PROBLEMS, Cell, cell_text, fold, shown

#: The longest line a CSV file may have (a record of several lines may be longer).
MAX_LINE_BYTES = 2 * 1024 * 1024
#: XLSX cells with a problem (a formula without a saved value, an error value) listed
#: by row; beyond this many they are only counted.
MAX_CELL_PROBLEMS = 1000
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


@dataclass(frozen=True)
class Column:
    """A header cell: its position (0-based), its name as written, and its key (the
    name folded: any case, outer spaces ignored)."""

    index: int
    name: str
    key: str

    @property
    def letter(self) -> str:
        return get_column_letter(self.index + 1)


class Row:
    """A data row: its line, its cells (in header order), what is wrong with its shape
    (``(column name or None, reason)``: too few or too many fields, bad cells), and its
    cells by column key (:attr:`values`, made when first asked: a reader of a million
    rows that reads cells by position never builds it)."""

    __slots__ = ("_columns", "_values", "cells", "line", "problems")

    def __init__(
        self,
        line: int,
        cells: tuple[Cell, ...],
        columns: tuple[Column, ...] = (),
        problems: tuple[tuple[str | None, str], ...] = (),
    ) -> None:
        self.line = line
        self.cells = cells
        self.problems = problems
        self._columns = columns
        self._values: dict[str, Cell] | None = None

    @property
    def values(self) -> dict[str, Cell]:
        if self._values is None:
            cells, width = self.cells, len(self.cells)
            self._values = {
                column.key: cells[column.index] if column.index < width else None
                for column in self._columns
            }
        return self._values

    @property
    def blank(self) -> bool:
        cells = self.cells
        if cells and type(cells[0]) is str and cells[0] and not cells[0].isspace():
            return False  # (most rows: a first cell of text)
        return all(cell_text(cell) == "" for cell in cells)

    def __repr__(self) -> str:
        return f"Row(line={self.line}, cells={self.cells!r}, problems={self.problems!r})"


@dataclass
class Table:
    """An open export (use as a context manager, or call :meth:`close`)."""

    path: Path
    kind: str  # "csv" or "xlsx"
    columns: tuple[Column, ...]
    sheet: str | None = None
    _rows: Iterator[Row] | None = None
    _closers: list[IO[bytes] | IO[str] | zipfile.ZipFile] = field(default_factory=list)
    _workbook: object | None = None
    _generators: list[Generator[object, None, None]] = field(default_factory=list)
    #: XLSX cell problems beyond :data:`MAX_CELL_PROBLEMS` (counted, not listed).
    unlisted_cell_problems: int = 0

    @property
    def file(self) -> str:
        """The file's name as problems quote it."""
        return self.path.name

    def column(self, key: str) -> Column | None:
        folded = fold(key)
        return next((column for column in self.columns if column.key == folded), None)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(column.key for column in self.columns)

    def rows(self) -> Iterator[Row]:
        """The data rows, in order (once). Raises :class:`LoadError` at a malformed
        CSV record (the rows before it were yielded)."""
        if self._rows is None:
            raise RuntimeError("the rows of a table are read once")
        rows, self._rows = self._rows, None
        return rows

    def close(self) -> None:
        for generator in self._generators:  # each holds an open member of the workbook
            generator.close()
        self._generators.clear()
        for closer in self._closers:
            closer.close()
        self._closers.clear()
        if self._workbook is not None:
            self._workbook.close()  # type: ignore[attr-defined]
            self._workbook = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_table(path: Path | str, *, sheet: str | None = None) -> Table:
    """Open ``path`` (``.csv`` or ``.xlsx``) and read its header.

    Raises :class:`LoadError` for a file that cannot be read, an unknown kind, a bad
    header (empty file, duplicate names, merged cells) or a missing sheet.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if sheet is not None:
            raise LoadError([f"{path.name}: --sheet applies to .xlsx files, not CSV"])
        return _open_csv(path)
    if suffix in (".xlsx", ".xlsm"):
        return _open_xlsx(path, sheet)
    if suffix == ".xls":
        raise LoadError([f"{path.name}: an .xls workbook (Excel 97-2003); save it as .xlsx or CSV"])
    raise LoadError([f"{path.name}: not a .csv or .xlsx file"])


def _header(file: str, names: list[str]) -> tuple[Column, ...]:
    columns = [
        Column(index, name.strip(), fold(name)) for index, name in enumerate(names) if fold(name)
    ]
    seen: dict[str, Column] = {}
    problems = []
    for column in columns:
        if column.key in seen:
            first = seen[column.key]
            problems.append(
                f"{file}:1: {column.name}: column appears twice (columns {first.letter} "
                f"{shown(first.name)} and {column.letter} {shown(column.name)}; header "
                "names match in any case)"
            )
        else:
            seen[column.key] = column
    if problems:
        raise LoadError(problems[:MAX_PROBLEMS], total=len(problems))
    return tuple(columns)


def _shape(
    cells: tuple[Cell, ...], width: int, *, padded: bool
) -> tuple[tuple[str | None, str], ...]:
    """The problems of a row's shape."""
    problems: list[tuple[str | None, str]] = []
    if len(cells) < width and not padded:
        problems.append((None, f"{len(cells)} fields where the header has {width}"))
    extra = [index for index in range(width, len(cells)) if cell_text(cells[index]) != ""]
    if extra:
        where = get_column_letter(extra[0] + 1)
        problems.append(
            (
                None,
                f"a value past the header's last column (column {where}: {shown(cells[extra[0]])})",
            )
        )
    return tuple(problems)


# --- CSV ------------------------------------------------------------------------


class _Lines:
    """A text file's lines, each at most :data:`MAX_LINE_BYTES` long (``readline`` with a
    limit: a file that is one long line is refused without reading it whole), counting
    them for the UTF-8 error's line."""

    def __init__(self, handle: IO[str], file: str) -> None:
        self.handle = handle
        self.file = file
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise StopIteration
        self.count += 1
        bad = _NOT_UTF8.search(line)
        if bad:  # the file is decoded with surrogateescape: a bad byte is a surrogate
            byte = ord(bad[0]) - 0xDC00
            raise LoadError([f"{self.file}:{self.count}: not UTF-8 text (a byte 0x{byte:02x})"])
        if len(line) > MAX_LINE_BYTES:
            raise LoadError(
                [f"{self.file}:{self.count}: a line longer than {MAX_LINE_BYTES:,} characters"]
            )
        return line


def _open_csv(path: Path) -> Table:
    try:
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise LoadError([f"{path.name}: cannot read ({exc.strerror or exc})"]) from exc
    try:
        lines = _Lines(handle, path.name)
        reader = csv.reader(lines, strict=True)
        try:
            names = next(reader, None)
        except csv.Error as exc:
            raise LoadError([f"{path.name}:1: malformed CSV header ({exc})"]) from exc
        if names is None:
            raise LoadError([f"{path.name}:1: empty file (a header row is required)"])
        columns = _header(path.name, names)
        table = Table(path, "csv", columns)
        table._rows = _csv_rows(reader, table, len(names))
        table._closers.append(handle)
        return table
    except BaseException:
        handle.close()
        raise


def _csv_rows(reader: Iterator[list[str]], table: Table, width: int) -> Iterator[Row]:
    columns = table.columns
    end = reader.line_num  # type: ignore[attr-defined]
    while True:
        start = end + 1
        try:
            record = next(reader, None)
        except csv.Error as exc:
            raise LoadError([f"{table.file}:{start}: malformed CSV ({exc})"]) from exc
        if record is None:
            return
        end = reader.line_num  # type: ignore[attr-defined]
        cells = tuple(record)
        if not any(cells):
            yield Row(start, cells)
        elif len(cells) == width:  # the common case: nothing to say of its shape
            yield Row(start, cells, columns)
        else:
            yield Row(start, cells, columns, _shape(cells, width, padded=False))


# --- XLSX -----------------------------------------------------------------------


@dataclass
class _Scan:
    merged_header: list[str] = field(default_factory=list)
    cells: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    listed: int = 0
    unlisted: int = 0

    def add(self, row: int, column: int, reason: str) -> None:
        if self.listed < MAX_CELL_PROBLEMS:
            self.cells.setdefault(row, []).append((column, reason))
            self.listed += 1
        else:
            self.unlisted += 1


def _scan_sheet(source: IO[bytes]) -> _Scan:
    """One streaming pass over a sheet's XML for what openpyxl's values do not tell:
    formula cells without a saved value (they read as empty), error cells, and the
    merged ranges of the header row (read-only mode does not see merges)."""
    scan = _Scan()
    parent = None
    for event, element in ElementTree.iterparse(source, events=("start", "end")):
        if event == "start":
            if element.tag == f"{_MAIN}sheetData":
                parent = element
            continue
        tag = element.tag
        if tag == f"{_MAIN}c":
            formula = element.find(f"{_MAIN}f")
            value = element.findtext(f"{_MAIN}v")
            reference = element.get("r", "")
            if formula is not None and not value:
                _add_cell(scan, reference, "a formula without a saved value")
            elif element.get("t") == "e":
                _add_cell(scan, reference, f"an error value {shown(value or '')}")
        elif tag == f"{_MAIN}row":
            element.clear()
            if parent is not None:
                parent.clear()
        elif tag == f"{_MAIN}mergeCell":
            reference = element.get("ref", "")
            try:
                _, min_row, _, _ = range_boundaries(reference)
            except ValueError:
                continue
            if min_row == 1:
                scan.merged_header.append(reference)
    return scan


def _add_cell(scan: _Scan, reference: str, reason: str) -> None:
    letters = reference.rstrip("0123456789")
    digits = reference[len(letters) :]
    if letters and digits:
        scan.add(int(digits), column_index_from_string(letters) - 1, f"{reason} (cell {reference})")


def _open_xlsx(path: Path, sheet: str | None) -> Table:
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError as exc:
        raise LoadError([f"{path.name}: cannot read ({exc.strerror or exc})"]) from exc
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise LoadError([f"{path.name}: not an XLSX workbook ({exc})"]) from exc
    rows: Generator[tuple[object, ...], None, None] | None = None
    try:
        names = workbook.sheetnames
        if sheet is None:
            worksheet = workbook.worksheets[0] if workbook.worksheets else None
        elif sheet in names:
            worksheet = workbook[sheet]
        else:
            listed = ", ".join(shown(name) for name in names)
            raise LoadError([f"{path.name}: no sheet {shown(sheet)} (its sheets: {listed})"])
        sheet_path = vars(worksheet).get("_worksheet_path") if worksheet is not None else None
        if worksheet is None or sheet_path is None or not hasattr(worksheet, "iter_rows"):
            raise LoadError([f"{path.name}: the sheet {shown(sheet or names[0])} is not a table"])
        with zipfile.ZipFile(path) as archive, archive.open(sheet_path.lstrip("/")) as source:
            scan = _scan_sheet(source)
        if scan.merged_header:
            raise LoadError(
                [
                    f"{path.name}:1: merged header cells {', '.join(scan.merged_header)}: "
                    "each column needs a header cell of its own (unmerge them)"
                ]
            )
        worksheet.reset_dimensions()  # a workbook's saved dimensions may be wrong
        rows = worksheet.iter_rows(min_row=1, values_only=True)
        header = next(rows, None)
        if header is None:
            raise LoadError([f"{path.name}:1: empty sheet (a header row is required)"])
        columns = _header(path.name, [_header_text(cell) for cell in header])
        table = Table(path, "xlsx", columns, sheet=worksheet.title)
        table._workbook = workbook
        table._generators.append(rows)
        table.unlisted_cell_problems = scan.unlisted
        table._rows = _xlsx_rows(rows, table, len(header), scan)
        return table
    except BaseException:
        if rows is not None:
            rows.close()
        workbook.close()
        raise


def _header_text(cell: object) -> str:
    if isinstance(cell, str | int | float | bool | dt.date | dt.time) or cell is None:
        return cell_text(cell)
    return str(cell)


def _xlsx_rows(
    rows: Iterator[tuple[object, ...]], table: Table, width: int, scan: _Scan
) -> Iterator[Row]:
    names = {column.index: column.name for column in table.columns}
    for line, raw in enumerate(rows, start=2):
        cells = tuple(_cell(value) for value in raw)
        bad = scan.cells.pop(line, [])
        if not bad and not any(cell_text(cell) for cell in cells):
            yield Row(line, cells)
            continue
        problems = _shape(cells, width, padded=True)
        located = tuple(
            (names.get(index, get_column_letter(index + 1)), reason) for index, reason in bad
        )
        yield Row(line, cells, table.columns, problems + located)


def _cell(value: object) -> Cell:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | dt.datetime | dt.date | dt.time) or value is None:
        return value
    return str(value)  # a timedelta (a duration format), or anything newer
