-- 0017 A batch run stores each chunk of its deals as what changed since the tenant's
-- previous batch run of the period (docs/decisions.md, "Snapshots store what changed").
--
-- Until now every run copied all of its deals: 30,000 deals of a large tenant, 6 MB a
-- run, every day, although a day changes a few percent of them. Now a batch run's
-- chunk row may build on the same chunk of an earlier run (`base_run_id`): it then
-- holds only the deals that are new or changed since, and `removed_deal_ids` the
-- deals of that chunk that are no longer in it. `chain` lists every run the row builds
-- on, the complete one first and `base_run_id` last, so that a reader resolves a chunk
-- without recursion (Citus plans a recursive CTE only in a plain router query): a
-- deal's entry is its last one along the chain, unless that one removes it. A chain
-- is at most 31 runs long, and a chunk whose change since its base is more than a
-- fifth of it is stored complete (coverage.sql, `delta_plan`).
--
-- `dyno_crm.report_run_deal_rows` is that resolution, one row per deal of a run: what
-- every reader of a run's deals reads. A complete row (base_run_id NULL) is read as
-- before. The foreign key keeps a base from being deleted while a row builds on it:
-- prune first stores the surviving rows complete (runs.sql, `prune_rebase`).
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.report_run_deals
    ADD COLUMN base_run_id uuid,
    ADD COLUMN chain uuid[],
    ADD COLUMN removed_deal_ids uuid[];

ALTER TABLE dyno_crm.report_run_deals
    ADD CONSTRAINT ck_report_run_deals_delta CHECK (
        (base_run_id IS NULL AND chain IS NULL AND removed_deal_ids IS NULL)
        OR (base_run_id IS NOT NULL AND removed_deal_ids IS NOT NULL AND chain IS NOT NULL
            AND cardinality(chain) BETWEEN 1 AND 31
            AND chain[cardinality(chain)] = base_run_id));

-- (the referencing side's index: deleting a run looks up the rows that build on it)
CREATE INDEX ix_report_run_deals_base ON dyno_crm.report_run_deals
    (tenant_id, base_run_id, chunk) WHERE base_run_id IS NOT NULL;

ALTER TABLE dyno_crm.report_run_deals
    ADD CONSTRAINT fk_report_run_deals_base FOREIGN KEY (tenant_id, base_run_id, chunk)
        REFERENCES dyno_crm.report_run_deals (tenant_id, run_id, chunk);

CREATE VIEW dyno_crm.report_run_deal_rows AS
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
WHERE d.base_run_id IS NULL
UNION ALL
-- A chunk that builds on earlier runs: each deal's last entry along its chain, unless
-- that entry removes it. The entries are streamed as above (their removals after their
-- deals, flagged by `removed`), then sorted once: unnested in FROM, they were first
-- copied into a tuplestore each, a third slower.
SELECT e.tenant_id, e.run_id, e.chunk, e.deal_id, e.deal_name, e.pipeline_id,
       e.pipeline_name, e.stage_id, e.stage_name, e.deal_class, e.forecast_category,
       e.probability, e.amount, e.currency, e.reporting_amount, e.weighted_amount,
       e.placed_on, e.owner_user_id, e.flags
FROM (
    SELECT DISTINCT ON (u.tenant_id, u.run_id, u.chunk, u.deal_id) u.*
    FROM (
        SELECT d.tenant_id, d.run_id, d.chunk, l.level,
               unnest(a.deal_ids || COALESCE(a.removed_deal_ids, '{}')) AS deal_id,
               unnest(array_fill(false, ARRAY[cardinality(a.deal_ids)])
                      || array_fill(true, ARRAY[COALESCE(cardinality(a.removed_deal_ids), 0)]))
                   AS removed,
               unnest(a.deal_names) AS deal_name, unnest(a.pipeline_ids) AS pipeline_id,
               unnest(a.pipeline_names) AS pipeline_name, unnest(a.stage_ids) AS stage_id,
               unnest(a.stage_names) AS stage_name, unnest(a.deal_classes) AS deal_class,
               unnest(a.forecast_categories) AS forecast_category,
               unnest(a.probabilities) AS probability, unnest(a.amounts) AS amount,
               unnest(a.currencies) AS currency,
               unnest(a.reporting_amounts) AS reporting_amount,
               unnest(a.weighted_amounts) AS weighted_amount, unnest(a.placed_on) AS placed_on,
               unnest(a.owner_user_ids) AS owner_user_id, unnest(a.flags) AS flags
        FROM dyno_crm.report_run_deals AS d
        CROSS JOIN LATERAL unnest(d.chain || d.run_id) WITH ORDINALITY AS l (run_id, level)
        JOIN dyno_crm.report_run_deals AS a
          ON a.tenant_id = d.tenant_id AND a.run_id = l.run_id AND a.chunk = d.chunk
        WHERE d.base_run_id IS NOT NULL
    ) AS u
    ORDER BY u.tenant_id, u.run_id, u.chunk, u.deal_id, u.level DESC
) AS e
WHERE NOT e.removed;

-- The same resolution, of the values `compare` counts only (a deal's class and
-- reporting amount): the view above unnests all sixteen arrays of every chunk it
-- reads, whatever its reader selects, and `compare` reads two whole runs.
CREATE VIEW dyno_crm.report_run_deal_amounts AS
SELECT d.tenant_id, d.run_id, d.chunk, unnest(d.deal_ids) AS deal_id,
       unnest(d.deal_classes) AS deal_class, unnest(d.reporting_amounts) AS reporting_amount
FROM dyno_crm.report_run_deals AS d
WHERE d.base_run_id IS NULL
UNION ALL
SELECT e.tenant_id, e.run_id, e.chunk, e.deal_id, e.deal_class, e.reporting_amount
FROM (
    SELECT DISTINCT ON (u.tenant_id, u.run_id, u.chunk, u.deal_id) u.*
    FROM (
        SELECT d.tenant_id, d.run_id, d.chunk, l.level,
               unnest(a.deal_ids || COALESCE(a.removed_deal_ids, '{}')) AS deal_id,
               unnest(array_fill(false, ARRAY[cardinality(a.deal_ids)])
                      || array_fill(true, ARRAY[COALESCE(cardinality(a.removed_deal_ids), 0)]))
                   AS removed,
               unnest(a.deal_classes) AS deal_class,
               unnest(a.reporting_amounts) AS reporting_amount
        FROM dyno_crm.report_run_deals AS d
        CROSS JOIN LATERAL unnest(d.chain || d.run_id) WITH ORDINALITY AS l (run_id, level)
        JOIN dyno_crm.report_run_deals AS a
          ON a.tenant_id = d.tenant_id AND a.run_id = l.run_id AND a.chunk = d.chunk
        WHERE d.base_run_id IS NOT NULL
    ) AS u
    ORDER BY u.tenant_id, u.run_id, u.chunk, u.deal_id, u.level DESC
) AS e
WHERE NOT e.removed;
