"""The connection pool of the HTTP API: it hands out live connections only."""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool


class LivePool(ConnectionPool[Any]):
    """A ``ConnectionPool`` whose ``getconn`` checks the connection it gives out.

    When the database ends its connections (a restart, a failover,
    ``pg_terminate_backend``) the pool is full of dead ones. psycopg_pool's own
    ``check`` callback finds them, but backs off between failed checks (a second,
    then two, ...), so requests would time out one dead connection at a time. Here one
    dead connection makes the pool check all its idle ones at once, replacing the dead,
    and the request takes a live one.
    """

    def getconn(self, timeout: float | None = None) -> Any:
        conn = super().getconn(timeout)
        try:
            self.check_connection(conn)
        except Exception:
            self.putconn(conn)  # closed: the pool discards it and opens a new one
            self.check()  # the others most likely went with it
            conn = super().getconn(timeout)
        return conn
