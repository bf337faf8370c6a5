-- name: observations
-- Coverage calibration's observations (SPEC.md §14), per past quarter and week of the
-- quarter: for each principal of the type asked for, its remaining coverage in the
-- last run of that week, and whether the quarter ended with won >= target (the
-- quarter's last run with as_of on or after its end). Only the tenant's batch runs of
-- exactly one of the quarters asked for, for every pipeline, made with the roll-up
-- and target matching asked for (the tenant's defaults). A row counts when it has a
-- quota still to win at week w (remaining_target > 0) and a target at the end. One
-- line per quarter and week, its observations as two parallel arrays (a quarter's
-- thousands of rows travel as two values, not as thousands of lines).
WITH quarter_runs AS (
    SELECT r.id, r.generated_at, r.period_start, r.period_end,
           COALESCE((r.parameters ->> 'as_of')::date,
                    (r.generated_at AT TIME ZONE 'UTC')::date) AS as_of
    FROM dyno_crm.report_run AS r
    JOIN unnest(%(starts)s::date[], %(ends)s::date[]) AS q (period_start, period_end)
      ON q.period_start = r.period_start AND q.period_end = r.period_end
    WHERE r.tenant_id = %(tenant_id)s::uuid
      AND r.report_type = 'PIPELINE_COVERAGE'
      AND r.parameters ->> 'mode' = 'batch'
      AND r.parameters ->> 'pipeline_id' IS NULL
      AND NOT COALESCE((r.parameters ->> 'by_pipeline')::boolean, false)
      AND COALESCE(r.parameters ->> 'target_match', 'exact') = %(target_match)s::text
      AND COALESCE((r.parameters ->> 'rollup')::boolean, false) = %(rollup)s::boolean
),
weekly AS (
    -- Each week's last run (latest as_of, then latest generated), w = 1..13 (the
    -- quarter's last days, past 13 full weeks, belong to week 13).
    SELECT DISTINCT ON (w.period_start, w.week) w.id, w.period_start, w.week
    FROM (
        SELECT qr.*, LEAST((qr.as_of - qr.period_start) / 7 + 1, 13) AS week
        FROM quarter_runs AS qr
        WHERE qr.as_of >= qr.period_start AND qr.as_of < qr.period_end
    ) AS w
    ORDER BY w.period_start, w.week, w.as_of DESC, w.generated_at DESC, w.id DESC
),
closing AS (
    -- The quarter's outcome: its last run on or after its end.
    SELECT DISTINCT ON (qr.period_start) qr.id, qr.period_start
    FROM quarter_runs AS qr
    WHERE qr.as_of >= qr.period_end
    ORDER BY qr.period_start, qr.as_of DESC, qr.generated_at DESC, qr.id DESC
),
outcomes AS MATERIALIZED (
    -- Each closing run's rows, read by the run's index (a lateral lookup per run).
    SELECT c.period_start, o.principal_id, o.hit
    FROM closing AS c
    CROSS JOIN LATERAL (
        SELECT fo.principal_id, fo.won_amount >= fo.target_amount AS hit
        FROM dyno_crm.report_pipeline_coverage_fact AS fo
        WHERE fo.tenant_id = %(tenant_id)s::uuid AND fo.run_id = c.id
          AND fo.principal_type = %(principal_type)s::text AND fo.pipeline_id IS NULL
          AND fo.target_amount > 0 AND fo.won_amount IS NOT NULL
    ) AS o
),
observed AS MATERIALIZED (
    -- Each week's run's rows with a quota still to win, read by the run's index.
    SELECT w.period_start, w.week, f.principal_id, f.coverage
    FROM weekly AS w
    CROSS JOIN LATERAL (
        SELECT fw.principal_id, fw.remaining_coverage_ratio::float8 AS coverage
        FROM dyno_crm.report_pipeline_coverage_fact AS fw
        WHERE fw.tenant_id = %(tenant_id)s::uuid AND fw.run_id = w.id
          AND fw.principal_type = %(principal_type)s::text AND fw.pipeline_id IS NULL
          AND fw.remaining_target > 0 AND fw.remaining_coverage_ratio IS NOT NULL
    ) AS f
)
-- (joined by hash: `calibrate` turns nested loops off for this statement, whose
-- estimates of the two lists are guesses)
SELECT ob.period_start, ob.week,
       array_agg(ob.coverage ORDER BY ob.principal_id) AS coverages,
       array_agg(oc.hit ORDER BY ob.principal_id) AS hits
FROM observed AS ob
JOIN outcomes AS oc ON oc.period_start = ob.period_start AND oc.principal_id = ob.principal_id
GROUP BY ob.period_start, ob.week
ORDER BY ob.period_start, ob.week;

-- name: quarter_runs
-- Per quarter asked for: how many of the tenant's batch runs (with the options asked
-- for) fall in it, and whether one closes it (as_of on or after its end) — what
-- `calibration` reports about the quarters it could not use.
SELECT q.period_start, q.period_end,
       count(r.id) FILTER (WHERE COALESCE((r.parameters ->> 'as_of')::date,
                                          (r.generated_at AT TIME ZONE 'UTC')::date)
                                 < q.period_end) AS runs,
       count(r.id) FILTER (WHERE COALESCE((r.parameters ->> 'as_of')::date,
                                          (r.generated_at AT TIME ZONE 'UTC')::date)
                                 >= q.period_end) AS closing_runs
FROM unnest(%(starts)s::date[], %(ends)s::date[]) AS q (period_start, period_end)
LEFT JOIN dyno_crm.report_run AS r
       ON r.tenant_id = %(tenant_id)s::uuid
      AND r.period_start = q.period_start AND r.period_end = q.period_end
      AND r.report_type = 'PIPELINE_COVERAGE'
      AND r.parameters ->> 'mode' = 'batch'
      AND r.parameters ->> 'pipeline_id' IS NULL
      AND NOT COALESCE((r.parameters ->> 'by_pipeline')::boolean, false)
      AND COALESCE(r.parameters ->> 'target_match', 'exact') = %(target_match)s::text
      AND COALESCE((r.parameters ->> 'rollup')::boolean, false) = %(rollup)s::boolean
GROUP BY q.period_start, q.period_end
ORDER BY q.period_start;

-- name: delete_fits
-- A tenant's fits of one principal type, before `calibration` writes them anew.
DELETE FROM dyno_crm.calibration_fit AS cf
WHERE cf.tenant_id = %(tenant_id)s::uuid AND cf.principal_type = %(principal_type)s::text;

-- name: insert_fit
-- One week's fit (or, with reason, why there is none).
INSERT INTO dyno_crm.calibration_fit
    (tenant_id, principal_type, week, fitted_at, rollup, target_match, quarters,
     last_quarter_end, observations, hits, first_week, last_week, intercept, slope,
     var_intercept, covariance, var_slope, coverage_50, coverage_80, reason)
VALUES
    (%(tenant_id)s::uuid, %(principal_type)s::text, %(week)s::smallint, now(),
     %(rollup)s::boolean, %(target_match)s::text, %(quarters)s::integer,
     %(last_quarter_end)s::date, %(observations)s::integer, %(hits)s::integer,
     %(first_week)s::smallint, %(last_week)s::smallint, %(intercept)s::float8,
     %(slope)s::float8, %(var_intercept)s::float8, %(covariance)s::float8,
     %(var_slope)s::float8, %(coverage_50)s::numeric, %(coverage_80)s::numeric,
     %(reason)s::text);

-- name: week_fits
-- The tenant's fits at one week of the quarter, of each principal type: what a run
-- made at that week applies to its rows.
SELECT cf.principal_type, cf.fitted_at, cf.rollup, cf.target_match, cf.quarters,
       cf.last_quarter_end, cf.observations, cf.hits, cf.first_week, cf.last_week,
       cf.intercept, cf.slope, cf.var_intercept, cf.covariance, cf.var_slope,
       cf.coverage_50, cf.coverage_80, cf.reason
FROM dyno_crm.calibration_fit AS cf
WHERE cf.tenant_id = %(tenant_id)s::uuid AND cf.week = %(week)s::smallint
ORDER BY cf.principal_type;
