"""Request dependencies: a pooled connection, and the tenant the caller's key decides."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool, PoolTimeout

from pipeline_coverage.apikeys import Principal, authenticate, authenticate_hash
from pipeline_coverage.config import WebSettings
from pipeline_coverage.web.problems import ProblemError

SESSION_TENANT = "tenant_id"
SESSION_KEY_HASH = "key_hash"
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
    """Wait (without holding a worker thread) for one of the pool's connections.

    Sync routes run in a thread pool; if more requests than connections each took a
    thread and then blocked on the pool, the requests holding connections could find
    no thread left to run in. Admitting at most ``pool_size`` requests at a time to
    the database part keeps threads for the ones that can make progress.
    """
    async with request.app.state.db_slots:
        yield


def get_conn(
    _: Annotated[None, Depends(admission)],
    pool: Annotated[ConnectionPool[Any], Depends(get_pool)],
) -> Iterator[Any]:
    try:
        conn = pool.getconn(timeout=POOL_TIMEOUT)
    except PoolTimeout as exc:
        raise ProblemError(
            503, "the database is not available right now", headers={"Retry-After": "5"}
        ) from exc
    try:
        yield conn
    finally:
        pool.putconn(conn)  # the core ends its own transactions; the pool checks anyway


Conn = Annotated[psycopg.Connection[Any], Depends(get_conn)]
Settings = Annotated[WebSettings, Depends(get_settings)]


def _session_key(request: Request) -> tuple[uuid.UUID, bytes] | None:
    """The tenant and key hash a dashboard session holds, if it holds any."""
    if "session" not in request.scope:
        return None
    tenant, hashed = request.session.get(SESSION_TENANT), request.session.get(SESSION_KEY_HASH)
    if not isinstance(tenant, str) or not isinstance(hashed, str):
        return None
    try:
        return uuid.UUID(tenant), bytes.fromhex(hashed)
    except ValueError:
        return None


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def get_principal(
    request: Request,
    conn: Conn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The tenant of the Bearer key, or of the dashboard's session; 401 otherwise."""
    if credentials is not None:
        principal = authenticate(conn, credentials.credentials)
    else:
        session = _session_key(request)
        if session is None:
            raise _unauthorized("an API key is required: 'Authorization: Bearer <key>'")
        principal = authenticate_hash(conn, *session)
    if principal is None:
        raise _unauthorized("unknown or revoked API key")
    request.state.tenant_id = principal.tenant_id
    return principal


Caller = Annotated[Principal, Depends(get_principal)]
