"""Request dependencies: a pooled connection, and the tenant the caller's key decides."""

from __future__ import annotations

from collections.abc import Iterator
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


def get_conn(pool: Annotated[ConnectionPool[Any], Depends(get_pool)]) -> Iterator[Any]:
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
