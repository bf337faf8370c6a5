-- name: retire_deals
-- Deletes the tenant's deals among the ids (a full sync's: those its source's export no
-- longer has); counts them. Their values become versions ending at the sync's recorded
-- time (SPEC.md §13). Nothing else references a deal: stored runs keep the values of
-- their deals in their own arrays.
WITH gone AS (
    DELETE FROM dyno_crm.deal AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = ANY (%(ids)s::uuid[])
    RETURNING d.*
), versions AS (
    INSERT INTO dyno_crm.deal_version
        (tenant_id, deal_id, valid_from, valid_to, pipeline_id, stage_id, name, amount,
         expected_close_date, close_date, owned_by_user_id, assigned_user_id,
         owned_by_group_id, assigned_group_id, forecast_category, currency)
    SELECT g.tenant_id, g.id, g.recorded_from, %(at)s::timestamptz, g.pipeline_id,
           g.stage_id, g.name, g.amount, g.expected_close_date, g.close_date,
           g.owned_by_user_id, g.assigned_user_id, g.owned_by_group_id, g.assigned_group_id,
           g.forecast_category, g.currency
    FROM gone AS g
    WHERE g.recorded_from IS NULL OR g.recorded_from < %(at)s::timestamptz
)
SELECT count(*) AS deleted FROM gone;

-- name: tenants_named
-- Tenants whose name is exactly the text, in any case (an import names its tenant).
SELECT t.id, t.name, t.currency, t.fiscal_year_start_month
FROM dyno_crm.tenant AS t
WHERE lower(t.name) = lower(%(name)s::text)
ORDER BY t.id;

-- name: tenant_users
-- A tenant's reps, by name (an import matches owners and members by name, any case).
SELECT u.id, u.name FROM dyno_crm.crm_user AS u
WHERE u.tenant_id = %(tenant_id)s::uuid
ORDER BY u.id;

-- name: tenant_groups
-- A tenant's teams with their parent, by name.
SELECT g.id, g.name, g.parent_group_id FROM dyno_crm.crm_group AS g
WHERE g.tenant_id = %(tenant_id)s::uuid
ORDER BY g.id;

-- name: tenant_pipelines
-- A tenant's pipelines, by name.
SELECT p.id, p.name FROM dyno_crm.pipeline AS p
WHERE p.tenant_id = %(tenant_id)s::uuid
ORDER BY p.id;

-- name: tenant_stages
-- A tenant's stages with their pipeline, state, probability and position.
SELECT s.id, s.pipeline_id, s.name, s.stage_state, s.probability, s.position
FROM dyno_crm.pipeline_stage AS s
WHERE s.tenant_id = %(tenant_id)s::uuid
ORDER BY s.id;

-- name: tenant_memberships
-- A tenant's team memberships.
SELECT m.group_id, m.user_id FROM dyno_crm.group_member AS m
WHERE m.tenant_id = %(tenant_id)s::uuid;

-- name: create_read_deals
-- The deals of an export as they are read (an import's transaction): the values of
-- each deal's row (checked as they were read, typed as deal's columns), its key (for the keys given twice) and the index of its pipeline,
-- stage and state ("kind": its stage is known once every deal is read); its created
-- date when the CRM's history is imported with it; its row's digest (a CSV export's).
-- The digests of the source's stored rows that no row of the export matched
-- ("unmatched": a deal whose digest is not there had its row read unchanged).
DROP TABLE IF EXISTS pg_temp.pipeline_coverage_import_unmatched;
CREATE TEMP TABLE pipeline_coverage_import_unmatched (digest bigint NOT NULL) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.pipeline_coverage_import_deals;
CREATE TEMP TABLE pipeline_coverage_import_deals (
    line bigint NOT NULL,
    id uuid NOT NULL,
    key text NOT NULL,
    kind integer NOT NULL,
    name text,
    amount numeric(18, 2),
    expected_close_date date,
    close_date date,
    owned_by_user_id uuid,
    forecast_category text,
    currency text,
    created_at timestamptz,
    digest bigint
) ON COMMIT DROP;

-- name: copy_read_deals
COPY pg_temp.pipeline_coverage_import_deals
    (line, id, key, kind, name, amount, expected_close_date, close_date, owned_by_user_id,
     forecast_category, currency, created_at, digest)
FROM STDIN;

-- name: source_digests
-- The digests of the rows the tenant's deals from the source were written from, as
-- one value (8 bytes each, big-endian, in order): what a re-import need not read again.
SELECT string_agg(int8send(d.import_digest), ''::bytea ORDER BY d.import_digest)
FROM dyno_crm.deal AS d
WHERE d.tenant_id = %(tenant_id)s::uuid AND d.import_source = %(source)s::text
  AND d.import_digest IS NOT NULL;

-- name: copy_unmatched
COPY pg_temp.pipeline_coverage_import_unmatched (digest) FROM STDIN;

-- name: analyze_unmatched
ANALYZE pg_temp.pipeline_coverage_import_unmatched;

-- name: read_deals_also_unchanged
-- The deals read in full whose stored row was also read unchanged: their key was given
-- twice (the import then reads every row in full, to name the lines). Each deal read
-- is looked up by its primary key alone (a lateral subquery: never a join planned on
-- the estimates of the tenant's deals, nor a scan of its source's index, both stale
-- right after a large import); the unmatched digests are a hashed subplan (NOT IN:
-- neither side is NULL).
SELECT r.line FROM pg_temp.pipeline_coverage_import_deals AS r
CROSS JOIN LATERAL (
    SELECT d.import_digest, d.import_source FROM dyno_crm.deal AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = r.id
    LIMIT 1  -- (a subquery run per deal read, not pulled up into a join)
) AS d
WHERE d.import_source = %(source)s::text AND d.import_digest IS NOT NULL
  AND d.import_digest NOT IN (SELECT u.digest FROM pg_temp.pipeline_coverage_import_unmatched AS u)
LIMIT 1;

-- name: index_read_deals
-- The read deals by id: a join with the source's deals is then never a scan of them per
-- deal, whatever the source's deals are estimated at (the statistics of import_source
-- may predate this import's marking).
CREATE INDEX ON pg_temp.pipeline_coverage_import_deals (id);

-- name: index_read_deals_unique
-- The same index, unique: it fails when a key was given to several deals.
CREATE UNIQUE INDEX ON pg_temp.pipeline_coverage_import_deals (id);

-- name: analyze_read_deals
-- A temporary table has no statistics until it is analyzed: the joins below plan on them.
ANALYZE pg_temp.pipeline_coverage_import_deals;

-- name: read_deals_given_twice
-- The keys given to several deals (one deal id each), with their lines, in the order of
-- their second line (as a reader that keeps every key reports them).
SELECT id, key, lines FROM (
    SELECT id, min(key) AS key, array_agg(line ORDER BY line) AS lines
    FROM pg_temp.pipeline_coverage_import_deals
    GROUP BY id
    HAVING count(*) > 1
) AS twice
ORDER BY lines[2];

-- name: drop_read_kinds
DROP TABLE IF EXISTS pg_temp.pipeline_coverage_import_kinds;

-- name: create_read_kinds
-- Each kind of deal read (pipeline, stage, state) with the pipeline and stage it goes to.
CREATE TEMP TABLE pipeline_coverage_import_kinds ON COMMIT DROP AS
SELECT k.kind, k.pipeline_id, k.stage_id
FROM unnest(%(kinds)s::integer[], %(pipelines)s::uuid[], %(stages)s::uuid[])
    AS k (kind, pipeline_id, stage_id);

-- name: source_deals_absent
-- The deals a tenant has from an import source (what a full sync may delete), and how
-- many of them the export just read lacks; by the index on (tenant_id, import_source).
-- (A join, not NOT EXISTS in the FILTER: there it is a subplan run once per deal.)
-- A deal whose row was read unchanged (its digest matched: not among the unmatched)
-- is in the export too.
-- The unmatched digests are a hashed subplan (see read_deals_also_unchanged).
SELECT count(*) AS candidates,
       count(*) FILTER (
           WHERE r.id IS NULL
             AND (NOT %(digested)s OR d.import_digest IS NULL
                  OR d.import_digest IN (SELECT u.digest
                                         FROM pg_temp.pipeline_coverage_import_unmatched AS u))
       ) AS absent
FROM dyno_crm.deal AS d
LEFT JOIN pg_temp.pipeline_coverage_import_deals AS r ON r.id = d.id
WHERE d.tenant_id = %(tenant_id)s::uuid AND d.import_source = %(source)s::text;

-- name: unread_source_deals
-- Full sync: the tenant's deals from the source that the export just read lacks (a
-- deal whose row was read unchanged, its digest not among the unmatched, is in it).
-- A join, and a hashed subplan: not EXISTS under an OR, a subplan run once per deal.
SELECT d.id FROM dyno_crm.deal AS d
LEFT JOIN pg_temp.pipeline_coverage_import_deals AS r ON r.id = d.id
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND d.import_source = %(source)s::text
  AND r.id IS NULL
  AND (NOT %(digested)s OR d.import_digest IS NULL
       OR d.import_digest IN (SELECT u.digest
                              FROM pg_temp.pipeline_coverage_import_unmatched AS u));

-- name: drop_other_members
-- A team the teams file names has exactly the members it gives: the others leave it.
DELETE FROM dyno_crm.group_member AS m
WHERE m.tenant_id = %(tenant_id)s::uuid
  AND m.group_id = ANY (%(groups)s::uuid[])
  AND (m.group_id::text || ':' || m.user_id::text) <> ALL (%(kept)s::text[]);

-- name: drop_replaced_targets
-- A sheet's target replaces any other of the same principal, period and pipeline.
DELETE FROM dyno_crm.sales_target AS t
USING dyno_crm.sales_target AS k
WHERE t.tenant_id = %(tenant_id)s::uuid
  AND k.tenant_id = %(tenant_id)s::uuid
  AND k.id = ANY (%(kept)s::uuid[])
  AND t.id <> ALL (%(kept)s::uuid[])
  AND t.principal_type = k.principal_type
  AND t.principal_id = k.principal_id
  AND t.pipeline_id IS NOT DISTINCT FROM k.pipeline_id
  AND t.period_start = k.period_start
  AND t.period_end = k.period_end;
