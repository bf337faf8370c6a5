-- 0018 A batch run stores its credit rows as what changed since an earlier batch run
-- of the period (docs/decisions.md, "Snapshots store what changed").
--
-- Since 0017 a daily batch writes the few deals that changed, but still every one of
-- its credit rows: 2,220 rows, 2.2 MB a run on a large tenant, when a day changes who
-- is credited with what for a handful of principals. Now a batch run may build on the
-- tenant's newest earlier batch run of the period of its kind (`credit_base_run_id`: by
-- pipeline or not, rolled up or not, as this run; usually the run its chunks build on): it then
-- stores a credit row only for a principal and bucket whose deals, reasons or chunks
-- differ from that run's, and a row with `removed` for one that run had and this one
-- has not. `credit_chain` lists every run the run's credits build on, the complete one
-- first and `credit_base_run_id` last: a row is its last one along the chain and the
-- run itself, unless that one is `removed`. A chain is at most 31 runs long, and a run
-- whose rows changed by more than a fifth is stored complete (coverage.sql,
-- `credit_plan`).
--
-- Readers resolve a run's credit rows with queries/fragments.sql's run_credit_rows.
-- The foreign key keeps a base from being deleted while a run builds on it: prune
-- first stores the surviving runs complete (runs.sql, `prune_rebase_credits`).
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.report_run
    ADD COLUMN credit_base_run_id uuid,
    ADD COLUMN credit_chain uuid[];

ALTER TABLE dyno_crm.report_run
    ADD CONSTRAINT ck_report_run_credit_delta CHECK (
        (credit_base_run_id IS NULL AND credit_chain IS NULL)
        OR (credit_base_run_id IS NOT NULL AND credit_chain IS NOT NULL
            AND cardinality(credit_chain) BETWEEN 1 AND 31
            AND credit_chain[cardinality(credit_chain)] = credit_base_run_id));

ALTER TABLE dyno_crm.report_run_credit
    ADD COLUMN removed boolean NOT NULL DEFAULT false;

-- (a removed row names no deal)
ALTER TABLE dyno_crm.report_run_credit
    ADD CONSTRAINT ck_report_run_credit_removed CHECK (NOT removed OR cardinality(deal_ids) = 0);

-- (the referencing side's index: deleting a run looks up the runs that build on it)
CREATE INDEX ix_report_run_credit_base ON dyno_crm.report_run
    (tenant_id, credit_base_run_id) WHERE credit_base_run_id IS NOT NULL;

ALTER TABLE dyno_crm.report_run
    ADD CONSTRAINT fk_report_run_credit_base FOREIGN KEY (tenant_id, credit_base_run_id)
        REFERENCES dyno_crm.report_run (tenant_id, id);
