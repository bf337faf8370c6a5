"""How ``pipeline-coverage serve`` runs the app: uvicorn, with connection limits.

uvicorn keeps a connection open for as long as its client likes while the request's
headers trickle in, and a connection that never sends anything is never closed: a
few thousand idle or slow (slowloris) connections would exhaust the process's file
descriptors, and nothing, ``/healthz`` included, could connect any more. So every
connection of a server process is watched by one ``ConnectionGuard``:

- **read deadline**: a request's headers must arrive within ``header_timeout``
  seconds of its first byte (or of the connection's opening), or the connection is
  closed. Its body then has its own rule, so that a large upload over a slow link is
  not cut short while a stalled or trickling one still is: the connection is closed
  when no byte of the body arrives for ``header_timeout`` seconds, or when, after
  ``header_timeout`` seconds, the body has come at less than ``MIN_BODY_RATE`` bytes a
  second on average. Time the server itself is not reading (its flow control paused
  the socket, because the app has not asked for more yet) counts against neither;
- **keep-alive**: an idle connection is closed after ``keepalive_seconds``;
- **cap**: at most ``max_connections`` per process. At the cap, a new connection
  closes the connection that has been *waiting* longest (idle, or still sending its
  request): a connection whose request is being answered is never closed, and only
  when all are, the new one is answered ``503`` and closed. So an attacker holding
  the cap with idle or slow connections loses them to the next real client, and
  ``/healthz`` keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from collections import OrderedDict
from typing import Any

import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from pipeline_coverage.config import WebSettings

#: With several workers, each builds the app from the environment: these variables.
DATABASE_URL_VARIABLE = "DATABASE_URL"
SECRET_KEY_VARIABLE = "PIPELINE_COVERAGE_SECRET_KEY"
APP_FACTORY = "pipeline_coverage.web.server:app_from_environment"

#: A request body must arrive at least this fast on average (bytes a second), once its
#: first ``header_timeout`` seconds are over: 64 kbit/s, a slow mobile link; a 100 MiB
#: upload may take up to about three and a half hours at it, a 64 KiB JSON body 8 s.
MIN_BODY_RATE = 8 * 1024
#: File descriptors kept for everything but client connections (the database pool,
#: logs, the listening socket, ...).
RESERVED_DESCRIPTORS = 64
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: 40\r\n\r\n"
    b"every connection is busy; retry shortly\n"
)
assert len(_BUSY.split(b"\r\n\r\n", 1)[1]) == 40


class ConnectionGuard:
    """The connections of one server process: how many, and which may be closed to
    make room (those waiting for a request, longest waiting first). Lives on the event
    loop's thread: no lock."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open: set[GuardedHttpProtocol] = set()
        self.waiting: OrderedDict[GuardedHttpProtocol, None] = OrderedDict()

    def opened(self, connection: GuardedHttpProtocol) -> bool:
        """Admit a new connection, closing the longest-waiting one at the cap; False
        when every other connection is busy answering (the new one is refused)."""
        if len(self.open) >= self.max_connections:
            victim = next(iter(self.waiting), None)
            if victim is None:
                return False
            self.forget(victim)
            victim.transport.close()
        self.open.add(connection)
        self.waiting[connection] = None
        return True

    def forget(self, connection: GuardedHttpProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)

    def busy(self, connection: GuardedHttpProtocol) -> None:
        self.waiting.pop(connection, None)

    def idle(self, connection: GuardedHttpProtocol) -> None:
        if connection in self.open:
            self.waiting[connection] = None
            self.waiting.move_to_end(connection)


class TimedFlowControl(FlowControl):
    """uvicorn's flow control, keeping how long reading was paused (the server, not the
    client, held the body up meanwhile) and when it last resumed."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport)
        self.loop = loop
        self.paused_seconds = 0.0
        self.paused_at: float | None = None
        self.resumed_at = 0.0

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.paused_at = self.loop.time()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.paused_at is not None:
            self.resumed_at = self.loop.time()
            self.paused_seconds += self.resumed_at - self.paused_at
            self.paused_at = None
        super().resume_reading()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the read deadline and the cap of
    ``ConnectionGuard`` (found on the uvicorn config as ``connection_guard``)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.guard: ConnectionGuard = config.connection_guard
        self.read_deadline: asyncio.TimerHandle | None = None
        self.answering = False
        #: While a request's body is coming: when its headers were in, the bytes since,
        #: the last time any came, and the paused time of the flow control then.
        self.body_since: float | None = None
        self.body_bytes = 0
        self.body_progress = 0.0
        self.body_paused = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = TimedFlowControl(transport, self.loop)
        if not self.guard.opened(self):
            transport.write(_BUSY)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Bytes that begin no request (blank lines) must not keep a connection alive.
        in_body = self.body_since is not None
        super().data_received(data)
        if in_body and self.body_since is not None:
            self.body_bytes += len(data)
            self.body_progress = self.loop.time()
        if not self.answering:
            self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The headers are in: from now on the body's own rule (see the module).
        self._disarm()
        now = self.loop.time()
        self.body_since, self.body_bytes, self.body_progress = now, 0, now
        flow = self.flow
        self.body_paused = flow.paused_seconds if isinstance(flow, TimedFlowControl) else 0.0
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self.body_since = None
        self.answering = True
        self.guard.busy(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:  # no pipelined request
            self.answering = False
            self.guard.idle(self)

    def _arm(self) -> None:
        if self.read_deadline is None and not self.transport.is_closing():
            self.read_deadline = self.loop.call_later(self.guard.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _expire(self) -> None:
        self.read_deadline = None
        if self.answering or self.transport.is_closing():
            return
        left = self._body_time_left()
        if left > 0:
            self.read_deadline = self.loop.call_later(left, self._expire)
            return
        self.transport.close()

    def _body_time_left(self) -> float:
        """Seconds the body being read may still take before the next check (0: close
        the connection now); 0 outside a body (the headers' deadline has passed)."""
        if self.body_since is None:
            return 0.0
        flow = self.flow
        timeout = self.guard.header_timeout
        if not isinstance(flow, TimedFlowControl):
            return 0.0
        if flow.read_paused:  # the server is not reading: not the client's doing
            return timeout
        now = self.loop.time()
        paused = flow.paused_seconds - self.body_paused
        last = max(self.body_progress, flow.resumed_at)
        stalled_at = last + timeout
        too_slow_at = self.body_since + paused + timeout + self.body_bytes / MIN_BODY_RATE
        return max(0.0, min(stalled_at, too_slow_at) - now)


def descriptor_budget() -> int:
    """How many client connections this process can hold: its open-file limit (raised
    to the hard limit first) less what the rest of the server needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return max(1, soft - RESERVED_DESCRIPTORS)


def uvicorn_config(app: Any, host: str, port: int, settings: WebSettings, **options: Any) -> Any:
    """The uvicorn configuration of ``serve`` (and of the tests' servers): the guarded
    protocol, the keep-alive timeout, and a cap within the descriptors there are."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="pipeline_coverage.web.server:GuardedHttpProtocol",
        timeout_keep_alive=settings.keepalive_seconds,  # type: ignore[arg-type]  # any number
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
        **options,
    )
    cap = min(settings.max_connections, descriptor_budget())
    config.connection_guard = ConnectionGuard(cap, settings.header_timeout)  # type: ignore[attr-defined]
    return config


def configure_access_log() -> None:
    """Access lines are JSON already: print them as they are, on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("pipeline_coverage.access", "pipeline_coverage.web"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def app_from_environment() -> Any:
    """The app of one worker process of ``serve --workers N``."""
    from pipeline_coverage.web.app import create_app

    configure_access_log()
    return create_app(os.environ[DATABASE_URL_VARIABLE], WebSettings.from_env())


def run(config: Any) -> bool:
    """Serve until stopped (one process, or ``config.workers`` sharing the socket);
    False when the server could not start (say, the port is taken)."""
    server = uvicorn.Server(config)
    try:  # (uvicorn re-raises the signal that stopped it once it has shut down)
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
            return True
        server.run()
    except KeyboardInterrupt:
        pass
    return bool(server.started)
