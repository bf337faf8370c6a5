-- name: floor
-- The least work any batch must do: one aggregate pass over the tenant's open deals
-- closing in the period (same filters as the report, no per-principal grouping).
SELECT count(*), SUM(COALESCE(d.amount, 0))
FROM dyno_crm.deal AS d
JOIN dyno_crm.pipeline_stage AS ps
  ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND ps.stage_state NOT IN ('DONE_SUCCESS', 'DONE_FAILED')
  AND COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
  AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date;

-- name: write_floor
-- The least a batch must write: as many fact rows as it has principals, into the
-- real fact table (with its constraints), under an existing run header.
INSERT INTO dyno_crm.report_pipeline_coverage_fact
    (run_id, tenant_id, period_start, period_end, principal_type, principal_id,
     pipeline_id, target_amount, open_amount, coverage_ratio)
SELECT %(run_id)s::uuid, %(tenant_id)s::uuid, %(period_start)s::date, %(period_end)s::date,
       'USER', gen_random_uuid(), NULL, NULL, 0, NULL
FROM generate_series(1, %(rows)s::integer);
