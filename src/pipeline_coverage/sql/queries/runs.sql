-- name: insert_run
-- Writes a run header (the seed's report_run row) and returns its id: the one given,
-- or a new one.
INSERT INTO dyno_crm.report_run
    (id, tenant_id, report_type, generated_at, period_start, period_end, parameters)
VALUES
    (COALESCE(%(id)s::uuid, gen_random_uuid()), %(tenant_id)s::uuid, %(report_type)s::text,
     now(), %(period_start)s::date, %(period_end)s::date, %(parameters)s::jsonb)
RETURNING id;

-- name: get_run
-- One run's header, looked up by id (and tenant, when the caller scopes it).
SELECT r.id AS run_id, r.tenant_id, tn.name AS tenant_name, r.report_type,
       r.generated_at, r.period_start, r.period_end, r.parameters::text AS parameters,
       tn.fiscal_year_start_month
FROM dyno_crm.report_run AS r
JOIN dyno_crm.tenant AS tn ON tn.id = r.tenant_id
WHERE r.id = %(run_id)s::uuid
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: run_tenant
-- A run's tenant, looked up by id (and tenant, when the caller scopes it): the
-- drill-down's check, lighter than the whole header.
SELECT r.tenant_id
FROM dyno_crm.report_run AS r
WHERE r.id = %(run_id)s::uuid
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: get_run_rows
-- A run's fact rows, every column, with the names the run saw; in a fixed order of
-- identity (the order rows are shown in is presentation.default_order's).
SELECT f.*
FROM dyno_crm.report_pipeline_coverage_fact AS f
WHERE f.tenant_id = %(tenant_id)s::uuid
  AND f.run_id = %(run_id)s::uuid
ORDER BY f.principal_type, f.principal_id, f.pipeline_id NULLS FIRST;

-- name: run_exclusions
-- What a run flagged (SPEC.md §8): per deal flag, its deals, their amount, and how
-- many of them have no rate in force (in no amount: NO_RATE); the rows whose
-- target period did not match; and the rows that summed overlapping target rows,
-- each named with those rows (`detail`).
SELECT fl.flag, count(*) AS deals, SUM(u.reporting_amount) AS amount,
       count(*) FILTER (WHERE u.reporting_amount IS NULL) AS no_rate, NULL::text[] AS detail
FROM (
    SELECT d.reporting_amount, d.flags
    FROM /* fragment: run_deal_rows */ AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id = %(run_id)s::uuid
) AS u
CROSS JOIN LATERAL unnest(string_to_array(NULLIF(u.flags, ''), ',')) AS fl (flag)
GROUP BY fl.flag
UNION ALL
SELECT 'TARGET_PERIOD_MISMATCH', count(*), NULL, 0, NULL
FROM dyno_crm.report_pipeline_coverage_fact AS f
WHERE f.tenant_id = %(tenant_id)s::uuid
  AND f.run_id = %(run_id)s::uuid
  AND 'TARGET_PERIOD_MISMATCH' = ANY (f.flags)
HAVING count(*) > 0
UNION ALL
SELECT 'TARGET_OVERLAP', count(*), NULL, 0,
       array_agg(COALESCE(f.principal_name, f.principal_id::text)
                 || COALESCE(' (' || f.pipeline_name || ')', '') || ': '
                 || array_to_string(f.target_overlaps, ', ')
                 ORDER BY f.principal_name, f.principal_id, f.pipeline_name)
FROM dyno_crm.report_pipeline_coverage_fact AS f
WHERE f.tenant_id = %(tenant_id)s::uuid
  AND f.run_id = %(run_id)s::uuid
  AND f.target_overlaps IS NOT NULL
HAVING count(*) > 0;

-- name: run_deals
-- A run's drill-down: each row's deals with their credit reason, as the run saw them;
-- optionally one principal's; keyset-paged by (principal, bucket, deal). Within one
-- run the buckets are all NULL or all pipelines, so the nil UUID orders NULL safely.
-- A page costs its own deals, whatever the run's size and whatever the plan (custom
-- or generic): the page's credits are picked from the rows it can reach, then only
-- the stored chunks that hold the page's deals are read (migration 0015; a run
-- stored before it is one chunk, 0), once, and matched to them by hash.
WITH rows AS (
    -- The rows the page can reach, in order: from the cursor's row on, while the deals
    -- of the rows before (the cursor's own row left out) are fewer than the page. Only
    -- their arrays are expanded; `before` reads each row's array length alone.
    SELECT c.principal_type, c.principal_id, c.pipeline_id, c.deal_ids, c.credit_reasons,
           c.deal_chunks,
           COALESCE(c.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket,
           sum(CASE WHEN (c.principal_type, c.principal_id,
                          COALESCE(c.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid))
                         = (%(after_type)s::text, %(after_principal)s::uuid,
                            COALESCE(%(after_pipeline)s::uuid,
                                     '00000000-0000-0000-0000-000000000000'::uuid))
                    THEN 0 ELSE cardinality(c.deal_ids) END)
               OVER (ORDER BY c.principal_type, c.principal_id,
                              COALESCE(c.pipeline_id,
                                       '00000000-0000-0000-0000-000000000000'::uuid)
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
    FROM /* fragment: run_credit_rows */ AS c
    WHERE c.tenant_id = %(tenant_id)s::uuid
      AND c.run_id = %(run_id)s::uuid
      AND (%(principal_type)s::text IS NULL OR c.principal_type = %(principal_type)s::text)
      AND (%(principal_id)s::uuid IS NULL OR c.principal_id = %(principal_id)s::uuid)
      AND (%(after_type)s::text IS NULL
           OR (c.principal_type, c.principal_id,
               COALESCE(c.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid))
              >= (%(after_type)s::text, %(after_principal)s::uuid,
                  COALESCE(%(after_pipeline)s::uuid, '00000000-0000-0000-0000-000000000000'::uuid)))
),
page AS MATERIALIZED (
    -- The page's (row, deal) pairs: at most `limit`, found before any deal's values
    -- are read. Unnested in the select list, so no join (see deals).
    SELECT x.principal_type, x.principal_id, x.pipeline_id, x.bucket, x.deal_id,
           x.credit_reason, COALESCE(x.chunk, 0) AS chunk,
           -- (the page's order as one integer: the final sort, after the join, is
           -- then by it, not by four keys — 20 of 57 ms for a team's 5,721 deals)
           row_number() OVER (ORDER BY x.principal_type, x.principal_id, x.bucket,
                                       x.deal_id) AS position
    FROM (
        SELECT r.principal_type, r.principal_id, r.pipeline_id, r.bucket,
               unnest(r.deal_ids) AS deal_id, unnest(r.credit_reasons) AS credit_reason,
               unnest(r.deal_chunks) AS chunk
        FROM rows AS r
        WHERE COALESCE(r.before, 0) < %(limit)s::bigint
    ) AS x
    WHERE %(after_type)s::text IS NULL
       OR (x.principal_type, x.principal_id, x.bucket, x.deal_id)
          > (%(after_type)s::text, %(after_principal)s::uuid,
             COALESCE(%(after_pipeline)s::uuid, '00000000-0000-0000-0000-000000000000'::uuid),
             %(after_deal)s::uuid)
    ORDER BY x.principal_type, x.principal_id, x.bucket, x.deal_id
    LIMIT %(limit)s::bigint
),
deals AS (
    -- The deals of the page's chunks, read once (fragments.sql's run_deal_rows: a complete
    -- chunk's arrays streamed a deal at a time, a chunk stored as what changed resolved
    -- along its chain) and hashed against the page: never rescanned per credit row,
    -- which is what a nested loop did (run_deals sets enable_nestloop off).
    SELECT d.deal_id, d.deal_name, d.pipeline_id AS deal_pipeline_id, d.pipeline_name,
           d.stage_id, d.stage_name, d.deal_class, d.forecast_category, d.probability,
           d.amount, d.currency, d.reporting_amount, d.weighted_amount, d.placed_on,
           d.owner_user_id, d.flags
    FROM /* fragment: run_deal_rows */ AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id = %(run_id)s::uuid
      AND d.chunk = ANY (ARRAY(SELECT DISTINCT pc.chunk FROM page AS pc))
)
SELECT p.principal_type, p.principal_id, p.pipeline_id, dl.deal_id, dl.deal_name,
       dl.deal_class, p.credit_reason, dl.forecast_category, dl.probability, dl.amount,
       dl.currency, dl.reporting_amount, dl.weighted_amount, dl.placed_on,
       string_to_array(NULLIF(dl.flags, ''), ',') AS flags, dl.deal_pipeline_id,
       dl.pipeline_name, dl.stage_id, dl.stage_name, dl.owner_user_id
FROM page AS p
JOIN deals AS dl ON dl.deal_id = p.deal_id
ORDER BY p.position;

-- name: list_runs
-- Stored runs, newest first, with their row counts; optionally one tenant's, one
-- period's or one mode's, and (keyset pagination) only those before a cursor. The
-- count joins on the tenant too, so one tenant's list stays on its shard (Citus).
-- One tenant's list is sent without the every-tenant branch (`every_tenant` false):
-- a generic plan cannot fold `tenant_id IS NULL OR ...` away, and read every
-- tenant's runs to sort them instead of the tenant's newest by its index. The
-- tenant's name and the row count are looked up for the listed runs only (a join
-- with the tenants, which a generic plan took for a few rows' nested loop, read
-- every tenant for every run of the store). One tenant's look-ups name the tenant too:
-- Citus then routes the whole list to the tenant's shard (a correlated subquery alone
-- made it a task on every shard).
SELECT r.id AS run_id, r.tenant_id,
       (SELECT tn.name FROM dyno_crm.tenant AS tn WHERE tn.id = r.tenant_id
        -- unless every_tenant: AND tn.id = %(tenant_id)s::uuid
       ) AS tenant_name,
       r.report_type, r.generated_at, r.period_start, r.period_end,
       r.parameters::text AS parameters,
       (SELECT tn.fiscal_year_start_month FROM dyno_crm.tenant AS tn
        WHERE tn.id = r.tenant_id
        -- unless every_tenant: AND tn.id = %(tenant_id)s::uuid
       ) AS fiscal_year_start_month,
       (SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact AS f
        WHERE f.tenant_id = r.tenant_id AND f.run_id = r.id
          AND (%(tenant_id)s::uuid IS NULL OR f.tenant_id = %(tenant_id)s::uuid))
           AS row_count
FROM dyno_crm.report_run AS r
WHERE r.report_type = %(report_type)s::text
  -- if every_tenant
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid)
  -- end if
  -- unless every_tenant: AND r.tenant_id = %(tenant_id)s::uuid
  AND (%(period_start)s::date IS NULL OR r.period_start = %(period_start)s::date)
  AND (%(period_end)s::date IS NULL OR r.period_end = %(period_end)s::date)
  AND (%(mode)s::text IS NULL OR r.parameters ->> 'mode' = %(mode)s::text)
  AND (%(before_at)s::timestamptz IS NULL
       OR (r.generated_at, r.id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY r.generated_at DESC, r.id DESC
LIMIT %(limit)s::integer;

-- name: principal_points
-- One principal's rows in the tenant's stored runs of the periods asked for (rows for
-- no pipeline, or for the one asked for), each with its run's day: the run's as_of (a
-- run stored before as_of was recorded: the UTC day it was generated), at most the
-- period's cut-off day when it has one. `pick` says which rows: 'run', every run's,
-- oldest first; 'day', each day's last run's, by day; 'last', the last run's of each
-- period (latest day, then latest generated: the same point of several quarters).
-- Optionally only the runs of one target_match, or with or without roll-up.
WITH periods AS (
    SELECT q.period_start, q.period_end, q.cutoff
    FROM unnest(%(starts)s::date[], %(ends)s::date[], %(cutoffs)s::date[])
        AS q (period_start, period_end, cutoff)
),
points AS (
    SELECT r.generated_at, d.as_of, f.*
    FROM periods AS q
    JOIN dyno_crm.report_pipeline_coverage_fact AS f
      ON f.period_start = q.period_start AND f.period_end = q.period_end
    JOIN dyno_crm.report_run AS r ON r.tenant_id = f.tenant_id AND r.id = f.run_id
    CROSS JOIN LATERAL (
        SELECT COALESCE((r.parameters ->> 'as_of')::date,
                        (r.generated_at AT TIME ZONE 'UTC')::date) AS as_of
    ) AS d
    WHERE f.tenant_id = %(tenant_id)s::uuid
      AND f.principal_type = %(principal_type)s::text
      AND f.principal_id = %(principal_id)s::uuid
      AND f.pipeline_id IS NOT DISTINCT FROM %(pipeline_id)s::uuid
      AND (q.cutoff IS NULL OR d.as_of <= q.cutoff)
      AND (%(target_match)s::text IS NULL
           OR COALESCE(r.parameters ->> 'target_match', 'exact') = %(target_match)s::text)
      AND (%(rollup)s::boolean IS NULL
           OR COALESCE((r.parameters ->> 'rollup')::boolean, false) = %(rollup)s::boolean)
),
ranked AS (
    SELECT p.*,
           row_number() OVER (
               PARTITION BY p.period_start, CASE WHEN %(pick)s::text = 'day' THEN p.as_of END
               ORDER BY p.as_of DESC, p.generated_at DESC, p.run_id DESC
           ) AS newest
    FROM points AS p
)
SELECT rk.*
FROM ranked AS rk
WHERE %(pick)s::text = 'run' OR rk.newest = 1
ORDER BY rk.period_start, CASE WHEN %(pick)s::text <> 'run' THEN rk.as_of END,
         rk.generated_at, rk.run_id;

-- name: prune_count
-- What prune would delete (its --dry-run, and the question it asks on a terminal).
SELECT
    (SELECT count(*) FROM dyno_crm.report_run AS r
     WHERE r.generated_at < now() - make_interval(days => %(older_than_days)s::integer)
       AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid)) AS runs,
    (SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact AS f
     JOIN dyno_crm.report_run AS r2 ON r2.tenant_id = f.tenant_id AND r2.id = f.run_id
     WHERE r2.generated_at < now() - make_interval(days => %(older_than_days)s::integer)
       AND (%(tenant_id)s::uuid IS NULL OR f.tenant_id = %(tenant_id)s::uuid)) AS fact_rows;

-- name: prune_cutoff
-- The cut-off of prune's statements: generated before it, a run goes (now() is the
-- transaction's start, the same in each of them).
SELECT now() - make_interval(days => %(older_than_days)s::integer) AS cutoff;

-- name: prune_rebase_tenants
-- Before prune deletes runs (its first statements, one transaction): the tenants with
-- a chunk row of a run that stays, stored as what changed since a run that goes
-- (migration 0017), by the cut-off prune_facts and prune_runs compute (`cutoff`, given
-- as a value: Citus refuses now() beside a column in an UPDATE), and those with a run
-- that stays whose credit rows build on a run that goes (migration 0018). prune_rebase,
-- prune_trim_chains and the four credit statements after them run once per such tenant (a row
-- or run whose chain holds a run that goes builds on one of its tenant stored
-- complete by prune_rebase or prune_rebase_credits).
SELECT k.tenant_id
FROM dyno_crm.report_run_deals AS k
JOIN dyno_crm.report_run AS b ON b.tenant_id = k.tenant_id AND b.id = k.base_run_id
JOIN dyno_crm.report_run AS r ON r.tenant_id = k.tenant_id AND r.id = k.run_id
WHERE b.generated_at < %(cutoff)s::timestamptz
  AND r.generated_at >= %(cutoff)s::timestamptz
  AND (%(tenant_id)s::uuid IS NULL OR k.tenant_id = %(tenant_id)s::uuid)
UNION
-- (and the tenants with a run that stays whose credit rows build on a run that goes,
-- migration 0018)
SELECT r.tenant_id
FROM dyno_crm.report_run AS r
JOIN dyno_crm.report_run AS b ON b.tenant_id = r.tenant_id AND b.id = r.credit_base_run_id
WHERE b.generated_at < %(cutoff)s::timestamptz
  AND r.generated_at >= %(cutoff)s::timestamptz
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: prune_rebase
-- Such rows of one tenant are stored complete instead, with their deals as
-- fragments.sql's run_deal_rows resolves them; nothing else of them changes, and rows that
-- build on them resolve as before. (One tenant at a time: on Citus the resolution is
-- read in a router query; a statement over every shard cannot push its UNION ALL of
-- table functions down.)
UPDATE dyno_crm.report_run_deals AS d
SET deal_ids = v.deal_ids, deal_names = v.deal_names, pipeline_ids = v.pipeline_ids,
    pipeline_names = v.pipeline_names, stage_ids = v.stage_ids, stage_names = v.stage_names,
    deal_classes = v.deal_classes, forecast_categories = v.forecast_categories,
    probabilities = v.probabilities, amounts = v.amounts, currencies = v.currencies,
    reporting_amounts = v.reporting_amounts, weighted_amounts = v.weighted_amounts,
    placed_on = v.placed_on, owner_user_ids = v.owner_user_ids, flags = v.flags,
    base_run_id = NULL, chain = NULL, removed_deal_ids = NULL
FROM (
    SELECT x.tenant_id, x.run_id, x.chunk, array_agg(x.deal_id) AS deal_ids,
           array_agg(x.deal_name) AS deal_names, array_agg(x.pipeline_id) AS pipeline_ids,
           array_agg(x.pipeline_name) AS pipeline_names, array_agg(x.stage_id) AS stage_ids,
           array_agg(x.stage_name) AS stage_names, array_agg(x.deal_class) AS deal_classes,
           array_agg(x.forecast_category) AS forecast_categories,
           array_agg(x.probability) AS probabilities, array_agg(x.amount) AS amounts,
           array_agg(x.currency) AS currencies,
           array_agg(x.reporting_amount) AS reporting_amounts,
           array_agg(x.weighted_amount) AS weighted_amounts,
           array_agg(x.placed_on) AS placed_on, array_agg(x.owner_user_id) AS owner_user_ids,
           array_agg(x.flags) AS flags
    FROM /* fragment: run_deal_rows */ AS x
    JOIN dyno_crm.report_run_deals AS k
      ON k.tenant_id = x.tenant_id AND k.run_id = x.run_id AND k.chunk = x.chunk
    JOIN dyno_crm.report_run AS b ON b.tenant_id = k.tenant_id AND b.id = k.base_run_id
    JOIN dyno_crm.report_run AS r ON r.tenant_id = k.tenant_id AND r.id = k.run_id
    WHERE b.generated_at < %(cutoff)s::timestamptz
      AND r.generated_at >= %(cutoff)s::timestamptz
      AND x.tenant_id = %(tenant_id)s::uuid
      -- (the runs named as a value, which reaches into the resolution: through the
      -- joins above it resolved every run of the tenant, 12 s to rewrite one)
      AND x.run_id = ANY (ARRAY(
          SELECT k2.run_id
          FROM dyno_crm.report_run_deals AS k2
          JOIN dyno_crm.report_run AS b2 ON b2.tenant_id = k2.tenant_id AND b2.id = k2.base_run_id
          JOIN dyno_crm.report_run AS r2 ON r2.tenant_id = k2.tenant_id AND r2.id = k2.run_id
          WHERE k2.tenant_id = %(tenant_id)s::uuid AND b2.generated_at < %(cutoff)s::timestamptz
            AND r2.generated_at >= %(cutoff)s::timestamptz))
    GROUP BY x.tenant_id, x.run_id, x.chunk
) AS v
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND d.tenant_id = v.tenant_id AND d.run_id = v.run_id AND d.chunk = v.chunk;

-- name: prune_trim_chains
-- Then the chains of the tenant's rows that stay drop the runs that go (and every run
-- before them, whose deals the row stored complete above holds). (The new chain is
-- made in the subquery: Citus 13.2 crashes on an array slice in an UPDATE's SET.)
UPDATE dyno_crm.report_run_deals AS d
SET chain = g.chain
FROM (
    SELECT k.tenant_id, k.run_id, k.chunk,
           k.chain[max(array_position(k.chain, b.id)) + 1:cardinality(k.chain)] AS chain
    FROM dyno_crm.report_run_deals AS k
    JOIN dyno_crm.report_run AS b ON b.tenant_id = k.tenant_id AND b.id = ANY (k.chain)
    JOIN dyno_crm.report_run AS r ON r.tenant_id = k.tenant_id AND r.id = k.run_id
    WHERE k.base_run_id IS NOT NULL
      AND b.generated_at < %(cutoff)s::timestamptz
      AND r.generated_at >= %(cutoff)s::timestamptz
      AND k.tenant_id = %(tenant_id)s::uuid
    GROUP BY k.tenant_id, k.run_id, k.chunk, k.chain
) AS g
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND d.tenant_id = g.tenant_id AND d.run_id = g.run_id AND d.chunk = g.chunk;

-- name: prune_rebase_credits
-- The credit rows of such a tenant's runs that stay, stored as what changed since a run
-- that goes (migration 0018), are stored complete instead: first the rows the run
-- takes from its chain (fragments.sql's run_credit_rows, from another run than itself)
-- are written as its own; then its `removed` rows go, and its chain
-- (prune_complete_credits). Its own rows are already its latest.
INSERT INTO dyno_crm.report_run_credit
    (tenant_id, run_id, principal_type, principal_id, pipeline_id, deal_ids, credit_reasons,
     deal_chunks)
SELECT v.tenant_id, v.run_id, v.principal_type, v.principal_id, v.pipeline_id, v.deal_ids,
       v.credit_reasons, v.deal_chunks
FROM /* fragment: run_credit_rows */ AS v
WHERE v.tenant_id = %(tenant_id)s::uuid
  AND v.source_run_id <> v.run_id
  -- (the runs named as a value, which reaches into the resolution, as in prune_rebase)
  AND v.run_id = ANY (ARRAY(
      SELECT r.id
      FROM dyno_crm.report_run AS r
      JOIN dyno_crm.report_run AS b ON b.tenant_id = r.tenant_id AND b.id = r.credit_base_run_id
      WHERE r.tenant_id = %(tenant_id)s::uuid AND b.generated_at < %(cutoff)s::timestamptz
        AND r.generated_at >= %(cutoff)s::timestamptz));

-- name: prune_drop_removed_credits
-- Then the `removed` rows of those runs go (what they removed is no longer among the
-- rows written above).
DELETE FROM dyno_crm.report_run_credit AS c
USING dyno_crm.report_run AS r, dyno_crm.report_run AS b
WHERE c.tenant_id = %(tenant_id)s::uuid AND c.removed
  AND r.tenant_id = %(tenant_id)s::uuid AND r.id = c.run_id
  AND b.tenant_id = r.tenant_id AND b.id = r.credit_base_run_id
  AND b.generated_at < %(cutoff)s::timestamptz
  AND r.generated_at >= %(cutoff)s::timestamptz;

-- name: prune_complete_credits
-- Then those runs are complete: their chain goes.
UPDATE dyno_crm.report_run AS r
SET credit_base_run_id = NULL, credit_chain = NULL
FROM dyno_crm.report_run AS b
WHERE r.tenant_id = %(tenant_id)s::uuid AND b.tenant_id = r.tenant_id
  AND b.id = r.credit_base_run_id
  AND b.generated_at < %(cutoff)s::timestamptz
  AND r.generated_at >= %(cutoff)s::timestamptz;

-- name: prune_trim_credit_chains
-- Then the credit chains of the tenant's runs that stay drop the runs that go (and
-- every run before them), as prune_trim_chains does for the chunk rows.
UPDATE dyno_crm.report_run AS r
SET credit_chain = g.chain
FROM (
    SELECT k.tenant_id, k.id,
           k.credit_chain[max(array_position(k.credit_chain, b.id)) + 1
                          :cardinality(k.credit_chain)] AS chain
    FROM dyno_crm.report_run AS k
    JOIN dyno_crm.report_run AS b ON b.tenant_id = k.tenant_id AND b.id = ANY (k.credit_chain)
    WHERE k.tenant_id = %(tenant_id)s::uuid AND k.credit_chain IS NOT NULL
      AND b.generated_at < %(cutoff)s::timestamptz
      AND k.generated_at >= %(cutoff)s::timestamptz
    GROUP BY k.tenant_id, k.id, k.credit_chain
) AS g
WHERE r.tenant_id = %(tenant_id)s::uuid
  AND r.tenant_id = g.tenant_id AND r.id = g.id;

-- name: prune_facts
-- Deletes the fact rows of whole runs older than the cut-off, and counts them: the
-- first of prune's two statements (one transaction). Deleted explicitly rather than
-- counted beside a cascading DELETE: on Citus a multi-shard statement's CTE that
-- counts them may run after the cascade, and report 0.
DELETE FROM dyno_crm.report_pipeline_coverage_fact AS f
USING dyno_crm.report_run AS r
WHERE f.tenant_id = r.tenant_id AND f.run_id = r.id
  AND r.generated_at < now() - make_interval(days => %(older_than_days)s::integer)
  AND (%(tenant_id)s::uuid IS NULL OR f.tenant_id = %(tenant_id)s::uuid)
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: prune_runs
-- Deletes whole runs older than the cut-off (the same cut-off as prune_facts: now()
-- is the transaction's start), and counts them. Their drill-down (and any fact row
-- stored since prune_facts) goes with them: fk_report_run_deals_run,
-- fk_report_run_credit_run and fk_rpc_run cascade.
DELETE FROM dyno_crm.report_run AS r
WHERE r.generated_at < now() - make_interval(days => %(older_than_days)s::integer)
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: run_has_row
-- Whether a run has a row for a principal (an empty drill-down of a principal the run
-- has no row for is not found, rather than an empty answer).
SELECT EXISTS (
    SELECT 1
    FROM dyno_crm.report_pipeline_coverage_fact AS f
    WHERE f.tenant_id = %(tenant_id)s::uuid
      AND f.run_id = %(run_id)s::uuid
      AND f.principal_type = %(principal_type)s::text
      AND f.principal_id = %(principal_id)s::uuid
) AS found;
