"""Connections, and a unit of work that runs on a psycopg 3 *or* a psycopg2 connection.

The public report functions accept either driver's connection (SPEC.md §2). Both
expose the same DB-API surface we need: ``cursor()`` as a context manager,
``%(name)s`` parameters, ``autocommit``, ``commit()``/``rollback()`` and
``info.transaction_status`` (libpq's values). Parameters are passed as strings,
dates and Decimals with explicit casts in the SQL, so neither driver needs type
adapters registered.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import dict_row

from pipeline_coverage.errors import (
    ConnectionLostError,
    DatabaseError,
    InputError,
    PipelineCoverageError,
    SchemaError,
)
from pipeline_coverage.sql import query

# libpq PGTransactionStatusType values, shared by psycopg 3 and psycopg2.
_IDLE, _ACTIVE, _INTRANS, _INERROR = 0, 1, 2, 3
_SAVEPOINT = "pipeline_coverage_unit"
#: SQLSTATEs of a connection the server ended: admin_shutdown, crash_shutdown,
#: cannot_connect_now (class 08, connection exceptions, is matched as a class).
_CONNECTION_ENDED = ("57P01", "57P02", "57P03")

Isolation = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]


class Cursor(Protocol):
    """The part of a DB-API cursor used here (psycopg 3 and psycopg2 both fit)."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...
    @property
    def connection(self) -> Any: ...


class Connection(Protocol):
    """The part of a DB-API connection the package uses: what every function taking
    the caller's connection is typed with (a psycopg 3 or a psycopg2 connection)."""

    @property
    def closed(self) -> Any: ...

    autocommit: Any  # (set by one_read for its statement)

    @property
    def info(self) -> Any: ...
    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """Open a psycopg 3 connection; a failure to connect is a :class:`DatabaseError`."""
    try:
        return psycopg.connect(url, application_name="pipeline-coverage")
    except psycopg.ProgrammingError as exc:  # not a URL or key=value string at all
        raise InputError(f"invalid database URL: {_first_line(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _transaction_status(conn: Connection) -> int:
    return int(conn.info.transaction_status)


def set_for_transaction(cur: Cursor, settings: Mapping[str, str]) -> dict[str, str]:
    """Set each of ``settings`` (name: value) for the rest of the transaction, in one
    statement; returns the values they replace, which a second call puts back."""
    send_settings(cur, settings)
    return replaced_settings(cur)


def replaced_settings(cur: Cursor) -> dict[str, str]:
    """The values ``send_settings``'s statement on ``cur`` replaced (read once sent)."""
    return {str(r["name"]): str(r["previous"]) for r in records(cur)}


def send_settings(cur: Cursor, settings: Mapping[str, str]) -> None:
    """``set_for_transaction``'s statement, its answer left unread (in a pipeline,
    reading it would make the client wait for it)."""
    cur.execute(
        query("settings", "set_for_transaction"),
        {"names": list(settings), "values": list(settings.values())},
    )


@contextmanager
def sent_at_once(cur: Cursor, wanted: bool = True) -> Iterator[None]:
    """The statements the block executes on ``cur``'s connection (on any of its
    cursors) go to the server at once, and the client waits once, at the block's end
    (psycopg 3's pipeline mode): one round trip where a statement at a time takes one
    each. Their results are read after the block; an error surfaces at its end. With
    psycopg2, on a libpq without pipeline mode, or unless ``wanted``: one at a time."""
    conn = cur.connection
    if wanted and isinstance(conn, psycopg.Connection) and psycopg.Pipeline.is_supported():
        with conn.pipeline():
            yield
    else:
        yield


def prepares(cur: Cursor) -> bool:
    """Whether statements can be prepared on ``cur``'s connection: psycopg 3, unless
    the caller turned preparing off (``prepare_threshold = None``, as behind a pooler
    that cannot keep prepared statements); psycopg2 never prepares."""
    return isinstance(cur, psycopg.Cursor) and cur.connection.prepare_threshold is not None


def in_transaction(conn: Connection) -> bool:
    """Whether the caller has a transaction open on ``conn`` (a unit of work then runs
    in a savepoint of it, and whatever it sets for its transaction outlives it)."""
    return _transaction_status(conn) == _INTRANS


@contextmanager
def unit_of_work(conn: Connection, isolation: Isolation | None = None) -> Iterator[Cursor]:
    """Run a block atomically on the caller's connection, leaving it usable afterwards.

    - Connection idle: the block runs in its own transaction, committed at the end
      (the seed's behaviour) and rolled back on any error.
    - Caller already inside a transaction: the block runs in a savepoint; the caller
      keeps ownership and decides when to commit. ``isolation`` cannot be changed
      mid-transaction, so it is then the caller's.

    Driver errors (either driver) leave as the package's own exceptions.
    """
    if conn.closed:  # psycopg 3: bool; psycopg2: a nonzero int once closed
        raise ConnectionLostError("database connection lost: the connection is closed")
    status = _transaction_status(conn)
    if status == _INERROR:
        raise InputError("the connection is in a failed transaction: roll it back first")
    if status not in (_IDLE, _INTRANS):
        raise InputError("the connection is busy with another command")

    nested = status == _INTRANS
    explicit = not nested and bool(conn.autocommit)
    with _driver_errors(), conn.cursor() as cur:
        try:
            if nested:
                cur.execute(f"SAVEPOINT {_SAVEPOINT}")
            elif explicit:
                cur.execute(f"BEGIN ISOLATION LEVEL {isolation}" if isolation else "BEGIN")
            elif isolation:
                cur.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
            yield cur
            if nested:
                cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            elif explicit:
                cur.execute("COMMIT")
            else:
                conn.commit()
        except BaseException:
            # A failed undo (say, the server went away) must not hide the real error.
            with contextlib.suppress(Exception):
                _undo(conn, cur, nested=nested, explicit=explicit)
            raise


@contextmanager
def _driver_errors() -> Iterator[None]:
    """A driver's error (either driver's) leaves the block as the package's own."""
    try:
        yield
    except PipelineCoverageError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):  # psycopg or psycopg2
            raise translate(exc) from exc
        raise


@contextmanager
def one_read(conn: Connection) -> Iterator[Cursor]:
    """Run one read-only statement: on an idle connection by itself, with no
    transaction around it (autocommit for the block: no BEGIN and COMMIT round trips —
    a lone SELECT sees one snapshot anyway); inside the caller's transaction, or on a
    connection already in autocommit, as ``unit_of_work`` does. The block must run a
    single statement that writes nothing (the API's key check, once per request)."""
    if conn.closed or conn.autocommit or _transaction_status(conn) != _IDLE:
        with unit_of_work(conn) as cur:
            yield cur
        return
    conn.autocommit = True
    try:
        with _driver_errors(), conn.cursor() as cur:
            yield cur
    finally:
        # (idle again after the statement; a connection that broke meanwhile refuses,
        # and the pool discards it)
        with contextlib.suppress(Exception):
            conn.autocommit = False


def pipelines(conn: Connection) -> bool:
    """Whether ``pipelined_read`` can send a read's statements at once on ``conn``: a
    psycopg 3 connection, idle, not in autocommit, with the server's default
    transaction characteristics, on a libpq with pipeline mode."""
    return (
        isinstance(conn, psycopg.Connection)
        and not conn.autocommit
        and _transaction_status(conn) == _IDLE
        # (a plain BEGIN: not where the caller asked for an isolation level or a mode)
        and conn.isolation_level is None
        and conn.read_only is None
        and conn.deferrable is None
        and psycopg.Pipeline.is_supported()
    )


@contextmanager
def pipelined_read(conn: Connection) -> Iterator[Callable[[], psycopg.Cursor[Any]]]:
    """A read of several statements in one transaction, sent at once (psycopg 3's
    pipeline mode): the block executes them on cursors it takes from the yielded
    function and fetches nothing; they go to the server between a ``BEGIN`` and a
    ``COMMIT`` of ours, and at the block's end the client waits once, for all of them.
    Their rows are then read from the cursors. One round trip where a statement at a
    time takes one each (a drill-down's five, with ``BEGIN`` and ``COMMIT``): each is a
    wake-up of the database and of the caller's thread, which on a busy machine waits
    for a core. Only where ``pipelines`` says so; errors as the package's own, the
    transaction rolled back, the connection left idle as it was found."""
    assert isinstance(conn, psycopg.Connection)
    with _driver_errors():
        conn.autocommit = True  # (so psycopg sends no BEGIN of its own, and waits not)
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                yield conn.cursor
                conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            raise
        finally:
            with contextlib.suppress(Exception):
                conn.autocommit = False


async def read_async(
    conn: psycopg.AsyncConnection[Any], statement: str, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``one_read`` on an asyncio connection in autocommit: one read-only statement,
    its rows as dicts; driver errors leave as the package's own (a lost connection as
    ``ConnectionLostError``). The API's key check runs so, on the event loop."""
    with _driver_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(statement, params)
            return await cur.fetchall()


@contextmanager
def advisory_lock(conn: Connection, key: str) -> Iterator[None]:
    """Hold an advisory lock on ``key`` (any text) for the block.

    On an idle connection it is a session lock, taken and released in transactions of
    their own, so a transaction the block starts — and its snapshot — begins only once
    the lock is held: a REPEATABLE READ block then sees what the previous holder
    committed. Inside the caller's transaction it is a transaction lock.
    """
    if _transaction_status(conn) == _INTRANS:
        with unit_of_work(conn) as cur:
            cur.execute(query("locks", "lock_for_transaction"), {"key": key})
        yield
        return
    with unit_of_work(conn) as cur:
        cur.execute(query("locks", "lock"), {"key": key})
    try:
        yield
    finally:
        # A broken connection took its session's locks with it.
        with contextlib.suppress(PipelineCoverageError), unit_of_work(conn) as cur:
            cur.execute(query("locks", "unlock"), {"key": key})


def _undo(conn: Connection, cur: Cursor, *, nested: bool, explicit: bool) -> None:
    if _transaction_status(conn) not in (_INTRANS, _INERROR):
        return  # the connection is broken or nothing was started: nothing to undo
    if nested:
        cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    elif explicit:
        cur.execute("ROLLBACK")
    else:
        conn.rollback()


def records(cur: Cursor) -> list[dict[str, Any]]:
    """The cursor's remaining rows as dicts keyed by column name (either driver)."""
    names = [column[0] for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def as_uuid(value: Any) -> uuid.UUID:
    """A UUID from a database value (psycopg2 returns uuid columns as ``str``)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def translate(exc: Exception) -> PipelineCoverageError:
    """Map a driver exception (either driver) to the package's error tree."""
    if isinstance(exc, PipelineCoverageError):
        return exc
    # Both drivers expose the SQLSTATE as ``sqlstate`` (psycopg 3) or ``pgcode`` (psycopg2).
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    message = _first_line(exc)
    if sqlstate in ("3F000", "42P01"):  # schema or table missing
        return SchemaError(
            f"the database has no pipeline-coverage schema ({message}): "
            "run 'pipeline-coverage db upgrade'"
        )
    node = _CITUS_NODE.search(message)
    if node is not None:
        # A Citus node this statement needed could not be reached: this connection is
        # fine, and trying again on a new one would not help.
        hint = (
            "start it or restore the network to it (on the coordinator, the function"
            " citus_check_cluster_node_health() shows which node fails to reach which);"
            " what needs only the other nodes still works"
        )
        return DatabaseError(
            f"the Citus node {node['node']} cannot be reached ({node['reason'].strip()}): {hint}"
        )
    if _connection_lost(exc, sqlstate):
        return ConnectionLostError(f"database connection lost: {message}")
    return DatabaseError(f"database error: {message}")


#: Citus's message when a node it needs is unreachable ("connection to the remote node
#: postgres@10.0.0.2:5432 failed with the following error: ...").
_CITUS_NODE = re.compile(
    r"connection to the remote node (?:[^@\s]+@)?(?P<node>\S+) failed with the following"
    r" error:\s*(?P<reason>.*)"
)


def _connection_lost(exc: Exception, sqlstate: str | None) -> bool:
    """Whether a driver error means the connection itself is gone (either driver)."""
    if not any(cls.__name__ == "OperationalError" for cls in type(exc).__mro__):
        return False
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _CONNECTION_ENDED
