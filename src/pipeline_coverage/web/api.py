"""``/v1``: coverage runs and history, scoped to the tenant of the caller's key."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, Query, Request, Response

from pipeline_coverage.directory import default_period, known_periods
from pipeline_coverage.errors import ConnectionLostError, NotFoundError
from pipeline_coverage.history import (
    MAX_DAY_OF_QUARTER,
    MAX_QUARTERS,
    principal_history,
    same_point_of_quarter,
)
from pipeline_coverage.presentation import PRINCIPAL_TYPES, Bands
from pipeline_coverage.render.values import (
    PrincipalType,
    Run,
    deals_csv,
    movement_csv,
    movement_deals_csv,
    movement_document,
    run_csv,
    run_document,
)
from pipeline_coverage.reports.coverage import (
    IdempotencyConflictError,
    RunOutcome,
    run_coverage,
    run_of_key,
)
from pipeline_coverage.reports.movement import compare_runs
from pipeline_coverage.reports.requests import resolve_request
from pipeline_coverage.store import (
    DealCursor,
    get_run,
    list_runs,
    run_deals,
    run_deals_json,
)
from pipeline_coverage.web.cache import Rendered, RunCache
from pipeline_coverage.web.deps import (
    Caller,
    Conn,
    RunSlot,
    TenantConn,
    fresh_connection,
    in_tenant_page_read,
    in_tenant_read,
    tenant_read,
)
from pipeline_coverage.web.problems import ProblemError, field_problem
from pipeline_coverage.web.schemas import (
    Comparison,
    CreatedRun,
    DealPage,
    Granularity,
    History,
    IsoDate,
    PeriodInfo,
    PeriodList,
    Point,
    Problem,
    QuarterPoint,
    RunPage,
    RunRequest,
    RunWithRows,
    SamePoint,
    TargetMatchFilter,
)

router = APIRouter(prefix="/v1", tags=["coverage"])
#: The most drill-down rows one page holds.
MAX_DEALS_PAGE = 10_000
#: How the idempotency keys the server gives to POSTs without one begin (a caller's
#: key is never replayed as one of these: they hold a fresh random id).
_SERVER_KEY = "server-request:"

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (400, 401, 404, 409, 413, 422, 429, 503)
}


def _wants_csv(request: Request) -> bool:
    """Whether the request's ``Accept`` prefers the CSV rendering to JSON."""
    return wants_csv(request.headers.get("accept", ""))


def wants_csv(accept: str) -> bool:
    """Whether an ``Accept`` header prefers ``text/csv`` to JSON (RFC 9110 §12.5.1):
    CSV when it is acceptable (q > 0) and ranked above ``application/json``; a tie
    with ``application/json`` named too gives JSON, the default, and a wildcard never
    outranks CSV named explicitly. Media types are compared case-insensitively."""
    ranks: dict[str, float] = {}
    for part in accept.split(","):
        media, *parameters = part.split(";")
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        kind = media.strip().lower()
        ranks[kind] = max(ranks.get(kind, 0.0), quality)
    csv_rank = ranks.get("text/csv", 0.0)
    json_rank = ranks.get("application/json")
    return csv_rank > 0 and (json_rank is None or csv_rank > json_rank)


def _bands(request: Request) -> Bands:
    """The coverage bands the server decides a row's band by (PIPELINE_COVERAGE_BANDS)."""
    return Bands(*request.app.state.settings.bands)


def _invalid(message: str) -> ProblemError:
    return ProblemError(422, message, [field_problem(message)])


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
    http_request: Request,
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
        request = resolve_request(conn, caller.tenant_id, **body.model_dump())
        # Without a key of the caller's, the request gets one of its own: if the
        # connection is lost after the run was committed, the run is found by it.
        key = idempotency_key or f"{_SERVER_KEY}{uuid.uuid4().hex}"
        try:
            outcome = run_coverage(conn, request, idempotency_key=key)
        except ConnectionLostError:
            with fresh_connection(http_request) as other:
                found = run_of_key(other, caller.tenant_id, key)
            if found is None:
                raise
            outcome = RunOutcome(found)
    except IdempotencyConflictError as exc:
        raise ProblemError(409, "this Idempotency-Key was used with another request body") from exc
    except NotFoundError as exc:  # the body names something the tenant does not have
        raise _invalid(str(exc)) from exc
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/coverage-runs/{outcome.run_id}"
    # The run is committed: whatever happens to this connection now, it is answered
    # as created (read again on a fresh connection if this one was lost).
    try:
        stored = get_run(conn, outcome.run_id, caller.tenant_id)
    except ConnectionLostError:
        with fresh_connection(http_request) as other:
            stored = get_run(other, outcome.run_id, caller.tenant_id)
    return run_document(stored, _bands(http_request))


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
    conn: TenantConn,
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
async def read_coverage_run(run_id: uuid.UUID, caller: Caller, request: Request) -> Any:
    """A run of another tenant is not found, exactly like a missing one. Responses carry
    an ETag; a run's rendering may be reused for a short while (see docs/api.md)."""
    fmt = "csv" if _wants_csv(request) else "json"
    cache: RunCache = request.app.state.run_cache

    async def render() -> Rendered:  # only then a database slot, a connection and a thread
        async with tenant_read(request, caller.tenant_id):
            return await anyio.to_thread.run_sync(
                _render_run, request, caller.tenant_id, run_id, fmt
            )

    rendered = await cache.rendered(caller.tenant_id, run_id, fmt, render)
    # Private: a shared cache must never hand one tenant's run to another caller.
    headers = {
        "ETag": rendered.etag,
        "Vary": "Accept, Authorization, Cookie",
        "Cache-Control": "private, no-cache",
    }
    if _matches(request.headers.get("if-none-match"), rendered.etag):
        return Response(status_code=304, headers=headers)
    return Response(rendered.body, media_type=rendered.media_type, headers=headers)


def _render_run(request: Request, tenant_id: uuid.UUID, run_id: uuid.UUID, fmt: str) -> Rendered:
    with fresh_connection(request) as conn:
        run = get_run(conn, run_id, tenant_id)
    if fmt == "csv":
        body, media_type = run_csv(run, _bands(request)).encode(), "text/csv; charset=utf-8"
    else:
        document = run_document(run, _bands(request))
        body, media_type = document.model_dump_json().encode(), "application/json"
    return Rendered(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


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
    conn: TenantConn,
    request: Request,
    principal_type: PrincipalType,
    principal_id: uuid.UUID,
    period_start: IsoDate,
    period_end: IsoDate,
    pipeline_id: uuid.UUID | None = None,
    granularity: Granularity = "run",
    target_match: TargetMatchFilter | None = None,
    rollup: bool | Literal["any"] | None = None,
) -> History:
    """Rows for no pipeline unless ``pipeline_id`` picks one: every run's, oldest first,
    or (``granularity=day``) one point per day — the day's last run, a run's day being
    its ``as_of``. Only the runs made with ``target_match`` and ``rollup`` count: absent,
    the tenant's default run options; ``any``, every run."""
    points = principal_history(
        conn, caller.tenant_id, principal_type, principal_id, period_start, period_end,
        pipeline_id, granularity=granularity, target_match=target_match, rollup=rollup,
    )  # fmt: skip
    return History(
        principal_type=principal_type,
        principal_id=principal_id,
        period_start=period_start,
        period_end=period_end,
        pipeline_id=pipeline_id,
        granularity=granularity,
        points=[Point.of(point, _bands(request)) for point in points],
    )


@router.get(
    "/coverage/same-point",
    response_model=SamePoint,
    responses=_PROBLEMS,
    summary="A principal at the same day of this and the previous fiscal quarters",
)
def coverage_same_point(
    caller: Caller,
    conn: TenantConn,
    request: Request,
    principal_type: PrincipalType,
    principal_id: uuid.UUID,
    quarters: Annotated[int, Query(ge=1, le=MAX_QUARTERS)] = 4,
    as_of: IsoDate | None = None,
    day: Annotated[int | None, Query(ge=1, le=MAX_DAY_OF_QUARTER)] = None,
    pipeline_id: uuid.UUID | None = None,
    target_match: TargetMatchFilter | None = None,
    rollup: bool | Literal["any"] | None = None,
) -> SamePoint:
    """Day ``day`` (default: ``as_of``'s own day of its quarter; ``as_of`` defaults to
    today) of the tenant's fiscal quarter containing ``as_of`` and of the
    ``quarters - 1`` before it: for each, the principal's row in the last run of
    exactly that quarter whose ``as_of`` is on or before that day, or null. Runs are
    kept by ``target_match`` and ``rollup`` as for the history."""
    found = same_point_of_quarter(
        conn, caller.tenant_id, principal_type, principal_id, quarters=quarters,
        as_of=as_of, day_of_quarter=day, pipeline_id=pipeline_id, target_match=target_match,
        rollup=rollup,
    )  # fmt: skip
    return SamePoint(
        principal_type=principal_type,
        principal_id=principal_id,
        pipeline_id=pipeline_id,
        as_of=found.as_of,
        day_of_quarter=found.day_of_quarter,
        quarters=[QuarterPoint.of(quarter, _bands(request)) for quarter in found.quarters],
    )


def _encode_deal_cursor(
    principal_type: str, principal_id: object, pipeline_id: object, deal_id: object
) -> str:
    raw = "|".join([principal_type, str(principal_id), str(pipeline_id or ""), str(deal_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_deal_cursor(cursor: str) -> DealCursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, principal, pipeline, deal = raw.split("|")
        if kind not in PRINCIPAL_TYPES:
            raise ValueError(kind)
        return (
            kind,
            uuid.UUID(principal),
            uuid.UUID(pipeline) if pipeline else None,
            uuid.UUID(deal),
        )
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("cursor: not a cursor from this API") from None


@router.get(
    "/coverage-runs/{run_id}/deals",
    response_model=DealPage,
    responses={**_PROBLEMS, 200: {"content": {"text/csv": {}}}},
    summary="The deals behind a run's rows (the drill-down; JSON, or CSV with Accept: text/csv)",
)
async def read_run_deals(
    run_id: uuid.UUID,
    caller: Caller,
    request: Request,
    principal_type: PrincipalType | None = None,
    principal_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_DEALS_PAGE)] = 1000,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> Any:
    """Every deal credited to the run's rows, or to one principal's (``principal_type``
    + ``principal_id``), with its class, credit reason, amounts, date and flags,
    ordered by principal, pipeline and deal. A run of another tenant is not found."""
    if (principal_type is None) != (principal_id is None):
        raise _invalid("principal_id: principal_type and principal_id go together")
    after = _decode_deal_cursor(cursor) if cursor else None
    wanted: dict[str, Any] = {
        "principal_type": principal_type, "principal_id": principal_id, "after": after,
        "limit": limit + 1,
    }  # fmt: skip
    # The hot read: the connection is taken, used and given back in one thread hand-off
    # (a connection dependency and a sync route would take three), all within the
    # tenant's read share; a whole run's pages, one at a time per tenant.
    reading = in_tenant_read if principal_id is not None else in_tenant_page_read
    if _wants_csv(request):
        found = await reading(
            request,
            caller.tenant_id,
            lambda conn: run_deals(conn, run_id, caller.tenant_id, **wanted),
        )
        page = found[:limit]
        # CSV has no room for the cursor: the next page's URL is a Link header.
        headers = {}
        if len(found) > limit:
            last = page[-1]
            following = _encode_deal_cursor(
                last.principal_type, last.principal_id, last.pipeline_id, last.deal_id
            )
            headers["Link"] = f'<{_next_page(request, following, limit)}>; rel="next"'
        return Response(deals_csv(page), media_type="text/csv; charset=utf-8", headers=headers)
    # The deals come as JSON objects from the database (store.run_deals_json, held to
    # deal_values and DealPage by the tests), so the page is joined, not re-encoded.
    objects = await reading(
        request,
        caller.tenant_id,
        lambda conn: run_deals_json(conn, run_id, caller.tenant_id, **wanted),
    )
    next_cursor = None
    if len(objects) > limit:
        last_deal = json.loads(objects[limit - 1])
        next_cursor = _encode_deal_cursor(
            last_deal["principal_type"], last_deal["principal_id"], last_deal["pipeline_id"],
            last_deal["deal_id"],
        )  # fmt: skip
    body = (
        f'{{"run_id":"{run_id}","deals":[{",".join(objects[:limit])}],'
        f'"next_cursor":{json.dumps(next_cursor)}}}'
    )
    return Response(body.encode(), media_type="application/json")


def _next_page(request: Request, cursor: str, limit: int) -> str:
    """The next page's URL: under the configured public URL, else relative (the
    request's ``Host`` is the client's word, never echoed back as a link)."""
    following = request.url.include_query_params(cursor=cursor, limit=limit)
    relative = following.path + ("?" + following.query if following.query else "")
    base = request.app.state.settings.public_url
    if base is None:
        return relative
    prefix = request.scope.get("root_path", "")
    return str(base) + relative.removeprefix(prefix)


@router.get(
    "/coverage-runs/{run_id}/compare/{other_run_id}",
    response_model=Comparison,
    responses={**_PROBLEMS, 200: {"content": {"text/csv": {}}}},
    summary="Why coverage changed: the movement from one run to another (JSON, or CSV)",
)
def compare_coverage_runs(
    run_id: uuid.UUID,
    other_run_id: uuid.UUID,
    caller: Caller,
    conn: TenantConn,
    request: Request,
    principal_type: PrincipalType | None = None,
    principal_id: uuid.UUID | None = None,
    deals: Annotated[bool, Query(description="Also list the deals of every step.")] = False,
) -> Any:
    """Per row of either run, run A's (``run_id``'s) open amount, the deals won, lost,
    left, entered and changed, and run B's (``other_run_id``'s) open amount (SPEC.md
    §11). Runs of another tenant are not found; runs that do not measure the same
    thing (period, pipeline filter, by_pipeline, rollup, target_match) are 422. CSV
    (``Accept: text/csv``) is the rows, or with ``deals=true`` the deals."""
    if (principal_type is None) != (principal_id is None):
        raise _invalid("principal_id: principal_type and principal_id go together")
    movement = compare_runs(
        conn, run_id, other_run_id, caller.tenant_id, principal_type=principal_type,
        principal_id=principal_id, deals=deals,
    )  # fmt: skip
    if _wants_csv(request):
        text = (
            movement_deals_csv(movement.deals or ())
            if deals
            else movement_csv(movement, _bands(request))
        )
        return Response(text, media_type="text/csv; charset=utf-8")
    return movement_document(movement, _bands(request))  # (validated against Comparison)


@router.get(
    "/periods",
    response_model=PeriodList,
    responses=_PROBLEMS,
    summary="The periods the tenant has targets or runs for, and the one to open on",
)
def list_periods(caller: Caller, conn: TenantConn) -> PeriodList:
    """Newest first, each with its period expression in the tenant's fiscal calendar
    (when one names it), its target rows and runs, and whether it is the current
    fiscal quarter (listed even when it has neither). ``default``: the current quarter
    when it has targets or runs, else the period last run, else the latest one with
    targets that has begun."""
    periods = known_periods(conn, caller.tenant_id)
    items = [PeriodInfo.model_validate(period, from_attributes=True) for period in periods]
    chosen = default_period(periods)
    return PeriodList(items=items, default=items[periods.index(chosen)])
