"""CSV import (SPEC.md §4): ``pipeline-coverage load DIR``.

Each file is streamed unparsed into a text-typed staging table with COPY; every check
then runs as set-based SQL over the staging table, and rows are upserted by key.
Files load in dependency order inside one unit of work, so a reference may point at
a row loaded earlier in the same import, and one bad row anywhere rolls everything
back. Every file is checked (each in a savepoint) before the problems of all files
are reported together. Problems are reported as ``file:line: column: reason``;
``line`` is the CSV record's number counting the header as line 1 (it equals the
physical line unless a quoted field spans several lines).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
import pycountry
from psycopg import sql

from pipeline_coverage.db.connection import Cursor, as_uuid, unit_of_work
from pipeline_coverage.errors import InputError, LoadError

Kind = Literal["uuid", "text", "date", "money", "int", "bool", "enum", "currency", "rate"]

#: At most this many problems are listed; the count of the rest is reported.
MAX_PROBLEMS = 20
#: A value echoed in a problem is cut after this many characters (then "…" and its
#: length), so that a huge field cannot flood the report. No valid value is that long
#: (the longest, a UUID in braces with a hyphen after every group of four, has 41).
SHOWN_CHARS = 60
#: The most bytes one CSV record may hold, the line breaks inside its quoted fields
#: included (its own line break not): a longer one is refused as soon as it is seen,
#: without reading the rest of it. A valid record holds a few hundred bytes; a bad one
#: with a value of a megabyte is still read, and its problem reported.
MAX_RECORD_BYTES = 2 << 20
#: Files are read in chunks of this size (the header must end in the first one). No
#: larger than a record may be: then a line between two line breaks of one chunk is
#: never too long, and only lines that span chunks need counting.
_CHUNK = 1 << 20
#: What PostgreSQL's uuid input accepts: 32 hex digits, a hyphen allowed after any
#: group of four, optionally in braces (pg_input_is_valid says the same on PG >= 16).
_UUID_RE = "^([0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}|[{][0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}[}])$"
_DATE_RE = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_NUMBER_RE = "^-?[0-9]+(\\.[0-9]+)?$"
_MONEY_RE = "^[0-9]{1,16}(\\.[0-9]{1,2})?$"
_INT_RE = "^-?[0-9]{1,9}$"
_RATE_RE = "^[0-9]{1,10}(\\.[0-9]{1,8})?$"
#: ISO 4217's currency codes (pycountry keeps the standard's list).
CURRENCY_CODES = tuple(sorted(currency.alpha_3 for currency in pycountry.currencies))


@dataclass(frozen=True)
class Column:
    """A CSV column: its type, whether it may be empty, and its allowed values."""

    name: str
    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    #: A column added after the first release: a file may leave it out, and then the
    #: rows it loads keep their value of it (new rows get the table's default).
    optional: bool = False
    #: What an empty field stores (None: NULL).
    default: str | None = None


@dataclass(frozen=True)
class Reference:
    """A reference from a staged row to a row of ``table`` in the same tenant.

    ``columns`` map onto ``target``; ``when`` restricts the check to rows whose
    column has a value (sales targets point at a user or a group by principal_type).
    ``enforced`` says an immediate foreign key guards it: then the upsert itself
    rejects a bad row, and this check runs only afterwards, to say where.
    """

    columns: tuple[str, ...]
    table: str
    target: tuple[str, ...]
    noun: str
    when: tuple[str, str] | None = None
    enforced: bool = True
    #: A row of the same file also satisfies it (a parent group loaded beside its
    #: children, in any order).
    or_staged: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One import file and the table it loads."""

    file: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    references: tuple[Reference, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def present(self, names: list[str]) -> TableSpec:
        """This spec with only the columns a file has (optional ones may be absent), and
        the references of those columns."""
        return dataclasses.replace(
            self,
            columns=tuple(column for column in self.columns if column.name in names),
            references=tuple(r for r in self.references if set(r.columns) <= set(names)),
        )


def _id(required: bool = True) -> Column:
    return Column("id", "uuid", required=required)


_TENANT = Column("tenant_id", "uuid", required=True)
_TENANT_REF = Reference(("tenant_id",), "tenant", ("id",), "tenant")
_PIPELINE_REF = Reference(("pipeline_id",), "pipeline", ("id",), "pipeline")
_STAGE_STATES = ("NOT_STARTED", "IN_PROGRESS", "DONE_SUCCESS", "DONE_FAILED")
_FORECAST_CATEGORIES = ("COMMIT", "BEST_CASE", "PIPELINE", "OMITTED")
_FORECAST_CATEGORY = Column(
    "forecast_category", "enum", choices=_FORECAST_CATEGORIES, optional=True
)
_PRINCIPAL_TYPES = ("USER", "GROUP")

#: The import files, in the order they load (parents before children).
TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "tenants.csv",
        "tenant",
        (
            _id(),
            Column("name", "text", required=True),
            Column("currency", "currency", optional=True, default="USD"),
            Column(
                "fiscal_year_start_month",
                "int",
                minimum=1,
                maximum=12,
                optional=True,
                default="1",
            ),
        ),
        ("id",),
    ),
    TableSpec(
        "exchange_rates.csv",
        "exchange_rate",
        (
            _TENANT,
            Column("currency", "currency", required=True),
            Column("valid_from", "date", required=True),
            Column("rate", "rate", required=True),
        ),
        ("tenant_id", "currency", "valid_from"),
        (_TENANT_REF,),
    ),
    TableSpec(
        "users.csv",
        "crm_user",
        (
            _id(),
            _TENANT,
            Column("name", "text", required=True),
            Column("email", "text"),
            Column("is_active", "bool", required=True),
        ),
        ("tenant_id", "id"),
        (_TENANT_REF,),
    ),
    TableSpec(
        "groups.csv",
        "crm_group",
        (
            _id(),
            _TENANT,
            Column("name", "text", required=True),
            Column("parent_group_id", "uuid", optional=True),
        ),
        ("tenant_id", "id"),
        (
            _TENANT_REF,
            # fk_crm_group_parent is deferred (a parent may come after its children).
            Reference(
                ("parent_group_id",),
                "crm_group",
                ("id",),
                "parent group",
                enforced=False,
                or_staged=True,
            ),
        ),
    ),
    TableSpec(
        "group_members.csv",
        "group_member",
        (
            _TENANT,
            Column("group_id", "uuid", required=True),
            Column("user_id", "uuid", required=True),
        ),
        ("tenant_id", "group_id", "user_id"),
        (
            _TENANT_REF,
            Reference(("group_id",), "crm_group", ("id",), "group"),
            Reference(("user_id",), "crm_user", ("id",), "user"),
        ),
    ),
    TableSpec(
        "pipelines.csv",
        "pipeline",
        (_id(), _TENANT, Column("name", "text", required=True)),
        ("tenant_id", "id"),
        (_TENANT_REF,),
    ),
    TableSpec(
        "pipeline_stages.csv",
        "pipeline_stage",
        (
            _id(),
            _TENANT,
            Column("pipeline_id", "uuid", required=True),
            Column("name", "text", required=True),
            Column("stage_state", "enum", required=True, choices=_STAGE_STATES),
            Column("probability", "int", minimum=0, maximum=100),
            Column("position", "int"),
            _FORECAST_CATEGORY,
        ),
        ("tenant_id", "id"),
        (_TENANT_REF, _PIPELINE_REF),
    ),
    TableSpec(
        "deals.csv",
        "deal",
        (
            _id(),
            _TENANT,
            Column("pipeline_id", "uuid", required=True),
            Column("stage_id", "uuid", required=True),
            Column("name", "text", required=True),
            Column("amount", "money"),
            Column("expected_close_date", "date"),
            Column("close_date", "date"),
            Column("owned_by_user_id", "uuid"),
            Column("assigned_user_id", "uuid"),
            Column("owned_by_group_id", "uuid"),
            Column("assigned_group_id", "uuid"),
            _FORECAST_CATEGORY,
            Column("currency", "currency", optional=True),
        ),
        ("tenant_id", "id"),
        (
            _TENANT_REF,
            _PIPELINE_REF,
            # fk_deal_stage is deferred (stages may move with their deals): check now.
            Reference(("stage_id",), "pipeline_stage", ("id",), "stage", enforced=False),
            Reference(
                ("pipeline_id", "stage_id"),
                "pipeline_stage",
                ("pipeline_id", "id"),
                "stage of that pipeline",
                enforced=False,
            ),
            # Deferred keys (migration 0006): checked at commit, so checked here first.
            Reference(("owned_by_user_id",), "crm_user", ("id",), "user", enforced=False),
            Reference(("assigned_user_id",), "crm_user", ("id",), "user", enforced=False),
            Reference(("owned_by_group_id",), "crm_group", ("id",), "group", enforced=False),
            Reference(("assigned_group_id",), "crm_group", ("id",), "group", enforced=False),
        ),
    ),
    TableSpec(
        "sales_targets.csv",
        "sales_target",
        (
            _id(),
            _TENANT,
            Column("principal_type", "enum", required=True, choices=_PRINCIPAL_TYPES),
            Column("principal_id", "uuid", required=True),
            Column("pipeline_id", "uuid"),
            Column("period_start", "date", required=True),
            Column("period_end", "date", required=True),
            Column("target_amount", "money", required=True),
        ),
        ("tenant_id", "id"),
        (
            _TENANT_REF,
            _PIPELINE_REF,
            # A principal is a user or a group: no foreign key can say which.
            Reference(
                ("principal_id",),
                "crm_user",
                ("id",),
                "user",
                when=("principal_type", "USER"),
                enforced=False,
            ),
            Reference(
                ("principal_id",),
                "crm_group",
                ("id",),
                "group",
                when=("principal_type", "GROUP"),
                enforced=False,
            ),
        ),
    ),
)

_BY_FILE = {spec.file: spec for spec in TABLES}


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


#: Called with (file name, bytes sent so far, file size) while a file streams in.
Progress = Callable[[str, int, int], None]


def load_directory(conn: Any, directory: Path, progress: Progress | None = None) -> list[TableLoad]:
    """Import every known CSV file of ``directory``, all or nothing.

    Raises :class:`LoadError` (nothing written) when any row or header is bad. Every
    file is checked, also after another one had problems, and the problems of all
    files are reported together (at most MAX_PROBLEMS listed per file, all counted).
    """
    files = _import_files(directory)
    rejected: dict[str, LoadError] = {}
    headers: dict[str, _Header] = {}
    for spec in files:
        try:
            headers[spec.file] = _read_header(directory / spec.file, spec)
        except LoadError as exc:
            rejected[spec.file] = exc
    loads: list[TableLoad] = []
    # Tables whose file is not written: references to them cannot be checked.
    unloaded = {spec.table for spec in files if spec.file in rejected}
    # PostgreSQL 16 checks input against a type without raising: cheaper than a regex.
    modern = conn.info.server_version >= 160000
    with unit_of_work(conn) as cur:
        # On Citus, a local (staging) table cannot be joined with a distributed one:
        # the checks then compare with keys pulled from the cluster first.
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        citus = bool(cur.fetchone()[0])
        # A stage may move to another pipeline together with its deals: the deal→stage
        # reference is checked once every file is in.
        cur.execute("SET CONSTRAINTS dyno_crm.fk_deal_stage DEFERRED")
        for spec in files:
            if spec.file in rejected:
                continue
            # A COPY error aborts the transaction: the next file goes on from here.
            cur.execute("SAVEPOINT pipeline_coverage_file")
            try:
                loaded = _load_file(
                    cur,
                    directory / spec.file,
                    spec,
                    headers[spec.file],
                    progress,
                    modern,
                    unloaded,
                    citus=citus,
                )
            except LoadError as exc:
                rejected[spec.file] = exc
                loaded = None
            if loaded is None:
                cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_file")
                unloaded.add(spec.table)
            else:
                loads.append(loaded)
            cur.execute("RELEASE SAVEPOINT pipeline_coverage_file")
        # Deals that were to move with their stage only moved if deals.csv is written.
        # Only a stage that was there before can have deals left behind, and only an
        # updated one can have moved.
        if any(x.table == "pipeline_stage" and x.updated for x in loads) and (
            "deal" not in unloaded
        ):
            try:
                _raise_problems(
                    cur, _BY_FILE["pipeline_stages.csv"], _moved_stage_problems(cur, citus=citus)
                )
            except LoadError as exc:
                rejected["pipeline_stages.csv"] = exc
        if rejected:
            errors = [rejected[spec.file] for spec in files if spec.file in rejected]
            raise LoadError(
                [problem for error in errors for problem in error.problems],
                total=sum(error.total for error in errors),
            )
        cur.execute("SET CONSTRAINTS dyno_crm.fk_deal_stage IMMEDIATE")
    return loads


def _moved_stage_problems(cur: Cursor, *, citus: bool = False) -> sql.Composable:
    """Deals left behind by a stage that this import moved to another pipeline.

    On Citus, the deals whose pipeline differs from their stage's (a join of
    co-located tables, on the shards) are pulled first, for the staged tenants only.
    """
    stage = _stage_name(_BY_FILE["pipeline_stages.csv"])
    if citus:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.pipeline_coverage_moved"))
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE pipeline_coverage_moved ON COMMIT DROP AS"
                " SELECT d.tenant_id, d.id, d.pipeline_id, d.stage_id,"
                " ps.pipeline_id AS stage_pipeline_id"
                " FROM dyno_crm.deal AS d JOIN dyno_crm.pipeline_stage AS ps"
                "   ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id"
                " WHERE d.tenant_id = ANY({tenants}) AND d.pipeline_id <> ps.pipeline_id"
            ).format(tenants=_staged_tenants(cur, stage))
        )
        return sql.SQL(
            "SELECT s.line, 'pipeline_id: stage ' || m.stage_id || ' moves to pipeline '"
            " || m.stage_pipeline_id || ', but deal ' || m.id || ' of pipeline ' || m.pipeline_id"
            " || ' uses it (move the deal too, in deals.csv)' AS problem"
            " FROM {stage} AS s"
            " JOIN pg_temp.pipeline_coverage_moved AS m"
            "   ON m.tenant_id = s.tenant_id::uuid AND m.stage_id = s.id::uuid"
        ).format(stage=stage)
    return sql.SQL(
        "SELECT s.line, 'pipeline_id: stage ' || ps.id || ' moves to pipeline '"
        " || ps.pipeline_id || ', but deal ' || d.id || ' of pipeline ' || d.pipeline_id"
        " || ' uses it (move the deal too, in deals.csv)' AS problem"
        " FROM {stage} AS s"
        " JOIN dyno_crm.pipeline_stage AS ps"
        "   ON ps.tenant_id = s.tenant_id::uuid AND ps.id = s.id::uuid"
        " JOIN dyno_crm.deal AS d ON d.tenant_id = ps.tenant_id AND d.stage_id = ps.id"
        " WHERE d.pipeline_id <> ps.pipeline_id"
    ).format(stage=stage)


def _staged_tenants(cur: Cursor, stage: sql.Identifier) -> sql.Composable:
    """The tenant ids of a staged file (checked to be UUIDs), as an array literal."""
    cur.execute(
        sql.SQL("SELECT COALESCE(array_agg(DISTINCT tenant_id::uuid), '{{}}') FROM {}").format(
            stage
        )
    )
    return sql.SQL("{}::uuid[]").format(sql.Literal([str(t) for t in cur.fetchone()[0]]))


def _pulled_keys(cur: Cursor, spec: TableSpec, stage: sql.Identifier) -> dict[str, sql.Composable]:
    """On Citus: the keys of every table ``spec`` refers to, for the tenants of the
    staged file, pulled into temporary tables (a router or multi-shard SELECT); the
    reference checks then anti-join them locally. Maps a table to its keys' table."""
    tenants = _staged_tenants(cur, stage)
    pulled: dict[str, sql.Composable] = {}
    for table in dict.fromkeys(reference.table for reference in spec.references):
        tenant_key = "id" if table == "tenant" else "tenant_id"
        columns = dict.fromkeys(
            [tenant_key] + [c for r in spec.references if r.table == table for c in r.target]
        )
        keys = sql.Identifier(f"pipeline_coverage_keys_{table}")
        cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(keys))
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {keys} ON COMMIT DROP AS SELECT {columns} FROM {table}"
                " WHERE {tenant_key} = ANY({tenants})"
            ).format(
                keys=keys,
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                table=sql.Identifier("dyno_crm", table),
                tenant_key=sql.Identifier(tenant_key),
                tenants=tenants,
            )
        )
        pulled[table] = sql.SQL("pg_temp.{}").format(keys)
    return pulled


def _import_files(directory: Path) -> list[TableSpec]:
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    present = {path.name for path in directory.iterdir() if path.suffix.lower() == ".csv"}
    unknown = sorted(present - set(_BY_FILE))
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


def _shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` as a problem echoes it: cut after ``limit`` characters, with its length.

    :func:`_shown` is the same rule in SQL.
    """
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _header_name(name: str) -> str:
    """A header name as a problem echoes it: as it is when it reads as it is, quoted
    (``' name'``, ``'\\ufeffid'``) when a space at an end or an invisible character would
    make ``name: unknown column`` look like a contradiction."""
    plain = name == name.strip() and name.isprintable()
    return _shorten(name if plain else repr(name))


@dataclass(frozen=True)
class _Header:
    """A file's header: its column names, and the line break that ends its records."""

    names: list[str]
    #: b"\n" (for "\n" and "\r\n" files) or b"\r": COPY takes the header's line break
    #: for the whole file.
    eol: bytes


def _expected_columns(spec: TableSpec) -> str:
    """``id,name`` — and ``; optional: currency`` where a file may leave some out."""
    required = [column.name for column in spec.columns if not column.optional]
    optional = [column.name for column in spec.columns if column.optional]
    return ",".join(required) + (f"; optional: {','.join(optional)}" if optional else "")


def _read_header(path: Path, spec: TableSpec) -> _Header:
    # Only the header line is decoded here: COPY checks the encoding of the rest and
    # names the line of a bad byte.
    try:
        with path.open("rb") as handle:
            data = handle.read(_CHUNK)
    except OSError as exc:
        raise LoadError([f"{spec.file}: cannot read ({exc.strerror or exc})"]) from exc
    complete = len(data) < _CHUNK
    data = data.removeprefix(codecs.BOM_UTF8)
    end = _first_record_end(data)
    if end < 0 and not complete:
        raise LoadError(
            [f"{spec.file}:1: malformed CSV header (no end of line in its first {_CHUNK:,} bytes)"]
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
    for name in header:
        if name not in expected:
            problems.append(
                f"{spec.file}:1: {_header_name(name) or '(empty)'}: unknown column "
                f"(expected: {_expected_columns(spec)})"
            )
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(f"{spec.file}:1: {_header_name(name)}: column appears twice")
        seen.add(name)
    problems += [
        f"{spec.file}:1: {column.name}: missing column"
        for column in spec.columns
        if column.name not in header and not column.optional
    ]
    if problems:
        raise LoadError(problems[:MAX_PROBLEMS], total=len(problems))
    bare_cr = data[end : end + 1] == b"\r" and data[end + 1 : end + 2] != b"\n"
    return _Header(header, b"\r" if end >= 0 and bare_cr else b"\n")


_QUOTE_OR_BREAK = re.compile(rb'["\r\n]')


def _first_record_end(data: bytes) -> int:
    """Where the first CSV record of ``data`` ends: its first line break outside quotes.

    -1 if there is none. Like PostgreSQL's COPY, every ``"`` toggles quoting (``""``
    inside a quoted field toggles twice).
    """
    quoted = False
    for found in _QUOTE_OR_BREAK.finditer(data):
        if found.group() == b'"':
            quoted = not quoted
        elif not quoted:
            return found.start()
    return -1


def _stage_name(spec: TableSpec) -> sql.Identifier:
    return sql.Identifier(f"pipeline_coverage_stage_{spec.table}")


def _load_file(
    cur: Cursor,
    path: Path,
    spec: TableSpec,
    header: _Header,
    progress: Progress | None,
    modern: bool,
    unloaded: set[str],
    *,
    citus: bool = False,
) -> TableLoad | None:
    """Stage, check and upsert one file; :class:`LoadError` if it has problems.

    None (nothing written) when a table it refers to is not written: its rows are
    checked on their own and against the tables that are, but not written, since every
    reference to the missing table would fail.
    """
    spec = spec.present(header.names)
    stage = _stage_name(spec)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(stage))
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (line bigint GENERATED ALWAYS AS IDENTITY (START 2), {})"
            " ON COMMIT DROP"
        ).format(
            stage,
            sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in header.names),
        )
    )
    _copy(cur, path, spec, stage, header, progress)
    # Before PostgreSQL 16, a regular expression per UUID is most of a file's checks;
    # a cast of every UUID column in one pass says the same of a file without a bad
    # one (the regular expressions then locate a bad one).
    cast = not modern and _uuids_cast(cur, spec, stage)
    _raise_problems(cur, spec, _value_problems(spec, stage, modern=modern, uuids_cast=cast))
    _raise_problems(cur, spec, _duplicate_problems(spec, stage))
    targets = _pulled_keys(cur, spec, stage) if citus and spec.references else {}
    checkable = [reference for reference in spec.references if reference.table not in unloaded]
    if len(checkable) < len(spec.references):
        _raise_reference_problems(cur, spec, stage, checkable, targets)
        return None
    # Foreign keys check most references row by row during the upsert anyway: only
    # the others are checked first. When any reference fails, every check runs in
    # declared order, so the root cause (a missing pipeline, say) is the one named.
    if any(
        _has_problems(cur, _reference_problems(reference, stage, targets))
        for reference in spec.references
        if not reference.enforced
    ):
        _raise_reference_problems(cur, spec, stage, spec.references, targets)
    cur.execute("SAVEPOINT pipeline_coverage_upsert")
    try:
        rows, inserted, updated = _upsert(cur, spec, stage)
    except psycopg.errors.IntegrityError as exc:
        cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_upsert")
        _raise_reference_problems(cur, spec, stage, spec.references, targets)
        # A rule only the database could see.
        detail = exc.diag.message_detail
        detail = f" ({_shorten(detail, 4 * SHOWN_CHARS)})" if detail else ""
        raise LoadError([f"{spec.file}: {exc.diag.message_primary}{detail}"]) from exc
    cur.execute("RELEASE SAVEPOINT pipeline_coverage_upsert")
    if spec.table == "crm_group" and "parent_group_id" in spec.column_names:
        _raise_problems(cur, spec, _cycle_problems(cur, stage))
    tenant_column = sql.Identifier("id" if spec.table == "tenant" else "tenant_id")
    cur.execute(sql.SQL("SELECT DISTINCT {}::uuid FROM {}").format(tenant_column, stage))
    tenant_ids = tuple(as_uuid(row[0]) for row in cur.fetchall())
    if spec.table != "pipeline_stage":  # kept for the moved-stage check at the end
        cur.execute(sql.SQL("DROP TABLE pg_temp.{}").format(stage))
    return TableLoad(spec.file, spec.table, rows, inserted, updated, tenant_ids)


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        first = handle.read(_CHUNK)
        yield first.removeprefix(codecs.BOM_UTF8)
        while chunk := handle.read(_CHUNK):
            yield chunk


_COPY_LINE = re.compile(r"\bline (\d+)")
#: A line holding only these (COPY's end-of-data marker) is rejected.
_MARKERS = (b"\\.", b"\\.\r")
#: Such a line between two line breaks, by the file's line break.
_MARKER_LINE = {
    eol: re.compile(re.escape(eol) + rb"\\\.\r?" + re.escape(eol)) for eol in (b"\n", b"\r")
}


#: A quoted CSV field (quotes inside doubled); possessive, so that a field that does
#: not close fails at once instead of backtracking.
_QUOTED = rb'"(?:[^"]++|"")*+"'
#: A CSV field as RFC 4180 has it: quoted, or without any quote.
_FIELD = rb"(?:" + _QUOTED + rb'|[^",]*+)'
#: A whole record whose quotes are where CSV allows them (a CRLF file's lines end in CR).
_WELL_QUOTED = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*\r?")
#: The complete fields at the start of a line, each with its comma.
_LEADING_FIELDS = re.compile(rb"(?:" + _FIELD + rb",)*")
#: Whole records one after the other, by the file's line break, for checking a chunk's
#: complete lines in one match (an unquoted field holds no line break).
_LINE_FIELD = rb"(?:" + _QUOTED + rb'|[^",\r\n]*+)'
_RECORD = _LINE_FIELD + rb"(?:," + _LINE_FIELD + rb")*\r?"
_WELL_QUOTED_RECORDS = {
    eol: re.compile(_RECORD + rb"(?:" + re.escape(eol) + _RECORD + rb")*") for eol in (b"\n", b"\r")
}

_MARKER_LINE_REASON = "a line holding only \\. (the end-of-data marker of COPY) is not a record"
_STRAY_QUOTE_REASON = (
    'a quote (") inside a field that does not start with one, or after a closing quote'
    ' (quote the whole field and double the quotes in it: "27"" monitor")'
)
_UNCLOSED_REASON = "a quoted field that starts on this line is never closed"
_TOO_LONG_REASON = (
    f"a record longer than {MAX_RECORD_BYTES:,} bytes ({MAX_RECORD_BYTES >> 20} MiB),"
    " the most one record may hold"
)


class _Records:
    """Counts the CSV records of a file as COPY splits them, chunk by chunk; finds the
    lines that hold only ``\\.``; and checks that the quotes of a record holding any are
    where CSV allows them.

    A record ends at a line break outside quotes; like COPY, every ``"`` toggles quoting
    (``""`` inside a quoted field toggles twice). A line holding only ``\\.`` (or
    ``\\.\\r``) at the start of a record is COPY's end-of-data marker: PostgreSQL 15
    silently stops reading there, PostgreSQL 18 reads it as a bad record. It is found
    here, before its chunk is sent, so that both reject it alike; inside a quoted field
    it is data on both.

    COPY also takes a ``"`` in the middle of a field as the start of a quoted part, so a
    name like ``27" monitor`` would silently swallow the rest of its line, or the next
    records, into one value, with the record count still matching. Such a record is
    refused here, at its line. Chunks without a ``"`` (outside a quoted field) are
    counted with ``bytes.count``; only chunks with quotes are walked line by line, and
    only records with quotes are checked.

    A record longer than MAX_RECORD_BYTES is refused as soon as it is: the bytes of an
    unfinished line are kept as a list of parts (never a growing buffer copied on each
    chunk), so reading is linear in the file's size whatever its lines.
    """

    def __init__(self, eol: bytes) -> None:
        self.eol = eol
        #: Line breaks outside quotes so far: records ended (the header is the first).
        self.ended = 0
        self.quoted = False
        #: Bytes after the last record's line break (a last line without one counts).
        self.open = False
        #: The current line so far while it may still be a marker (it started a record
        #: and has at most 3 bytes), else None.
        self.head: bytes | None = b""
        #: The current line so far, from the chunks before (it goes on in the next), in
        #: parts; their length, and whether any holds a quote.
        self.parts: list[bytes] = []
        self.partial_bytes = 0
        self.partial_quotes = False
        #: The current record's lines before the current one, when it spans lines, and
        #: their bytes with the line breaks after them.
        self.lines: list[bytes] = []
        self.lines_bytes = 0

    @property
    def records(self) -> int:
        """Records so far, the header included."""
        return self.ended + int(self.open)

    def feed(self, chunk: bytes) -> tuple[int, str] | None:
        """Count ``chunk``; the first problem it completes, if any: (line, reason)."""
        eol = self.eol
        if self.quoted or self.partial_quotes or b'"' in chunk:
            return self._feed_lines(chunk)
        first = chunk.find(eol)
        if first < 0:
            self._extend(chunk)
            return self._carry(chunk)
        if self.partial_bytes + first > MAX_RECORD_BYTES:
            return self.ended + 1, _TOO_LONG_REASON
        if first <= 3 and self._is_marker(chunk[:first]):
            return self.ended + 1, _MARKER_LINE_REASON
        # A one-byte search is fast (memchr); backslashes are rare in CRM data.
        if b"\\" in chunk and (found := _MARKER_LINE[eol].search(chunk)):
            return self.ended + chunk.count(eol, 0, found.start() + 1) + 1, _MARKER_LINE_REASON
        # A line between two line breaks of the chunk is shorter than the chunk: only a
        # chunk longer than a record may be holding one too long.
        if len(chunk) > MAX_RECORD_BYTES and (problem := self._long_line(chunk)):
            return problem
        self.ended += chunk.count(eol)
        last = chunk[chunk.rfind(eol) + 1 :]
        self.head = last if len(last) <= 3 else None
        self.open = bool(last)
        self.parts = []
        self.partial_bytes = 0
        return self._carry(last)

    def finish(self) -> tuple[int, str] | None:
        """At the end of the file: a problem of its last line, if any."""
        if self.head in _MARKERS:
            return self.ended + 1, _MARKER_LINE_REASON
        if self.quoted or self.partial_quotes:
            return self._check([*self.lines, b"".join(self.parts)], closed=not self.quoted)
        return None

    def _carry(self, part: bytes) -> tuple[int, str] | None:
        """Keep ``part`` (no line break in it) as the current line's next bytes; the
        problem if the record is now too long."""
        self.parts.append(part)
        self.partial_bytes += len(part)
        self.partial_quotes = self.partial_quotes or b'"' in part
        if self.lines_bytes + self.partial_bytes > MAX_RECORD_BYTES:
            return self.ended + 1, _TOO_LONG_REASON
        return None

    def _take_partial(self) -> bytes:
        """The current line's bytes from the chunks before, which a line break ends."""
        partial = b"".join(self.parts)
        self.parts = []
        self.partial_bytes = 0
        self.partial_quotes = False
        return partial

    def _long_line(self, chunk: bytes) -> tuple[int, str] | None:
        """The problem of the first line too long between two line breaks of ``chunk``
        (a chunk without quotes: its lines are records)."""
        eol = self.eol
        start = chunk.find(eol) + 1
        ended = self.ended + 1
        while (end := chunk.find(eol, start)) >= 0:
            if end - start > MAX_RECORD_BYTES:
                return ended + 1, _TOO_LONG_REASON
            start = end + 1
            ended += 1
        return None

    def _check(self, lines: list[bytes], *, closed: bool) -> tuple[int, str] | None:
        """The problem of the record of ``lines`` (the current one), if any."""
        line = self.ended + 1
        if closed and _WELL_QUOTED.fullmatch(self.eol.join(lines)):
            return None
        # Where it goes wrong: a quote in a field that does not start with one, or an
        # opening quote never closed (the record then ran on to the end of the file).
        first = lines[0]
        start = _LEADING_FIELDS.match(first)
        rest = first[start.end() if start else 0 :]
        if closed or not rest.startswith(b'"'):
            return line, _STRAY_QUOTE_REASON
        return line, _UNCLOSED_REASON

    def _is_marker(self, rest: bytes) -> bool:
        """Whether the current line, ending after ``rest``, is a marker line."""
        head = self.head
        return head is not None and len(head) + len(rest) <= 3 and head + rest in _MARKERS

    def _extend(self, part: bytes) -> None:
        """The current line goes on with ``part`` (no line break in it)."""
        head = self.head
        self.head = head + part if head is not None and len(head) + len(part) <= 3 else None
        self.open = self.open or bool(part)

    def _feed_lines(self, chunk: bytes) -> tuple[int, str] | None:
        eol = self.eol
        *pieces, last = chunk.split(eol)
        quoted, head = self.quoted, self.head
        partial = self._take_partial() if pieces else b""
        # Most chunks with quotes are well quoted: checked at once, their records are
        # not checked one by one.
        checked = (
            not quoted
            and bool(pieces)
            and _WELL_QUOTED_RECORDS[eol].fullmatch(
                partial + chunk[: len(chunk) - len(last) - len(eol)]
            )
            is not None
        )
        well_quoted = _WELL_QUOTED.fullmatch
        for piece in pieces:
            if head is not None and len(head) + len(piece) <= 3 and head + piece in _MARKERS:
                return self.ended + 1, _MARKER_LINE_REASON
            if piece.count(b'"') & 1:  # (the quotes of the line's start are counted)
                quoted = not quoted
            line = partial + piece if partial else piece
            partial = b""
            if self.lines_bytes + len(line) > MAX_RECORD_BYTES:
                return self.ended + 1, _TOO_LONG_REASON
            if quoted:  # a line break inside a quoted field: the record goes on
                self.lines.append(line)
                self.lines_bytes += len(line) + len(eol)
                head = None
                continue
            if self.lines:
                if problem := self._check([*self.lines, line], closed=True):
                    return problem
                self.lines = []
                self.lines_bytes = 0
            elif not checked and b'"' in line and not well_quoted(line):
                return self._check([line], closed=True)
            self.ended += 1
            head = b""
        self.quoted, self.head = quoted, head
        if pieces:  # after a line break inside quotes, the record is still open
            self.open = quoted
        self._extend(last)
        if last.count(b'"') & 1:
            self.quoted = not self.quoted
        return self._carry(last)


def _copy(
    cur: Any,
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
    records = _Records(header.eol)
    try:
        with cur.copy(statement) as copy:
            for chunk in _chunks(path):
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
    kind = "" if reason == _TOO_LONG_REASON else "malformed CSV: "
    return LoadError([f"{spec.file}:{line}: {kind}{reason}"])


def _shown(value: sql.Composable, *, quote: bool = True) -> sql.Composable:
    """SQL text echoing ``value`` in a problem (quoted as a literal, or not), cut after
    SHOWN_CHARS characters with its length: the rule of :func:`_shorten`."""
    show = "quote_literal({})" if quote else "{}"
    return sql.SQL(
        "CASE WHEN length({value}) <= {limit} THEN {whole}"
        " ELSE {cut} || ' (' || length({value}) || ' characters)' END"
    ).format(
        value=value,
        limit=sql.Literal(SHOWN_CHARS),
        whole=sql.SQL(show).format(value),
        cut=sql.SQL(show).format(
            sql.SQL("left({}, {}) || '…'").format(value, sql.Literal(SHOWN_CHARS))
        ),
    )


def _problem(line: sql.Composable, column: str, reason: sql.Composable) -> sql.Composable:
    return sql.SQL("CASE WHEN {} THEN {} END").format(
        line, sql.SQL("{} || ': ' || {}").format(sql.Literal(column), reason)
    )


def _uuids_cast(cur: Cursor, spec: TableSpec, stage: sql.Identifier) -> bool:
    """Whether every value of the staged file's UUID columns is a UUID, by casting them
    all in one pass (in a savepoint: a bad value aborts the cast)."""
    names = [column.name for column in spec.columns if column.kind == "uuid"]
    if not names:
        return False
    cur.execute("SAVEPOINT pipeline_coverage_cast")
    try:
        cur.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(" + ").join(
                    sql.SQL("count({}::uuid)").format(sql.Identifier(name)) for name in names
                ),
                stage,
            )
        )
    except psycopg.errors.InvalidTextRepresentation:
        cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_cast")
        return False
    cur.execute("RELEASE SAVEPOINT pipeline_coverage_cast")
    return True


def _column_checks(
    column: Column, modern: bool = False, uuids_cast: bool = False
) -> list[sql.Composable]:
    """SQL expressions, each NULL or a 'column: reason' text, for one staged column;
    none for a UUID column's values when ``uuids_cast`` (every one cast cleanly)."""
    c = sql.Identifier(column.name)
    shown = _shown(c)
    checks: list[sql.Composable] = []
    if column.required:
        checks.append(
            _problem(sql.SQL("{} IS NULL").format(c), column.name, sql.Literal("required"))
        )
    if column.kind == "uuid" and not uuids_cast:
        invalid = (
            sql.SQL("NOT pg_input_is_valid({}, 'uuid')").format(c)
            if modern
            else sql.SQL("{} !~ {}").format(c, sql.Literal(_UUID_RE))
        )
        checks.append(
            _problem(
                invalid,
                column.name,
                sql.SQL("'not a UUID: ' || {}").format(shown),
            )
        )
    elif column.kind == "date":
        # Shape first, then the calendar (nested CASEs fix the evaluation order, so
        # nothing is cast before its shape is known): year 1 or later, and the day
        # must exist in that month.
        valid = sql.SQL(
            "CASE WHEN {c} !~ {re} THEN false WHEN substr({c}, 1, 4)::int < 1 THEN false"
            " ELSE substr({c}, 9, 2)::int <= extract(day FROM ("
            "make_date(substr({c}, 1, 4)::int, substr({c}, 6, 2)::int, 1)"
            " + interval '1 month - 1 day'))::int END"
        ).format(c=c, re=sql.Literal(_DATE_RE))
        checks.append(
            _problem(
                sql.SQL("NOT ({})").format(valid),
                column.name,
                sql.SQL("'not a date (YYYY-MM-DD): ' || {}").format(shown),
            )
        )
    elif column.kind == "money":
        checks += _decimal_checks(
            column, c, shown, positive=False, shape=_MONEY_RE,
            shape_text="at most 16 digits and 2 decimal places",
        )  # fmt: skip
    elif column.kind == "rate":
        checks += _decimal_checks(
            column, c, shown, positive=True, shape=_RATE_RE,
            shape_text="at most 10 digits and 8 decimal places",
        )  # fmt: skip
    elif column.kind == "int":
        checks.append(
            _problem(
                sql.SQL("{} !~ {}").format(c, sql.Literal(_INT_RE)),
                column.name,
                sql.SQL("'not an integer: ' || {}").format(shown),
            )
        )
        if column.minimum is not None and column.maximum is not None:
            checks.append(
                _problem(
                    sql.SQL(
                        "CASE WHEN {c} ~ {re} THEN {c}::int NOT BETWEEN {lo} AND {hi} END"
                    ).format(
                        c=c,
                        re=sql.Literal(_INT_RE),
                        lo=sql.Literal(column.minimum),
                        hi=sql.Literal(column.maximum),
                    ),
                    column.name,
                    sql.SQL("{} || {}").format(
                        sql.Literal(f"must be between {column.minimum} and {column.maximum}, got "),
                        _shown(c, quote=False),
                    ),
                )
            )
    elif column.kind == "bool":
        checks.append(
            _problem(
                sql.SQL("lower({}) NOT IN ('true', 'false')").format(c),
                column.name,
                sql.SQL("'not true or false: ' || {}").format(shown),
            )
        )
    elif column.kind == "currency":
        checks.append(
            _problem(
                sql.SQL("{} !~ '^[A-Z]{{3}}$'").format(c),
                column.name,
                sql.SQL("'not an ISO 4217 currency code (three capital letters): ' || {}").format(
                    shown
                ),
            )
        )
        checks.append(
            _problem(
                sql.SQL("{c} ~ '^[A-Z]{{3}}$' AND {c} <> ALL ({codes})").format(
                    c=c, codes=sql.Literal(list(CURRENCY_CODES))
                ),
                column.name,
                sql.SQL("'not an ISO 4217 currency code: ' || {}").format(shown),
            )
        )
    elif column.kind == "enum":
        checks.append(
            _problem(
                sql.SQL("{} NOT IN ({})").format(
                    c, sql.SQL(", ").join(map(sql.Literal, column.choices))
                ),
                column.name,
                sql.SQL("{} || {}").format(
                    sql.Literal(f"must be one of {', '.join(column.choices)}, got "), shown
                ),
            )
        )
    return checks


def _decimal_checks(
    column: Column,
    c: sql.Composable,
    shown: sql.Composable,
    *,
    positive: bool,
    shape: str,
    shape_text: str,
) -> list[sql.Composable]:
    """A number (money ``>= 0``, a rate ``> 0``) of a bounded shape. Nothing is cast
    before its shape is known: a number of a million digits is still a number here."""
    number = sql.Literal(_NUMBER_RE)
    negative = sql.SQL("left({c}, 1) = '-' AND {c} ~ '[1-9]'").format(c=c)
    wrong_sign = (
        sql.SQL("{c} !~ '[1-9]' OR left({c}, 1) = '-'").format(c=c) if positive else negative
    )
    return [
        _problem(
            sql.SQL("{} !~ {}").format(c, number),
            column.name,
            sql.SQL("'not a number: ' || {}").format(shown),
        ),
        _problem(
            sql.SQL("CASE WHEN {c} ~ {num} THEN {wrong} END").format(
                c=c, num=number, wrong=wrong_sign
            ),
            column.name,
            sql.SQL("{} || {}").format(
                sql.Literal(f"must be {'> 0' if positive else '>= 0'}, got "),
                _shown(c, quote=False),
            ),
        ),
        _problem(
            # Unsigned numbers only ("-0" is money 0); a rate's sign is checked above.
            sql.SQL("CASE WHEN {c} ~ {num} AND left({c}, 1) <> '-' THEN {c} !~ {shape} END").format(
                c=c, num=number, shape=sql.Literal(shape)
            ),
            column.name,
            sql.SQL("{} || {}").format(sql.Literal(f"{shape_text}, got "), _shown(c, quote=False)),
        ),
    ]


def _row_checks(spec: TableSpec) -> list[sql.Composable]:
    if spec.table == "crm_group" and "parent_group_id" in spec.column_names:
        return [
            _problem(
                sql.SQL(
                    "CASE WHEN id ~ {re} AND parent_group_id ~ {re}"
                    " THEN id::uuid = parent_group_id::uuid ELSE false END"
                ).format(re=sql.Literal(_UUID_RE)),
                "parent_group_id",
                sql.SQL("'a group cannot be its own parent'"),
            )
        ]
    if spec.table != "sales_target":
        return []
    valid_dates = sql.SQL("period_start ~ {re} AND period_end ~ {re}").format(
        re=sql.Literal(_DATE_RE)
    )
    return [
        _problem(
            sql.SQL("CASE WHEN {} THEN period_end <= period_start ELSE false END").format(
                valid_dates
            ),
            "period_end",
            sql.SQL("'must be after period_start (' || {} || '); periods are half-open'").format(
                _shown(sql.Identifier("period_start"), quote=False)
            ),
        )
    ]


def _value_problems(
    spec: TableSpec, stage: sql.Identifier, *, modern: bool, uuids_cast: bool = False
) -> sql.Composable:
    checks = [
        check for column in spec.columns for check in _column_checks(column, modern, uuids_cast)
    ]
    checks += _row_checks(spec)
    return sql.SQL(
        "SELECT line, problem FROM (SELECT line, unnest(ARRAY[{}]) AS problem FROM {}) AS p"
        " WHERE problem IS NOT NULL"
    ).format(sql.SQL(", ").join(checks), stage)


def _cast(column: Column, source: sql.Composable | None = None) -> sql.Composable:
    value = source if source is not None else sql.Identifier(column.name)
    cast = {
        "uuid": "uuid",
        "date": "date",
        "money": "numeric(18,2)",
        "rate": "numeric(18,8)",
        "int": "integer",
        "bool": "boolean",
    }.get(column.kind)
    if column.default is not None:
        value = sql.SQL("COALESCE({}, {})").format(value, sql.Literal(column.default))
    return sql.SQL("{}::{}").format(value, sql.SQL(cast)) if cast else value


def _key(spec: TableSpec) -> sql.Composable:
    """A staged row's key, cast to the table's types (as the key is compared there)."""
    by_name = {column.name: column for column in spec.columns}
    return sql.SQL(", ").join(_cast(by_name[name]) for name in spec.key)


def _duplicate_problems(spec: TableSpec, stage: sql.Identifier) -> sql.Composable:
    return sql.SQL(
        "SELECT line, {what} || ' first on line ' || first_line AS problem FROM ("
        " SELECT line, min(line) OVER (PARTITION BY {key}) AS first_line FROM {stage}) AS d"
        " WHERE line > first_line"
    ).format(
        what=sql.Literal(f"{','.join(spec.key)}: duplicate key,"),
        key=_key(spec),
        stage=stage,
    )


def _reference_problems(
    reference: Reference,
    stage: sql.Identifier,
    targets: dict[str, sql.Composable] | None = None,
) -> sql.Composable:
    """A reference's problems; ``targets`` may name, per table, the relation to look
    the keys up in instead (on Citus: keys pulled from the distributed table)."""
    target = (targets or {}).get(reference.table, sql.Identifier("dyno_crm", reference.table))
    conditions: list[sql.Composable] = []
    if reference.table != "tenant":
        conditions.append(sql.SQL("t.tenant_id = s.tenant_id::uuid"))
    conditions += [
        sql.SQL("t.{} = s.{}::uuid").format(sql.Identifier(t), sql.Identifier(c))
        for c, t in zip(reference.columns, reference.target, strict=True)
    ]
    present = [sql.SQL("s.{} IS NOT NULL").format(sql.Identifier(c)) for c in reference.columns]
    if reference.when is not None:
        present.append(
            sql.SQL("s.{} = {}").format(
                sql.Identifier(reference.when[0]), sql.Literal(reference.when[1])
            )
        )
    shown = sql.SQL(" || '/' || ").join(
        _shown(sql.SQL("s.{}").format(sql.Identifier(c)), quote=False) for c in reference.columns
    )
    in_tenant = "" if reference.table == "tenant" else " in tenant "
    reason = sql.SQL("{} || {} || {} || {}").format(
        sql.Literal(f"{'/'.join(reference.columns)}: no {reference.noun} "),
        shown,
        sql.Literal(in_tenant),
        sql.SQL("''")
        if reference.table == "tenant"
        else _shown(sql.SQL("s.tenant_id"), quote=False),
    )
    staged: sql.Composable = sql.SQL("")
    if reference.or_staged:
        staged = sql.SQL(
            " AND NOT EXISTS (SELECT 1 FROM {stage} AS o"
            " WHERE o.tenant_id::uuid = s.tenant_id::uuid AND {matches})"
        ).format(
            stage=stage,
            matches=sql.SQL(" AND ").join(
                sql.SQL("o.{}::uuid = s.{}::uuid").format(sql.Identifier(t), sql.Identifier(c))
                for c, t in zip(reference.columns, reference.target, strict=True)
            ),
        )
    return sql.SQL(
        "SELECT s.line, {reason} AS problem FROM {stage} AS s WHERE {present}"
        " AND NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {conditions}){staged}"
    ).format(
        reason=reason,
        stage=stage,
        present=sql.SQL(" AND ").join(present),
        target=target,
        conditions=sql.SQL(" AND ").join(conditions),
        staged=staged,
    )


def _cycle_problems(cur: Cursor, stage: sql.Identifier) -> sql.Composable:
    """The staged groups that are their own ancestor once the file is written (teams
    are a forest, SPEC.md §10). The walk runs over the staged tenants' groups copied
    into a temporary table: a recursive query over a local table, also on Citus."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.pipeline_coverage_groups"))
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE pipeline_coverage_groups ON COMMIT DROP AS"
            " SELECT g.tenant_id, g.id, g.parent_group_id FROM dyno_crm.crm_group AS g"
            " WHERE g.tenant_id = ANY({tenants}) AND g.parent_group_id IS NOT NULL"
        ).format(tenants=_staged_tenants(cur, stage))
    )
    return sql.SQL(
        "WITH RECURSIVE walk (tenant_id, start_id, at_id, path) AS ("
        " SELECT g.tenant_id, g.id, g.parent_group_id, ARRAY[g.id]"
        " FROM pg_temp.pipeline_coverage_groups AS g"
        " WHERE EXISTS (SELECT 1 FROM {stage} AS s"
        "               WHERE s.tenant_id::uuid = g.tenant_id AND s.id::uuid = g.id)"
        " UNION ALL"
        " SELECT w.tenant_id, w.start_id, g.parent_group_id, w.path || g.id"
        " FROM walk AS w JOIN pg_temp.pipeline_coverage_groups AS g"
        "   ON g.tenant_id = w.tenant_id AND g.id = w.at_id"
        " WHERE w.at_id <> w.start_id AND g.id <> ALL (w.path))"
        " SELECT s.line, 'parent_group_id: makes a cycle: '"
        " || array_to_string(w.path || w.start_id, ' -> ') AS problem"
        " FROM walk AS w JOIN {stage} AS s"
        "   ON s.tenant_id::uuid = w.tenant_id AND s.id::uuid = w.start_id"
        " WHERE w.at_id = w.start_id"
    ).format(stage=stage)


def _has_problems(cur: Cursor, problems: sql.Composable) -> bool:
    # A clean file is read whole either way; a count (unlike EXISTS, planned for its
    # first row) lets the planner hash the referenced keys instead of probing an
    # index once per staged row.
    cur.execute(sql.SQL("SELECT count(*) > 0 FROM ({}) AS p").format(problems))
    return bool(cur.fetchone()[0])


def _raise_reference_problems(
    cur: Cursor,
    spec: TableSpec,
    stage: sql.Identifier,
    references: Sequence[Reference],
    targets: dict[str, sql.Composable] | None = None,
) -> None:
    """The problems of the first of ``references`` (in declared order) that has any."""
    for reference in references:
        _raise_problems(cur, spec, _reference_problems(reference, stage, targets))


def _raise_problems(cur: Cursor, spec: TableSpec, problems: sql.Composable) -> None:
    cur.execute(
        sql.SQL(
            "SELECT line, problem, count(*) OVER () FROM ({}) AS q ORDER BY line, problem LIMIT {}"
        ).format(problems, sql.Literal(MAX_PROBLEMS))
    )
    found = cur.fetchall()
    if found:
        raise LoadError(
            [f"{spec.file}:{line}: {problem}" for line, problem, _ in found], total=int(found[0][2])
        )


def _upsert(cur: Cursor, spec: TableSpec, stage: sql.Identifier) -> tuple[int, int, int]:
    names = spec.column_names
    target = sql.Identifier("dyno_crm", spec.table)
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    values = sql.SQL(", ").join(_cast(column) for column in spec.columns)
    updatable = [name for name in names if name not in spec.key]
    if updatable:
        on_conflict = sql.SQL(
            "DO UPDATE SET {assign} WHERE ({current}) IS DISTINCT FROM ({incoming})"
        ).format(
            assign=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in updatable
            ),
            current=sql.SQL(", ").join(
                sql.SQL("{}.{}").format(target, sql.Identifier(n)) for n in updatable
            ),
            incoming=sql.SQL(", ").join(
                sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in updatable
            ),
        )
    else:
        on_conflict = sql.Composed([sql.SQL("DO NOTHING")])
    # In key order, not line order: two loads of the same rows then lock them in the
    # same order, so one waits for the other instead of each holding a row the other
    # needs (a deadlock, and one of them fails).
    cur.execute(
        sql.SQL(
            "WITH written AS (INSERT INTO {target} ({columns}) SELECT {values} FROM {stage}"
            " ORDER BY {order} ON CONFLICT ({key}) {on_conflict}"
            " RETURNING (xmax = 0) AS inserted)"
            " SELECT (SELECT count(*) FROM {stage}),"
            " count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
        ).format(
            target=target,
            columns=columns,
            values=values,
            stage=stage,
            order=_key(spec),
            key=sql.SQL(", ").join(map(sql.Identifier, spec.key)),
            on_conflict=on_conflict,
        )
    )
    rows, inserted, updated = cur.fetchone()
    return int(rows), int(inserted), int(updated)


def columns(file: str, *, optional: bool = False) -> tuple[str, ...]:
    """The columns of an import file, e.g. ``columns("deals.csv")``: those every file
    has; with ``optional``, also those a file may leave out."""
    return tuple(
        column.name for column in _BY_FILE[file].columns if optional or not column.optional
    )
