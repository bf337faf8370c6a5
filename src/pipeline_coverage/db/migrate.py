"""Runs the Alembic migrations that ship inside the package.

``upgrade`` applies them (idempotent), ``status`` reports where a database stands,
``offline_sql`` renders the SQL a DBA can review and apply by hand.

The fact table's metric columns follow the metric registry (``metrics.METRICS``):
once the migrations are at head, ``upgrade`` adds the column of any metric the table
lacks, of the type the registry declares, in the same transaction; a metric added to
the registry needs no migration of its own. (Migrations 0001-0014 added the metrics
of their time; a later metric's column comes from the registry only. Changing a
column's type, or dropping one, still takes a migration.)
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from pipeline_coverage.db.connection import connect
from pipeline_coverage.errors import SchemaError
from pipeline_coverage.metrics import METRICS, Metric

# The head revision is read off the migration files (a test holds it to Alembic's).

SCHEMA = "dyno_crm"
VERSION_TABLE = "pipeline_coverage_version"
#: pg_advisory_xact_lock key serialising concurrent upgrades ("pipecov" in ASCII).
ADVISORY_LOCK_KEY = 0x70697065636F76

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


_REVISES = re.compile(r'^down_revision = (?:"(\w+)"|None)$', re.MULTILINE)
_REVISION = re.compile(r'^revision = "(\w+)"$', re.MULTILINE)


def head_revision() -> str:
    """The newest revision shipped with this version of the package: the one no other
    revises (the migrations are one line; a test holds this to Alembic's own head)."""
    revisions, revised = set(), set()
    for script in (_SCRIPTS / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        found = _REVISION.search(text)
        if found is not None:
            revisions.add(found[1])
            revises = _REVISES.search(text)
            if revises is not None and revises[1]:
                revised.add(revises[1])
    heads = revisions - revised
    if len(heads) != 1:
        raise RuntimeError(f"the shipped migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


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
            if revision == "head":
                found = set(connection.exec_driver_sql(_FACT_COLUMNS).scalars().all())
                missing = tuple(m for m in METRICS if m.name not in found)
                if missing:  # (an ALTER locks the table: only when there is one to add)
                    connection.exec_driver_sql(metric_columns_sql(missing))
    finally:
        engine.dispose()


_FACT_COLUMNS = (
    "SELECT column_name FROM information_schema.columns"
    " WHERE table_schema = 'dyno_crm' AND table_name = 'report_pipeline_coverage_fact'"
)


def metric_columns_sql(metrics: tuple[Metric, ...] = METRICS) -> str:
    """The statements that give the fact table the columns of ``metrics`` it lacks
    (``IF NOT EXISTS``), of the registry's types. On Citus, DDL on the distributed table
    reaches every shard; the sequential mode keeps it in the upgrade's transaction."""
    columns = ",\n    ".join(
        f"ADD COLUMN IF NOT EXISTS {metric.name} {metric.column_type}" for metric in metrics
    )
    return (
        "SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)\n"
        "FROM pg_extension WHERE extname = 'citus';\n"
        f"ALTER TABLE {SCHEMA}.report_pipeline_coverage_fact\n    {columns};\n"
    )


def missing_metric_columns(
    conn: psycopg.Connection[Any], metrics: tuple[Metric, ...] = METRICS
) -> list[str]:
    """The metrics of the registry the fact table has no column for (in its order)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_FACT_COLUMNS)
        found = {str(row[0]) for row in cur.fetchall()}
    return [metric.name for metric in metrics if metric.name not in found]


def offline_sql() -> str:
    """The SQL of every migration, and the registry's metric columns, as one script for
    a DBA to review and apply."""
    buffer = io.StringIO()
    command.upgrade(_config(buffer), "head", sql=True)
    script = buffer.getvalue()
    # (inside the script's transaction, before its COMMIT)
    head, commit, tail = script.rpartition("COMMIT;")
    columns = (
        f"-- The metric registry's columns (pipeline_coverage.metrics)\n{metric_columns_sql()}"
    )
    return f"{head}{columns}\n{commit}{tail}"


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
    missing = missing_metric_columns(conn)
    if missing:
        raise SchemaError(
            f"database has no column for the metric(s) {', '.join(missing)}:"
            " run 'pipeline-coverage db upgrade'"
        )
