-- name: citus_version
-- The version of the Citus extension installed in this database (no row: none).
SELECT e.extversion FROM pg_extension AS e WHERE e.extname = 'citus';

-- name: is_coordinator
-- Whether this Citus node is the coordinator (where distributed tables are created).
SELECT citus_is_coordinator();

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
