"""``pipeline-coverage import``: a CRM's own export (and a teams file and a quota
sheet) into a tenant, through the same checks and upsert as ``load`` (SPEC §12).

The export's records (:mod:`.deals`, :mod:`.sheets`) are mapped onto the contract's
tables here: reps, teams and pipelines are matched by name within the tenant (any
case) and created when new; every id an import creates is derived from the tenant,
the source and the record's key (:func:`derived_id`), so importing the same export
twice changes nothing. The rows then go through ``load``'s staging, checks and upsert
(:func:`pipeline_coverage.importing.load.load_tables`), all or nothing.

The deals stream: each deal of the export is written, as it is read, into a temporary
table by COPY (with the index of its pipeline, stage and state in place of its stage,
which is known once every deal is read), and nothing of it stays in memory. The deals
given twice, the deals' staging for ``load``, the marking of their source and a full
sync's delete are set-based SQL over that table.

A re-import reads in full only the rows it has not read before: each imported deal
keeps the digest of the CSV row it was written from (``deal.import_digest``), and a
row whose digest is among them is counted as unchanged without being parsed, staged
or compared (:class:`~pipeline_coverage.importing.deals.KnownRows`). ``load`` clears
a deal's digest when it changes the deal; ``--reread`` reads every row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import sys
import uuid
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pipeline_coverage.db.connection import Connection, Cursor, as_uuid, records, unit_of_work
from pipeline_coverage.errors import InputError, LoadError
from pipeline_coverage.importing import history
from pipeline_coverage.importing.deals import (
    DealFormat,
    DealReader,
    KnownRows,
    ReadSummary,
    _Unmapped,
    unmapped_problem,
)
from pipeline_coverage.importing.load import TableLoad, load_tables
from pipeline_coverage.importing.mapping import format_for
from pipeline_coverage.importing.sheets import SheetTarget, Teams, read_targets, read_teams
from pipeline_coverage.importing.upsert import (
    record_tenants_in_order,
    recorded_time,
    retire_deals,
)
from pipeline_coverage.importing.values import fold
from pipeline_coverage.sql import query
from pipeline_coverage.tenants import set_run_defaults

_QUERIES = "importing"
#: The namespace of every id an import derives (uuid5): fixed forever, or re-imports
#: would make new rows.
NAMESPACE = uuid.UUID("6f1c9a52-4a8e-5d0b-9b1e-2c6a0f3e7d41")
#: A stage's state as the export gives it → the contract's stage state.
STAGE_STATES = {"open": "IN_PROGRESS", "won": "DONE_SUCCESS", "lost": "DONE_FAILED"}
#: The stage a won or lost deal is put in when its own stage is open (Pipedrive keeps
#: a deal's status apart from its stage): one per pipeline, with this name.
CLOSED_STAGES = {"won": ("Won", 100), "lost": ("Lost", 0)}
#: A full sync deletes at most this share (%) of the deals a tenant has from a source.
DEFAULT_MAX_DELETE = 10.0
#: An import that inserts this many deals analyzes the deal table before it commits.
ANALYZE_AFTER = 10_000
#: How rows are digested (KnownRows): a new scheme finds no row of an older one.
DIGEST_SCHEME = "pipeline-coverage row digest 1"


@functools.cache
def _reader_code() -> str:
    """A hash of the code that makes a deal of a row and writes it (every module of
    this package, and its SQL): a row digested by other code is read again."""
    folder = Path(__file__).parent
    digest = hashlib.sha256()
    for path in [*sorted(folder.glob("*.py")), folder.parent / "sql" / "queries" / "importing.sql"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _canonical(value: object) -> object:
    """A format as plain, ordered JSON values (a set's order, and so its repr, changes
    from one process to the next)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return sorted(([str(k), _canonical(v)] for k, v in value.items()), key=json.dumps)
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=json.dumps)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


Line = int
Row = tuple[Line, Sequence[object]]


def derived_id(*parts: object) -> uuid.UUID:
    """The id an import gives a record: the same parts, the same id, always."""
    return uuid.uuid5(NAMESPACE, "\x1f".join(str(part) for part in parts))


def _uuid5_text(sha1: bytes) -> str:
    """The text of the version-5 UUID of a SHA-1 digest, as ``str(uuid.UUID(bytes=
    sha1[:16], version=5))`` (that is, :func:`uuid.uuid5`), without making the object."""
    hexed = (
        sha1[:6] + bytes((sha1[6] & 0x0F | 0x50, sha1[7], sha1[8] & 0x3F | 0x80)) + sha1[9:16]
    ).hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def tenant_id_for(name: str) -> uuid.UUID:
    """The id of a tenant an import creates (by its name, in any case)."""
    return derived_id("tenant", fold(name))


@dataclass
class Directory:
    """A tenant's reps, teams, pipelines and stages as the database holds them, keyed
    by folded name (what an import matches on)."""

    users: dict[str, uuid.UUID] = field(default_factory=dict)
    groups: dict[str, uuid.UUID] = field(default_factory=dict)
    parents: dict[uuid.UUID, uuid.UUID | None] = field(default_factory=dict)
    pipelines: dict[str, uuid.UUID] = field(default_factory=dict)
    #: (pipeline id, folded stage name) → (stage id, state)
    stages: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, str]] = field(default_factory=dict)
    positions: dict[uuid.UUID, int] = field(default_factory=dict)
    members: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)


def read_directory(cur: Cursor, tenant_id: uuid.UUID) -> Directory:
    """The tenant's directory (empty for a tenant the import creates)."""
    found = Directory()
    params = {"tenant_id": str(tenant_id)}
    cur.execute(query(_QUERIES, "tenant_users"), params)
    for row in records(cur):
        found.users.setdefault(fold(row["name"]), as_uuid(row["id"]))
    cur.execute(query(_QUERIES, "tenant_groups"), params)
    for row in records(cur):
        group = as_uuid(row["id"])
        found.groups.setdefault(fold(row["name"]), group)
        found.parents[group] = as_uuid(row["parent_group_id"]) if row["parent_group_id"] else None
    cur.execute(query(_QUERIES, "tenant_pipelines"), params)
    for row in records(cur):
        found.pipelines.setdefault(fold(row["name"]), as_uuid(row["id"]))
    cur.execute(query(_QUERIES, "tenant_stages"), params)
    for row in records(cur):
        pipeline = as_uuid(row["pipeline_id"])
        key = (pipeline, fold(row["name"]))
        found.stages.setdefault(key, (as_uuid(row["id"]), str(row["stage_state"])))
        position = row["position"]
        if position is not None:
            found.positions[pipeline] = max(found.positions.get(pipeline, 0), int(position))
    cur.execute(query(_QUERIES, "tenant_memberships"), params)
    found.members = {(as_uuid(g), as_uuid(u)) for g, u in cur.fetchall()}
    return found


@dataclass
class Plan:
    """The rows an import writes, per import file of the contract (``deals.csv``,
    ...), each with the line of the export it comes from, and what it made."""

    tenant_id: uuid.UUID
    source: str
    rows: dict[str, list[Row]] = field(default_factory=dict)
    users_created: list[str] = field(default_factory=list)
    groups_created: list[str] = field(default_factory=list)
    pipelines_created: list[str] = field(default_factory=list)
    #: (pipeline, stage, stage state, probability) of every stage created
    stages_created: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    deals: int = 0
    #: groups whose memberships the teams file gives (the others keep theirs)
    teams_given: set[uuid.UUID] = field(default_factory=set)

    def add(self, file: str, line: Line, values: Sequence[object]) -> None:
        self.rows.setdefault(file, []).append((line, values))


class Planner:
    """Maps an export's records onto rows of the contract's tables for one tenant."""

    def __init__(
        self, tenant_id: uuid.UUID, source: str, directory: Directory, files: Mapping[str, str]
    ) -> None:
        self.tenant = tenant_id
        self.plan = Plan(tenant_id, source)
        self.found = directory
        #: the file names problems are reported in: deals, teams, targets
        self.files = files
        self.problems: list[str] = []
        #: (pipeline, stage, deal state) of the deals read → its index ("kind"), and
        #: the line of the first deal of each kind
        self.kinds: dict[tuple[str, str, str], int] = {}
        self.kind_lines: list[Line] = []
        #: the first bad value of a deal (a NUL byte in a name): raised when the deals'
        #: file is staged, as a row of it would have been
        self.bad_value: LoadError | None = None
        #: keys that the temporary table cannot hold as they are (a NUL byte), by deal id
        self.odd_keys: dict[str, str] = {}
        #: rows read unchanged (not read in full: KnownRows)
        self.unchanged = 0

    # --- reps, teams, pipelines, stages --------------------------------------------

    def user(self, name: str, line: Line, file: str) -> uuid.UUID:
        key = fold(name)
        found = self.found.users.get(key)
        if found is None:
            found = derived_id(self.tenant, "user", key)
            self.found.users[key] = found
            self.plan.users_created.append(name)
            self.plan.add("users.csv", line, (found, self.tenant, name, None, True))
        return found

    def group(self, name: str, line: Line, parent: uuid.UUID | None = None) -> uuid.UUID:
        key = fold(name)
        found = self.found.groups.get(key)
        if found is None:
            found = derived_id(self.tenant, "group", key)
            self.found.groups[key] = found
            self.found.parents[found] = parent
            self.plan.groups_created.append(name)
            self.plan.add("groups.csv", line, (found, self.tenant, name, parent))
        return found

    def pipeline(self, name: str, line: Line) -> uuid.UUID:
        key = fold(name)
        found = self.found.pipelines.get(key)
        if found is None:
            found = derived_id(self.tenant, "pipeline", key)
            self.found.pipelines[key] = found
            self.plan.pipelines_created.append(name)
            self.plan.add("pipelines.csv", line, (found, self.tenant, name))
        return found

    def stage(
        self, pipeline_name: str, name: str, state: str, probability: int | None, line: Line
    ) -> tuple[uuid.UUID, str]:
        """The stage's id and contract state (created with ``state`` when new)."""
        pipeline = self.pipeline(pipeline_name, line)
        key = (pipeline, fold(name))
        found = self.found.stages.get(key)
        if found is None:
            stage = derived_id(self.tenant, "stage", pipeline, key[1])
            position = self.found.positions.get(pipeline, 0) + 1
            self.found.positions[pipeline] = position
            found = (stage, STAGE_STATES[state])
            self.found.stages[key] = found
            self.plan.stages_created.append((pipeline_name, name, found[1], probability))
            self.plan.add(
                "pipeline_stages.csv",
                line,
                (stage, self.tenant, pipeline, name, found[1], probability, position, None),
            )
        return found

    def history_stages(self, cur: Cursor, read: history.HistoryRead, fmt: DealFormat) -> None:
        """The stages the CRM's history names, in each of its deals' pipeline (a stage
        not yet in the tenant is created as the export's are: its state the format's
        for it, its probability the first line's or the format's)."""
        pipelines = {kind: pipeline for (pipeline, _, _), kind in self.kinds.items()}
        unmapped = _Unmapped(label=read.stage_column)
        resolved = []
        for kind, stage_name, line, probability in history.history_stages(cur):
            state = fmt.stage_states.get(fold(stage_name))
            if state is None:
                if fmt.every_stage_mapped:
                    unmapped.add(stage_name, line)
                    continue
                state = "open"
            if probability is None:
                probability = fmt.stage_probabilities.get(fold(stage_name))
            stage, stage_state = self.stage(pipelines[kind], stage_name, state, probability, line)
            resolved.append((kind, stage_name, str(stage), stage_state != STAGE_STATES["open"]))
        if unmapped.counts:
            raise LoadError([unmapped_problem(read.file, fmt, "stage", unmapped)])
        history.set_history_stages(cur, resolved)

    # --- the files -----------------------------------------------------------------

    def stream_deals(self, cur: Cursor, reader: DealReader) -> ReadSummary:
        """Read the deals into the temporary table :data:`DEALS` by COPY as they come,
        their owners created as they come; then the keys given twice, found there, end
        the read (:class:`LoadError` for any problem of the export) and the stages are
        made (:meth:`deal_stages`)."""
        cur.execute(query(_QUERIES, "create_read_deals"))
        prefix = f"{self.tenant}\x1fdeal\x1f{self.plan.source}\x1f"
        base = hashlib.sha1(NAMESPACE.bytes + prefix.encode())
        owners: dict[str, str] = {}
        kinds, kind_lines = self.kinds, self.kind_lines
        copier: Any = cur  # a psycopg 3 cursor: COPY is not DB-API
        count = 0
        # Rows go as values (psycopg writes COPY's text format itself, in C): a date, an
        # amount or an id is not made into text here first.
        with copier.copy(query(_QUERIES, "copy_read_deals")) as copy:
            write = copy.write_row
            for deal in reader.stream():
                kind = kinds.get((deal.pipeline, deal.stage, deal.state))
                if kind is None:
                    kind = kinds[(deal.pipeline, deal.stage, deal.state)] = len(kinds)
                    kind_lines.append(deal.line)
                owner = None
                if deal.owner:
                    owner = owners.get(deal.owner)
                    if owner is None:
                        owner = owners[deal.owner] = str(self.user(deal.owner, deal.line, "deals"))
                digest = base.copy()
                digest.update(deal.key.encode("utf-8"))  # derived_id's uuid5, by parts
                deal_id = _uuid5_text(digest.digest())
                key, name = deal.key, deal.name
                if "\x00" in key:
                    self.odd_keys[deal_id] = key
                    key = key.replace("\x00", "\ufffd")
                if not name.isascii() or "\x00" in name:
                    name = self._checked_name(name, deal.line)
                date, closed = deal.close_date, deal.state != "open"
                write((
                    deal.line, deal_id, key, kind, name, deal.amount,
                    None if closed else date, date if closed else None,
                    owner, deal.forecast_category, deal.currency, deal.created, deal.digest,
                ))  # fmt: skip
                count += 1
        self.plan.deals = count
        self.unchanged = reader.known.unchanged if reader.known is not None else 0
        # A unique index finds whether any key was given twice at the cost of the index
        # the joins below need anyway; only then are the keys and their lines looked up.
        twice = []
        cur.execute("SAVEPOINT pipeline_coverage_read_deals")
        try:
            cur.execute(query(_QUERIES, "index_read_deals_unique"))
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_read_deals")
            cur.execute(query(_QUERIES, "index_read_deals"))
            cur.execute(query(_QUERIES, "read_deals_given_twice"))
            twice = [
                (self.odd_keys.get(str(deal_id), key), lines)
                for deal_id, key, lines in cur.fetchall()
            ]
        cur.execute("RELEASE SAVEPOINT pipeline_coverage_read_deals")
        cur.execute(query(_QUERIES, "analyze_read_deals"))
        if reader.digested and reader.known is not None:
            self._unmatched(cur, reader.known)
        return reader.finish(twice)

    def _unmatched(self, cur: Cursor, known: KnownRows) -> None:
        """Keep the stored digests no row matched (their deals were not read unchanged);
        raise :class:`Reread` when a deal read in full was also read unchanged (its key
        given twice: the lines are named by reading every row in full)."""
        copier: Any = cur
        with copier.copy(query(_QUERIES, "copy_unmatched")) as copy:
            for digest in known.unmatched():
                copy.write_row((digest,))
        cur.execute(query(_QUERIES, "analyze_unmatched"))
        if known.unchanged and self.plan.deals:
            cur.execute(
                query(_QUERIES, "read_deals_also_unchanged"),
                {"tenant_id": str(self.tenant), "source": self.plan.source},
            )
            if cur.fetchone() is not None:
                raise Reread()

    def _checked_name(self, name: str, line: Line) -> str:
        """A deal's name as the temporary table can hold it; its first bad value is
        kept to be raised as ``load`` would raise it for the row."""
        problem = None
        if "\x00" in name:
            problem = "a NUL byte (0x00), which no text value can hold"
        else:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError as exc:
                problem = f"not UTF-8 text ({exc.reason})"
        if problem is None:
            return name
        if self.bad_value is None:
            self.bad_value = LoadError([f"{self.files['deals']}:{line}: name: {problem}"])
        return name.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")

    def deal_stages(self, cur: Cursor, summary: ReadSummary) -> None:
        """The deals' pipelines and stages (each stage as the export gives it; a won or
        lost deal whose stage is open goes to its pipeline's Won or Lost stage), made in
        the order of their first deal, and each kind of deal's stage in the temporary
        table :data:`KINDS`."""
        first: dict[tuple[str, str], Line] = {}
        for (pipeline_name, stage_name, _), kind in self.kinds.items():
            first.setdefault((pipeline_name, stage_name), self.kind_lines[kind])
        for (pipeline_name, stage_name), given in summary.stages.items():
            line = first.get((pipeline_name, stage_name), 1)
            self.stage(pipeline_name, stage_name, given.state, given.probability, line)
        kinds: list[tuple[int, str, str]] = []
        for (pipeline_name, stage_name, state), kind in self.kinds.items():
            line = self.kind_lines[kind]
            as_given = summary.stages.get((pipeline_name, stage_name))
            stage_state = as_given.state if as_given else "open"
            # The stage as it is stored (made now with the export's state when new; a
            # stage that exists keeps its own): a won or lost deal whose stage is not
            # of its state goes to its pipeline's Won or Lost stage. (Not the state
            # this export's deals agree on: a stored open stage stays open, and a
            # re-import reads only some of its deals.)
            stage, stored = self.stage(
                pipeline_name, stage_name, stage_state,
                as_given.probability if as_given else None, line,
            )  # fmt: skip
            if state != "open" and STAGE_STATES[state] != stored:
                name, probability = CLOSED_STAGES[state]
                stage, _ = self.stage(pipeline_name, name, state, probability, line)
            pipeline = self.found.pipelines[fold(pipeline_name)]
            kinds.append((kind, str(pipeline), str(stage)))
        cur.execute(query(_QUERIES, "drop_read_kinds"))
        cur.execute(
            query(_QUERIES, "create_read_kinds"),
            {"kinds": [k for k, _, _ in kinds], "pipelines": [p for _, p, _ in kinds],
             "stages": [s for _, _, s in kinds]},
        )  # fmt: skip

    def staged_deals(self, cur: Cursor) -> sql.Composable:
        """The deals read, as rows of ``deals.csv`` typed as ``deal``'s columns (for
        ``load_tables``)."""
        if self.bad_value is not None:
            raise self.bad_value
        return sql.SQL(
            "SELECT d.line, d.id, {tenant}::uuid, k.pipeline_id, k.stage_id, d.name, d.amount,"
            " d.expected_close_date, d.close_date, d.owned_by_user_id, NULL::uuid, NULL::uuid,"
            " NULL::uuid,"
            " d.forecast_category, d.currency, d.digest AS import_digest"
            " FROM pg_temp.pipeline_coverage_import_deals AS d"
            " JOIN pg_temp.pipeline_coverage_import_kinds AS k USING (kind)"
        ).format(tenant=sql.Literal(str(self.tenant)))

    def teams(self, teams: Teams) -> None:
        """Teams, their parents and memberships: a team the file names has exactly the
        members the file gives it."""
        parents = {fold(p.team): p for p in teams.parents}
        # Parents first, so a team's parent id is known when the team is created.
        for parent in teams.parents:
            if parent.parent:
                self.group(parent.parent, parent.line)
        for membership in teams.memberships:
            given = parents.get(fold(membership.team))
            parent_id = self.found.groups[fold(given.parent)] if given and given.parent else None
            group = self.group(membership.team, membership.line, parent_id)
            self._reparent(group, membership.team, parent_id, membership.line)
            self.plan.teams_given.add(group)
            user = self.user(membership.rep, membership.line, "teams")
            if (group, user) not in self.found.members:
                self.found.members.add((group, user))
                self.plan.add("group_members.csv", membership.line, (self.tenant, group, user))
        for parent in teams.parents:  # a parent team that is itself in no membership line
            group = self.found.groups[fold(parent.team)]
            parent_id = self.found.groups[fold(parent.parent)] if parent.parent else None
            self._reparent(group, parent.team, parent_id, parent.line)

    def _reparent(self, group: uuid.UUID, name: str, parent: uuid.UUID | None, line: Line) -> None:
        if self.found.parents.get(group) != parent and parent is not None:
            self.found.parents[group] = parent
            self.plan.add("groups.csv", line, (group, self.tenant, name, parent))

    def targets(self, targets: Sequence[SheetTarget]) -> None:
        """Targets by principal name (a rep or a team; a name that is both needs its
        type) and pipeline name; a target replaces any other of the same principal,
        period and pipeline."""
        file = self.files.get("targets", "targets")
        for target in targets:
            key = fold(target.principal)
            user, group = self.found.users.get(key), self.found.groups.get(key)
            kind = target.principal_type
            if kind is None:
                if user and group:
                    self.problems.append(
                        f"{file}:{target.line}: principal: {target.principal!r} is a rep and a"
                        " team: give its type (USER or GROUP) in a type column"
                    )
                    continue
                kind = "GROUP" if group else "USER"
            principal = group if kind == "GROUP" else user
            if principal is None:
                what = "team" if kind == "GROUP" else "rep"
                self.problems.append(
                    f"{file}:{target.line}: principal: no {what} named {target.principal!r}"
                    " (reps come from the deals' owners and the teams file)"
                )
                continue
            pipeline = None
            if target.pipeline:
                pipeline = self.found.pipelines.get(fold(target.pipeline))
                if pipeline is None:
                    self.problems.append(
                        f"{file}:{target.line}: pipeline: no pipeline named {target.pipeline!r}"
                    )
                    continue
            key_parts = (kind, principal, pipeline, target.period_start, target.period_end)
            self.plan.add(
                "sales_targets.csv",
                target.line,
                (
                    derived_id(self.tenant, "target", *key_parts), self.tenant, kind, principal,
                    pipeline, target.period_start, target.period_end, target.amount,
                ),
            )  # fmt: skip

    def finish(self) -> Plan:
        if self.problems:
            raise LoadError(self.problems)
        return self.plan


def check_currency(existing: str, given: str | None, tenant: str) -> None:
    """An import never changes an existing tenant's reporting currency."""
    if given is not None and given.upper() != existing.upper():
        raise InputError(
            f"--currency: tenant {tenant!r} reports in {existing}; an import does not"
            f" change it (got {given})"
        )


# --- the import ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRequest:
    """What ``pipeline-coverage import`` was asked (SPEC §12)."""

    tenant: str
    deals: Path
    format: str | None = None
    teams: Path | None = None
    targets: Path | None = None
    currency: str | None = None
    fiscal_year_start_month: int | None = None
    date_format: str | None = None
    sheet: str | None = None
    full: bool = False
    max_delete: float = DEFAULT_MAX_DELETE
    dry_run: bool = False
    #: When the export was taken (default: now); timezone-aware.
    exported_at: dt.datetime | None = None
    #: The CRM's own history of the deals (Salesforce's OpportunityHistory export).
    history: Path | None = None
    #: Read every row in full, even one read unchanged before (``--reread``).
    reread: bool = False


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did (or, with ``dry_run``, would do)."""

    tenant_id: uuid.UUID
    tenant_name: str
    tenant_created: bool
    source: str
    format_title: str
    read: ReadSummary
    loads: tuple[TableLoad, ...]
    deals_deleted: int
    users_created: tuple[str, ...]
    groups_created: tuple[str, ...]
    pipelines_created: tuple[str, ...]
    stages_created: tuple[tuple[str, str, str, int | None], ...]
    targets_set: int
    dry_run: bool
    #: What ``--history`` did (None without it).
    history: history.HistoryOutcome | None = None

    def table(self, file: str) -> TableLoad | None:
        return next((load for load in self.loads if load.file == file), None)


class Reread(Exception):
    """A row read unchanged shares its key with another row: the import starts again,
    reading every row in full (to name both lines)."""


class _Rollback(Exception):
    """Ends a dry run's transaction after it computed everything (nothing kept)."""

    def __init__(self, outcome: ImportOutcome) -> None:
        super().__init__("dry run")
        self.outcome = outcome


def source_of(fmt: DealFormat) -> str:
    """The source an export's deals come from: a CRM (both Salesforce exports are one
    source: a deal keeps its id whichever of them brings it), or the mapping's name."""
    return "salesforce" if fmt.name.startswith("salesforce") else fmt.name


def import_export(conn: Connection, request: ImportRequest) -> ImportOutcome:
    """Import a CRM export (and a teams file, a quota sheet) into a tenant, all or
    nothing; with ``dry_run``, everything is checked and counted, nothing kept.

    Raises :class:`LoadError` for bad rows (every problem located), ``InputError`` for
    a refused request (another currency, a full sync deleting too much)."""
    if not 0 <= request.max_delete <= 100:
        raise InputError(f"--max-delete: a percentage from 0 to 100, got {request.max_delete}")
    fmt = format_for(
        request.format, request.deals, sheet=request.sheet, date_format=request.date_format
    )
    reread = request.reread
    while True:
        reader = DealReader(
            request.deals, fmt, sheet=request.sheet, track_duplicates=False,
            created=request.history is not None,
        )  # fmt: skip
        try:
            with unit_of_work(conn) as cur:
                outcome = _import(conn, cur, request, fmt, reader, reread=reread)
                if request.dry_run:
                    raise _Rollback(outcome)
        except _Rollback as rolled_back:
            return rolled_back.outcome
        except Reread:
            if reread:
                raise
            reread = True
            continue
        finally:
            reader.close()
        return outcome


def row_fingerprint(
    tenant_id: uuid.UUID, source: str, fmt: DealFormat, header: Sequence[tuple[int, str]]
) -> bytes:
    """What a row's deal depends on besides the row (see :class:`KnownRows`): the tenant,
    the source, the format (its columns, maps and date format), the header and the
    code of the reader."""
    parts = (
        DIGEST_SCHEME, _reader_code(), str(tenant_id), source,
        json.dumps(_canonical(fmt), sort_keys=True), json.dumps([list(h) for h in header]),
    )  # fmt: skip
    return hashlib.sha256("\x1e".join(parts).encode("utf-8", "surrogatepass")).digest()


def _import(
    conn: Connection,
    cur: Cursor,
    request: ImportRequest,
    fmt: DealFormat,
    reader: DealReader,
    *,
    reread: bool,
) -> ImportOutcome:
    source = source_of(fmt)
    # When the export was taken: what its deals' values hold from (SPEC.md §13).
    at = recorded_time(cur, request.exported_at)
    cur.execute(query(_QUERIES, "tenants_named"), {"name": request.tenant})
    named = records(cur)
    created = not named
    if named:
        tenant_id = as_uuid(named[0]["id"])
        month = int(named[0]["fiscal_year_start_month"])
        name = str(named[0]["name"])
    else:
        tenant_id, name = tenant_id_for(request.tenant), request.tenant.strip()
        month = request.fiscal_year_start_month or 1
    files = {
        "deals": reader.file,
        "teams": request.teams.name if request.teams else "teams",
        "targets": request.targets.name if request.targets else "targets",
    }
    planner = Planner(tenant_id, source, read_directory(cur, tenant_id), files)
    params = {"tenant_id": str(tenant_id), "source": source}
    # The rows the tenant's deals from the source were written from are not read again
    # (unless asked, or with the CRM's history, which is matched with every deal of the
    # export); every row read keeps its digest for the next import.
    stored = array("q")
    if not reread and request.history is None and not created:
        cur.execute(query(_QUERIES, "source_digests"), params)
        stored = array("q", cur.fetchone()[0] or b"")
        if sys.byteorder == "little":
            stored.byteswap()
    reader.known = KnownRows(row_fingerprint(tenant_id, source, fmt, reader.header), stored)
    # The export's problems come first, then the teams file's, then the request's.
    read = planner.stream_deals(cur, reader)
    teams = read_teams(request.teams, fmt.teams) if request.teams else None
    if len(named) > 1:
        raise InputError(f"--tenant: {len(named)} tenants are named {request.tenant!r}")
    if named:
        check_currency(named[0]["currency"], request.currency, request.tenant)
    targets = (
        read_targets(request.targets, fiscal_year_start_month=month, sheet=None)
        if request.targets
        else []
    )
    if created:
        currency = (request.currency or "USD").upper()
        planner.plan.add("tenants.csv", 1, (tenant_id, name, currency, month))
    planner.deal_stages(cur, read)
    history_read = skipped = None
    if request.history is not None:
        # The CRM's history of the export's deals (SPEC.md §13): read, matched and its
        # stages made now; its versions are written once the deals are.
        history_read = history.stream_history(
            cur, request.history, fmt, at=at, keyed_by_name=read.keyed_by_name,
            key_column=read.key_column,
            deal_id_of=lambda key: str(derived_id(tenant_id, "deal", source, key)),
        )  # fmt: skip
        history.match_history(cur, history_read)
        skipped = history.unmatched(cur)
        planner.history_stages(cur, history_read, fmt)
    if teams is not None:
        planner.teams(teams)
    planner.targets(targets)
    plan = planner.finish()

    # (rows read unchanged: a deal not read may still be in the export)
    flags: dict[str, object] = {**params, "digested": planner.unchanged > 0}
    absent = 0
    if request.full:
        cur.execute(query(_QUERIES, "source_deals_absent"), flags)
        candidates, absent = cur.fetchone()
        share = 100 * absent / candidates if candidates else 0
        if share > request.max_delete:
            raise InputError(
                f"--full: the export would delete {absent:,} of the {candidates:,}"
                f" deals this tenant has from {source} ({share:.1f}%), more than --max-delete"
                f" {request.max_delete:g}%: is the export complete? Nothing was changed"
            )
    by_file = {
        "tenants.csv": files["deals"], "users.csv": files["deals"],
        "pipelines.csv": files["deals"], "pipeline_stages.csv": files["deals"],
        "deals.csv": files["deals"], "groups.csv": files["teams"],
        "group_members.csv": files["teams"], "sales_targets.csv": files["targets"],
    }  # fmt: skip
    rows = plan.rows
    staged = {"deals.csv": planner.staged_deals} if plan.deals else {}
    # The deals' values were read and checked as deals.csv's checks would (their ids
    # derived, given once; their pipelines, stages and owners those of this plan).
    # Each deal read is marked as the source's, as it is written (a deal the tenant had
    # from another source, or from a load, becomes this source's).
    if planner.unchanged and not plan.deals:
        # Only rows read unchanged: the export still dates the tenant's latest export,
        # and is refused, as a load of its rows would be, when one taken later is in.
        record_tenants_in_order(cur, [str(tenant_id)], at)
    loads = load_tables(
        conn, rows, source=by_file, staged=staged,
        stamp={"deals.csv": {"import_source": source}}, recorded_at=at,
        carry={"deals.csv": ["import_digest"]},
    )  # fmt: skip
    written = next((load for load in loads if load.file == "deals.csv"), None)
    if written is not None and written.inserted >= ANALYZE_AFTER:
        # The deals' statistics follow the rows just written: the next import (or run)
        # plans on them, not on a tenant that had none (autovacuum comes later).
        cur.execute("ANALYZE dyno_crm.deal")
    if planner.unchanged:  # the rows read unchanged count as the deals they are
        loads = _with_unchanged(loads, tenant_id, planner.unchanged)
    if teams is not None and plan.teams_given:
        members = [f"{g}:{u}" for g, u in planner.found.members if g in plan.teams_given]
        cur.execute(
            query(_QUERIES, "drop_other_members"),
            {"tenant_id": str(tenant_id), "groups": [str(g) for g in plan.teams_given],
             "kept": members},
        )  # fmt: skip
    targets_set = [str(values[0]) for _, values in rows.get("sales_targets.csv", [])]
    if targets_set:
        cur.execute(
            query(_QUERIES, "drop_replaced_targets"),
            {"tenant_id": str(tenant_id), "kept": targets_set},
        )
    deleted = 0
    if request.full and absent:
        # An export without deals wrote none (load_tables held no tenant): its time
        # must still come after the tenant's latest export, as its deletions' does.
        record_tenants_in_order(cur, [str(tenant_id)], at)
        cur.execute(query(_QUERIES, "unread_source_deals"), flags)
        deleted = retire_deals(cur, tenant_id, [str(row[0]) for row in cur.fetchall()], at)
    history_done = None
    if history_read is not None and skipped is not None:
        history_done = history.write_versions(cur, str(tenant_id), at, history_read, skipped)
    if created:
        set_run_defaults(conn, tenant_id, rollup=True)
    return ImportOutcome(
        tenant_id=tenant_id, tenant_name=name, tenant_created=created, source=source,
        format_title=fmt.title, read=read, loads=tuple(loads), deals_deleted=deleted,
        users_created=tuple(plan.users_created), groups_created=tuple(plan.groups_created),
        pipelines_created=tuple(plan.pipelines_created),
        stages_created=tuple(plan.stages_created),
        targets_set=len(targets_set), dry_run=request.dry_run, history=history_done,
    )  # fmt: skip


def _with_unchanged(
    loads: list[TableLoad], tenant_id: uuid.UUID, unchanged: int
) -> list[TableLoad]:
    deals = next((load for load in loads if load.file == "deals.csv"), None)
    if deals is None:
        return [*loads, TableLoad("deals.csv", "deal", unchanged, 0, 0, (tenant_id,))]
    return [replace(load, rows=load.rows + unchanged) if load is deals else load for load in loads]


def import_summary(outcome: ImportOutcome) -> list[str]:
    """What an import did, as lines an analyst checks the mapping by (SPEC §12)."""
    read = outcome.read
    would = "would be " if outcome.dry_run else ""
    lines = [
        ("dry run, nothing written: " if outcome.dry_run else "")
        + f"{read.file}: {outcome.format_title}, {read.deals:,} deals"
        + f" keyed by {read.key_column}"
        + (f" ({read.footer_lines} footer lines skipped)" if read.footer_lines else "")
    ]
    deals = outcome.table("deals.csv")
    if deals is not None:
        lines.append(
            f"deals: {deals.inserted:,} new, {deals.updated:,} updated,"
            f" {deals.unchanged:,} unchanged, {outcome.deals_deleted:,} deleted"
            + "".join(f", {n:,} skipped ({why})" for why, n in read.skipped.items())
        )
    if outcome.tenant_created:
        lines.append(f"tenant {outcome.tenant_name}: {would}created (roll-up on by default)")
    for what, names in (("reps", outcome.users_created), ("teams", outcome.groups_created),
                        ("pipelines", outcome.pipelines_created)):  # fmt: skip
        if names:
            shown = ", ".join(names[:10]) + (
                f" and {len(names) - 10} more" if len(names) > 10 else ""
            )
            lines.append(f"{what} {would}created: {len(names)} ({shown})")
    for pipeline, stage, state, probability in outcome.stages_created:
        chance = "no probability" if probability is None else f"probability {probability}"
        lines.append(f"stage {would}created: {pipeline} / {stage}: {state}, {chance}")
    members = outcome.table("group_members.csv")
    if members is not None:
        lines.append(f"team memberships: {members.inserted:,} new")
    if outcome.targets_set:
        lines.append(f"targets set: {outcome.targets_set:,}")
    if outcome.history is not None:
        lines += history.history_summary(outcome.history, dry_run=outcome.dry_run)
    if read.ignored_columns:
        lines.append("columns ignored: " + ", ".join(read.ignored_columns))
    lines.append(f"tenant {outcome.tenant_name}: {outcome.tenant_id}")
    return lines
