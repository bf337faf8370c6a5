"""A tenant's own settings and its removal (SPEC.md §12).

**Default run options.** Each tenant has a default for the run options ``rollup``,
``target_match`` and ``win_rate_lookback_days`` (columns of ``dyno_crm.tenant``).
Whatever makes or reads runs without being told an option uses the tenant's default:
``run_coverage`` for a request that leaves an option out (``None``), ``snapshot``,
history and same-point (which keep the runs made with the default roll-up and target
matching), the API and the dashboard. The defaults are the options' own defaults
(no roll-up, exact targets, 365 days), so a tenant nobody changed runs as before.

**Deleting a tenant.** :func:`delete_tenant` removes the tenant and every row of it,
in every table of the schema, in one unit of work; ``dry_run`` only counts them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pipeline_coverage.db.connection import Connection, Cursor, records, unit_of_work
from pipeline_coverage.errors import DatabaseError, NotFoundError
from pipeline_coverage.sql import query
from pipeline_coverage.validation import (
    DEFAULT_LOOKBACK_DAYS,
    MAX_LOOKBACK_DAYS,
    TARGET_MATCHES,
    parse_choice,
    parse_flag,
    parse_whole,
    required_uuid,
)

_QUERIES = "tenants"


@dataclass(frozen=True)
class RunDefaults:
    """A tenant's default run options: what a run uses for an option it is not given."""

    rollup: bool = False
    target_match: str = "exact"
    win_rate_lookback_days: int = DEFAULT_LOOKBACK_DAYS

    def as_dict(self) -> dict[str, Any]:
        return {
            "rollup": self.rollup,
            "target_match": self.target_match,
            "win_rate_lookback_days": self.win_rate_lookback_days,
        }


#: The options a tenant nobody changed has: the options' own defaults (and the seed's).
SEED_DEFAULTS = RunDefaults()


def _defaults(row: dict[str, Any]) -> RunDefaults:
    return RunDefaults(
        rollup=bool(row["rollup"]),
        target_match=str(row["target_match"]),
        win_rate_lookback_days=int(row["win_rate_lookback_days"]),
    )


def run_defaults(conn: Connection, tenant_id: uuid.UUID | str) -> RunDefaults:
    """The tenant's default run options; :class:`NotFoundError` for no such tenant."""
    tenant = required_uuid(tenant_id, "tenant_id")
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "run_defaults"), {"tenant_id": str(tenant)})
        found = records(cur)
    if not found:
        raise NotFoundError(f"tenant_id: no tenant {tenant}")
    return _defaults(found[0])


def set_run_defaults(
    conn: Connection,
    tenant_id: uuid.UUID | str,
    *,
    rollup: bool | None = None,
    target_match: str | None = None,
    win_rate_lookback_days: int | None = None,
) -> RunDefaults:
    """Change the tenant's default run options given (``None`` leaves one as it is), in
    one unit of work, and return all of them. Values are validated as a run's are;
    runs stored before keep the options they were made with."""
    tenant = required_uuid(tenant_id, "tenant_id")
    params = {
        "tenant_id": str(tenant),
        "rollup": None if rollup is None else parse_flag(rollup, "rollup"),
        "target_match": None
        if target_match is None
        else parse_choice(target_match, "target_match", TARGET_MATCHES),
        "win_rate_lookback_days": None
        if win_rate_lookback_days is None
        else parse_whole(win_rate_lookback_days, "win_rate_lookback_days", 1, MAX_LOOKBACK_DAYS),
    }
    with unit_of_work(conn) as cur:
        cur.execute(query(_QUERIES, "set_run_defaults"), params)
        found = records(cur)
    if not found:
        raise NotFoundError(f"tenant_id: no tenant {tenant}")
    return _defaults(found[0])


@dataclass(frozen=True)
class TenantDeletion:
    """What a tenant's delete removed (or, ``dry_run``, would remove): the tenant's
    rows in each table of the schema."""

    tenant_id: uuid.UUID
    rows: dict[str, int]
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def tenant_rows(conn: Connection, tenant_id: uuid.UUID | str) -> dict[str, int]:
    """The tenant's rows in each table of the schema (the tenant's own row included)."""
    tenant = required_uuid(tenant_id, "tenant_id")
    with unit_of_work(conn) as cur:
        return _rows(cur, tenant)


def _rows(cur: Cursor, tenant: uuid.UUID) -> dict[str, int]:
    cur.execute(query(_QUERIES, "tenant_rows"), {"tenant_id": str(tenant)})
    return {str(r["table_name"]): int(r["n_rows"]) for r in records(cur)}


def delete_tenant(
    conn: Connection, tenant_id: uuid.UUID | str, *, dry_run: bool = False
) -> TenantDeletion:
    """Delete the tenant and everything of it — reps, teams, memberships, pipelines,
    stages, deals, targets, exchange rates, runs with their facts and drill-down, API
    keys and dashboard sessions, idempotency keys, its settings — in one unit of work;
    ``dry_run`` only counts. Other tenants are untouched. :class:`NotFoundError` for no
    such tenant. Should any row of the tenant remain (a table that does not go with
    its tenant), nothing is deleted and :class:`DatabaseError` says which table."""
    tenant = required_uuid(tenant_id, "tenant_id")
    dry_run = parse_flag(dry_run, "dry_run")
    with unit_of_work(conn) as cur:
        counted = _rows(cur, tenant)
        if counted.get("tenant", 0) == 0:
            raise NotFoundError(f"tenant_id: no tenant {tenant}")
        if dry_run:
            return TenantDeletion(tenant, counted, dry_run=True)
        cur.execute(query(_QUERIES, "delete_targets"), {"tenant_id": str(tenant)})
        cur.execute(query(_QUERIES, "delete_tenant"), {"tenant_id": str(tenant)})
        left = {table: n for table, n in _rows(cur, tenant).items() if n}
        if left:  # raised inside the unit of work: it is rolled back
            raise DatabaseError(
                f"tenant {tenant}: rows would remain after its delete in "
                + ", ".join(f"{table} ({n})" for table, n in sorted(left.items()))
                + "; nothing deleted"
            )
    return TenantDeletion(tenant, counted)
