-- 0015 A run's stored deals in chunks, so that one principal's drill-down reads its
-- own deals rather than the whole run's.
--
-- Until now a run stored its deals as one row of parallel arrays: every drill-down,
-- even of a rep with 40 deals, detoasted and unnested all of the run's deals (30,000
-- on a large tenant), ~8 ms of database time per request, which capped the API's
-- drill-downs at ~215 a second on two cores and let one tenant's paging crowd out the
-- others. Now a run stores one row per chunk: the deals whose owner hashes to the same
-- `chunk` (0-255, see coverage.sql's `classified`), so a rep's deals are in one chunk
-- and a team's in its members'. Each credit row says, deal by deal, which chunk holds
-- it (`deal_chunks`, parallel to `deal_ids`), and a drill-down reads just those chunks.
--
-- Runs stored before this migration keep their single row, as chunk 0, and their
-- credit rows have no `deal_chunks` (NULL: every deal is in chunk 0).
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.report_run_deals ADD COLUMN chunk smallint NOT NULL DEFAULT 0;
ALTER TABLE dyno_crm.report_run_deals ALTER COLUMN chunk DROP DEFAULT;
ALTER TABLE dyno_crm.report_run_deals
    DROP CONSTRAINT pk_report_run_deals,
    ADD CONSTRAINT pk_report_run_deals PRIMARY KEY (tenant_id, run_id, chunk);

ALTER TABLE dyno_crm.report_run_credit
    ADD COLUMN deal_chunks smallint[],
    ADD CONSTRAINT ck_report_run_credit_chunks
        CHECK (deal_chunks IS NULL OR cardinality(deal_chunks) = cardinality(deal_ids));
