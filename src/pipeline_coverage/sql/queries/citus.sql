-- name: citus_version
-- The version of the Citus extension installed in this database (no row: none).
SELECT e.extversion FROM pg_extension AS e WHERE e.extname = 'citus';

-- name: cluster_nodes
-- Whether this Citus node is the coordinator (where distributed tables are created),
-- how many nodes its metadata lists (none: a coordinator not registered yet), and its
-- active primary workers.
SELECT citus_is_coordinator() AS coordinator,
       (SELECT count(*) FROM pg_dist_node) AS nodes,
       (SELECT count(*) FROM pg_dist_node AS n
        WHERE n.groupid <> 0 AND n.noderole = 'primary' AND n.isactive) AS workers;

-- name: one_connection_per_node
-- For the rest of the transaction, one connection per worker: Citus refuses to
-- create a distributed function after a parallel operation in the same transaction.
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true);

-- name: schema_tables
-- Every table of the schema but the migrations' version table: whether it has a
-- tenant_id column, the tables its foreign keys reference, and (on Citus) how it is
-- distributed now: its distribution column and colocation group, NULL if local.
SELECT c.oid::regclass::text AS table_name, c.relname,
       EXISTS (SELECT 1 FROM pg_attribute AS a
               WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           AS has_tenant_id,
       ARRAY(SELECT DISTINCT f.confrelid::regclass::text FROM pg_constraint AS f
             WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.confrelid <> c.oid)
           AS references,
       t.distribution_column, t.colocation_id, t.citus_table_type
FROM pg_class AS c
LEFT JOIN citus_tables AS t ON t.table_name = c.oid::regclass
WHERE c.relnamespace = 'dyno_crm'::regnamespace
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND c.relname <> %(version_table)s::text
ORDER BY c.relname;

-- name: distribute_table
-- Shards one table by its column, co-located with the anchor (NULL: the anchor).
SELECT create_distributed_table(
    %(table_name)s::text::regclass, %(column)s::text,
    colocate_with => COALESCE(%(colocate_with)s::text, 'default'));

-- name: truncate_local_data
-- After a table holding rows was distributed: its rows are in its shards now, and the
-- copy Citus leaves in the coordinator's own table goes (nothing when it had none).
SELECT truncate_local_data_after_distributing_table(%(table_name)s::text::regclass);

-- name: tenant_statement_routed
-- Whether a routing function (run_tenant_statement, run_tenant_prepared) is
-- distributed by its tenant_id argument, co-located with the tenant table, and
-- delegated inside transactions too (force_delegation); and the settings and the body
-- it has now (its SET clauses and its source; NULL: no such function).
SELECT EXISTS (
    SELECT 1
    FROM pg_dist_object AS o
    JOIN pg_dist_partition AS p ON p.logicalrelid = %(anchor)s::text::regclass
    WHERE o.classid = 'pg_proc'::regclass
      AND o.objid = to_regprocedure(%(function)s::text)
      AND o.distribution_argument_index = 0
      AND o.force_delegation
      AND o.colocationid = p.colocationid
) AS routed,
(SELECT COALESCE(f.proconfig, '{}') FROM pg_proc AS f
 WHERE f.oid = to_regprocedure(%(function)s::text)) AS settings,
(SELECT f.prosrc FROM pg_proc AS f WHERE f.oid = to_regprocedure(%(function)s::text)) AS body;

-- name: create_tenant_statement
-- Runs one tenant's statement (SQL text, its values bound in it) where it is called.
-- Distributed by tenant_id (distribute_tenant_function), a call on the coordinator
-- runs on the worker that holds the tenant's shards, as one task in the caller's
-- transaction, and Citus refuses any statement in it that touches another tenant.
-- work_mem, jit and enable_sort are the run's (RUN_SETTINGS in reports/coverage.py),
-- which a SET on the coordinator would not carry to the worker; the statement arrives
-- with its values bound, so its plan is a custom one anyway.
-- The statement names the tenant's shards themselves (tenant_shards; execute_for_tenant
-- in db/distribute.py): on the worker it is then a plain PostgreSQL statement over its
-- local tables, written where it runs, with no intermediate result sent to another
-- node and nothing for a two-phase commit (citus.enable_manual_changes_to_shards lets
-- it write them; only this function's statement does).
CREATE OR REPLACE FUNCTION dyno_crm.run_tenant_statement(tenant_id uuid, statement text)
RETURNS void
LANGUAGE plpgsql
SET work_mem = '64MB'
SET jit = off
SET enable_sort = off
SET citus.enable_manual_changes_to_shards = 'on'
AS $$
BEGIN
    EXECUTE statement;
END
$$;

-- name: create_tenant_prepared
-- run_tenant_statement for a single report: its statement (the schema's tables by
-- name, its values as $1, $2...) is prepared once per connection on the worker and
-- run with `arguments` (the values, quoted by the driver) on its generic plan, with
-- the single report's settings (SINGLE_SETTINGS in reports/coverage.py): planning the
-- statement afresh was most of a single report's time on the worker. The first call
-- of a connection for the tenant's shard group names the tenant's shards in it (as
-- execute_for_tenant does for run_tenant_statement, here from the worker's copy of the
-- metadata) and prepares it as `name`_<the tenant's shard of the tenant table>: a
-- tenant moved to a shard of its own gets a statement of its own; later calls only
-- look the shard up. A connection keeps at most 8 such statements (a prepared run
-- statement with its generic plan holds ~1.6 MB of the worker's memory): preparing a
-- ninth deallocates the one prepared first. The statement compares one principal's
-- dates `+ 0`, so that the generic plan finds its deals by the principal's indexes (on
-- a shard of one or two tenants a generic plan otherwise read the tenant's year of
-- closed deals by date).
CREATE OR REPLACE FUNCTION dyno_crm.run_tenant_prepared(
    tenant_id uuid, name text, statement text, arguments text)
RETURNS void
LANGUAGE plpgsql
SET work_mem = '64MB'
SET jit = off
SET enable_sort = off
SET plan_cache_mode = force_generic_plan
SET enable_nestloop = off
SET citus.enable_manual_changes_to_shards = 'on'
AS $$
DECLARE
    prepared text := name || '_' || get_shard_id_for_distribution_column(
        'dyno_crm.tenant', run_tenant_prepared.tenant_id);
    localized text := statement;
    shard record;
    oldest text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_prepared_statements AS p WHERE p.name = prepared) THEN
        FOR oldest IN
            SELECT p.name FROM pg_prepared_statements AS p
            WHERE p.name LIKE 'pc\_%'
            ORDER BY p.prepare_time DESC, p.name
            OFFSET 7
        LOOP
            EXECUTE format('DEALLOCATE %I', oldest);
        END LOOP;
        FOR shard IN
            SELECT c.relname, shard_name(p.logicalrelid, get_shard_id_for_distribution_column(
                       p.logicalrelid, run_tenant_prepared.tenant_id)) AS local_name
            FROM pg_dist_partition AS p
            JOIN pg_class AS c ON c.oid = p.logicalrelid
            WHERE c.relnamespace = 'dyno_crm'::regnamespace AND p.partmethod = 'h'
        LOOP
            localized := regexp_replace(localized, '\mdyno_crm\.' || shard.relname || '\M',
                                    shard.local_name, 'g');
        END LOOP;
        EXECUTE format('PREPARE %I AS %s', prepared, localized);
    END IF;
    EXECUTE format('EXECUTE %I(%s)', prepared, arguments);
END
$$;

-- name: distribute_tenant_function
-- Delegates a routing function to the tenant's worker, also inside a transaction.
SELECT create_distributed_function(
    %(function)s::text::regprocedure, 'tenant_id',
    colocate_with => %(anchor)s::text, force_delegation => true);

-- name: tenant_shards
-- The shard of each distributed table of the schema that holds one tenant's rows.
SELECT p.logicalrelid::regclass::text AS table_name,
       shard_name(p.logicalrelid,
                  get_shard_id_for_distribution_column(p.logicalrelid, %(tenant_id)s::uuid))
           AS shard
FROM pg_dist_partition AS p
JOIN pg_class AS c ON c.oid = p.logicalrelid
WHERE c.relnamespace = 'dyno_crm'::regnamespace AND p.partmethod = 'h';

-- name: run_tenant_statement
-- One tenant's statement, run on the worker that holds the tenant (one task).
SELECT dyno_crm.run_tenant_statement(%(tenant_id)s::uuid, %(statement)s::text);

-- name: run_tenant_prepared
-- A single report's statement, run on the worker that holds the tenant (one task),
-- prepared there.
SELECT dyno_crm.run_tenant_prepared(
    %(tenant_id)s::uuid, %(name)s::text, %(statement)s::text, %(arguments)s::text);
