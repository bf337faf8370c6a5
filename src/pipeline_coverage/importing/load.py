"""The import's fronts: :func:`load_directory` (``pipeline-coverage load DIR``, SPEC.md
§4) and :func:`load_tables` (rows made in Python, for ``import``, SPEC.md §12), over
the same staging tables, checks and upsert.

Each file is streamed unparsed into a text-typed staging table with COPY; every check
then runs as set-based SQL over the staging table, and rows are upserted by key.
Files load in dependency order inside one unit of work, so a reference may point at
a row loaded earlier in the same import, and one bad row anywhere rolls everything
back. Every file is checked (each in a savepoint) before the problems of all files
are reported together. Problems are reported as ``file:line: column: reason``;
``line`` is the CSV record's number counting the header as line 1 (it equals the
physical line unless a quoted field spans several lines), or the line the caller gives
a row held in memory.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pipeline_coverage.db.connection import (
    Connection,
    Cursor,
    as_uuid,
    in_transaction,
    unit_of_work,
)
from pipeline_coverage.errors import InputError, LoadError
from pipeline_coverage.importing.checks import (
    cycle_problems,
    duplicate_problems,
    has_problems,
    pulled_keys,
    raise_problems,
    raise_reference_problems,
    reference_problems,
    shorten,
    value_problems,
)
from pipeline_coverage.importing.formats import (
    BY_FILE,
    DEFERRED_KEYS,
    STAGE_KEY,
    TABLES,
    TableSpec,
    checked_first,
    expected_columns,
)
from pipeline_coverage.importing.records import (
    CHUNK,
    TOO_LONG_REASON,
    Records,
    chunks,
    first_record_end,
)
from pipeline_coverage.importing.upsert import (
    moved_stage_problems,
    record_tenants_in_order,
    recorded_time,
    upsert,
)
from pipeline_coverage.importing.values import MAX_PROBLEMS


@dataclass(frozen=True)
class TableLoad:
    """What one file did to its table."""

    file: str
    table: str
    rows: int
    inserted: int
    updated: int
    #: The tenants the file's rows belong to.
    tenant_ids: tuple[uuid.UUID, ...] = ()

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


#: Called with (file name, bytes sent so far, file size) while a file streams in; for
#: in-memory rows, with (file name, rows sent so far, rows in all, 0 when unknown).
Progress = Callable[[str, int, int], None]

#: One row for :func:`load_tables`: the line problems name, and the values.
Row = tuple[int, Sequence[object]]


def load_directory(
    conn: Connection,
    directory: Path,
    progress: Progress | None = None,
    *,
    recorded_at: dt.datetime | None = None,
) -> list[TableLoad]:
    """Import every known CSV file of ``directory``, all or nothing.

    ``recorded_at`` is when the files' data was taken (default: now): what a changed
    or new deal's values hold from, in recorded history (SPEC.md §13).

    Raises :class:`LoadError` (nothing written) when any row or header is bad. Every
    file is checked, also after another one had problems, and the problems of all
    files are reported together (at most MAX_PROBLEMS listed per file, all counted).
    """
    files = _import_files(directory)
    rejected: dict[str, LoadError] = {}
    inputs: list[_Input] = []
    for spec in files:
        try:
            header = _read_header(directory / spec.file, spec)
        except LoadError as exc:
            rejected[spec.file] = exc
            header = None
        inputs.append(
            _Input(
                spec,
                spec.file,
                None if header is None else _file_stager(directory, header, progress),
            )
        )
    return _load(conn, inputs, rejected, recorded_at)


def load_tables(
    conn: Connection,
    rows: Mapping[str, Iterable[Row]],
    *,
    source: str | Mapping[str, str] | None = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    progress: Progress | None = None,
    staged: Mapping[str, Callable[[Cursor], sql.Composable]] | None = None,
    stamp: Mapping[str, Mapping[str, str]] | None = None,
    recorded_at: dt.datetime | None = None,
    carry: Mapping[str, Sequence[str]] | None = None,
) -> list[TableLoad]:
    """Import rows held in memory, all or nothing, exactly as :func:`load_directory`
    imports files: the same staging tables (filled by COPY), checks, upsert and counts.

    ``rows`` maps import files of TABLES (``"deals.csv"``) to their rows, each a pair
    ``(line, values)``: ``values`` in the order of the file's columns (by default every
    column of TABLES, optional ones included; ``columns`` may name, per file, the ones
    its values hold — a column left out is left as it is), each None, text, or an int,
    ``Decimal``, ``date``, ``bool`` or ``UUID`` (written as the format writes it;
    an empty text is None, as an empty field is). ``line`` is the line a problem of the
    row names, ``file:line: column: reason``, where ``file`` is the name ``source`` gives
    the file (one name for every file, or one per file; by default the import file's
    own name); rows may share a line (a wide sheet's line giving several targets).

    ``staged`` gives files whose rows are in the database already (a temporary table
    of the caller's transaction, say, filled by a COPY as they streamed in), made by the
    caller from values it checked as the file's own checks would (every value of its
    column's kind, keys given once, references to rows of this load or of the tenant):
    per file, a function called on the load's cursor when the file's turn comes,
    returning a query of its rows, ``line`` first and then the file's columns
    (``columns``), typed as the table's columns or as text. It may raise
    :class:`LoadError` for the file instead. Their value, key and reference checks are
    not run again; the database's constraints still hold (a row one refuses is
    reported as for any file).

    ``stamp`` gives, per file, values of columns outside the file written to each of
    its rows (an import marks its deals with their source: ``{"import_source":
    "salesforce"}``); a stored row whose stamp differs is changed.

    ``carry`` names, per staged file, columns its query gives after the file's own
    (an import's row digests: ``{"deals.csv": ["import_digest"]}``): written with each
    row, never what makes a row changed (see ``upsert_rows``).

    ``recorded_at`` as for :func:`load_directory`.

    Raises :class:`LoadError` (nothing written) when any row is bad, every file's
    problems together; ``ValueError`` or ``TypeError`` for rows no import could hold
    (an unknown file or column, a row of the wrong length, a float).
    """
    unknown = sorted((set(rows) | set(staged or {})) - set(BY_FILE))
    if unknown:
        raise ValueError(f"not import files: {', '.join(unknown)}")
    inputs = []
    for spec in TABLES:
        if spec.file not in rows and spec.file not in (staged or {}):
            continue
        names = list((columns or {}).get(spec.file, spec.column_names))
        _check_columns(spec, names)
        name = source if isinstance(source, str) else (source or {}).get(spec.file, spec.file)
        stager = (
            _query_stager(names, staged[spec.file])
            if staged and spec.file in staged
            else _rows_stager(names, rows[spec.file], progress)
        )
        inputs.append(
            _Input(
                spec, name, stager, checked=bool(staged and spec.file in staged),
                stamp=(stamp or {}).get(spec.file),
                carry=tuple((carry or {}).get(spec.file, ())),
            )
        )  # fmt: skip
    return _load(conn, inputs, {}, recorded_at)


#: Creates and fills a file's staging table (``line`` and its columns, as text) and
#: returns the spec of the columns it holds; the file's name is given for problems.
_Stager = Callable[[Cursor, TableSpec, str, sql.Identifier], TableSpec]


@dataclass(frozen=True)
class _Input:
    """One file of an import: its spec, the name its problems carry, and how its rows
    get into its staging table (None when it was refused before, say for its header)."""

    spec: TableSpec
    name: str
    stager: _Stager | None
    #: Rows made from checked values (``load_tables``'s ``staged``).
    checked: bool = False
    #: Values of columns outside the file, for each row (``load_tables``'s ``stamp``).
    stamp: Mapping[str, str] | None = None
    #: Columns the staged rows carry beyond the file's (``load_tables``'s ``carry``).
    carry: tuple[str, ...] = ()


def _load(
    conn: Connection,
    inputs: list[_Input],
    rejected: dict[str, LoadError],
    recorded_at: dt.datetime | None = None,
) -> list[TableLoad]:
    """Stage, check and upsert ``inputs`` (in load order) in one unit of work; every
    file is checked, then the problems of all (and of ``rejected``, by import file)
    are raised together."""
    loads: list[TableLoad] = []
    # Tables whose file is not written: references to them cannot be checked.
    unloaded = {i.spec.table for i in inputs if i.spec.file in rejected}
    names = {i.spec.file: i.name for i in inputs}
    # PostgreSQL 16 checks input against a type without raising: cheaper than a regex.
    modern = conn.info.server_version >= 160000
    # In a caller's transaction the deferred keys stay as the caller has them: making
    # one immediate would check the caller's pending rows too (a user it deleted before
    # moving her deals, say) and leave the key's mode changed. Their references are
    # then checked first (checked_first).
    callers = in_transaction(conn)
    with unit_of_work(conn) as cur:
        # On Citus, a local (staging) table cannot be joined with a distributed one:
        # the checks then compare with keys pulled from the cluster first.
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        citus = bool(cur.fetchone()[0])
        # A stage may move to another pipeline together with its deals: the deal→stage
        # reference is checked once every file is in.
        cur.execute("SET CONSTRAINTS dyno_crm.fk_deal_stage DEFERRED")
        # The deferred keys the deal upsert leaves deferred (checked_first): the stage's
        # once a stage was updated, since it may have moved; all in a caller's transaction.
        held: frozenset[str] = DEFERRED_KEYS if callers else frozenset()
        recorded_at = recorded_time(cur, recorded_at)
        for item in inputs:
            if item.stager is None or item.spec.file in rejected:
                continue
            # A COPY error aborts the transaction: the next file goes on from here.
            cur.execute("SAVEPOINT pipeline_coverage_file")
            try:
                loaded = _load_file(
                    cur, item, modern, unloaded, citus=citus, recorded_at=recorded_at,
                    held=held,
                )  # fmt: skip
            except LoadError as exc:
                rejected[item.spec.file] = exc
                loaded = None
            if loaded is None:
                cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_file")
                unloaded.add(item.spec.table)
            else:
                loads.append(loaded)
                if loaded.table == "pipeline_stage" and loaded.updated:
                    held = held | {STAGE_KEY}  # a stage may have moved
            cur.execute("RELEASE SAVEPOINT pipeline_coverage_file")
        # Deals that were to move with their stage only moved if deals.csv is written.
        # Only a stage that was there before can have deals left behind, and only an
        # updated one can have moved.
        if any(x.table == "pipeline_stage" and x.updated for x in loads) and (
            "deal" not in unloaded
        ):
            stages = BY_FILE["pipeline_stages.csv"]
            try:
                raise_problems(
                    cur,
                    names[stages.file],
                    moved_stage_problems(cur, _stage_name(stages), citus=citus),
                )
            except LoadError as exc:
                rejected[stages.file] = exc
        if rejected:
            errors = [rejected[i.spec.file] for i in inputs if i.spec.file in rejected]
            raise LoadError(
                [problem for error in errors for problem in error.problems],
                total=sum(error.total for error in errors),
            )
        cur.execute("SET CONSTRAINTS dyno_crm.fk_deal_stage IMMEDIATE")
    return loads


def _import_files(directory: Path) -> list[TableSpec]:
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    present = {path.name for path in directory.iterdir() if path.suffix.lower() == ".csv"}
    unknown = sorted(present - set(BY_FILE))
    if unknown:  # a typo, most likely: checking the others could only mislead
        expected = ", ".join(spec.file for spec in TABLES)
        raise LoadError(
            [f"{directory / name}: unknown import file (expected: {expected})" for name in unknown]
        )
    specs = [spec for spec in TABLES if spec.file in present]
    if not specs:
        raise LoadError(
            [
                f"{directory}: no import files (expected any of: "
                f"{', '.join(spec.file for spec in TABLES)})"
            ]
        )
    return specs


def _header_name(name: str) -> str:
    """A header name as a problem echoes it: as it is when it reads as it is, quoted
    (``' name'``, ``'\\ufeffid'``) when a space at an end or an invisible character would
    make ``name: unknown column`` look like a contradiction."""
    plain = name == name.strip() and name.isprintable()
    return shorten(name if plain else repr(name))


@dataclass(frozen=True)
class _Header:
    """A file's header: its column names, and the line break that ends its records."""

    names: list[str]
    #: b"\n" (for "\n" and "\r\n" files) or b"\r": COPY takes the header's line break
    #: for the whole file.
    eol: bytes


def _read_header(path: Path, spec: TableSpec) -> _Header:
    # Only the header line is decoded here: COPY checks the encoding of the rest and
    # names the line of a bad byte.
    try:
        with path.open("rb") as handle:
            data = handle.read(CHUNK)
    except OSError as exc:
        raise LoadError([f"{spec.file}: cannot read ({exc.strerror or exc})"]) from exc
    complete = len(data) < CHUNK
    data = data.removeprefix(codecs.BOM_UTF8)
    end = first_record_end(data)
    if end < 0 and not complete:
        raise LoadError(
            [f"{spec.file}:1: malformed CSV header (no end of line in its first {CHUNK:,} bytes)"]
        )
    try:
        text = data[: end if end >= 0 else len(data)].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError([f"{spec.file}:1: not UTF-8 text ({exc.reason})"]) from exc
    try:
        header = next(csv.reader([text]), None) if data else None
    except csv.Error as exc:
        raise LoadError([f"{spec.file}:1: malformed CSV header ({exc})"]) from exc
    if header is None:
        raise LoadError([f"{spec.file}:1: empty file (a header row is required)"])
    expected = spec.column_names
    problems = []
    # One problem for all the header's unknown columns, and one for the missing ones:
    # an export of another format has a dozen of each, and the expected columns are
    # listed once, not once per column.
    unknown = list(dict.fromkeys(name for name in header if name not in expected))
    if unknown:
        names = ", ".join(_header_name(name) or "(empty)" for name in unknown)
        what = "unknown column" if len(unknown) == 1 else f"{len(unknown)} unknown columns"
        problems.append(f"{spec.file}:1: {names}: {what} (expected: {expected_columns(spec)})")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(f"{spec.file}:1: {_header_name(name)}: column appears twice")
        seen.add(name)
    missing = [c.name for c in spec.columns if c.name not in header and not c.optional]
    if missing:
        what = "missing column" if len(missing) == 1 else f"{len(missing)} missing columns"
        problems.append(f"{spec.file}:1: {', '.join(missing)}: {what}")
    if problems:
        raise LoadError(problems[:MAX_PROBLEMS], total=len(problems))
    bare_cr = data[end : end + 1] == b"\r" and data[end + 1 : end + 2] != b"\n"
    return _Header(header, b"\r" if end >= 0 and bare_cr else b"\n")


def _stage_name(spec: TableSpec) -> sql.Identifier:
    return sql.Identifier(f"pipeline_coverage_stage_{spec.table}")


def _load_file(
    cur: Cursor,
    item: _Input,
    modern: bool,
    unloaded: set[str],
    *,
    citus: bool = False,
    recorded_at: dt.datetime | None = None,
    held: frozenset[str] = frozenset(),
) -> TableLoad | None:
    """Stage, check and upsert one file; :class:`LoadError` if it has problems.

    None (nothing written) when a table it refers to is not written: its rows are
    checked on their own and against the tables that are, but not written, since every
    reference to the missing table would fail.
    """
    assert item.stager is not None
    name = item.name
    stage = _stage_name(item.spec)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(stage))
    spec = item.stager(cur, item.spec, name, stage)
    if item.checked:
        return _write_file(cur, item, spec, stage, unloaded, citus, recorded_at, held)
    # The UUIDs are left to the statements that follow, which cast every one of them (a
    # regular expression per UUID before PostgreSQL 16, pg_input_is_valid after, was
    # most of a clean file's checks): a bad one fails one of them. On any problem every
    # check runs, so the file's problems are named as before, its values' first.
    every_check = value_problems(spec, stage, modern=modern)
    try:
        raise_problems(cur, name, value_problems(spec, stage, modern=modern, uuids_cast=True))
    except LoadError:
        raise_problems(cur, name, every_check)
        raise

    def duplicates() -> None:
        raise_problems(cur, name, duplicate_problems(spec, stage))

    # The deal file's duplicate keys (a sort of the whole file) are left to its upsert
    # when nothing is checked before it: on plain PostgreSQL, with no stage moving.
    later = spec.table == "deal" and not any(
        checked_first(reference, citus=citus, held=held) for reference in spec.references
    )

    def own_problems() -> None:
        """Every problem of the file's values, then of its keys (the checks a clean file
        left to later statements), as a LoadError."""
        raise_problems(cur, name, every_check)
        if later:
            duplicates()

    cur.execute("SAVEPOINT pipeline_coverage_checked")
    try:
        if not later:
            duplicates()
        loaded = _write_file(
            cur, item, spec, stage, unloaded, citus, recorded_at, held,
            duplicates if later else None,
        )  # fmt: skip
        if loaded is None:  # not written: every problem of its own is named
            own_problems()
    except (
        LoadError,
        psycopg.errors.InvalidTextRepresentation,
        psycopg.errors.CardinalityViolation,
    ):
        cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_checked")
        own_problems()
        raise
    except InputError:
        # Refused before the write (an export older than the tenant's last, by
        # record_tenants_in_order): the checks it overtook come first, as they did.
        cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_checked")
        own_problems()
        if not citus and any(  # (on Citus they ran before it)
            has_problems(cur, reference_problems(reference, stage))
            for reference in spec.references
            if not reference.enforced
        ):
            raise_reference_problems(cur, name, stage, spec.references)
        raise
    cur.execute("RELEASE SAVEPOINT pipeline_coverage_checked")
    return loaded


def _write_file(
    cur: Cursor,
    item: _Input,
    spec: TableSpec,
    stage: sql.Identifier,
    unloaded: set[str],
    citus: bool,
    recorded_at: dt.datetime | None,
    held: frozenset[str],
    duplicates: Callable[[], None] | None = None,
) -> TableLoad | None:
    """Check one staged file's references and upsert it (:func:`_load_file`;
    ``duplicates``: its duplicate check, left to the upsert)."""
    name = item.name
    targets = pulled_keys(cur, spec, stage) if citus and spec.references else {}
    checkable = [reference for reference in spec.references if reference.table not in unloaded]
    if len(checkable) < len(spec.references):
        raise_reference_problems(cur, name, stage, checkable, targets)
        return None
    # Foreign keys check most references row by row during the upsert anyway: only
    # the others are checked first. When any reference fails, every check runs in
    # declared order, so the root cause (a missing pipeline, say) is the one named.
    if not item.checked and any(
        has_problems(cur, reference_problems(reference, stage, targets))
        for reference in spec.references
        if checked_first(reference, citus=citus, held=held)
    ):
        raise_reference_problems(cur, name, stage, spec.references, targets)
    # The file's tenants (its values are checked by now): recorded history holds them in
    # time order, and the load reports them.
    tenant_column = sql.Identifier("id" if spec.table == "tenant" else "tenant_id")
    cur.execute(sql.SQL("SELECT DISTINCT {}::uuid FROM {}").format(tenant_column, stage))
    tenant_ids = tuple(as_uuid(row[0]) for row in cur.fetchall())
    if spec.table == "deal" and recorded_at is not None:
        record_tenants_in_order(cur, [str(t) for t in tenant_ids], recorded_at)
    rows, inserted, updated = upsert(
        cur, spec, stage, name, targets, item.stamp, recorded_at, item.carry, citus=citus,
        held=held, duplicates=duplicates,
    )  # fmt: skip
    if spec.table == "crm_group" and "parent_group_id" in spec.column_names:
        raise_problems(cur, name, cycle_problems(cur, stage))
    if spec.table != "pipeline_stage":  # kept for the moved-stage check at the end
        cur.execute(sql.SQL("DROP TABLE pg_temp.{}").format(stage))
    return TableLoad(spec.file, spec.table, rows, inserted, updated, tenant_ids)


def _create_stage(cur: Cursor, stage: sql.Identifier, line: str, names: Sequence[str]) -> None:
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} (line bigint {}, {}) ON COMMIT DROP").format(
            stage,
            sql.SQL(line),
            sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in names),
        )
    )


def _file_stager(directory: Path, header: _Header, progress: Progress | None) -> _Stager:
    """Stages a CSV file by COPY, its lines counted from the header's (line 1)."""

    def stage_file(cur: Cursor, spec: TableSpec, name: str, stage: sql.Identifier) -> TableSpec:
        _create_stage(cur, stage, "GENERATED ALWAYS AS IDENTITY (START 2)", header.names)
        _copy(cur, directory / spec.file, spec, stage, header, progress)
        return spec.present(header.names)

    return stage_file


#: Rows are sent to COPY in batches of this many.
_BATCH_ROWS = 5000


def _rows_stager(names: Sequence[str], rows: Iterable[Row], progress: Progress | None) -> _Stager:
    """Stages in-memory rows by COPY (as CSV, every field quoted), each at its line."""

    def stage_rows(cur: Cursor, spec: TableSpec, name: str, stage: sql.Identifier) -> TableSpec:
        _create_stage(cur, stage, "NOT NULL", names)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in names)
        statement = sql.SQL(
            "COPY {} (line, {}) FROM STDIN WITH (FORMAT csv, ENCODING 'UTF8', FORCE_NULL ({}))"
        ).format(stage, columns, columns)
        total = len(rows) if isinstance(rows, Sized) else 0
        sent = 0
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
        copier: Any = cur  # a psycopg 3 cursor: COPY is not DB-API
        with copier.copy(statement) as copy:
            for line, values in rows:
                writer.writerow([_line(line), *_texts(name, line, names, values)])
                sent += 1
                if sent % _BATCH_ROWS == 0:
                    copy.write(buffer.getvalue())
                    buffer.seek(0)
                    buffer.truncate()
                    if progress is not None:
                        progress(name, sent, total)
            copy.write(buffer.getvalue())
        if progress is not None:
            progress(name, sent, total)
        return spec.present(list(names))

    return stage_rows


def _query_stager(names: Sequence[str], rows: Callable[[Cursor], sql.Composable]) -> _Stager:
    """Stages the rows of a query (``line``, then ``names``) over tables already in the
    transaction: no round trip through Python."""

    def stage_query(cur: Cursor, spec: TableSpec, name: str, stage: sql.Identifier) -> TableSpec:
        query = rows(cur)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in names)
        # Typed as the query gives them: a checked value is not cast back and forth.
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} (line, {}) ON COMMIT DROP AS {}").format(
                stage, columns, query
            )
        )
        return spec.present(list(names))

    return stage_query


def _check_columns(spec: TableSpec, names: Sequence[str]) -> None:
    """``names`` are columns of ``spec``'s file, each once, every required one among them."""
    unknown = [n for n in names if n not in spec.column_names]
    twice = sorted({n for n in names if names.count(n) > 1})
    missing = [c.name for c in spec.columns if not c.optional and c.name not in names]
    if unknown or twice or missing:
        raise ValueError(
            f"{spec.file}: columns {', '.join(names)}: unknown {unknown}, twice {twice},"
            f" missing {missing} (expected: {expected_columns(spec)})"
        )


def _line(line: object) -> str:
    if not isinstance(line, int) or isinstance(line, bool):
        raise TypeError(f"a row's line is an int, not {type(line).__name__}")
    return str(line)


def _texts(name: str, line: int, names: Sequence[str], values: Sequence[object]) -> list[str]:
    """A row's values as the format writes them (None as an empty field)."""
    if len(values) != len(names):
        raise ValueError(
            f"{name}:{line}: {len(values)} values for {len(names)} columns ({', '.join(names)})"
        )
    texts = []
    for column, value in zip(names, values, strict=True):
        text = _text(value)
        if "\x00" in text:  # as COPY would say of a file's NUL byte
            raise LoadError(
                [f"{name}:{line}: {column}: a NUL byte (0x00), which no text value can hold"]
            )
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise LoadError(
                    [f"{name}:{line}: {column}: not UTF-8 text ({exc.reason})"]
                ) from exc
        texts.append(text)
    return texts


def _text(value: object) -> str:
    """A value as the import format writes it; checked as the format's text is."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")  # never an exponent: 1E+2 is 100
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(
        f"an import value is None, text, an int, Decimal, date, bool or UUID,"
        f" not {type(value).__name__}: {value!r}"
    )


_COPY_LINE = re.compile(r"\bline (\d+)")


def _copy(
    cur: Cursor,
    path: Path,
    spec: TableSpec,
    stage: sql.Identifier,
    header: _Header,
    progress: Progress | None,
) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in header.names)
    statement = sql.SQL(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true, ENCODING 'UTF8', FORCE_NULL ({}))"
    ).format(stage, columns, columns)
    size = path.stat().st_size
    sent = 0
    records = Records(header.eol)
    copier: Any = cur  # a psycopg 3 cursor: COPY is not DB-API
    try:
        with copier.copy(statement) as copy:
            for chunk in chunks(path):
                if (problem := records.feed(chunk)) is not None:
                    raise _record_error(spec, problem)
                copy.write(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(spec.file, sent, size)
            if (problem := records.finish()) is not None:
                raise _record_error(spec, problem)
    except Exception as exc:  # a malformed CSV record: PostgreSQL names the line
        diag = getattr(exc, "diag", None)
        sqlstate = getattr(exc, "sqlstate", None)
        if diag is None or sqlstate is None:
            raise
        context = diag.context or ""
        found = _COPY_LINE.search(context)
        where = f"{spec.file}:{found.group(1)}" if found else spec.file
        reason = (diag.message_primary or str(exc)).strip()
        if sqlstate == "22021":  # character_not_in_repertoire: a byte that is not UTF-8
            if reason.endswith(": 0x00"):  # valid UTF-8, but no PostgreSQL text holds it
                raise LoadError(
                    [f"{where}: a NUL byte (0x00), which no text value can hold"]
                ) from exc
            raise LoadError([f"{where}: not UTF-8 text ({reason})"]) from exc
        raise LoadError([f"{where}: malformed CSV: {reason}"]) from exc
    # Whatever ended COPY's input, it must have read every record of the file.
    expected = max(records.records - 1, 0)
    if cur.rowcount != expected:
        raise LoadError(
            [
                f"{spec.file}: malformed CSV: the file holds {expected} records after its"
                f" header, but COPY read {cur.rowcount}"
            ]
        )


def _record_error(spec: TableSpec, problem: tuple[int, str]) -> LoadError:
    line, reason = problem
    kind = "" if reason == TOO_LONG_REASON else "malformed CSV: "
    return LoadError([f"{spec.file}:{line}: {kind}{reason}"])
