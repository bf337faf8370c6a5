"""The FastAPI application: ``create_app(database_url, settings)``.

Nothing is created at import time: the connection pool opens in the app's lifespan
and closes (after in-flight requests finish) when the server shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from psycopg_pool import PoolTimeout
from starlette.middleware.sessions import SessionMiddleware

from pipeline_coverage.apikeys import SESSION_LIFETIME_SECONDS
from pipeline_coverage.config import WebSettings
from pipeline_coverage.web import api, dashboard, imports, problems
from pipeline_coverage.web.access import AccessLog
from pipeline_coverage.web.cache import RunCache
from pipeline_coverage.web.deps import get_pool
from pipeline_coverage.web.limits import (
    BodyLimit,
    HeadAsGet,
    RetryLostConnection,
    SameOriginWrites,
    SecurityHeaders,
    TenantSlots,
)
from pipeline_coverage.web.pool import KEY_CHECK_CONNECTIONS, LiveAsyncPool, LivePool
from pipeline_coverage.web.problems import ProblemError
from pipeline_coverage.web.schemas import Health

SESSION_COOKIE = "pipeline_coverage_session"
#: The pool's connections say who they are in pg_stat_activity.
APPLICATION_NAME = "pipeline-coverage-api"


def create_app(database_url: str, settings: WebSettings, *, open_pool: bool = True) -> FastAPI:
    """Build the app; the pool to ``database_url`` lives as long as the app runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A connection the server ended (a restart, pg_terminate_backend) is found and
        # replaced when it is taken from the pool, not by the request using it.
        pool = LivePool(
            database_url,
            min_size=1,
            max_size=settings.pool_size,
            kwargs={"application_name": APPLICATION_NAME},
            open=False,
        )
        pool.open(wait=open_pool, timeout=10)
        app.state.pool = pool
        key_pool = LiveAsyncPool(
            database_url,
            min_size=1,
            max_size=KEY_CHECK_CONNECTIONS,
            kwargs={"application_name": APPLICATION_NAME, "autocommit": True},
            open=False,
        )
        app.state.key_pool = key_pool
        app.state.db_slots = anyio.Semaphore(settings.pool_size)
        # The tenant shares are the server's: with several workers, each keeps its part.
        runs, reads = (
            settings.per_process(settings.tenant_runs),
            settings.per_process(settings.tenant_reads),
        )
        app.state.tenant_runs = TenantSlots(runs, settings.queue_seconds)
        app.state.tenant_reads = TenantSlots(reads, settings.queue_seconds, "requests reading")
        try:
            await key_pool.open(wait=open_pool, timeout=10)
            yield
        finally:
            await key_pool.close(timeout=10)
            pool.close(timeout=10)

    app = FastAPI(
        title="pipeline-coverage",
        version="1",
        summary="Pipeline coverage (open pipeline vs. sales target) per rep and team.",
        description=(
            "Every request authenticates with `Authorization: Bearer <API key>`; the key "
            "decides the tenant. Amounts are decimal strings. Errors are RFC 9457 problem "
            "details."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.run_cache = RunCache(settings.run_cache_seconds)
    app.state.page_locks = {}  # (deps.in_tenant_page_read: a tenant's turn in this process)
    problems.install(app)
    # Innermost first: HEAD is routed as GET; a lost connection is retried inside
    # everything else.
    app.add_middleware(HeadAsGet)
    app.add_middleware(RetryLostConnection)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_LIFETIME_SECONDS,
        same_site="strict",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(SameOriginWrites, public_url=settings.public_url)
    # An import's upload streams to its route under its own limit, not the JSON one.
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        streamed={imports.PATH: settings.max_import_bytes},
    )
    # Outside the body limit: a refused request is logged and echoes its request id too.
    app.add_middleware(AccessLog)
    app.add_middleware(SecurityHeaders)
    app.include_router(api.router)
    app.include_router(imports.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(packages=[("pipeline_coverage.web", "static")]), name="static")

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
    def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        summary="The database is reachable",
        responses={503: {"model": problems.Problem}},
    )
    def readyz(request: Request) -> Health:
        # Twice: a pooled connection the server has just ended is no sign of an outage
        # (the pool's idle connections are checked before the second try).
        pool = get_pool(request)
        for _ in range(2):
            try:
                with pool.connection(timeout=2) as conn:
                    conn.execute("SELECT 1")
                return Health(status="ok")
            except PoolTimeout as exc:
                raise ProblemError(503, "the database is not reachable") from exc
            except psycopg.Error:
                pool.check()
                continue
        raise ProblemError(503, "the database is not reachable")

    app.openapi = lambda: _openapi_with_problem_media_type(app)  # type: ignore[method-assign]
    return app


def _openapi_with_problem_media_type(app: FastAPI) -> dict[str, Any]:
    """Error responses are sent as application/problem+json: document them so."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status[:1] in ("4", "5") and "application/json" in content:
                        content[problems.MEDIA_TYPE] = content.pop("application/json")
        app.openapi_schema = schema
    return app.openapi_schema
