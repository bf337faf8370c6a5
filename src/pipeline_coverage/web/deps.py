"""Request dependencies: a pooled connection, and the tenant the caller's key decides."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Annotated, Any, TypeVar, cast

import anyio
import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool, PoolTimeout

from pipeline_coverage.apikeys import Principal, authenticate_async, authenticate_session_async
from pipeline_coverage.config import WebSettings
from pipeline_coverage.db.connection import records, unit_of_work
from pipeline_coverage.web.limits import TenantSlots, admitted, too_many
from pipeline_coverage.web.pool import LiveAsyncPool
from pipeline_coverage.web.problems import ProblemError

T = TypeVar("T")
SESSION_TENANT = "tenant_id"
SESSION_ID = "session_id"
#: How long a request waits for a database connection before answering 503.
POOL_TIMEOUT = 5.0
bearer = HTTPBearer(auto_error=False, description="A tenant API key: `pcov_...`.")


def get_pool(request: Request) -> ConnectionPool[Any]:
    pool: ConnectionPool[Any] = request.app.state.pool
    return pool


def get_settings(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


async def admission(request: Request) -> AsyncIterator[None]:
    """One of the database slots for the rest of the request (see ``limits.admitted``)."""
    async with admitted(request):
        yield


def _connection(pool: ConnectionPool[Any]) -> psycopg.Connection[Any]:
    try:
        conn: psycopg.Connection[Any] = pool.getconn(timeout=POOL_TIMEOUT)
    except PoolTimeout as exc:
        raise _unavailable() from exc
    return conn


def _unavailable() -> ProblemError:
    """No connection came in time."""
    return ProblemError(
        503, "the database is not available right now", headers={"Retry-After": "5"}
    )


@contextmanager
def pooled(pool: ConnectionPool[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection of ``pool`` for a block (503 if none comes in time), given back
    after it (the core ends its own transactions; the pool checks anyway)."""
    conn = _connection(pool)
    try:
        yield conn
    finally:
        pool.putconn(conn)


def fresh_connection(request: Request) -> AbstractContextManager[psycopg.Connection[Any]]:
    """A connection from the app's pool for a block; also for asking again after a
    request's own connection was lost (a lost connection makes the pool check the
    others before handing one out)."""
    return pooled(get_pool(request))


def get_conn(
    _: Annotated[None, Depends(admission)],
    pool: Annotated[ConnectionPool[Any], Depends(get_pool)],
) -> Iterator[Any]:
    with pooled(pool) as conn:
        yield conn


Conn = Annotated[psycopg.Connection[Any], Depends(get_conn)]
Settings = Annotated[WebSettings, Depends(get_settings)]


def session_of(request: Request) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The tenant and session id a dashboard cookie holds, if it holds any."""
    if "session" not in request.scope:
        return None
    tenant, session = request.session.get(SESSION_TENANT), request.session.get(SESSION_ID)
    if not isinstance(tenant, str) or not isinstance(session, str):
        return None
    try:
        return uuid.UUID(tenant), uuid.UUID(session)
    except ValueError:
        return None


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The tenant of the Bearer key, or of the dashboard's session; 401 otherwise.

    The key check is one look-up on a connection of the key-check pool, awaited on
    the event loop (no thread, no database slot), given back at once: a request that
    then waits (for its tenant's run slot, say) holds nothing anyone else needs.
    """
    session = None
    if credentials is None:
        session = session_of(request)
        if session is None:
            raise _unauthorized("an API key is required: 'Authorization: Bearer <key>'")
    key_pool: LiveAsyncPool = request.app.state.key_pool
    try:
        async with key_pool.connection(timeout=POOL_TIMEOUT) as conn:
            if credentials is not None:
                principal = await authenticate_async(conn, credentials.credentials)
            else:
                assert session is not None
                principal = await authenticate_session_async(conn, *session)
    except PoolTimeout as exc:
        raise _unavailable() from exc
    if principal is None:
        raise _unauthorized(
            "unknown or revoked API key" if session is None else "the session has ended"
        )
    request.state.tenant_id = principal.tenant_id
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


async def run_slot(request: Request, caller: Caller) -> AsyncIterator[None]:
    """One of the caller's tenant's run slots, for computing a run (429 when busy)."""
    runs: TenantSlots = request.app.state.tenant_runs
    async with runs.slot(caller.tenant_id):
        yield


RunSlot = Annotated[None, Depends(run_slot)]


@asynccontextmanager
async def tenant_read(request: Request, tenant_id: uuid.UUID) -> AsyncIterator[None]:
    """One of the tenant's read slots, then one of the database slots: a tenant's
    readers wait for their own turn first, holding nothing anyone else needs."""
    reads: TenantSlots = request.app.state.tenant_reads
    async with reads.slot(tenant_id), admitted(request):
        yield


async def _tenant_read_slot(request: Request, caller: Caller) -> AsyncIterator[None]:
    async with tenant_read(request, caller.tenant_id):
        yield


async def in_tenant_read(
    request: Request, tenant_id: uuid.UUID, read: Callable[[psycopg.Connection[Any]], T]
) -> T:
    """``read(conn)`` within the tenant's read share, on a pooled connection taken and
    given back in the same worker thread: one hand-off to a thread where a connection
    dependency and a sync route take three."""

    def work() -> T:
        with fresh_connection(request) as conn:
            return read(conn)

    async with tenant_read(request, tenant_id):
        return await anyio.to_thread.run_sync(work)


#: The first key of a tenant's whole-run page lock (``pg_advisory_xact_lock(int, int)``,
#: a key space of its own: the one-key locks of idempotent runs never meet it).
PAGE_LOCK_CLASS = 0x70636F76  # "pcov"


#: How long a whole-run page waits before it tries the tenant's page lock again.
PAGE_RETRY_SECONDS = 0.01


async def in_tenant_page_read(
    request: Request, tenant_id: uuid.UUID, read: Callable[[psycopg.Connection[Any]], T]
) -> T:
    """``in_tenant_read`` for a page of a whole run's drill-down, the heaviest read
    there is (~10 ms of the database's CPU a page of 1,000 deals): a tenant's such
    pages are read one at a time across the server's workers. The read share alone,
    split among N workers, let a tenant page N at once and keep N cores busy; then
    every other tenant's reads waited for the CPU.

    The page is read in a transaction holding the tenant's advisory lock, taken
    without waiting (``pg_try_advisory_xact_lock``): while another worker's page holds
    it, this one gives back its read slot and connection and tries again shortly, so a
    waiting page holds nothing the tenant's other reads need. In each worker one page
    of a tenant at a time tries (the others queue behind it in the event loop); past
    ``queue_seconds``, 429.
    """
    wait: float = request.app.state.settings.queue_seconds
    deadline = anyio.current_time() + wait
    locks: dict[uuid.UUID, anyio.Lock] = request.app.state.page_locks
    turn = locks.setdefault(tenant_id, anyio.Lock())

    def locked(conn: psycopg.Connection[Any]) -> tuple[bool, T | None]:
        with unit_of_work(conn) as cur:
            cur.execute(
                "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS got",
                (PAGE_LOCK_CLASS, str(tenant_id)),
            )
            if not records(cur)[0]["got"]:
                return False, None
            return True, read(conn)

    def busy() -> ProblemError:
        return too_many("the tenant's whole-run pages are read one at a time", wait)

    with anyio.move_on_after(wait) as waiting:
        await turn.acquire()
    if waiting.cancelled_caught:
        raise busy()
    try:
        while True:
            done, value = await in_tenant_read(request, tenant_id, locked)
            if done:
                return cast(T, value)
            if anyio.current_time() + PAGE_RETRY_SECONDS > deadline:
                raise busy()
            await anyio.sleep(PAGE_RETRY_SECONDS)
    finally:
        turn.release()
        if not turn.locked() and not turn.statistics().tasks_waiting:
            locks.pop(tenant_id, None)


def get_tenant_conn(
    _: Annotated[None, Depends(_tenant_read_slot)],
    pool: Annotated[ConnectionPool[Any], Depends(get_pool)],
) -> Iterator[Any]:
    with pooled(pool) as conn:
        yield conn


#: A connection for reading on behalf of the caller's tenant, within its read share.
TenantConn = Annotated[psycopg.Connection[Any], Depends(get_tenant_conn)]
