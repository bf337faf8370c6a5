"""Runs the Alembic migrations that ship inside the package.

``upgrade`` applies them (idempotent), ``status`` reports where a database stands,
``offline_sql`` renders the SQL a DBA can review and apply by hand.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from pipeline_coverage.db.connection import connect
from pipeline_coverage.errors import SchemaError

SCHEMA = "dyno_crm"
VERSION_TABLE = "pipeline_coverage_version"
#: pg_advisory_xact_lock key serialising concurrent upgrades ("pipecov" in ASCII).
ADVISORY_LOCK_KEY = 0x70697065636F76

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of the package."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every pending migration (up to ``revision``) to the database at ``url``,
    in one transaction."""
    raw = connect(url)  # connection errors surface as the package's own
    engine = create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def offline_sql() -> str:
    """The SQL of every migration, as one script for a DBA to review and apply."""
    buffer = io.StringIO()
    command.upgrade(_config(buffer), "head", sql=True)
    return buffer.getvalue()


@dataclass(frozen=True)
class Status:
    """Where a database stands: its applied revision (None if never migrated) and head."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(conn: psycopg.Connection[Any]) -> Status:
    """Read the applied revision without changing anything."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{VERSION_TABLE}",))
        row = cur.fetchone()
        current = None
        if row is not None and row[0]:
            cur.execute(
                sql.SQL("SELECT version_num FROM {}.{}").format(
                    sql.Identifier(SCHEMA), sql.Identifier(VERSION_TABLE)
                )
            )
            version = cur.fetchone()
            current = str(version[0]) if version else None
    return Status(current=current, head=head_revision())


def require_current(conn: psycopg.Connection[Any]) -> None:
    """Raise :class:`SchemaError` unless the database is at the shipped head revision."""
    state = status(conn)
    if state.current is None:
        raise SchemaError(
            "database has no pipeline-coverage schema: run 'pipeline-coverage db upgrade'"
        )
    if not state.up_to_date:
        raise SchemaError(
            f"database schema is at revision {state.current}, this version needs {state.head}: "
            "run 'pipeline-coverage db upgrade'"
        )
