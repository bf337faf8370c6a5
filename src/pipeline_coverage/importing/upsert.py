"""Writing a checked staging table into its table: an upsert by key in key order (new
rows inserted, changed ones updated, identical ones left alone), and the check of deals
left behind by a stage that the import moved to another pipeline.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

import psycopg
from psycopg import sql

from pipeline_coverage.db.connection import Connection, Cursor, unit_of_work
from pipeline_coverage.errors import InputError, LoadError
from pipeline_coverage.importing.checks import (
    cast_key,
    cast_value,
    raise_reference_problems,
    shorten,
    staged_tenants,
)
from pipeline_coverage.importing.formats import TableSpec, checked_first
from pipeline_coverage.presentation import SHOWN_CHARS
from pipeline_coverage.sql import query
from pipeline_coverage.validation import required_uuid


def upsert(
    cur: Cursor,
    spec: TableSpec,
    stage: sql.Identifier,
    file: str,
    targets: dict[str, sql.Composable] | None = None,
    stamp: Mapping[str, str] | None = None,
    recorded_at: dt.datetime | None = None,
    carry: Sequence[str] = (),
    citus: bool = False,
    held: frozenset[str] = frozenset(),
    duplicates: Callable[[], None] | None = None,
) -> tuple[int, int, int]:
    """Upsert the checked staging table ``stage`` of ``spec``'s file: (rows, inserted,
    updated). A row a foreign key refuses is reported as ``file``'s by the reference
    checks (in declared order, so the root cause is the one named; ``targets`` as for
    them), any other rule only the database could see as the database says it.
    ``stamp``: values of columns outside the file, written to every row of it;
    ``recorded_at``: the recorded time of the deals' values; ``carry``: columns outside
    the file the staging table holds per row (see :func:`upsert_rows`).

    The deferred foreign keys that guard references not checked before (see
    :func:`checked_first`; ``held``: the keys the load keeps deferred) are immediate for
    the upsert: a row they refuse fails it here, where the reference checks then say
    where, not at commit. ``duplicates``: the file's duplicate check, when it is left
    to the upsert (see :func:`upsert_rows`)."""
    keys = [
        sql.Identifier("dyno_crm", key)
        for key in dict.fromkeys(
            r.deferred
            for r in spec.references
            if r.deferred is not None and not checked_first(r, citus=citus, held=held)
        )
    ]
    deferred = sql.SQL(", ").join(keys)
    cur.execute("SAVEPOINT pipeline_coverage_upsert")
    try:
        if keys:
            cur.execute(sql.SQL("SET CONSTRAINTS {} IMMEDIATE").format(deferred))
        counts = upsert_rows(
            cur, spec, stage, stamp, recorded_at, carry, citus=citus, duplicates=duplicates
        )
    except psycopg.errors.IntegrityError as exc:
        cur.execute("ROLLBACK TO SAVEPOINT pipeline_coverage_upsert")  # keys deferred again
        raise_reference_problems(cur, file, stage, spec.references, targets)
        # A rule only the database could see.
        detail = exc.diag.message_detail
        detail = f" ({shorten(detail, 4 * SHOWN_CHARS)})" if detail else ""
        raise LoadError([f"{file}: {exc.diag.message_primary}{detail}"]) from exc
    if keys:
        cur.execute(sql.SQL("SET CONSTRAINTS {} DEFERRED").format(deferred))
    cur.execute("RELEASE SAVEPOINT pipeline_coverage_upsert")
    return counts


def recorded_time(cur: Cursor, given: dt.datetime | None) -> dt.datetime:
    """The time a load's data is recorded at: ``given`` (when the export was taken),
    else the transaction's start (``now()``), one time for all it writes."""
    if given is not None:
        return given
    cur.execute("SELECT now()")
    return cur.fetchone()[0]  # type: ignore[no-any-return]


def record_tenants_in_order(cur: Cursor, tenants: list[str], recorded_at: dt.datetime) -> None:
    """Hold the tenants (until commit) and move their latest recorded time to
    ``recorded_at``; :class:`InputError` when a tenant has data recorded later (exports
    are written in time order, SPEC.md §13) or when it is in the future."""
    held = []
    for tenant in sorted(set(tenants), key=uuid.UUID):
        cur.execute(query("history", "lock_recorded_tenant"), {"tenant": tenant})
        held += cur.fetchall()
    now = None
    for name, until, clock in held:
        now = clock
        if until is not None and until > recorded_at:
            raise InputError(
                f"--exported-at: {_shown_time(recorded_at)}: tenant {shorten(name)!r} already"
                f" holds an export taken {_shown_time(until)}: exports of a tenant are"
                " imported oldest first"
            )
    if now is not None and recorded_at > now + FUTURE_SLACK:
        raise InputError(
            f"--exported-at: {_shown_time(recorded_at)} is in the future (the database's"
            f" clock says {_shown_time(now)})"
        )
    cur.execute(query("history", "move_recorded_until"), {"tenants": tenants, "at": recorded_at})


#: An export's time may be this far ahead of the database's clock (clocks drift).
FUTURE_SLACK = dt.timedelta(minutes=5)


def _shown_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def moved_stage_problems(
    cur: Cursor, stage: sql.Identifier, *, citus: bool = False
) -> sql.Composable:
    """Deals left behind by a stage that this import moved to another pipeline
    (``stage``: the staging table of pipeline_stages.csv, kept until the end).

    On Citus, the deals whose pipeline differs from their stage's (a join of
    co-located tables, on the shards) are pulled first, for the staged tenants only.
    """
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
            ).format(tenants=staged_tenants(cur, stage))
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


#: A deal's values a version keeps (``deal_version``'s columns besides its key and range).
VERSIONED = (
    "pipeline_id", "stage_id", "name", "amount", "expected_close_date", "close_date",
    "owned_by_user_id", "assigned_user_id", "owned_by_group_id", "assigned_group_id",
    "forecast_category", "currency",
)  # fmt: skip
_INCOMING = sql.Identifier("pipeline_coverage_incoming")


def upsert_rows(
    cur: Cursor,
    spec: TableSpec,
    stage: sql.Identifier,
    stamp: Mapping[str, str] | None = None,
    recorded_at: dt.datetime | None = None,
    carry: Sequence[str] = (),
    *,
    citus: bool = False,
    duplicates: Callable[[], None] | None = None,
) -> tuple[int, int, int]:
    """The upsert itself: (rows, inserted, updated); ``stamp`` as for :func:`upsert` (a
    row whose stamp differs is changed). With ``recorded_at`` (deals only), a changed
    deal's stored values become a version ending then (SPEC.md §13), and a new or
    changed deal's values hold from then (``recorded_from``).

    ``carry`` names columns outside the file that the staging table holds per row (an
    import's row digests, ``import_digest``): written with the row, never what makes it
    changed, and written alone to a row whose values are unchanged. A deal written
    without its ``import_digest`` carried (``load``) loses it when it changes: the
    digest says the deal holds what its export row gave.

    On Citus (``citus``), a statement that writes a distributed table cannot join it
    with a local one (the staging table): the stored rows of the staged tenants are
    first pulled into a temporary table (a router or multi-shard SELECT), and the
    comparisons read that copy."""
    stamp = stamp or {}
    carried = list(carry)
    cleared = (
        ["import_digest"]
        if spec.table == "deal" and "import_digest" not in carried and "import_digest" not in stamp
        else []
    )
    history = recorded_at is not None and spec.table == "deal"
    target = sql.Identifier("dyno_crm", spec.table)
    by_name = {column.name: column for column in spec.columns}
    # The file's own values (not the key, not a stamp): what makes a row changed.
    own = [name for name in spec.column_names if name not in spec.key]
    updatable = [*own, *stamp]

    def staged(name: str, row: str = "s") -> sql.Composable:
        if name in stamp:
            return sql.Literal(stamp[name])
        return cast_value(
            by_name[name], sql.SQL("{}.{}").format(sql.Identifier(row), sql.Identifier(name))
        )

    # The stored rows compared are the staged tenants' only, by their key's index:
    # without it the comparison may read every tenant's rows (a hash of the table).
    tenants: sql.Composable = sql.SQL("")
    if "tenant_id" in spec.key:
        tenants = sql.SQL(" AND t.tenant_id = ANY ({})").format(staged_tenants(cur, stage))
    keys = sql.SQL(" AND ").join(
        sql.SQL("t.{} = {}").format(sql.Identifier(n), staged(n)) for n in spec.key
    )
    # What the stored rows are read from: the table, or on Citus a copy of the staged
    # tenants' rows (the copy holds those tenants only).
    stored: sql.Composable = target
    if citus:
        stored = _pulled_rows(cur, spec, stage, target, tenants)
        tenants = sql.SQL("")
    # A row as it is already stored is left out before the insert: ON CONFLICT ... DO
    # UPDATE ... WHERE would lock it, and a lock is a write (of the row's page, to the
    # WAL); an unchanged re-import then writes nothing.
    unchanged: sql.Composable = sql.SQL("")
    # Nothing stored for the staged tenants yet (their first load): no row is unchanged
    # and no version ends, so the comparisons are left out (a probe of the key's index
    # per staged row, and a copy of the whole file for the versions). A load of deals
    # holds its tenants by now (record_tenants_in_order): no other load writes them.
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} AS t WHERE TRUE{})").format(
        stored, tenants))  # fmt: skip
    first = not cur.fetchone()[0]
    # A key twice in the file: with nothing stored, ON CONFLICT DO UPDATE refuses the
    # second row (CardinalityViolation, the caller then names both); with rows stored,
    # the comparison could leave one of the two out, so ``duplicates`` runs first.
    if duplicates is not None and not (first and updatable):
        duplicates()
    if updatable and not first:
        unchanged = sql.SQL(
            " WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {keys}{tenants}"
            " AND ({current}) IS NOT DISTINCT FROM ({incoming}))"
        ).format(
            target=stored, keys=keys, tenants=tenants, current=_listed(updatable, "t"),
            incoming=sql.SQL(", ").join(staged(n) for n in updatable),
        )  # fmt: skip
    source = stage
    at = sql.Literal(recorded_at)
    if history and not first:
        # The new or changed rows, once: the versions and the upsert both read them.
        cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(_INCOMING))
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT s.* FROM {} AS s{}").format(
                _INCOMING, stage, unchanged
            )
        )
        source, unchanged = _INCOMING, sql.SQL("")
        cur.execute(
            sql.SQL(
                "INSERT INTO dyno_crm.deal_version (tenant_id, deal_id, valid_from, valid_to,"
                " {versioned}) SELECT t.tenant_id, t.id, t.recorded_from, {at}, {values}"
                " FROM {source} AS s JOIN {stored} AS t ON {keys}{tenants}"
                " WHERE (t.recorded_from IS NULL OR t.recorded_from < {at})"
                " AND ({current}) IS DISTINCT FROM ({incoming})"
            ).format(
                at=at,
                versioned=sql.SQL(", ").join(map(sql.Identifier, VERSIONED)),
                values=_listed(list(VERSIONED), "t"),
                source=source,
                stored=stored,
                keys=keys,
                tenants=tenants,
                current=_listed(own, "t"),
                incoming=sql.SQL(", ").join(staged(n) for n in own),
            )
        )
    names = [*spec.column_names, *stamp, *carried] + (["recorded_from"] if history else [])
    values = sql.SQL(", ").join(
        [cast_value(column) for column in spec.columns]
        + [sql.Literal(v) for v in stamp.values()]
        + [sql.SQL("s.{}").format(sql.Identifier(n)) for n in carried]
        + ([at] if history else [])
    )
    if updatable:
        assign = [
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in [*updatable, *carried]
        ] + [sql.SQL("{} = NULL").format(sql.Identifier(n)) for n in cleared]
        if history:  # a new stamp alone (another source) leaves the values' time alone
            assign.append(
                sql.SQL(
                    "recorded_from = CASE WHEN ({current}) IS DISTINCT FROM ({incoming})"
                    " THEN EXCLUDED.recorded_from ELSE {target}.recorded_from END"
                ).format(
                    current=_listed(own, target),
                    incoming=_listed(own, "EXCLUDED"),
                    target=target,
                )
            )
        on_conflict = sql.SQL(
            "DO UPDATE SET {assign} WHERE ({current}) IS DISTINCT FROM ({incoming})"
        ).format(
            assign=sql.SQL(", ").join(assign),
            current=_listed(updatable, target),
            incoming=_listed(updatable, "EXCLUDED"),
        )
    else:
        on_conflict = sql.Composed([sql.SQL("DO NOTHING")])
    # In key order, not line order: two loads of the same rows then lock them in the
    # same order, so one waits for the other instead of each holding a row the other
    # needs (a deadlock, and one of them fails).
    cur.execute(
        sql.SQL(
            "WITH written AS (INSERT INTO {target} ({columns}) SELECT {values} FROM {source}"
            " AS s{unchanged} ORDER BY {order} ON CONFLICT ({key}) {on_conflict}"
            " RETURNING (xmax = 0) AS inserted)"
            " SELECT (SELECT count(*) FROM {stage}),"
            " count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
        ).format(
            target=target,
            columns=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=values,
            source=source,
            stage=stage,
            unchanged=unchanged,
            order=cast_key(spec),
            key=sql.SQL(", ").join(map(sql.Identifier, spec.key)),
            on_conflict=on_conflict,
        )
    )
    rows, inserted, updated = cur.fetchone()
    if source is _INCOMING:
        cur.execute(sql.SQL("DROP TABLE pg_temp.{}").format(_INCOMING))
    if carried and updatable and not first:
        # The rows left out as unchanged may still carry new values (a row's digest
        # changes with a column the import ignores): written alone, not counted.
        _write_carried(cur, spec, stage, target, stored, carried, keys, tenants, citus=citus)
    if citus:
        cur.execute(sql.SQL("DROP TABLE {}").format(stored))
    return int(rows), int(inserted), int(updated)


def _listed(names: Sequence[str], row: str | sql.Composable) -> sql.Composable:
    """``row.a, row.b, ...`` of ``names`` (``row`` an alias, or a table)."""
    table = sql.SQL(row) if isinstance(row, str) else row
    return sql.SQL(", ").join(sql.SQL("{}.{}").format(table, sql.Identifier(n)) for n in names)


def _from_s(names: Sequence[str]) -> sql.Composable:
    """``a = s.a, b = s.b, ...``: an UPDATE's assignments from the row ``s``."""
    return sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(n)) for n in names)


def _pulled_rows(
    cur: Cursor,
    spec: TableSpec,
    stage: sql.Identifier,
    target: sql.Identifier,
    tenants: sql.Composable,
) -> sql.Composable:
    """On Citus: the stored rows of the staged tenants (``tenants``, the filter on
    ``t``; for the tenant table, the staged ids), copied into a temporary table."""
    pulled = sql.Identifier(f"pipeline_coverage_stored_{spec.table}")
    where: sql.Composable = sql.SQL("WHERE TRUE{}").format(tenants)
    if spec.table == "tenant":
        cur.execute(
            sql.SQL("SELECT COALESCE(array_agg(DISTINCT id::uuid), '{{}}') FROM {}").format(stage)
        )
        ids = [str(i) for i in cur.fetchone()[0]]
        where = sql.SQL("WHERE t.id = ANY ({}::uuid[])").format(sql.Literal(ids))
    cur.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(pulled))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT t.* FROM {} AS t {}").format(
            pulled, target, where
        )
    )
    cur.execute(sql.SQL("ANALYZE pg_temp.{}").format(pulled))
    return sql.SQL("pg_temp.{}").format(pulled)


def _write_carried(
    cur: Cursor,
    spec: TableSpec,
    stage: sql.Identifier,
    target: sql.Identifier,
    stored: sql.Composable,
    carried: list[str],
    keys: sql.Composable,
    tenants: sql.Composable,
    *,
    citus: bool,
) -> None:
    """Write the carried columns of the staged rows whose stored values differ in them
    alone (by a join; on Citus, the rows found in the pulled copy, then sent by key)."""

    differ = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        _listed(carried, "t"), _listed(carried, "s")
    )
    if not citus:
        cur.execute(
            sql.SQL("UPDATE {target} AS t SET {assign} FROM {stage} AS s WHERE {keys}{tenants}"
                    " AND {differ}").format(
                target=target,
                assign=_from_s(carried),
                stage=stage, keys=keys, tenants=tenants, differ=differ,
            )
        )  # fmt: skip
        return
    # The staged rows' keys are text or typed; the stored copy's are the table's types.
    key_columns = list(spec.key)
    cur.execute(
        sql.SQL("SELECT {keys_out}, {carried_out} FROM {stage} AS s JOIN {stored} AS t"
                " ON {keys} WHERE {differ}").format(
            keys_out=_listed(key_columns, "t"), carried_out=_listed(carried, "s"),
            stage=stage, stored=stored, keys=keys, differ=differ,
        )
    )  # fmt: skip
    rows = cur.fetchall()
    if not rows:
        return
    by_tenant: dict[object, list[tuple[object, ...]]] = {}
    for row in rows:
        tenant = row[key_columns.index("tenant_id")] if "tenant_id" in key_columns else None
        by_tenant.setdefault(tenant, []).append(tuple(row))
    # (keys by their kind; a carried column is a digest: bigint)
    kinds = {"uuid": "uuid", "date": "date", "int": "integer"}
    types = {column.name: kinds.get(column.kind, "text") for column in spec.columns}
    for tenant, found in by_tenant.items():
        # One tenant at a time: a router UPDATE on its shard (a constant tenant).
        columns = [*key_columns, *carried]
        arrays = [[row[i] for row in found] for i in range(len(columns))]
        cur.execute(
            sql.SQL("UPDATE {target} AS t SET {assign} FROM unnest({arrays}) AS s ({names})"
                    " WHERE {match}{tenant}").format(
                target=target,
                assign=_from_s(carried),
                arrays=sql.SQL(", ").join(
                    sql.SQL("{}::{}[]").format(
                        sql.Placeholder(), sql.SQL(types.get(n, "bigint"))
                    ) for n in columns
                ),
                names=sql.SQL(", ").join(map(sql.Identifier, columns)),
                match=sql.SQL(" AND ").join(
                    sql.SQL("t.{0} = s.{0}").format(sql.Identifier(n)) for n in key_columns
                ),
                tenant=sql.SQL(" AND t.tenant_id = {}::uuid").format(sql.Literal(str(tenant)))
                if tenant is not None else sql.SQL(""),
            ),
            arrays,
        )  # fmt: skip


def delete_absent_deals(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    kept: Iterable[uuid.UUID | str],
    candidates: Iterable[uuid.UUID | str],
    recorded_at: dt.datetime | None = None,
) -> int:
    """Full sync (``import --full``): delete the deals of ``tenant_id`` among
    ``candidates`` (the deals the tenant got from the source; the caller decides which
    they are) that are not ``kept`` (the deals of the source's export just loaded);
    returns how many were deleted. Only the tenant's deals are touched, whatever ids
    are passed.

    Like the loads, it runs in the caller's transaction when one is open (a savepoint
    of it), so that a load and this delete are one unit of work — and a caller that
    finds the count too high (``--max-delete``) rolls both back. Stored runs keep their
    snapshots: they hold the values of their deals, not references to them. The deleted
    deals' values become versions ending at ``recorded_at`` (default: now).
    """
    tenant = required_uuid(tenant_id, "tenant_id")
    keep = {required_uuid(i, "kept") for i in kept}
    gone = sorted({required_uuid(i, "candidates") for i in candidates} - keep)
    with unit_of_work(conn) as cur:
        at = recorded_time(cur, recorded_at)
        record_tenants_in_order(cur, [str(tenant)], at)
        deleted = retire_deals(cur, tenant, [str(i) for i in gone], at)
    return deleted


def retire_deals(
    cur: Cursor, tenant_id: uuid.UUID, ids: list[str], recorded_at: dt.datetime
) -> int:
    """Delete the tenant's deals of ``ids`` (others' ids are left alone), each one's
    values kept as its last version, ending at ``recorded_at``; how many went."""
    if not ids:
        return 0
    cur.execute(
        query("importing", "retire_deals"),
        {"tenant_id": str(tenant_id), "ids": ids, "at": recorded_at},
    )
    return int(cur.fetchone()[0])
