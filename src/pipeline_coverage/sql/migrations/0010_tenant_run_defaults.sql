-- 0010 A tenant's default run options (SPEC.md §12): what a run, a snapshot, history,
-- same-point and the dashboard use for an option they are not given.
--
-- Columns of the tenant itself, not a table of their own: a tenant has exactly one
-- set, it goes with the tenant (a tenant's delete), and on Citus the tenant table is
-- the co-location anchor already (a new table would have to be distributed and
-- co-located like the others). The defaults are the options' own defaults, so
-- existing tenants, and tenants a `load` creates, run exactly as before.
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.tenant ADD COLUMN default_rollup boolean NOT NULL DEFAULT false;
ALTER TABLE dyno_crm.tenant
    ADD COLUMN default_target_match text NOT NULL DEFAULT 'exact';
ALTER TABLE dyno_crm.tenant
    ADD COLUMN default_win_rate_lookback_days integer NOT NULL DEFAULT 365;
ALTER TABLE dyno_crm.tenant
    ADD CONSTRAINT ck_tenant_default_target_match
        CHECK (default_target_match IN ('exact', 'within'));
ALTER TABLE dyno_crm.tenant
    ADD CONSTRAINT ck_tenant_default_win_rate_lookback_days
        CHECK (default_win_rate_lookback_days BETWEEN 1 AND 3650);
