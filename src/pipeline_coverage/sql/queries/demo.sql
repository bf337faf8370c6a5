-- name: delete_past_runs
-- The demo tenant's made-up past runs (parameters.demo_history), before they are
-- written anew: loading the demo twice leaves one history.
DELETE FROM dyno_crm.report_run AS r
WHERE r.tenant_id = %(tenant_id)s::uuid AND r.parameters ? 'demo_history';

-- name: insert_past_rows
-- One made-up past run's rows (demo data, no drill-down): each rep's target, won and
-- open amounts, and the ratios SPEC.md §8 derives from them.
INSERT INTO dyno_crm.report_pipeline_coverage_fact
    (run_id, tenant_id, period_start, period_end, principal_type, principal_id,
     principal_name, target_amount, open_amount, coverage_ratio, won_amount,
     attainment_ratio, remaining_target, remaining_coverage_ratio)
SELECT %(run_id)s::uuid, %(tenant_id)s::uuid, %(period_start)s::date, %(period_end)s::date,
       'USER', r.principal_id, r.principal_name, r.target_amount, r.open_amount,
       ROUND(r.open_amount / NULLIF(r.target_amount, 0), 4), r.won_amount,
       ROUND(r.won_amount / NULLIF(r.target_amount, 0), 4),
       GREATEST(r.target_amount - r.won_amount, 0),
       ROUND(r.open_amount / NULLIF(GREATEST(r.target_amount - r.won_amount, 0), 0), 4)
FROM unnest(%(principal_ids)s::uuid[], %(names)s::text[], %(targets)s::numeric[],
            %(opens)s::numeric[], %(wons)s::numeric[])
    AS r (principal_id, principal_name, target_amount, open_amount, won_amount);
