"""``/v1``: coverage runs and history, scoped to the tenant of the caller's key."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Header, Query, Request, Response

from pipeline_coverage.db.connection import as_uuid, translate
from pipeline_coverage.errors import NotFoundError
from pipeline_coverage.render import run_csv
from pipeline_coverage.reports.pipeline_coverage import (
    get_run,
    list_runs,
    principal_history,
    run_pipeline_coverage_batch,
    run_pipeline_coverage_report,
)
from pipeline_coverage.sql import query
from pipeline_coverage.web.cache import Rendered, RunCache
from pipeline_coverage.web.deps import Caller, Conn, RunSlot
from pipeline_coverage.web.problems import ProblemError, field_problem
from pipeline_coverage.web.schemas import (
    CreatedRun,
    History,
    IsoDate,
    Point,
    PrincipalType,
    Problem,
    Run,
    RunPage,
    RunRequest,
    RunWithRows,
)

router = APIRouter(prefix="/v1", tags=["coverage"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (400, 401, 404, 409, 413, 422, 429, 503)
}


def _invalid(message: str) -> ProblemError:
    return ProblemError(422, message, [field_problem(message)])


def _request_hash(body: RunRequest) -> bytes:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


def _compute(conn: Any, tenant_id: uuid.UUID, body: RunRequest) -> uuid.UUID:
    if (body.principal_type is None) != (body.principal_id is None):
        missing = "principal_id" if body.principal_id is None else "principal_type"
        raise _invalid(f"{missing}: principal_type and principal_id go together")
    if body.principal_type is not None and body.principal_id is not None:
        if body.by_pipeline:
            raise _invalid("by_pipeline: only for a batch (a run without a principal)")
        return run_pipeline_coverage_report(
            conn,
            tenant_id,
            body.period_start,
            body.period_end,
            body.principal_type,
            body.principal_id,
            body.pipeline_id,
        )
    return run_pipeline_coverage_batch(
        conn,
        tenant_id,
        body.period_start,
        body.period_end,
        body.pipeline_id,
        by_pipeline=body.by_pipeline,
    )


@router.post(
    "/coverage-runs",
    status_code=201,
    response_model=CreatedRun,
    responses=_PROBLEMS,
    summary="Compute and store a coverage run",
)
def create_run(
    body: RunRequest,
    caller: Caller,
    _slot: RunSlot,
    conn: Conn,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Repeat a request safely: the same key and body give the first run.",
        ),
    ] = None,
) -> CreatedRun:
    """With ``principal_type`` and ``principal_id``: that principal's report. Without:
    every rep and team in scope (the batch), optionally ``by_pipeline``."""
    try:
        if idempotency_key is None:
            run_id = _compute(conn, caller.tenant_id, body)
        else:
            run_id = _idempotent(conn, caller.tenant_id, idempotency_key, body, response)
    except NotFoundError as exc:  # the body names something the tenant does not have
        raise _invalid(str(exc)) from exc
    created = RunWithRows.of(get_run(conn, run_id, caller.tenant_id))
    return CreatedRun.model_construct(run_id=run_id, run=created.run, rows=created.rows)


def _idempotent(
    conn: Any, tenant_id: uuid.UUID, key: str, body: RunRequest, response: Response
) -> uuid.UUID:
    """The first run for this key, computing it if there is none. Concurrent requests
    with one key queue on an advisory lock, so exactly one of them computes."""
    params = {"tenant_id": str(tenant_id), "key": key, "request_hash": _request_hash(body)}
    try:
        return _idempotent_run(conn, tenant_id, body, params, response)
    except psycopg.Error as exc:  # as everywhere else: the package's own errors
        raise translate(exc) from exc


def _idempotent_run(
    conn: Any, tenant_id: uuid.UUID, body: RunRequest, params: dict[str, Any], response: Response
) -> uuid.UUID:
    with conn.transaction():
        conn.execute(query("idempotency", "lock_key"), params)
        found = conn.execute(query("idempotency", "find_key"), params).fetchone()
        if found is not None:
            if bytes(found[0]) != params["request_hash"]:
                raise ProblemError(409, "this Idempotency-Key was used with another request body")
            response.headers["Idempotent-Replayed"] = "true"
            return as_uuid(found[1])
        run_id = _compute(conn, tenant_id, body)
        conn.execute(query("idempotency", "insert_key"), {**params, "run_id": str(run_id)})
    return run_id


def _encode_cursor(run: Run) -> str:
    raw = f"{run.generated_at.isoformat()}|{run.run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, run_id = raw.split("|")
        when = dt.datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when, uuid.UUID(run_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("cursor: not a cursor from this API") from None


@router.get(
    "/coverage-runs",
    response_model=RunPage,
    responses=_PROBLEMS,
    summary="List stored runs, newest first",
)
def list_coverage_runs(
    caller: Caller,
    conn: Conn,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    period_start: IsoDate | None = None,
    period_end: IsoDate | None = None,
    mode: Annotated[str | None, Query(pattern="^(single|batch)$")] = None,
) -> RunPage:
    """Cursor pagination: pass the previous page's ``next_cursor`` as ``cursor``."""
    if (period_start is None) != (period_end is None):
        raise _invalid("period_end: period_start and period_end go together")
    before = _decode_cursor(cursor) if cursor else None
    period = (period_start, period_end) if period_start and period_end else None
    found = list_runs(conn, caller.tenant_id, limit + 1, before=before, period=period, mode=mode)
    items = [Run.of(run) for run in found[:limit]]
    next_cursor = _encode_cursor(items[-1]) if len(found) > limit else None
    return RunPage(items=items, next_cursor=next_cursor)


@router.get(
    "/coverage-runs/{run_id}",
    response_model=RunWithRows,
    responses={**_PROBLEMS, 200: {"content": {"text/csv": {}}}, 304: {"description": "Unchanged"}},
    summary="A stored run with its rows (JSON, or CSV with Accept: text/csv)",
)
def read_coverage_run(run_id: uuid.UUID, caller: Caller, conn: Conn, request: Request) -> Any:
    """A run of another tenant is not found, exactly like a missing one. Responses carry
    an ETag; a run's rendering may be reused for a short while (see docs/api.md)."""
    accept = request.headers.get("accept", "")
    fmt = "csv" if "text/csv" in accept and "application/json" not in accept else "json"
    cache: RunCache = request.app.state.run_cache
    rendered = cache.get(caller.tenant_id, run_id, fmt)
    if rendered is None:
        run = get_run(conn, run_id, caller.tenant_id)
        if fmt == "csv":
            body, media_type = run_csv(run).encode(), "text/csv; charset=utf-8"
        else:
            body, media_type = RunWithRows.of(run).model_dump_json().encode(), "application/json"
        rendered = Rendered(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        cache.put(caller.tenant_id, run_id, fmt, rendered)
    # Private: a shared cache must never hand one tenant's run to another caller.
    headers = {
        "ETag": rendered.etag,
        "Vary": "Accept, Authorization, Cookie",
        "Cache-Control": "private, no-cache",
    }
    if _matches(request.headers.get("if-none-match"), rendered.etag):
        return Response(status_code=304, headers=headers)
    return Response(rendered.body, media_type=rendered.media_type, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison against an If-None-Match list (or ``*``)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


@router.get(
    "/coverage/history",
    response_model=History,
    responses=_PROBLEMS,
    summary="A principal's coverage across stored runs (the trend)",
)
def coverage_history(
    caller: Caller,
    conn: Conn,
    principal_type: PrincipalType,
    principal_id: uuid.UUID,
    period_start: IsoDate,
    period_end: IsoDate,
    pipeline_id: uuid.UUID | None = None,
) -> History:
    """Rows for all pipelines unless ``pipeline_id`` picks one, oldest run first."""
    points = principal_history(
        conn, caller.tenant_id, principal_type, principal_id, period_start, period_end, pipeline_id
    )
    return History(
        principal_type=principal_type,
        principal_id=principal_id,
        period_start=period_start,
        period_end=period_end,
        pipeline_id=pipeline_id,
        points=[Point.of(p) for p in points],
    )
