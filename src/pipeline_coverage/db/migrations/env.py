"""Alembic environment for pipeline-coverage.

The version table is ``dyno_crm.pipeline_coverage_version`` so that it never collides
with a host CRM's own ``alembic_version``. Online runs take a transaction-level
advisory lock, so two concurrent ``db upgrade`` calls apply each migration once.
"""

from alembic import context
from sqlalchemy import text

from pipeline_coverage.db.migrate import ADVISORY_LOCK_KEY, SCHEMA, VERSION_TABLE

config = context.config
create_schema = "CREATE SCHEMA IF NOT EXISTS dyno_crm"

if context.is_offline_mode():
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        transactional_ddl=True,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
    )
    with context.begin_transaction():
        context.execute(create_schema)
        context.run_migrations()
else:
    connection = config.attributes["connection"]
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    connection.execute(text(create_schema))
    context.configure(
        connection=connection,
        transactional_ddl=True,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
    )
    with context.begin_transaction():
        context.run_migrations()
