"""The connection pool of the HTTP API: it hands out live connections only."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

#: A connection back in the pool for less than this is handed out unchecked.
CHECK_AFTER_IDLE_SECONDS = 1.0


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
        self._returned: dict[int, float] = {}

    def getconn(self, timeout: float | None = None) -> Any:
        conn = super().getconn(timeout)
        returned = self._returned.pop(id(conn), None)
        if returned is not None and time.monotonic() - returned < CHECK_AFTER_IDLE_SECONDS:
            return conn
        try:
            self.check_connection(conn)
        except Exception:
            self.putconn(conn)  # closed: the pool discards it and opens a new one
            self.check()  # the others most likely went with it
            conn = super().getconn(timeout)
        return conn

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        if len(self._returned) > 4 * self.max_size:  # stamps of connections since closed
            self._returned.clear()
        self._returned[id(conn)] = time.monotonic()
        super().putconn(conn)

    def on_connection_lost(self) -> None:
        """A request found its connection dead: check every idle one now."""
        self._returned.clear()
        self.check()
