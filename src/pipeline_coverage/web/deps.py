"""Request dependencies: a pooled connection, and the tenant the caller's key decides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from pipeline_coverage.apikeys import Principal, authenticate
from pipeline_coverage.config import WebSettings
from pipeline_coverage.web.problems import ProblemError

SESSION_KEY = "api_key"
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
    with pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.Connection[Any], Depends(get_conn)]
Settings = Annotated[WebSettings, Depends(get_settings)]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def get_principal(
    request: Request,
    conn: Conn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The tenant of the Bearer key, or of the dashboard's session; 401 otherwise."""
    key: str | None = None
    if credentials is not None:
        key = credentials.credentials
    elif "session" in request.scope:
        stored = request.session.get(SESSION_KEY)
        key = stored if isinstance(stored, str) else None
    if not key:
        raise _unauthorized("an API key is required: 'Authorization: Bearer <key>'")
    principal = authenticate(conn, key)
    if principal is None:
        raise _unauthorized("unknown or revoked API key")
    request.state.tenant_id = principal.tenant_id
    return principal


Caller = Annotated[Principal, Depends(get_principal)]
