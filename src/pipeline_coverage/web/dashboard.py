"""The dashboard at ``/``: sign in with an API key, see and refresh coverage.

Signing in with a key opens a session kept on the server and sets a signed, HttpOnly,
SameSite=Strict cookie that names it (never the key, never in a URL); the page's
script then calls the same ``/v1`` API as any other client. Signing out, or revoking
the key, ends the session at once.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from pipeline_coverage.apikeys import end_session, start_session
from pipeline_coverage.directory import default_period, known_periods
from pipeline_coverage.metrics import HEADLINE, METRICS
from pipeline_coverage.tenants import run_defaults
from pipeline_coverage.web.deps import (
    SESSION_ID,
    SESSION_TENANT,
    Caller,
    Conn,
    Settings,
    TenantConn,
    session_of,
)
from pipeline_coverage.web.problems import ProblemError
from pipeline_coverage.web.schemas import MetricInfo, RunDefaults, Session, SignIn

router = APIRouter(include_in_schema=False)
STATIC = resources.files("pipeline_coverage.web").joinpath("static")


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    return HTMLResponse(STATIC.joinpath("dashboard.html").read_text(encoding="utf-8"))


@router.post("/session", status_code=204)
def sign_in(body: SignIn, request: Request, conn: Conn) -> Response:
    session = start_session(conn, body.api_key)
    if session is None:
        raise ProblemError(401, "unknown or revoked API key")
    # The signed cookie names a session kept on the server, never the key: a stolen
    # cookie cannot be turned into a key, and signing out or revoking the key ends it.
    request.session.clear()
    request.session[SESSION_TENANT] = str(session.principal.tenant_id)
    request.session[SESSION_ID] = str(session.id)
    return Response(status_code=204)


@router.get("/session", response_model=Session)
def session(caller: Caller, conn: TenantConn, settings: Settings) -> Session:
    # Open on a period with data, not on an empty current quarter (/v1/periods).
    opening = default_period(known_periods(conn, caller.tenant_id))
    start, end = opening.period_start, opening.period_end
    defaults = run_defaults(conn, caller.tenant_id)
    return Session(
        tenant_id=caller.tenant_id,
        tenant_name=caller.tenant_name,
        run_defaults=RunDefaults(**defaults.as_dict()),
        low=settings.low,
        healthy=settings.healthy,
        period_start=start,
        period_end=end,
        metrics=[
            MetricInfo(
                name=m.name, kind=m.kind, label=m.label, description=m.description, unit=m.unit
            )
            for m in METRICS
        ],
        headline=list(HEADLINE),
    )


@router.delete("/session", status_code=204)
def sign_out(request: Request, conn: Conn) -> Response:
    found = session_of(request)
    if found is not None:
        end_session(conn, *found)
    request.session.clear()
    return Response(status_code=204)
