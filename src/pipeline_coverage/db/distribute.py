"""``pipeline-coverage db distribute``: shard every table by tenant on a Citus cluster.

On a Citus coordinator, every table of the ``dyno_crm`` schema becomes a distributed
table: ``tenant`` by ``id`` (the co-location anchor), every other table by
``tenant_id``, co-located with ``tenant``, so that each tenant's rows of every table
live on one worker and each report is a router query. The migrations' version table
stays local. Tables already distributed that way are left alone, so a second run
changes nothing (but for the function below, when an earlier version made it with
other settings); tables are distributed parents before children (a foreign key may
only point at a table that is already distributed). All in one transaction.

It also creates ``dyno_crm.run_tenant_statement`` and ``dyno_crm.run_tenant_prepared``,
functions distributed by their tenant argument: :func:`execute_for_tenant` runs a
tenant's statement inside one of them, so that a statement Citus would split into
pieces pulled through the coordinator (the run's, with its data-modifying CTEs) runs
whole on the tenant's worker instead; a single report's is prepared there.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from pipeline_coverage.db.connection import Cursor, unit_of_work
from pipeline_coverage.db.migrate import SCHEMA, VERSION_TABLE, require_current
from pipeline_coverage.errors import InputError, PipelineCoverageError
from pipeline_coverage.sql import query

ANCHOR = f"{SCHEMA}.tenant"
ANCHOR_COLUMN = "id"
TENANT_COLUMN = "tenant_id"


class DistributionError(InputError):
    """The database cannot be distributed: no Citus, not the coordinator, or a table
    that cannot be sharded by tenant."""


class ClusterError(PipelineCoverageError):
    """The Citus cluster cannot take the tables yet (no workers): not the request's
    fault, so not an input error (exit 1)."""


#: The functions that run a tenant's statement on its worker (signature, the query
#: that creates it): the run's statement as text, and a single report's, prepared.
ROUTING_FUNCTIONS = (
    ("dyno_crm.run_tenant_statement(uuid, text)", "create_tenant_statement"),
    ("dyno_crm.run_tenant_prepared(uuid, text, text, text)", "create_tenant_prepared"),
)


@dataclass(frozen=True)
class Distribution:
    """What a run did: the tables it distributed now, and those that already were;
    the functions that route a tenant's statement it created, and those it redefined
    (they existed with another version's run settings)."""

    distributed: tuple[str, ...]
    unchanged: tuple[str, ...]
    routed: tuple[str, ...] = ()
    refreshed: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Table:
    name: str
    has_tenant_id: bool
    references: tuple[str, ...]
    column: str | None
    colocation_id: int | None
    kind: str | None


def distribute(conn: psycopg.Connection[Any]) -> Distribution:
    """Distribute every table of the schema by tenant; see the module's docstring.

    Raises :class:`DistributionError` (nothing changed) on a server without Citus, on
    a worker, or when a table cannot be sharded by tenant, and
    :class:`~pipeline_coverage.errors.SchemaError` unless the schema is at head.
    """
    with unit_of_work(conn) as cur:
        cur.execute(query("citus", "citus_version"))
        if cur.fetchone() is None:
            raise DistributionError(
                "the Citus extension is not installed in this database: 'db distribute'"
                " needs a Citus coordinator (CREATE EXTENSION citus)"
            )
        cur.execute(query("citus", "cluster_nodes"))
        coordinator, nodes, workers = cur.fetchone()
    if not coordinator and not nodes:
        raise DistributionError(
            "this node's Citus metadata lists no node: on the coordinator, register it"
            " (SELECT citus_set_coordinator_host('its host', its port)) and its workers"
            " (SELECT citus_add_node('worker host', worker port)), then run 'db distribute'"
            " again; on a worker, run 'db distribute' on the coordinator"
        )
    if not coordinator:
        raise DistributionError("this is a Citus worker: run 'db distribute' on the coordinator")
    if not workers:
        raise ClusterError(
            "the Citus cluster has no active worker: add the workers on the coordinator"
            " (SELECT citus_add_node('worker host', worker port)), then run 'db distribute'"
            " again"
        )
    require_current(conn)
    with unit_of_work(conn) as cur:
        cur.execute(query("citus", "one_connection_per_node"))
        cur.execute(query("citus", "schema_tables"), {"version_table": VERSION_TABLE})
        tables = {
            row[0]: _Table(row[0], bool(row[2]), tuple(row[3]), row[4], row[5], row[6])
            for row in cur.fetchall()
        }
        if ANCHOR not in tables:
            raise DistributionError(f"{ANCHOR} does not exist: run 'db upgrade' first")
        anchor = tables[ANCHOR]
        for table in tables.values():
            _check(table, anchor)
        done: list[str] = []
        unchanged: list[str] = []
        for table in _parents_first(tables):
            if table.kind == "distributed":
                unchanged.append(table.name)
                continue
            is_anchor = table.name == ANCHOR
            cur.execute(
                query("citus", "distribute_table"),
                {
                    "table_name": table.name,
                    "column": ANCHOR_COLUMN if is_anchor else TENANT_COLUMN,
                    "colocate_with": None if is_anchor else ANCHOR,
                },
            )
            done.append(table.name)
        # create_distributed_table copies a table's rows into its shards and leaves them
        # in the coordinator's local table too, unused: they go (children first).
        for name in reversed(done):
            cur.execute(query("citus", "truncate_local_data"), {"table_name": name})
        routed: list[str] = []
        refreshed: list[str] = []
        for function, create in ROUTING_FUNCTIONS:
            names = {"anchor": ANCHOR, "function": function}
            cur.execute(query("citus", "tenant_statement_routed"), names)
            found, settings, body = cur.fetchone()
            # A cluster distributed by an earlier version gets this version's run
            # settings and body (CREATE OR REPLACE; Citus passes the new definition on
            # to the workers), and the functions it lacks.
            if not found:
                cur.execute(query("citus", create))
                cur.execute(query("citus", "distribute_tenant_function"), names)
                routed.append(function)
            elif set(settings or ()) != set(run_statement_settings(create)) or (
                body != _function_body(create)
            ):
                cur.execute(query("citus", create))
                refreshed.append(function)
    return Distribution(tuple(done), tuple(unchanged), tuple(routed), tuple(refreshed))


def run_statement_settings(create: str = "create_tenant_statement") -> tuple[str, ...]:
    """The settings a routing function is defined with (its ``SET name = value``
    clauses, as ``name=value``, the form PostgreSQL lists them in); by default
    run_tenant_statement's."""
    text = query("citus", create)
    return tuple(
        f"{name}={value}"
        for name, value in re.findall(r"^SET ([\w.]+) = '?([^'\n]*?)'?$", text, re.MULTILINE)
    )


@functools.cache
def _prepared_version() -> bytes:
    """This version's ``run_tenant_prepared`` (its definition's digest)."""
    return hashlib.sha256(query("citus", "create_tenant_prepared").encode()).digest()


def _function_body(create: str) -> str:
    """The source of the function a ``create_*`` query defines (between its ``$$``)."""
    text = query("citus", create)
    return text[text.index("AS $$") + len("AS $$") : text.rindex("$$")]


def execute_for_tenant(
    cur: Cursor,
    tenant_id: uuid.UUID,
    statement: str,
    params: Mapping[str, Any],
    *,
    routed: str | None,
    prepare: bool = False,
) -> None:
    """Run one tenant's statement: as it is, or (``routed``: on a database that
    ``db distribute`` prepared; see ``check_scope``) inside a function Citus delegates
    to the worker holding the tenant, with the statement naming the tenant's shards.

    Unrouted, with psycopg 3, the statement is prepared (once per connection) when
    ``prepare`` is true, and otherwise sent unprepared, so that however often a
    connection runs it, it is planned for its values: the driver would otherwise
    prepare it on its fifth run, and a prepared statement soon gets a generic plan,
    which cannot fold "principal_id IS NULL OR ..." branches away. psycopg2 binds
    values in the client: every statement is planned afresh. (Forcing custom plans for
    the transaction instead, plan_cache_mode = force_custom_plan, would also re-plan
    the foreign-key checks of every row the statement writes.)

    Routed, the statement travels as text: with its values bound in it
    (``run_tenant_statement``, planned on the worker for those values), or, when
    ``prepare`` is true and the database has it (``routed == "prepared"``), with its
    values apart (``run_tenant_prepared``: prepared once per worker connection, on its
    generic plan), whatever the driver."""
    if routed is None:
        if isinstance(cur, psycopg.Cursor):
            cur.execute(statement, params, prepare=prepare)
        else:
            cur.execute(statement, params)
        return
    if not (prepare and routed == "prepared"):
        # The tables become the tenant's shards (in the statement's SQL, before its
        # values are bound: a value that spells a table's name stays as it is).
        cur.execute(query("citus", "tenant_shards"), {"tenant_id": str(tenant_id)})
        shards = {str(table): str(shard) for table, shard in cur.fetchall()}
        local = _TABLE.sub(lambda found: shards.get(found[0], found[0]), statement)
        cur.execute(
            query("citus", "run_tenant_statement"),
            {"tenant_id": str(tenant_id), "statement": _bound(cur, local, params)},
        )
        return
    # Prepared on the worker, which names the tenant's shards in it the first time.
    names: list[str] = []

    def number(found: re.Match[str]) -> str:
        if found[0] == "%%":
            return "%"
        if found[1] not in names:
            names.append(found[1])
        return f"${names.index(found[1]) + 1}"

    numbered = _PLACEHOLDER.sub(number, statement)
    arguments = _bound(cur, ", ".join(f"%({name})s" for name in names), params)
    cur.execute(
        query("citus", "run_tenant_prepared"),
        {
            "tenant_id": str(tenant_id),
            # One name per statement text (its specialization) and version of the
            # function (a connection open across a redefinition prepares it anew);
            # the worker adds the tenant's shard group.
            "name": "pc_"
            + hashlib.sha256(_prepared_version() + numbered.encode()).hexdigest()[:32],
            "statement": numbered,
            "arguments": arguments,
        },
    )


#: A named placeholder of a statement's SQL (psycopg's ``%(name)s``), or a literal ``%``.
_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")

#: A table of the schema named in a statement's SQL.
_TABLE = re.compile(r"\bdyno_crm\.[a-z_][a-z0-9_]*\b")


def _bound(cur: Any, statement: str, params: Mapping[str, Any]) -> str:  # (either driver's)
    """``statement`` with ``params`` quoted into it by the driver (psycopg 3 binds on
    the server unless asked through a client-side cursor; psycopg2 always in the
    client)."""
    if isinstance(cur, psycopg.Cursor):
        with psycopg.ClientCursor(cur.connection) as client:
            return client.mogrify(statement, params)
    import psycopg2.extensions  # a psycopg2 cursor: the driver is there

    encoding = psycopg2.extensions.encodings[cur.connection.encoding]
    return bytes(cur.mogrify(statement, params)).decode(encoding)


def _check(table: _Table, anchor: _Table) -> None:
    column = ANCHOR_COLUMN if table.name == ANCHOR else TENANT_COLUMN
    if table.name != ANCHOR and not table.has_tenant_id:
        raise DistributionError(f"{table.name} has no {TENANT_COLUMN} column: cannot shard it")
    if table.kind == "reference":
        raise DistributionError(
            f"{table.name} is a Citus reference table: undistribute it first"
            f" (SELECT undistribute_table('{table.name}'))"
        )
    if table.kind != "distributed":
        return
    if table.column != column:
        raise DistributionError(
            f"{table.name} is distributed by {table.column}, not {column}: undistribute it"
            f" first (SELECT undistribute_table('{table.name}'))"
        )
    if (
        table.name != ANCHOR
        and anchor.kind == "distributed"
        and table.colocation_id != anchor.colocation_id
    ):
        raise DistributionError(
            f"{table.name} is not co-located with {ANCHOR}: run SELECT"
            f" update_distributed_table_colocation('{table.name}', colocate_with =>"
            f" '{ANCHOR}')"
        )


def _parents_first(tables: dict[str, _Table]) -> list[_Table]:
    """The tables in an order where each comes after the tables it references; the
    anchor first."""
    ordered: list[_Table] = []
    placed: set[str] = set()

    def place(name: str, path: tuple[str, ...]) -> None:
        if name in placed or name not in tables or name in path:
            return  # placed, outside the schema, or a cycle (Citus will say)
        for parent in sorted(tables[name].references):
            place(parent, (*path, name))
        placed.add(name)
        ordered.append(tables[name])

    place(ANCHOR, ())
    for name in sorted(tables):
        place(name, ())
    return ordered
