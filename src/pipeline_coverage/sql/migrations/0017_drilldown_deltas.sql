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
-- Readers resolve a run's deals with queries/fragments.sql's run_deal_rows, one row
-- per deal. A complete row (base_run_id NULL) is read as before. The foreign key keeps a base from being deleted while a row builds on it:
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
