-- name: run_defaults
-- A tenant's default run options (no row: no such tenant).
SELECT t.default_rollup AS rollup, t.default_target_match AS target_match,
       t.default_win_rate_lookback_days AS win_rate_lookback_days
FROM dyno_crm.tenant AS t
WHERE t.id = %(tenant_id)s::uuid;

-- name: set_run_defaults
-- Changes the options given (a NULL leaves that one as it is); returns all of them.
UPDATE dyno_crm.tenant AS t
SET default_rollup = COALESCE(%(rollup)s::boolean, t.default_rollup),
    default_target_match = COALESCE(%(target_match)s::text, t.default_target_match),
    default_win_rate_lookback_days =
        COALESCE(%(win_rate_lookback_days)s::integer, t.default_win_rate_lookback_days)
WHERE t.id = %(tenant_id)s::uuid
RETURNING t.default_rollup AS rollup, t.default_target_match AS target_match,
          t.default_win_rate_lookback_days AS win_rate_lookback_days;

-- name: tenant_rows
-- How many rows of each table of the schema are the tenant's, every table named (a
-- table missing here is one a tenant's delete would not account for: the schema tests
-- check that every table of dyno_crm is).
SELECT 'tenant' AS table_name, count(*) AS n_rows
FROM dyno_crm.tenant AS t WHERE t.id = %(tenant_id)s::uuid
UNION ALL SELECT 'crm_user', count(*)
FROM dyno_crm.crm_user AS u WHERE u.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'crm_group', count(*)
FROM dyno_crm.crm_group AS g WHERE g.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'group_member', count(*)
FROM dyno_crm.group_member AS gm WHERE gm.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'pipeline', count(*)
FROM dyno_crm.pipeline AS p WHERE p.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'pipeline_stage', count(*)
FROM dyno_crm.pipeline_stage AS ps WHERE ps.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'deal', count(*)
FROM dyno_crm.deal AS d WHERE d.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'deal_version', count(*)
FROM dyno_crm.deal_version AS dv WHERE dv.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'sales_target', count(*)
FROM dyno_crm.sales_target AS st WHERE st.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'exchange_rate', count(*)
FROM dyno_crm.exchange_rate AS er WHERE er.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'report_run', count(*)
FROM dyno_crm.report_run AS r WHERE r.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'report_pipeline_coverage_fact', count(*)
FROM dyno_crm.report_pipeline_coverage_fact AS f WHERE f.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'report_run_deals', count(*)
FROM dyno_crm.report_run_deals AS rd WHERE rd.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'report_run_credit', count(*)
FROM dyno_crm.report_run_credit AS rc WHERE rc.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'api_key', count(*)
FROM dyno_crm.api_key AS k WHERE k.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'api_session', count(*)
FROM dyno_crm.api_session AS s WHERE s.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'idempotency_key', count(*)
FROM dyno_crm.idempotency_key AS ik WHERE ik.tenant_id = %(tenant_id)s::uuid
UNION ALL SELECT 'calibration_fit', count(*)
FROM dyno_crm.calibration_fit AS cf WHERE cf.tenant_id = %(tenant_id)s::uuid;

-- name: delete_targets
-- A tenant's targets: one for no pipeline references nothing of the tenant's (the
-- seed's sales_target has no reference to the tenant), so the tenant's cascade would
-- leave it behind.
DELETE FROM dyno_crm.sales_target AS st WHERE st.tenant_id = %(tenant_id)s::uuid;

-- name: delete_tenant
-- Deletes the tenant; every other table's rows of it go with it by their references
-- (ON DELETE CASCADE to the tenant, or to a row of it that does; a deal's references to
-- reps and teams are checked at commit, when the deals are gone too).
DELETE FROM dyno_crm.tenant AS t WHERE t.id = %(tenant_id)s::uuid
RETURNING t.id;
