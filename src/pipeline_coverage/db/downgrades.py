"""What the downgrades of migrations 0017 and 0018 share: a statement that stores a
tenant's runs complete again, as the readers resolve them, run tenant by tenant."""

from __future__ import annotations

import uuid

from alembic import op

from pipeline_coverage.sql import expand


def each_tenant(tenants: str, statement: str) -> None:
    """``statement`` (which may include fragments, and names the tenant as
    ``%(tenant_id)s``) once for each tenant the query ``tenants`` lists, the tenant
    written in: on Citus a router query each. First, on Citus, the transaction's
    multi-shard statements (the DDL that follows) are made sequential."""
    op.execute(
        "SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)"
        " FROM pg_extension WHERE extname = 'citus'"
    )
    for (tenant,) in op.get_bind().exec_driver_sql(tenants).fetchall():
        one = str(uuid.UUID(str(tenant)))  # (a uuid, never input)
        op.execute(expand(statement).replace("%(tenant_id)s", f"'{one}'"))
