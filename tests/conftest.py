"""Shared fixtures: a real PostgreSQL, and one fresh database per test.

``TEST_DATABASE_URL`` names a server (any database on it; CI uses the machine's
PostgreSQL 15). Without it, an embedded PostgreSQL 18 is started for the session.
The schema is migrated once into a template database; each test then gets its own
``CREATE DATABASE ... TEMPLATE`` copy (the procrastinate pattern), dropped after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pipeline_coverage.db import migrate
from pipeline_coverage.db.embedded import embedded_server
from tests import reconcile


def with_dbname(url: str, dbname: str) -> str:
    """The same server, another database (works for URIs and key=value strings)."""
    return make_conninfo(url, dbname=dbname)


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URL for the server under test."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    data_dir = tmp_path_factory.mktemp("embedded-pg")
    with embedded_server(data_dir) as url:
        yield url


@pytest.fixture(scope="session")
def server_version(server_url: str) -> int:
    with _admin(server_url) as conn:
        return conn.info.server_version


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A migrated database used as the template of every test database."""
    name = f"pc_test_template_{os.getpid()}"
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate.upgrade(with_dbname(server_url, name))
    yield name
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _fresh_database(server_url: str, template: str | None) -> Generator[str, None, None]:
    name = f"pc_test_{uuid.uuid4().hex[:16]}"
    with _admin(server_url) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(statement)
    try:
        yield with_dbname(server_url, name)
    finally:
        with _admin(server_url) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own.

    Whatever runs the test stored, the reconciliation invariant is checked on them
    before the database goes: every fact row equals the sum of its drill-down rows.
    """
    database = _fresh_database(server_url, template_db)
    url = next(database)
    try:
        yield url
        broken = reconcile.problems(url)
        assert not broken, "reconciliation failed:\n" + "\n".join(broken[:20])
    finally:
        database.close()  # drops it


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    yield from _fresh_database(server_url, None)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg 3 connection to this test's database (not in autocommit)."""
    with psycopg.connect(db_url) as connection:
        yield connection


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A folder for CSV files."""
    folder = tmp_path / "import"
    folder.mkdir()
    return folder


# --- the HTTP API --------------------------------------------------------------------


@pytest.fixture
def web_settings() -> Any:
    from pipeline_coverage.config import WebSettings

    return WebSettings(secret_key="test-secret-key", pool_size=4)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an app of ``create_app`` on a free loopback port, in a thread, configured
    as ``pipeline-coverage serve`` configures it (its connection limits included)."""
    import threading
    import time

    import uvicorn

    from pipeline_coverage.web.server import uvicorn_config

    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0, app.state.settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.05)
    try:
        [listener] = server.servers  # port 0: the system picked a free port
        port = listener.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def live_server(db_url: str, web_settings: Any) -> Iterator[str]:
    """The app on this test's database, served on a free loopback port; yields its URL."""
    from pipeline_coverage.web.app import create_app

    with serving(create_app(db_url, web_settings)) as url:
        yield url
