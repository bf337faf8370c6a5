-- name: run_pair
-- The two runs' headers (each scoped to the tenant when the caller gives one), and
-- whether a run has rows stored before drill-downs existed (migration 0005).
SELECT r.id AS run_id, r.tenant_id, tn.name AS tenant_name, r.report_type,
       r.generated_at, r.period_start, r.period_end, r.parameters::text AS parameters,
       EXISTS (SELECT 1 FROM dyno_crm.report_pipeline_coverage_fact AS f
               WHERE f.tenant_id = r.tenant_id AND f.run_id = r.id
                 AND f.open_count IS NULL) AS without_drilldown
FROM dyno_crm.report_run AS r
JOIN dyno_crm.tenant AS tn ON tn.id = r.tenant_id
WHERE r.id IN (%(run_a)s::uuid, %(run_b)s::uuid)
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: planner_settings
-- For the movement's statements only: no nested loop where another join will do, and
-- no JIT. Their inputs are arrays unnested from the two runs' rows, which the planner
-- counts as 10 elements each; it would then rescan one run's deals once per credit
-- of the other (quadratic: minutes on a large tenant) instead of hashing them once.
-- Refusing nested loops costs every plan a constant that would then trip JIT
-- compilation (over a second, for a statement of milliseconds). Returns the settings
-- it replaces, for restore_settings.
SELECT current_setting('enable_nestloop') AS enable_nestloop,
       current_setting('jit') AS jit,
       set_config('enable_nestloop', 'off', true) AS nestloop_now,
       set_config('jit', 'off', true) AS jit_now;

-- name: restore_settings
-- Puts back what planner_settings replaced (a caller's transaction goes on).
SELECT set_config('enable_nestloop', %(enable_nestloop)s::text, true),
       set_config('jit', %(jit)s::text, true);

-- name: movement_rows
-- The waterfall (SPEC.md §11) per principal and bucket of either run: A's open
-- amount, the steps summed over their deals from the two drill-downs, B's open
-- amount. A deal is in a step by its classes for this principal and bucket: counted
-- OPEN in A (a NO_RATE deal is in no amount, so it is open in neither run), and in
-- B counted OPEN (changed), WON, LOST, or none of those (left); counted OPEN in B
-- only: entered. `changed` counts the deals whose amount moved.
WITH a_open AS MATERIALIZED (
    SELECT c.principal_type, c.principal_id,
           COALESCE(c.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket,
           cr.deal_id
    FROM dyno_crm.report_run_credit AS c
    CROSS JOIN LATERAL unnest(c.deal_ids) AS cr (deal_id)
    WHERE c.tenant_id = %(tenant_id)s::uuid
      AND c.run_id = %(run_a)s::uuid
      AND (%(principal_type)s::text IS NULL OR c.principal_type = %(principal_type)s::text)
      AND (%(principal_id)s::uuid IS NULL OR c.principal_id = %(principal_id)s::uuid)
),
b_in AS MATERIALIZED (
    SELECT c.principal_type, c.principal_id,
           COALESCE(c.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket,
           cr.deal_id
    FROM dyno_crm.report_run_credit AS c
    CROSS JOIN LATERAL unnest(c.deal_ids) AS cr (deal_id)
    WHERE c.tenant_id = %(tenant_id)s::uuid
      AND c.run_id = %(run_b)s::uuid
      AND (%(principal_type)s::text IS NULL OR c.principal_type = %(principal_type)s::text)
      AND (%(principal_id)s::uuid IS NULL OR c.principal_id = %(principal_id)s::uuid)
),
a_deals AS MATERIALIZED (
    SELECT u.deal_id, u.reporting_amount
    FROM dyno_crm.report_run_deals AS d
    CROSS JOIN LATERAL unnest(d.deal_ids, d.deal_classes, d.reporting_amounts)
        AS u (deal_id, deal_class, reporting_amount)
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id = %(run_a)s::uuid
      AND u.deal_class = 'OPEN'
      AND u.reporting_amount IS NOT NULL
),
b_deals AS MATERIALIZED (
    SELECT u.deal_id, u.deal_class, u.reporting_amount
    FROM dyno_crm.report_run_deals AS d
    CROSS JOIN LATERAL unnest(d.deal_ids, d.deal_classes, d.reporting_amounts)
        AS u (deal_id, deal_class, reporting_amount)
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id = %(run_b)s::uuid
      -- B's closed deals matter only if A had them open (to be won or lost).
      AND ((u.deal_class = 'OPEN' AND u.reporting_amount IS NOT NULL)
           OR (u.deal_class IN ('WON', 'LOST')
               AND u.deal_id IN (SELECT ad.deal_id FROM a_deals AS ad)))
),
steps AS (
    SELECT COALESCE(a.principal_type, b.principal_type) AS principal_type,
           COALESCE(a.principal_id, b.principal_id) AS principal_id,
           COALESCE(a.bucket, b.bucket) AS bucket,
           CASE WHEN a.deal_id IS NULL THEN 'entered'
                WHEN b.deal_class IN ('WON', 'LOST') THEN lower(b.deal_class)
                WHEN b.deal_class = 'OPEN' THEN 'changed'
                ELSE 'left' END AS step,
           a.reporting_amount AS a_amount, b.reporting_amount AS b_amount
    FROM (SELECT ao.*, ad.reporting_amount FROM a_open AS ao
          JOIN a_deals AS ad ON ad.deal_id = ao.deal_id) AS a
    FULL JOIN (SELECT bi.*, bd.deal_class, bd.reporting_amount FROM b_in AS bi
               JOIN b_deals AS bd ON bd.deal_id = bi.deal_id) AS b
           ON b.principal_type = a.principal_type AND b.principal_id = a.principal_id
          AND b.bucket = a.bucket AND b.deal_id = a.deal_id
    -- B's closed or open deals that were not open in A for this row are in no step.
    WHERE a.deal_id IS NOT NULL OR b.deal_class = 'OPEN'
),
per_row AS (
    SELECT s.principal_type, s.principal_id, s.bucket,
           COALESCE(SUM(s.a_amount) FILTER (WHERE s.step = 'won'), 0) AS won_amount,
           count(*) FILTER (WHERE s.step = 'won') AS won_count,
           COALESCE(SUM(s.a_amount) FILTER (WHERE s.step = 'lost'), 0) AS lost_amount,
           count(*) FILTER (WHERE s.step = 'lost') AS lost_count,
           COALESCE(SUM(s.a_amount) FILTER (WHERE s.step = 'left'), 0) AS left_amount,
           count(*) FILTER (WHERE s.step = 'left') AS left_count,
           COALESCE(SUM(s.b_amount) FILTER (WHERE s.step = 'entered'), 0) AS entered_amount,
           count(*) FILTER (WHERE s.step = 'entered') AS entered_count,
           COALESCE(SUM(s.b_amount - s.a_amount) FILTER (WHERE s.step = 'changed'), 0)
               AS changed_amount,
           count(*) FILTER (WHERE s.step = 'changed' AND s.b_amount <> s.a_amount)
               AS changed_count
    FROM steps AS s
    GROUP BY s.principal_type, s.principal_id, s.bucket
),
facts AS (
    SELECT f.run_id, f.principal_type, f.principal_id, f.principal_name, f.pipeline_id,
           f.pipeline_name,
           COALESCE(f.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket,
           f.target_amount, f.open_amount, f.open_count, f.coverage_ratio,
           f.remaining_target, f.remaining_coverage_ratio
    FROM dyno_crm.report_pipeline_coverage_fact AS f
    WHERE f.tenant_id = %(tenant_id)s::uuid
      AND f.run_id IN (%(run_a)s::uuid, %(run_b)s::uuid)
      AND (%(principal_type)s::text IS NULL OR f.principal_type = %(principal_type)s::text)
      AND (%(principal_id)s::uuid IS NULL OR f.principal_id = %(principal_id)s::uuid)
)
SELECT COALESCE(fb.principal_type, fa.principal_type) AS principal_type,
       COALESCE(fb.principal_id, fa.principal_id) AS principal_id,
       COALESCE(fb.principal_name, fa.principal_name) AS principal_name,
       COALESCE(fb.pipeline_id, fa.pipeline_id) AS pipeline_id,
       COALESCE(fb.pipeline_name, fa.pipeline_name) AS pipeline_name,
       fa.run_id IS NOT NULL AS in_a, fb.run_id IS NOT NULL AS in_b,
       COALESCE(fa.open_amount, 0) AS start_amount,
       COALESCE(p.won_amount, 0) AS won_amount, COALESCE(p.won_count, 0) AS won_count,
       COALESCE(p.lost_amount, 0) AS lost_amount, COALESCE(p.lost_count, 0) AS lost_count,
       COALESCE(p.left_amount, 0) AS left_amount, COALESCE(p.left_count, 0) AS left_count,
       COALESCE(p.entered_amount, 0) AS entered_amount,
       COALESCE(p.entered_count, 0) AS entered_count,
       COALESCE(p.changed_amount, 0) AS changed_amount,
       COALESCE(p.changed_count, 0) AS changed_count,
       COALESCE(fb.open_amount, 0) AS end_amount,
       COALESCE(fa.open_count, 0) AS start_count, COALESCE(fb.open_count, 0) AS end_count,
       fa.target_amount AS start_target_amount, fb.target_amount AS end_target_amount,
       fa.coverage_ratio AS start_coverage_ratio, fb.coverage_ratio AS end_coverage_ratio,
       fa.remaining_target AS start_remaining_target,
       fb.remaining_target AS end_remaining_target,
       fa.remaining_coverage_ratio AS start_remaining_coverage_ratio,
       fb.remaining_coverage_ratio AS end_remaining_coverage_ratio
FROM (SELECT * FROM facts WHERE run_id = %(run_a)s::uuid) AS fa
FULL JOIN (SELECT * FROM facts WHERE run_id = %(run_b)s::uuid) AS fb
       ON fb.principal_type = fa.principal_type AND fb.principal_id = fa.principal_id
      AND fb.bucket = fa.bucket
LEFT JOIN per_row AS p
       ON p.principal_type = COALESCE(fb.principal_type, fa.principal_type)
      AND p.principal_id = COALESCE(fb.principal_id, fa.principal_id)
      AND p.bucket = COALESCE(fb.bucket, fa.bucket)
ORDER BY 1, 3, 2, 5 NULLS FIRST, 4 NULLS FIRST;

-- name: movement_deals
-- The deals of each step (SPEC.md §11) with both runs' amount, date, stage and owner
-- (each as that run stored it), for `left` and `entered` why (from the other run's
-- drill-down: REASSIGNED, PIPELINE_CHANGED, UNDATED, NO_RATE, REOPENED; not in it at
-- all: OUT_OF_SCOPE, or DELETED when the deal is gone) and what the deal is like now
-- (the live deal table). The step rule is movement_rows'; `changed` lists only the
-- deals whose amount moved (the others add 0).
WITH a_all AS MATERIALIZED (
    SELECT u.*
    FROM dyno_crm.report_run_deals AS d
    CROSS JOIN LATERAL unnest(
        d.deal_ids, d.deal_names, d.pipeline_ids, d.pipeline_names, d.stage_names,
        d.deal_classes, d.amounts, d.currencies, d.reporting_amounts, d.placed_on,
        d.owner_user_ids
    ) AS u (deal_id, deal_name, pipeline_id, pipeline_name, stage_name, deal_class,
            amount, currency, reporting_amount, placed_on, owner_user_id)
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id = %(run_a)s::uuid
),
b_all AS MATERIALIZED (
    SELECT u.*
    FROM dyno_crm.report_run_deals AS d
    CROSS JOIN LATERAL unnest(
        d.deal_ids, d.deal_names, d.pipeline_ids, d.pipeline_names, d.stage_names,
        d.deal_classes, d.amounts, d.currencies, d.reporting_amounts, d.placed_on,
        d.owner_user_ids
    ) AS u (deal_id, deal_name, pipeline_id, pipeline_name, stage_name, deal_class,
            amount, currency, reporting_amount, placed_on, owner_user_id)
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id = %(run_b)s::uuid
),
credits AS MATERIALIZED (
    SELECT c.run_id, c.principal_type, c.principal_id, c.pipeline_id,
           COALESCE(c.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket,
           cr.deal_id
    FROM dyno_crm.report_run_credit AS c
    CROSS JOIN LATERAL unnest(c.deal_ids) AS cr (deal_id)
    WHERE c.tenant_id = %(tenant_id)s::uuid
      AND c.run_id IN (%(run_a)s::uuid, %(run_b)s::uuid)
      AND (%(principal_type)s::text IS NULL OR c.principal_type = %(principal_type)s::text)
      AND (%(principal_id)s::uuid IS NULL OR c.principal_id = %(principal_id)s::uuid)
),
a_open AS MATERIALIZED (
    SELECT c.*
    FROM credits AS c
    JOIN a_all AS ad ON ad.deal_id = c.deal_id
    WHERE c.run_id = %(run_a)s::uuid
      AND ad.deal_class = 'OPEN' AND ad.reporting_amount IS NOT NULL
),
b_in AS MATERIALIZED (
    SELECT c.*, bd.deal_class
    FROM credits AS c
    JOIN b_all AS bd ON bd.deal_id = c.deal_id
    WHERE c.run_id = %(run_b)s::uuid
      AND ((bd.deal_class = 'OPEN' AND bd.reporting_amount IS NOT NULL)
           OR (bd.deal_class IN ('WON', 'LOST')
               AND bd.deal_id IN (SELECT ao.deal_id FROM a_open AS ao)))
),
steps AS (
    SELECT COALESCE(a.principal_type, b.principal_type) AS principal_type,
           COALESCE(a.principal_id, b.principal_id) AS principal_id,
           COALESCE(a.pipeline_id, b.pipeline_id) AS pipeline_id,
           COALESCE(a.deal_id, b.deal_id) AS deal_id,
           CASE WHEN a.deal_id IS NULL THEN 'entered'
                WHEN b.deal_class IN ('WON', 'LOST') THEN lower(b.deal_class)
                WHEN b.deal_class = 'OPEN' THEN 'changed'
                ELSE 'left' END AS step
    FROM a_open AS a
    FULL JOIN b_in AS b
           ON b.principal_type = a.principal_type AND b.principal_id = a.principal_id
          AND b.bucket = a.bucket AND b.deal_id = a.deal_id
    WHERE a.deal_id IS NOT NULL OR b.deal_class = 'OPEN'
)
SELECT s.principal_type, s.principal_id, s.pipeline_id, s.step, s.deal_id,
       COALESCE(db.deal_name, da.deal_name, nw.name) AS deal_name,
       CASE s.step
           WHEN 'entered' THEN db.reporting_amount
           WHEN 'changed' THEN db.reporting_amount - da.reporting_amount
           ELSE -da.reporting_amount
       END AS movement_amount,
       CASE
           WHEN s.step = 'left' THEN
               CASE WHEN db.deal_id IS NULL AND nw.id IS NULL THEN 'DELETED'
                    WHEN db.deal_id IS NULL THEN 'OUT_OF_SCOPE'
                    WHEN db.deal_class = 'UNDATED' THEN 'UNDATED'
                    WHEN db.reporting_amount IS NULL THEN 'NO_RATE'
                    WHEN db.pipeline_id <> da.pipeline_id THEN 'PIPELINE_CHANGED'
                    ELSE 'REASSIGNED' END
           WHEN s.step = 'entered' THEN
               CASE WHEN da.deal_id IS NULL THEN 'OUT_OF_SCOPE'
                    WHEN da.deal_class = 'UNDATED' THEN 'UNDATED'
                    WHEN da.deal_class IN ('WON', 'LOST') THEN 'REOPENED'
                    WHEN da.reporting_amount IS NULL THEN 'NO_RATE'
                    WHEN da.pipeline_id <> db.pipeline_id THEN 'PIPELINE_CHANGED'
                    ELSE 'REASSIGNED' END
       END AS reason,
       da.deal_class AS a_class, da.reporting_amount AS a_amount, da.amount AS a_native_amount,
       da.currency AS a_currency, da.placed_on AS a_placed_on, da.stage_name AS a_stage_name,
       da.pipeline_name AS a_pipeline_name, da.owner_user_id AS a_owner_user_id,
       ua.name AS a_owner_name,
       db.deal_class AS b_class, db.reporting_amount AS b_amount, db.amount AS b_native_amount,
       db.currency AS b_currency, db.placed_on AS b_placed_on, db.stage_name AS b_stage_name,
       db.pipeline_name AS b_pipeline_name, db.owner_user_id AS b_owner_user_id,
       ub.name AS b_owner_name,
       nw.id IS NOT NULL AS now_exists, nw.amount AS now_native_amount,
       COALESCE(nw.currency, tn.currency) AS now_currency,
       CASE WHEN ps.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED')
            THEN COALESCE(nw.close_date, nw.expected_close_date)
            ELSE COALESCE(nw.expected_close_date, nw.close_date) END AS now_placed_on,
       ps.name AS now_stage_name, ps.stage_state AS now_stage_state,
       pn.name AS now_pipeline_name, nw.owned_by_user_id AS now_owner_user_id,
       un.name AS now_owner_name
FROM steps AS s
LEFT JOIN a_all AS da ON da.deal_id = s.deal_id
LEFT JOIN b_all AS db ON db.deal_id = s.deal_id
-- What the deal is like now: for the deals that left or entered only.
LEFT JOIN dyno_crm.deal AS nw
       ON s.step IN ('left', 'entered')
      AND nw.tenant_id = %(tenant_id)s::uuid AND nw.id = s.deal_id
LEFT JOIN dyno_crm.tenant AS tn ON nw.id IS NOT NULL AND tn.id = %(tenant_id)s::uuid
LEFT JOIN dyno_crm.pipeline_stage AS ps
       ON ps.tenant_id = %(tenant_id)s::uuid AND ps.id = nw.stage_id
LEFT JOIN dyno_crm.pipeline AS pn ON pn.tenant_id = %(tenant_id)s::uuid AND pn.id = nw.pipeline_id
LEFT JOIN dyno_crm.crm_user AS ua
       ON ua.tenant_id = %(tenant_id)s::uuid AND ua.id = da.owner_user_id
LEFT JOIN dyno_crm.crm_user AS ub
       ON ub.tenant_id = %(tenant_id)s::uuid AND ub.id = db.owner_user_id
LEFT JOIN dyno_crm.crm_user AS un
       ON un.tenant_id = %(tenant_id)s::uuid AND un.id = nw.owned_by_user_id
WHERE s.step <> 'changed' OR db.reporting_amount <> da.reporting_amount
ORDER BY s.principal_type, s.principal_id,
         COALESCE(s.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid),
         array_position(ARRAY['won', 'lost', 'left', 'entered', 'changed'], s.step),
         abs(CASE s.step WHEN 'entered' THEN db.reporting_amount
                         WHEN 'changed' THEN db.reporting_amount - da.reporting_amount
                         ELSE da.reporting_amount END) DESC,
         s.deal_id;
