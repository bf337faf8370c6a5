"""Errors as RFC 9457 problem details, for every route and every failure."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pipeline_coverage.errors import (
    ConnectionLostError,
    InputError,
    NotFoundError,
    PipelineCoverageError,
    SchemaError,
)
from pipeline_coverage.web.schemas import FieldProblem, Problem

__all__ = [
    "CONNECTION_LOST",
    "MAX_REPORTED_ERRORS",
    "MEDIA_TYPE",
    "Problem",
    "ProblemError",
    "field_problem",
    "install",
]

MEDIA_TYPE = "application/problem+json"
#: At most this many invalid fields are listed in a 422; ``detail`` counts the rest.
MAX_REPORTED_ERRORS = 20
#: Set in the request scope when the answer is a 503 for a lost database connection
#: (``limits.RetryLostConnection`` then runs a GET once more).
CONNECTION_LOST = "pipeline_coverage.connection_lost"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
log = logging.getLogger("pipeline_coverage.web")


class ProblemError(Exception):
    """Raised by routes to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def field_problem(message: str) -> FieldProblem:
    """Our errors read ``field: reason``; split them for the ``errors`` member."""
    field, sep, reason = message.partition(": ")
    if sep and field.replace("_", "").isalnum():
        return FieldProblem(field=field, message=reason)
    return FieldProblem(field="", message=message)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return (".".join(parts) or "body")[:100]  # an unknown key may be any length


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route serves at the request's path (HEAD wherever GET is): each
    asked of the router, which also sees into included routers."""
    routes = request.app.router.routes
    methods = {
        method
        for method in ("DELETE", "GET", "PATCH", "POST", "PUT")
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    }  # fmt: skip
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Route every error through problem details."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        found = exc.errors()
        errors = [
            FieldProblem(
                field="body"
                if error.get("type") == "json_invalid"
                else _location(tuple(error.get("loc", ()))),
                message=str(error["msg"])[:200],
            )
            for error in found[:MAX_REPORTED_ERRORS]
        ]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        if len(found) > len(errors):
            detail += f" (and {len(found) - len(errors)} more)"
        return problem_response(request, 422, detail, errors)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return problem_response(request, 404, str(exc))

    @app.exception_handler(SchemaError)
    async def _schema(request: Request, exc: SchemaError) -> JSONResponse:
        log.error("database not migrated: %s", exc)
        return problem_response(request, 503, "the database schema is not ready")

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        return problem_response(request, 422, str(exc), [field_problem(str(exc))])

    @app.exception_handler(ConnectionLostError)
    async def _lost(request: Request, exc: ConnectionLostError) -> JSONResponse:
        log.warning("database connection lost: %s", exc)
        request.scope[CONNECTION_LOST] = True
        # The others may have gone with it (a restart, a failover): check them now,
        # before a retry takes one.
        pool = getattr(request.app.state, "pool", None)
        if pool is not None:
            await anyio.to_thread.run_sync(pool.on_connection_lost)
        key_pool = getattr(request.app.state, "key_pool", None)
        if key_pool is not None:
            await key_pool.on_connection_lost()
        return problem_response(
            request, 503, "the database is not available right now", headers={"Retry-After": "1"}
        )

    @app.exception_handler(PipelineCoverageError)
    async def _failure(request: Request, exc: PipelineCoverageError) -> JSONResponse:
        log.error("request failed: %s", exc)
        return problem_response(request, 503, "the database is not available right now")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # every method of the path, not the first route's
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return problem_response(request, exc.status_code, str(exc.detail), headers=headers)
