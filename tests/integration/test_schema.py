"""Migrations: an empty database becomes the documented schema; repeating changes
nothing; the offline SQL for a DBA builds the same schema; and the schema is ready
to be distributed by tenant_id (Citus)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from pipeline_coverage.db import migrate
from pipeline_coverage.errors import SchemaError
from pipeline_coverage.metrics import IDENTITY, METRICS, NAMES, Metric
from pipeline_coverage.sql import queries
from tests.factory import Crm

# SPEC.md §3: the tables and the columns each must have, at least.
CONTRACT = {
    "tenant": {"id", "name"},
    "crm_user": {"tenant_id", "id", "name", "email", "is_active"},
    "crm_group": {"tenant_id", "id", "name"},
    "group_member": {"tenant_id", "group_id", "user_id"},
    "pipeline": {"tenant_id", "id", "name"},
    "pipeline_stage": {
        "tenant_id",
        "id",
        "pipeline_id",
        "name",
        "stage_state",
        "probability",
        "position",
    },
    "deal": {
        "tenant_id",
        "id",
        "pipeline_id",
        "stage_id",
        "name",
        "amount",
        "expected_close_date",
        "close_date",
        "owned_by_user_id",
        "assigned_user_id",
        "owned_by_group_id",
        "assigned_group_id",
    },
    "deal_version": {"tenant_id", "deal_id", "valid_from", "valid_to"},
    "sales_target": {
        "tenant_id",
        "id",
        "principal_type",
        "principal_id",
        "pipeline_id",
        "period_start",
        "period_end",
        "target_amount",
    },
    "report_run": {
        "id",
        "tenant_id",
        "report_type",
        "generated_at",
        "period_start",
        "period_end",
        "parameters",
        "credit_base_run_id",
        "credit_chain",
    },
    "api_key": {"tenant_id", "id", "name", "key_hash", "created_at", "revoked_at"},
    "idempotency_key": {"tenant_id", "key", "request_hash", "run_id", "created_at"},
    "api_session": {"tenant_id", "id", "key_id", "created_at", "expires_at", "ended_at"},
    "exchange_rate": {"tenant_id", "currency", "valid_from", "rate"},
    "calibration_fit": {"tenant_id", "principal_type", "week", "intercept", "slope"},
    "report_run_deals": {
        "tenant_id",
        "run_id",
        "chunk",
        "deal_ids",
        "deal_names",
        "pipeline_ids",
        "pipeline_names",
        "stage_ids",
        "stage_names",
        "deal_classes",
        "forecast_categories",
        "probabilities",
        "amounts",
        "currencies",
        "reporting_amounts",
        "weighted_amounts",
        "placed_on",
        "owner_user_ids",
        "flags",
        "base_run_id",
        "chain",
        "removed_deal_ids",
    },
    "report_run_credit": {
        "tenant_id",
        "run_id",
        "principal_type",
        "principal_id",
        "pipeline_id",
        "deal_ids",
        "credit_reasons",
        "deal_chunks",
        "removed",
    },
    "report_pipeline_coverage_fact": {
        "run_id",
        "tenant_id",
        "period_start",
        "period_end",
        "principal_type",
        "principal_id",
        "pipeline_id",
        "target_amount",
        "open_amount",
        "coverage_ratio",
    },
}
VERSION_TABLE = "pipeline_coverage_version"


def catalog(url: str) -> dict[str, Any]:
    """Everything that defines the dyno_crm schema, as comparable data."""
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale,"
            " is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = 'dyno_crm' ORDER BY 1, 2"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace = 'dyno_crm'::regnamespace"
            # PostgreSQL 18 also catalogs NOT NULL as constraints; the columns cover them.
            " AND contype <> 'n'"
            " ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'dyno_crm' ORDER BY 1"
        ).fetchall()
        version = conn.execute(f"SELECT version_num FROM dyno_crm.{VERSION_TABLE}").fetchall()  # noqa: S608
    return {"columns": columns, "constraints": constraints, "indexes": indexes, "version": version}


def test_upgrade_builds_the_documented_schema(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    found = catalog(empty_db_url)
    tables: dict[str, set[str]] = {}
    for table, column, *_ in found["columns"]:
        tables.setdefault(table, set()).add(column)
    assert set(tables) == set(CONTRACT) | {VERSION_TABLE}
    for table, required in CONTRACT.items():
        assert required <= tables[table], table
    assert found["version"] == [(migrate.head_revision(),)]

    types = {
        (t, c): (dtype, precision, scale) for t, c, dtype, precision, scale, *_ in found["columns"]
    }
    assert types[("deal", "amount")] == ("numeric", 18, 2)
    assert types[("report_pipeline_coverage_fact", "open_amount")] == ("numeric", 38, 2)
    assert types[("report_pipeline_coverage_fact", "target_amount")] == ("numeric", 38, 2)
    assert types[("report_pipeline_coverage_fact", "coverage_ratio")] == ("numeric", 42, 4)
    assert types[("deal", "id")][0] == "uuid"

    names = [name for table, name, _ in found["constraints"] if VERSION_TABLE not in table]
    # Named by the migration (pk_, fk_, ux_, ck_), not left to PostgreSQL's defaults.
    assert [n for n in names if not re.match(r"(pk|fk|ux|ck)_", n)] == [], (
        "every constraint is named by the migration"
    )
    definitions = {name: definition for _, name, definition in found["constraints"]}
    assert "NULLS NOT DISTINCT" in definitions["ux_rpc_unique_row"]
    assert "DONE_FAILED" in definitions["ck_pipeline_stage_state"]
    assert "REFERENCES dyno_crm.tenant(id)" in definitions["fk_rpc_tenant"]


def test_the_fact_table_has_a_column_per_metric_of_the_registry(db_url: str) -> None:
    """The registry and the table agree: every metric is a column, every column beyond
    the run's keys and the row's identity is a metric."""
    with psycopg.connect(db_url) as conn:
        found = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'dyno_crm' AND table_name = 'report_pipeline_coverage_fact'"
        ).fetchall()
    columns: dict[str, str] = dict(found)
    keys = {"run_id", "tenant_id", "period_start", "period_end", "flags", "target_overlaps"}
    assert set(columns) == keys | set(IDENTITY) | set(NAMES)
    with psycopg.connect(db_url) as conn:
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a"
                " WHERE a.attrelid = 'dyno_crm.report_pipeline_coverage_fact'::regclass"
                " AND a.attnum > 0 AND NOT a.attisdropped"
            ).fetchall()
        )
    for metric in METRICS:
        assert types[metric.name] == metric.column_type, metric.name
    assert {m.column_type for m in METRICS if m.kind == "count"} == {"integer"}


def test_upgrade_adds_the_column_of_a_metric_new_to_the_registry(empty_db_url: str) -> None:
    """A metric added to the registry needs no migration: ``db upgrade`` gives the fact
    table its column, of the registry's type, and a database without it is refused
    until then. Here the registry is the product's plus one metric."""
    migrate.upgrade(empty_db_url)
    grown = (*METRICS, Metric("probe_share", "ratio", "Probe", "a metric new to the registry", "%"))
    with psycopg.connect(empty_db_url) as conn:
        assert migrate.missing_metric_columns(conn) == []
        assert migrate.missing_metric_columns(conn, grown) == ["probe_share"]
        conn.execute(migrate.metric_columns_sql(grown[-1:]))
        conn.commit()
        assert migrate.missing_metric_columns(conn, grown) == []
        kind = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'dyno_crm.report_pipeline_coverage_fact'::regclass"
            " AND attname = 'probe_share'"
        ).fetchone()
        assert kind == ("numeric(42,4)",)
        # A column of the registry gone (a database older than the package): refused.
        conn.execute("ALTER TABLE dyno_crm.report_pipeline_coverage_fact DROP COLUMN win_rate")
        conn.commit()
        with pytest.raises(SchemaError, match=r"no column for the metric.* win_rate"):
            migrate.require_current(conn)
    migrate.upgrade(empty_db_url)  # ... and given back by db upgrade, of its type
    with psycopg.connect(empty_db_url) as conn:
        migrate.require_current(conn)
        kind = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'dyno_crm.report_pipeline_coverage_fact'::regclass"
            " AND attname = 'win_rate'"
        ).fetchone()
        assert kind == ("numeric(5,4)",)


def test_upgrade_twice_changes_nothing(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    first = catalog(empty_db_url)
    migrate.upgrade(empty_db_url)
    assert catalog(empty_db_url) == first


def test_offline_sql_builds_the_same_schema(empty_db_url: str, db_url: str) -> None:
    script = migrate.offline_sql()
    assert script.startswith("BEGIN;")
    assert script.rstrip().endswith("COMMIT;")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(script.encode())
    assert catalog(empty_db_url) == catalog(db_url)


def test_host_alembic_version_table_is_left_alone(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO public.alembic_version VALUES ('host_crm_rev_42')")
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT * FROM public.alembic_version").fetchall() == [
            ("host_crm_rev_42",)
        ]


def test_status_and_require_current(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        state = migrate.status(conn)
        assert (state.current, state.up_to_date) == (None, False)
        with pytest.raises(SchemaError, match="db upgrade"):
            migrate.require_current(conn)
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert migrate.status(conn).up_to_date
        migrate.require_current(conn)


# --- Citus readiness -----------------------------------------------------------------


def test_every_key_and_reference_includes_tenant_id(db_url: str) -> None:
    """Distributed by tenant_id, a table's unique constraints and foreign keys must
    include the distribution column (tenant.id is the tenant key itself)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, c.contype,"
            " ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, o)"
            "       JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.n"
            "       ORDER BY k.o),"
            " c.confrelid::regclass::text,"
            " ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, o)"
            "       JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.n"
            "       ORDER BY k.o)"
            " FROM pg_constraint AS c"
            " WHERE c.connamespace = 'dyno_crm'::regnamespace AND c.contype IN ('p', 'u', 'f')"
            "   AND c.conrelid <> 'dyno_crm.pipeline_coverage_version'::regclass"
        ).fetchall()
    assert len(rows) > 20
    for table, name, kind, columns, referenced, referenced_columns in rows:
        key = "id" if table == "dyno_crm.tenant" else "tenant_id"
        assert key in columns, f"{name} on {table} lacks {key}"
        if kind == "f":
            # The tenant column must map onto the referenced table's tenant key.
            target_key = "id" if referenced == "dyno_crm.tenant" else "tenant_id"
            pairs = dict(zip(columns, referenced_columns, strict=True))
            assert pairs["tenant_id"] == target_key, f"{name} does not pair tenant_id"


TABLE_REFERENCE = re.compile(r"(?:FROM|JOIN)\s+dyno_crm\.(\w+)\s+AS\s+(\w+)", re.IGNORECASE)
#: Queries that may span tenants on purpose: an operator's `show RUN_ID`, `runs`,
#: `prune`, `snapshot` and `apikey list/revoke` without --tenant. Each still filters by
#: tenant whenever one is given.
CROSS_TENANT = {
    "get_run", "run_tenant", "list_runs", "prune_count", "prune_rebase_tenants",
    "prune_facts", "prune_runs", "list_keys",
    "revoke_key",
    "list_tenants", "tenant_calendars",
}  # fmt: skip
#: Finding a tenant by its name looks at every tenant's name, and nothing else.
TENANT_BY_NAME = {"find_tenants", "tenants_named"}
QUERY_FILES = (
    "coverage", "runs", "api_keys", "idempotency", "directory", "settings", "importing",
    "tenants", "calibration",
)  # fmt: skip
ALL_QUERIES = [(file, name) for file in QUERY_FILES for name in sorted(queries(file))]


@pytest.mark.parametrize(("file", "name"), ALL_QUERIES, ids=[f"{f}.{n}" for f, n in ALL_QUERIES])
def test_every_report_query_filters_on_tenant(file: str, name: str) -> None:
    text = queries(file)[name]
    if name in TENANT_BY_NAME:
        assert re.findall(r"dyno_crm\.(\w+)", text) == ["tenant"]
        return
    references = TABLE_REFERENCE.findall(text)
    for table, alias in references:
        column = "id" if table == "tenant" else "tenant_id"
        assert re.search(rf"\b{alias}\.{column}\s*=", text), f"{name}: {table} {alias}"
    if "dyno_crm." in text:
        assert "%(tenant_id)s::uuid" in text, f"{name} takes no tenant"
    if name in CROSS_TENANT:
        assert "%(tenant_id)s::uuid IS NULL OR" in text
    else:
        assert "%(tenant_id)s::uuid IS NULL OR" not in text, f"{name} must always filter"


def test_deleting_a_user_or_group_clears_the_deals_references(
    conn: psycopg.Connection[Any],
) -> None:
    """docs/decisions.md: deal's user/group references have no ON DELETE action (Citus
    refuses SET NULL on a key with the distribution column); a plain DELETE of a user
    or group that deals name fails, dyno_crm.delete_crm_user/_group clear the deals'
    references (the deals stay) and delete it, its memberships with it."""
    crm = Crm(conn)
    tenant = crm.tenant()
    rep, other = crm.user(tenant, "Rep"), crm.user(tenant, "Other")
    team = crm.group(tenant, "Team")
    crm.member(tenant, team, rep)
    pipeline = crm.pipeline(tenant)
    stage = crm.stage(tenant, pipeline)
    deal = crm.deal(tenant, pipeline, stage, "100", owner=rep, assignee=other, owner_group=team)
    mine = crm.deal(tenant, pipeline, stage, "5", owner=other, assignee=rep, assignee_group=team)
    conn.commit()

    conn.execute("DELETE FROM dyno_crm.crm_user WHERE tenant_id = %s AND id = %s", (tenant, rep))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.commit()  # the keys are checked at commit

    def references() -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT id, owned_by_user_id, assigned_user_id, owned_by_group_id,"
            " assigned_group_id FROM dyno_crm.deal ORDER BY amount DESC"
        ).fetchall()

    assert conn.execute("SELECT dyno_crm.delete_crm_user(%s, %s)", (tenant, rep)).fetchone() == (
        True,
    )
    assert references() == [(deal, None, other, team, None), (mine, other, None, None, team)]
    assert conn.execute("SELECT count(*) FROM dyno_crm.group_member").fetchone() == (0,)
    assert conn.execute("SELECT dyno_crm.delete_crm_group(%s, %s)", (tenant, team)).fetchone() == (
        True,
    )
    assert references() == [(deal, None, other, None, None), (mine, other, None, None, None)]
    assert conn.execute("SELECT dyno_crm.delete_crm_user(%s, %s)", (tenant, rep)).fetchone() == (
        False,
    )
    conn.commit()
    # A tenant's cascade deletes its users before its deals: the deferred check passes.
    conn.execute("DELETE FROM dyno_crm.tenant WHERE id = %s", (tenant,))
    conn.commit()
    assert references() == []
