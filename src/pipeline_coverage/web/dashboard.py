"""The dashboard at ``/``: sign in with an API key, see and refresh coverage.

Signing in with a key sets a signed, HttpOnly, SameSite=Strict session cookie that
holds the key's tenant and hash (never the key, never in a URL); the page's script
then calls the same ``/v1`` API as any other client.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from pipeline_coverage.apikeys import authenticate, key_hash
from pipeline_coverage.reports.pipeline_coverage import quarter_of
from pipeline_coverage.web.deps import SESSION_KEY_HASH, SESSION_TENANT, Caller, Conn, Settings
from pipeline_coverage.web.problems import ProblemError
from pipeline_coverage.web.schemas import Session, SignIn

router = APIRouter(include_in_schema=False)
STATIC = resources.files("pipeline_coverage.web").joinpath("static")


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    return HTMLResponse(STATIC.joinpath("dashboard.html").read_text(encoding="utf-8"))


@router.post("/session", status_code=204)
def sign_in(body: SignIn, request: Request, conn: Conn) -> Response:
    principal = authenticate(conn, body.api_key)
    if principal is None:
        raise ProblemError(401, "unknown or revoked API key")
    # The signed cookie keeps the key's tenant and hash, never the key itself: a
    # stolen cookie cannot be turned into a key, and revoking the key ends it.
    request.session.clear()
    request.session[SESSION_TENANT] = str(principal.tenant_id)
    request.session[SESSION_KEY_HASH] = key_hash(body.api_key).hex()
    return Response(status_code=204)


@router.get("/session", response_model=Session)
def session(caller: Caller, settings: Settings) -> Session:
    start, end = quarter_of(dt.date.today())
    return Session(
        tenant_id=caller.tenant_id,
        tenant_name=caller.tenant_name,
        low=settings.low,
        healthy=settings.healthy,
        period_start=start,
        period_end=end,
    )


@router.delete("/session", status_code=204)
def sign_out(request: Request) -> Response:
    request.session.clear()
    return Response(status_code=204)
