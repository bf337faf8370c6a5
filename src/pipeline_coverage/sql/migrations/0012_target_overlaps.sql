-- 0012 The target rows a fact row summed whose periods overlap (target_match=within,
-- SPEC.md §10): a year's target and its quarters' are all inside a year's report and
-- are all summed, so a run flags the row TARGET_OVERLAP and keeps which rows they
-- were (`start..end amount id` each), as they were when the run was made.
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.report_pipeline_coverage_fact ADD COLUMN target_overlaps text[];
