"""What keeps one bad or greedy client from hurting the others.

- ``BodyLimit``: a request body over ``max_body_bytes`` is refused with 413 before
  anything parses it (by its Content-Length, or as soon as a streamed body passes it);
  an upload (``POST /v1/imports``) has a limit of its own, ``max_import_bytes``, and
  is streamed to its route rather than held in memory.
- ``admitted``: at most ``pool_size`` requests use the database at once; the others
  queue (without holding a thread) for at most ``queue_seconds``, then get 429.
- ``TenantSlots``: one tenant computes at most ``tenant_runs`` runs and reads with at
  most ``tenant_reads`` requests at once, so a burst of requests from one tenant
  queues on its own slots, not on everyone's.
- ``RetryLostConnection``: a GET or HEAD that failed because its database connection
  broke is run once more, on a fresh connection.
- ``SameOriginWrites``: a state-changing request carried by the dashboard's cookie
  (no ``Authorization`` header) must come from the dashboard's own origin.
- ``SecurityHeaders``: nosniff, no referrer, no framing, a Content-Security-Policy
  that lets pages load only the package's own scripts and styles, and
  ``Cache-Control: private`` on everything a tenant's credentials can reach.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline_coverage.web.problems import CONNECTION_LOST, ProblemError, problem_response

log = logging.getLogger("pipeline_coverage.web")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
#: What a browser may answer in ``Sec-Fetch-Site`` for a request the dashboard made.
_OWN_FETCH_SITES = frozenset({"same-origin"})
#: Paths whose answers hold nothing of any tenant: shared caches may keep them.
_PUBLIC_PATHS = ("/static/", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc")


def too_many(detail: str, retry_after: float) -> ProblemError:
    return ProblemError(429, detail, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


class BodyTooLarge(ProblemError):
    """A streamed upload passed its limit: 413, and the connection is closed (the rest
    of the body is never read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than {limit} bytes", headers={"Connection": "close"}
        )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, reading no more than that.

    ``streamed`` maps the paths of uploads (POSTed) to their own limit: their body is
    not read here but handed on as it comes, counted, and the read that passes the
    limit raises :class:`BodyTooLarge`. An answer given before such a body was read to
    its end (a 401, a 413, a refused field) closes the connection, so the rest of the
    upload is never read.
    """

    def __init__(self, app: ASGIApp, limit: int, streamed: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.streamed = dict(streamed or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        upload_limit = self.streamed.get(scope["path"]) if scope["method"] == "POST" else None
        if upload_limit is not None:
            if declared is not None and declared > upload_limit:
                await self._refuse(scope, receive, send, upload_limit)
                return
            await self._stream(scope, receive, send, upload_limit)
            return
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        # Read the body here (at most ``limit`` bytes), then hand it on unchanged.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        size = 0
        ended = False

        async def counted() -> Message:
            nonlocal size, ended
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise BodyTooLarge(limit)
                ended = not message.get("more_body", False)
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not ended:
                headers = [(n, v) for n, v in message.get("headers", ()) if n != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted, closing)
        except BodyTooLarge:  # raised where no handler answers it
            await self._refuse(scope, receive, closing, limit)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, limit: int | None = None
    ) -> None:
        response = problem_response(
            Request(scope),
            413,
            f"the request body is larger than {limit or self.limit} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def header_value(scope: Scope, wanted: bytes) -> str | None:
    """The first value of a request header (its name in lower case, as ASGI gives it)."""
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _content_length(scope: Scope) -> int | None:
    value = header_value(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


@asynccontextmanager
async def admitted(request: Request) -> AsyncIterator[None]:
    """Hold one of the ``pool_size`` database slots; 429 after ``queue_seconds``.

    Sync routes run in a thread pool; if more requests than connections each took a
    thread and then blocked on the pool, the requests holding connections could find
    no thread left to run in. Queuing here, in the event loop, keeps threads for the
    requests that can make progress, and the bounded wait keeps the queue short.
    """
    slots: anyio.Semaphore = request.app.state.db_slots
    wait: float = request.app.state.settings.queue_seconds
    await _acquire(slots, wait, "the server is busy; retry later")
    try:
        yield
    finally:
        slots.release()


async def _acquire(semaphore: anyio.Semaphore, wait: float, busy: str) -> None:
    """Take ``semaphore``, waiting at most ``wait`` seconds; 429 past that."""
    with anyio.move_on_after(wait) as waiting:
        await semaphore.acquire()
    if waiting.cancelled_caught:
        raise too_many(busy, wait)


class TenantSlots:
    """At most ``limit`` requests of one kind in progress per tenant; others wait up to
    ``wait`` seconds, then get 429.

    Two of these keep tenants apart: one for runs (``PIPELINE_COVERAGE_TENANT_RUNS``),
    one for reads (``PIPELINE_COVERAGE_TENANT_READS``). A tenant's burst queues on its
    own slots, holding no database slot or connection while it waits, so the other
    tenants' requests find the pool as free as if the burst were not there.

    All state lives on the event loop's thread, so no lock is needed; a tenant's entry
    is dropped when nobody holds or waits for it.
    """

    def __init__(self, limit: int, wait: float, what: str = "runs") -> None:
        self.limit = limit
        self.wait = wait
        self.what = what
        self._slots: dict[uuid.UUID, anyio.Semaphore] = {}
        self._users: dict[uuid.UUID, int] = {}

    @asynccontextmanager
    async def slot(self, tenant_id: uuid.UUID) -> AsyncIterator[None]:
        semaphore = self._slots.setdefault(tenant_id, anyio.Semaphore(self.limit))
        self._users[tenant_id] = self._users.get(tenant_id, 0) + 1
        try:
            busy = f"this tenant already has {self.limit} {self.what} in progress; retry later"
            await _acquire(semaphore, self.wait, busy)
            try:
                yield
            finally:
                semaphore.release()
        finally:
            self._users[tenant_id] -= 1
            if not self._users[tenant_id]:
                del self._users[tenant_id], self._slots[tenant_id]


class RetryLostConnection:
    """Run a GET or HEAD once more when its answer was a 503 for a lost connection.

    The first attempt's response is held back, never sent: the client sees only the
    retry's. By then the first attempt has returned its broken connection to the pool,
    which discards it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return

        async def first_send(message: Message) -> None:
            if not scope.get(CONNECTION_LOST):
                await send(message)

        await self.app(scope, receive, first_send)
        if scope.pop(CONNECTION_LOST, False):
            log.warning(
                "retrying %s %s: its database connection was lost", scope["method"], scope["path"]
            )
            await self.app(scope, receive, send)


#: Pages may load only the package's own scripts, styles and images, talk only to
#: this origin, and never be framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: The interactive API docs load Swagger UI from a CDN with inline scripts: they keep
#: only the framing rule.
_DOCS_PATHS = ("/docs", "/redoc")


class HeadAsGet:
    """Answer ``HEAD`` as ``GET`` without the body (RFC 9110 §9.3.2): the same status
    and headers, so that a monitor or a client checking a resource can use it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def own_origin(scope: Scope, public_url: str | None) -> str:
    """The dashboard's origin: the configured public URL's, else the one the request
    was sent to (its scheme and ``Host``)."""
    if public_url:
        scheme, _, rest = public_url.partition("://")
        return f"{scheme.lower()}://{rest.split('/', 1)[0].lower()}"
    host = header_value(scope, b"host") or ""
    return f"{scope.get('scheme', 'http')}://{host.lower()}"


class SameOriginWrites:
    """Refuse (403) a state-changing request that rides on the dashboard's cookie from
    another origin.

    The cookie is ``SameSite=Strict``, which keeps other *sites* out but not a page on
    another origin of the same site (``evil.example.com`` posting to
    ``crm.example.com``). So a POST, PUT, PATCH or DELETE without an ``Authorization``
    header (a Bearer key is never sent by a browser on its own) must say it comes from
    this origin: ``Sec-Fetch-Site: same-origin``, else an ``Origin`` equal to ours.
    A request with neither header is not a browser's (browsers send ``Origin`` with
    every such request) and passes on to authenticate as usual.
    """

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in _SAFE_METHODS
            or scope["method"] == "OPTIONS"
            or header_value(scope, b"authorization") is not None
        ):
            await self.app(scope, receive, send)
            return
        site = header_value(scope, b"sec-fetch-site")
        origin = header_value(scope, b"origin")
        if site is not None:
            allowed = site.strip().lower() in _OWN_FETCH_SITES
        elif origin is not None:
            allowed = origin.strip().lower() == own_origin(scope, self.public_url)
        else:
            allowed = True
        if allowed:
            await self.app(scope, receive, send)
            return
        response = problem_response(
            Request(scope), 403, "a state-changing request must come from the dashboard's origin"
        )
        await response(scope, receive, send)


class SecurityHeaders:
    """Add the security headers to every response, and ``Cache-Control: private`` to
    every response that may hold a tenant's data (a route may set a stricter one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(_DOCS_PATHS)
        policy = "frame-ancestors 'none'" if docs else CONTENT_SECURITY_POLICY
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", policy.encode()),
        ]
        if scope["path"] != "/" and not scope["path"].startswith(_PUBLIC_PATHS):
            extra.append((b"cache-control", b"private, no-store"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                headers: list[Any] = list(message.get("headers", ()))
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
