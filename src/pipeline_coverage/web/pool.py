"""The connection pools of the HTTP API: they hand out live connections only.

Two pools per server process, both of them ``Live``:

- ``LivePool`` (psycopg_pool's ``ConnectionPool``): the reads and runs, in worker
  threads;
- ``LiveAsyncPool`` (``AsyncConnectionPool``): the key check of every request, on
  the event loop itself, in autocommit. A key check is one indexed look-up; run on
  the loop it costs no hand-off to a thread and back, which cost more of the server's
  Python than the look-up did (see docs/performance.md).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

#: A connection back in the pool for less than this is handed out unchecked.
CHECK_AFTER_IDLE_SECONDS = 1.0
#: The key-check pool's connections per server process (beside ``pool_size``).
KEY_CHECK_CONNECTIONS = 4


class _ReturnStamps:
    """When each connection was last given back: a connection used a moment ago is
    handed out as it is, one idle longer is checked first (see ``LivePool``)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._returned: dict[int, float] = {}

    def fresh(self, conn: Any) -> bool:
        returned = self._returned.pop(id(conn), None)
        return returned is not None and time.monotonic() - returned < CHECK_AFTER_IDLE_SECONDS

    def stamp(self, conn: Any) -> None:
        if len(self._returned) > 4 * self.max_size:  # stamps of connections since closed
            self._returned.clear()
        self._returned[id(conn)] = time.monotonic()

    def clear(self) -> None:
        self._returned.clear()


class LivePool(ConnectionPool[Any]):
    """A ``ConnectionPool`` whose ``getconn`` checks a connection that sat idle.

    When the database ends its connections (a restart, a failover,
    ``pg_terminate_backend``) the pool is full of dead ones. psycopg_pool's own
    ``check`` callback finds them, but backs off between failed checks (a second,
    then two, ...), so requests would time out one dead connection at a time. Here a
    connection idle for ``CHECK_AFTER_IDLE_SECONDS`` or more is checked before it is
    handed out, and one dead connection makes the pool check all its idle ones at
    once, replacing the dead. A connection used a moment ago is handed out as it is:
    under load, a check per request would be a round trip per request; if it was
    ended meanwhile, the request's lost connection is answered by
    ``on_connection_lost`` (a GET is then retried on a checked one).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamps = _ReturnStamps(self.max_size)

    def getconn(self, timeout: float | None = None) -> Any:
        conn = super().getconn(timeout)
        if self._stamps.fresh(conn):
            return conn
        try:
            self.check_connection(conn)
        except Exception:
            self.putconn(conn)  # closed: the pool discards it and opens a new one
            self.check()  # the others most likely went with it
            conn = super().getconn(timeout)
        return conn

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        self._stamps.stamp(conn)
        super().putconn(conn)

    def on_connection_lost(self) -> None:
        """A request found its connection dead: check every idle one now."""
        self._stamps.clear()
        self.check()


class LiveAsyncPool(AsyncConnectionPool[Any]):
    """``LivePool`` for the event loop: the same checks, awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamps = _ReturnStamps(self.max_size)

    async def getconn(self, timeout: float | None = None) -> Any:
        conn = await super().getconn(timeout)
        if self._stamps.fresh(conn):
            return conn
        try:
            await self.check_connection(conn)
        except Exception:
            await self.putconn(conn)
            await self.check()
            conn = await super().getconn(timeout)
        except BaseException:  # (cancelled meanwhile: the connection goes back, not lost)
            await self.putconn(conn)
            raise
        return conn

    async def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._stamps.stamp(conn)
        await super().putconn(conn)

    async def on_connection_lost(self) -> None:
        self._stamps.clear()
        await self.check()
