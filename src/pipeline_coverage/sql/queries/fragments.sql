-- Fragments of SQL that queries include (sql.expand: a comment `/* fragment: NAME */`
-- in a query, or in another fragment, stands for `(` the fragment `)`). Each reads the
-- tenant `%(tenant_id)s`.

-- name: run_chain_rows
-- Each chunk row of the tenant's runs stored as what changed (migration 0017), with
-- each row of its chain (the complete one first, the row itself last) and its `level`
-- there: its entries and every array of that row. Each row of a chain is found by its whole key
-- (tenant, `run_id = ANY (chain)`, chunk) in a LATERAL subquery kept apart by OFFSET 0,
-- whatever the plan: pulled up, it could become a join hashing the chunk rows of every
-- run the tenant keeps (nested loops are off in the drill-down's transaction), and a
-- lookup that did not name the tenant made Citus send the statement to every shard.
-- Its columns are named, not the row as one value: PostgreSQL then reads only the
-- arrays a reader uses (compare's four of sixteen); a whole-row value detoasts them all.
SELECT d.tenant_id, d.run_id, d.chunk, array_position(d.chain || d.run_id, a.run_id) AS level,
       -- the row's entries: its deals, then its removals (`removed`, parallel)
       a.deal_ids || COALESCE(a.removed_deal_ids, '{}') AS entry_ids,
       array_fill(false, ARRAY[cardinality(a.deal_ids)])
           || array_fill(true, ARRAY[COALESCE(cardinality(a.removed_deal_ids), 0)]) AS removed,
       a.deal_names,
       a.pipeline_ids, a.pipeline_names, a.stage_ids, a.stage_names, a.deal_classes,
       a.forecast_categories, a.probabilities, a.amounts, a.currencies, a.reporting_amounts,
       a.weighted_amounts, a.placed_on, a.owner_user_ids, a.flags
FROM dyno_crm.report_run_deals AS d
CROSS JOIN LATERAL (
    SELECT x.run_id, x.deal_ids, x.removed_deal_ids, x.deal_names, x.pipeline_ids,
           x.pipeline_names, x.stage_ids, x.stage_names, x.deal_classes,
           x.forecast_categories, x.probabilities, x.amounts, x.currencies,
           x.reporting_amounts, x.weighted_amounts, x.placed_on, x.owner_user_ids, x.flags
    FROM dyno_crm.report_run_deals AS x
    WHERE x.tenant_id = %(tenant_id)s::uuid
      AND x.run_id = ANY (d.chain || d.run_id) AND x.chunk = d.chunk
    OFFSET 0) AS a
WHERE d.tenant_id = %(tenant_id)s::uuid AND d.base_run_id IS NOT NULL

-- name: run_deal_rows
-- A run's deals, one row per deal of each of the tenant's runs (a query names the run,
-- and the chunks, outside: PostgreSQL takes those conditions into both arms).
-- A complete chunk: its arrays, unnested in the select list (streamed, a deal at a time).
SELECT d.tenant_id, d.run_id, d.chunk, unnest(d.deal_ids) AS deal_id,
       unnest(d.deal_names) AS deal_name, unnest(d.pipeline_ids) AS pipeline_id,
       unnest(d.pipeline_names) AS pipeline_name, unnest(d.stage_ids) AS stage_id,
       unnest(d.stage_names) AS stage_name, unnest(d.deal_classes) AS deal_class,
       unnest(d.forecast_categories) AS forecast_category,
       unnest(d.probabilities) AS probability, unnest(d.amounts) AS amount,
       unnest(d.currencies) AS currency, unnest(d.reporting_amounts) AS reporting_amount,
       unnest(d.weighted_amounts) AS weighted_amount, unnest(d.placed_on) AS placed_on,
       unnest(d.owner_user_ids) AS owner_user_id, unnest(d.flags) AS flags
FROM dyno_crm.report_run_deals AS d
WHERE d.tenant_id = %(tenant_id)s::uuid AND d.base_run_id IS NULL
UNION ALL
-- A chunk that builds on earlier runs: each deal's last entry along its chain, unless
-- that entry removes it. The entries are streamed as above (a row's removals after its
-- deals, flagged `removed`), then sorted once: unnested in FROM, they were first
-- copied into a tuplestore each, a third slower.
SELECT e.tenant_id, e.run_id, e.chunk, e.deal_id, e.deal_name, e.pipeline_id,
       e.pipeline_name, e.stage_id, e.stage_name, e.deal_class, e.forecast_category,
       e.probability, e.amount, e.currency, e.reporting_amount, e.weighted_amount,
       e.placed_on, e.owner_user_id, e.flags
FROM (
    SELECT DISTINCT ON (u.tenant_id, u.run_id, u.chunk, u.deal_id) u.*
    FROM (
        SELECT c.tenant_id, c.run_id, c.chunk, c.level,
               unnest(c.entry_ids) AS deal_id, unnest(c.removed) AS removed,
               unnest(c.deal_names) AS deal_name, unnest(c.pipeline_ids) AS pipeline_id,
               unnest(c.pipeline_names) AS pipeline_name, unnest(c.stage_ids) AS stage_id,
               unnest(c.stage_names) AS stage_name, unnest(c.deal_classes) AS deal_class,
               unnest(c.forecast_categories) AS forecast_category,
               unnest(c.probabilities) AS probability, unnest(c.amounts) AS amount,
               unnest(c.currencies) AS currency,
               unnest(c.reporting_amounts) AS reporting_amount,
               unnest(c.weighted_amounts) AS weighted_amount, unnest(c.placed_on) AS placed_on,
               unnest(c.owner_user_ids) AS owner_user_id, unnest(c.flags) AS flags
        FROM /* fragment: run_chain_rows */ AS c
    ) AS u
    ORDER BY u.tenant_id, u.run_id, u.chunk, u.deal_id, u.level DESC
) AS e
WHERE NOT e.removed

-- name: run_deal_amounts
-- The same, of the values `compare` counts only (a deal's class and reporting amount):
-- run_deal_rows unnests all sixteen arrays of every chunk it reads, whatever its
-- reader selects, and `compare` reads two whole runs.
SELECT d.tenant_id, d.run_id, d.chunk, unnest(d.deal_ids) AS deal_id,
       unnest(d.deal_classes) AS deal_class, unnest(d.reporting_amounts) AS reporting_amount
FROM dyno_crm.report_run_deals AS d
WHERE d.tenant_id = %(tenant_id)s::uuid AND d.base_run_id IS NULL
UNION ALL
SELECT e.tenant_id, e.run_id, e.chunk, e.deal_id, e.deal_class, e.reporting_amount
FROM (
    SELECT DISTINCT ON (u.tenant_id, u.run_id, u.chunk, u.deal_id) u.*
    FROM (
        SELECT c.tenant_id, c.run_id, c.chunk, c.level,
               unnest(c.entry_ids) AS deal_id, unnest(c.removed) AS removed,
               unnest(c.deal_classes) AS deal_class,
               unnest(c.reporting_amounts) AS reporting_amount
        FROM /* fragment: run_chain_rows */ AS c
    ) AS u
    ORDER BY u.tenant_id, u.run_id, u.chunk, u.deal_id, u.level DESC
) AS e
WHERE NOT e.removed

-- name: run_credit_rows
-- A run's credit rows (who each of its deals counts for, and why), one per principal
-- and bucket of each of the tenant's runs (a query names the run, and the principal,
-- outside: PostgreSQL takes those conditions into both arms). A run stored complete
-- (migration 0018: no credit_chain): its rows. (`source_run_id`: the run that stored
-- the row.)
SELECT c.tenant_id, c.run_id, c.principal_type, c.principal_id, c.pipeline_id, c.deal_ids,
       c.credit_reasons, c.deal_chunks, c.run_id AS source_run_id
FROM dyno_crm.report_run_credit AS c
JOIN dyno_crm.report_run AS r ON r.tenant_id = c.tenant_id AND r.id = c.run_id
WHERE c.tenant_id = %(tenant_id)s::uuid AND r.tenant_id = %(tenant_id)s::uuid
  AND r.credit_chain IS NULL AND NOT c.removed
UNION ALL
-- A run that builds on earlier runs: each row's last one along its chain and the run
-- itself, unless that one is `removed`. The chain's rows are found by their key
-- (tenant, `run_id = ANY (chain)`, and the principal a reader names): the join's one
-- condition cannot be hashed, so the plan is a nested loop, which looks them up by
-- that key in the index (on a table of a few rows the planner may scan it instead).
SELECT e.tenant_id, e.run_id, e.principal_type, e.principal_id, e.pipeline_id, e.deal_ids,
       e.credit_reasons, e.deal_chunks, e.source_run_id
FROM (
    SELECT DISTINCT ON (r.tenant_id, r.id, k.principal_type, k.principal_id, k.pipeline_id)
           r.tenant_id, r.id AS run_id, k.principal_type, k.principal_id, k.pipeline_id,
           k.deal_ids, k.credit_reasons, k.deal_chunks, k.removed, k.run_id AS source_run_id
    FROM dyno_crm.report_run AS r
    JOIN dyno_crm.report_run_credit AS k
      ON k.tenant_id = %(tenant_id)s::uuid AND k.run_id = ANY (r.credit_chain || r.id)
    WHERE r.tenant_id = %(tenant_id)s::uuid AND r.credit_chain IS NOT NULL
    ORDER BY r.tenant_id, r.id, k.principal_type, k.principal_id, k.pipeline_id,
             array_position(r.credit_chain || r.id, k.run_id) DESC
) AS e
WHERE NOT e.removed
