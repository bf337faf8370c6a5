"""The outermost layer of the app: one access line per request, and the last word on
any request that failed unexpectedly or whose client went away.

- Every request is logged once, as one JSON line: what, who (tenant), how it went, how
  long it took; ``X-Request-ID`` is echoed (or made) on every response.
- An unexpected exception is logged once, with its traceback, and answered ``500``
  with a problem document; it goes no further (the server would log it again).
- A client that disconnects before its request could be answered (say, midway through
  its body) is logged as such, status ``499``, without a traceback: it is the
  client's doing, not a fault of the server.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline_coverage.web.limits import header_value
from pipeline_coverage.web.problems import problem_response

access_log = logging.getLogger("pipeline_coverage.access")
log = logging.getLogger("pipeline_coverage.web")
#: The status logged for a request whose client went away before it was answered
#: (nginx's convention; never sent).
CLIENT_CLOSED = 499
#: The longest ``X-Request-ID`` echoed; a longer one is replaced by a fresh id.
MAX_REQUEST_ID = 200


def _request_id(scope: Scope) -> str:
    given = header_value(scope, b"x-request-id")
    if given is not None and 0 < len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    return uuid.uuid4().hex


class AccessLog:
    """See the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        started = time.perf_counter()
        status: int | None = None
        disconnected = False

        async def receiving() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers: list[Any] = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except ClientDisconnect:
            disconnected = True
        except Exception:
            if status is None and not disconnected:
                log.exception("unexpected error on %s %s", scope["method"], scope["path"])
                response = problem_response(
                    Request(scope), 500, "unexpected error; it has been logged"
                )
                await response(scope, receive, sending)
            elif not disconnected:
                log.exception("unexpected error after answering %s %s",
                              scope["method"], scope["path"])  # fmt: skip
        finally:
            if status is None and disconnected:
                status = CLIENT_CLOSED
            tenant = scope.get("state", {}).get("tenant_id")
            line = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status if status is not None else 500,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "tenant_id": str(tenant) if tenant else None,
                "client": scope["client"][0] if scope.get("client") else None,
            }
            if status == CLIENT_CLOSED:
                line["outcome"] = "client disconnected"
            access_log.info(json.dumps(line))
