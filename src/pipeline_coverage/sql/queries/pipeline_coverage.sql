-- name: check_scope
-- Whether the tenant, the principal and the pipeline (when given) exist in that tenant.
SELECT
    EXISTS (SELECT 1 FROM dyno_crm.tenant AS t WHERE t.id = %(tenant_id)s::uuid) AS tenant_exists,
    CASE %(principal_type)s::text
        WHEN 'USER' THEN EXISTS (
            SELECT 1 FROM dyno_crm.crm_user AS u
            WHERE u.tenant_id = %(tenant_id)s::uuid AND u.id = %(principal_id)s::uuid)
        WHEN 'GROUP' THEN EXISTS (
            SELECT 1 FROM dyno_crm.crm_group AS g
            WHERE g.tenant_id = %(tenant_id)s::uuid AND g.id = %(principal_id)s::uuid)
        ELSE true
    END AS principal_exists,
    %(pipeline_id)s::uuid IS NULL OR EXISTS (
        SELECT 1 FROM dyno_crm.pipeline AS p
        WHERE p.tenant_id = %(tenant_id)s::uuid AND p.id = %(pipeline_id)s::uuid
    ) AS pipeline_exists;

-- name: insert_run
-- Writes a run header (the seed's report_run row) and returns its id.
INSERT INTO dyno_crm.report_run
    (tenant_id, report_type, generated_at, period_start, period_end, parameters)
VALUES
    (%(tenant_id)s::uuid, 'PIPELINE_COVERAGE', now(), %(period_start)s::date,
     %(period_end)s::date, %(parameters)s::jsonb)
RETURNING id;

-- name: insert_single_fact
-- Computes one principal's coverage (SPEC.md §1; the seed's query, made valid) and stores it.
WITH target AS (
    SELECT SUM(st.target_amount) AS target_amount
    FROM dyno_crm.sales_target AS st
    WHERE st.tenant_id = %(tenant_id)s::uuid
      AND st.principal_type = %(principal_type)s::text
      AND st.principal_id = %(principal_id)s::uuid
      AND st.period_start = %(period_start)s::date
      AND st.period_end = %(period_end)s::date
      AND (%(pipeline_id)s::uuid IS NULL OR st.pipeline_id = %(pipeline_id)s::uuid)
),
open_deals AS (
    SELECT COALESCE(SUM(COALESCE(d.amount, 0)), 0) AS open_amount
    FROM dyno_crm.deal AS d
    JOIN dyno_crm.pipeline_stage AS ps
      ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND (%(pipeline_id)s::uuid IS NULL OR d.pipeline_id = %(pipeline_id)s::uuid)
      AND ps.stage_state NOT IN ('DONE_SUCCESS', 'DONE_FAILED')
      AND COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
      AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date
      AND (
          (%(principal_type)s::text = 'USER'
           AND (d.owned_by_user_id = %(principal_id)s::uuid
                OR d.assigned_user_id = %(principal_id)s::uuid))
          OR (%(principal_type)s::text = 'GROUP'
           AND (d.owned_by_group_id = %(principal_id)s::uuid
                OR d.assigned_group_id = %(principal_id)s::uuid))
      )
)
INSERT INTO dyno_crm.report_pipeline_coverage_fact
    (run_id, tenant_id, period_start, period_end, principal_type, principal_id,
     pipeline_id, target_amount, open_amount, coverage_ratio)
SELECT
    %(run_id)s::uuid,
    %(tenant_id)s::uuid,
    %(period_start)s::date,
    %(period_end)s::date,
    %(principal_type)s::text,
    %(principal_id)s::uuid,
    %(pipeline_id)s::uuid,
    t.target_amount,
    o.open_amount,
    CASE WHEN t.target_amount IS NULL OR t.target_amount = 0 THEN NULL
         ELSE ROUND(o.open_amount / t.target_amount, 4)
    END
FROM target AS t
CROSS JOIN open_deals AS o;

-- name: get_run
-- One run's header, looked up by id (and tenant, when the caller scopes it).
SELECT r.id, r.tenant_id, tn.name, r.report_type, r.generated_at, r.period_start,
       r.period_end, r.parameters::text
FROM dyno_crm.report_run AS r
JOIN dyno_crm.tenant AS tn ON tn.id = r.tenant_id
WHERE r.id = %(run_id)s::uuid
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: get_run_rows
-- A run's fact rows with the principals' and pipelines' current names.
SELECT f.principal_type, f.principal_id,
       COALESCE(u.name, g.name) AS principal_name,
       f.pipeline_id, p.name AS pipeline_name,
       f.target_amount, f.open_amount, f.coverage_ratio
FROM dyno_crm.report_pipeline_coverage_fact AS f
LEFT JOIN dyno_crm.crm_user AS u
       ON f.principal_type = 'USER' AND u.tenant_id = f.tenant_id AND u.id = f.principal_id
LEFT JOIN dyno_crm.crm_group AS g
       ON f.principal_type = 'GROUP' AND g.tenant_id = f.tenant_id AND g.id = f.principal_id
LEFT JOIN dyno_crm.pipeline AS p
       ON p.tenant_id = f.tenant_id AND p.id = f.pipeline_id
WHERE f.tenant_id = %(tenant_id)s::uuid
  AND f.run_id = %(run_id)s::uuid
ORDER BY f.coverage_ratio DESC NULLS LAST, f.open_amount DESC, f.principal_type,
         principal_name, f.principal_id, pipeline_name NULLS FIRST, f.pipeline_id;

-- name: list_runs
-- Stored runs, newest first, with their row counts; optionally one tenant's, one
-- period's or one mode's, and (keyset pagination) only those before a cursor.
SELECT r.id, r.tenant_id, tn.name, r.report_type, r.generated_at, r.period_start,
       r.period_end, r.parameters::text,
       (SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact AS f
        WHERE f.tenant_id = r.tenant_id AND f.run_id = r.id) AS row_count
FROM dyno_crm.report_run AS r
JOIN dyno_crm.tenant AS tn ON tn.id = r.tenant_id
WHERE (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid)
  AND (%(period_start)s::date IS NULL OR r.period_start = %(period_start)s::date)
  AND (%(period_end)s::date IS NULL OR r.period_end = %(period_end)s::date)
  AND (%(mode)s::text IS NULL OR r.parameters ->> 'mode' = %(mode)s::text)
  AND (%(before_at)s::timestamptz IS NULL
       OR (r.generated_at, r.id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY r.generated_at DESC, r.id DESC
LIMIT %(limit)s::integer;

-- name: principal_history
-- One principal's rows across the tenant's stored runs for one period, oldest first
-- (rows for all pipelines, or for the one pipeline asked for).
SELECT r.id, r.generated_at, f.pipeline_id, f.target_amount, f.open_amount,
       f.coverage_ratio
FROM dyno_crm.report_pipeline_coverage_fact AS f
JOIN dyno_crm.report_run AS r ON r.tenant_id = f.tenant_id AND r.id = f.run_id
WHERE f.tenant_id = %(tenant_id)s::uuid
  AND f.principal_type = %(principal_type)s::text
  AND f.principal_id = %(principal_id)s::uuid
  AND f.period_start = %(period_start)s::date
  AND f.period_end = %(period_end)s::date
  AND f.pipeline_id IS NOT DISTINCT FROM %(pipeline_id)s::uuid
ORDER BY r.generated_at, r.id, f.pipeline_id NULLS FIRST;

-- name: insert_batch_facts
-- Computes every in-scope principal's coverage (SPEC.md §5) in one pass and stores the rows.
-- Rows are keyed by a bucket: the pipeline (as text) when by_pipeline, else the report's
-- pipeline filter; '' stands for "no pipeline", a value no pipeline id can take, so
-- that every join stays a plain (hash) equality.
WITH open_deals AS (
    -- Each deal counts once per principal: an assignee only when it is not the owner.
    SELECT COALESCE(d.amount, 0) AS amount,
           d.owned_by_user_id AS owner_user,
           NULLIF(d.assigned_user_id, d.owned_by_user_id) AS assignee_user,
           d.owned_by_group_id AS owner_group,
           NULLIF(d.assigned_group_id, d.owned_by_group_id) AS assignee_group,
           COALESCE((CASE WHEN %(by_pipeline)s::boolean THEN d.pipeline_id
                          ELSE %(pipeline_id)s::uuid END)::text, '') AS bucket
    FROM dyno_crm.deal AS d
    JOIN dyno_crm.pipeline_stage AS ps
      ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND (%(pipeline_id)s::uuid IS NULL OR d.pipeline_id = %(pipeline_id)s::uuid)
      AND ps.stage_state NOT IN ('DONE_SUCCESS', 'DONE_FAILED')
      AND COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
      AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date
),
open_sets AS (
    -- One pass, summed four ways at once; in each grouping set only its own key is set.
    SELECT CASE WHEN GROUPING(od.owner_group) = 0 OR GROUPING(od.assignee_group) = 0
                THEN 'GROUP' ELSE 'USER' END AS principal_type,
           COALESCE(od.owner_user, od.assignee_user, od.owner_group, od.assignee_group)
               AS principal_id,
           od.bucket,
           SUM(od.amount) AS open_amount
    FROM open_deals AS od
    GROUP BY GROUPING SETS ((od.bucket, od.owner_user), (od.bucket, od.assignee_user),
                            (od.bucket, od.owner_group), (od.bucket, od.assignee_group))
),
open_sums AS (
    -- A rep's deals as owner and as assignee are disjoint sets: add them up.
    SELECT os.principal_type, os.principal_id, os.bucket, SUM(os.open_amount) AS open_amount
    FROM open_sets AS os
    WHERE os.principal_id IS NOT NULL
    GROUP BY 1, 2, 3
),
target_rows AS (
    SELECT st.principal_type::text AS principal_type, st.principal_id, st.pipeline_id,
           st.target_amount
    FROM dyno_crm.sales_target AS st
    WHERE st.tenant_id = %(tenant_id)s::uuid
      AND st.period_start = %(period_start)s::date
      AND st.period_end = %(period_end)s::date
      AND (%(pipeline_id)s::uuid IS NULL OR st.pipeline_id = %(pipeline_id)s::uuid)
),
targets AS (
    -- By pipeline, a pipeline-less target belongs to no pipeline's row.
    SELECT tr.principal_type, tr.principal_id,
           COALESCE((CASE WHEN %(by_pipeline)s::boolean THEN tr.pipeline_id
                          ELSE %(pipeline_id)s::uuid END)::text, '') AS bucket,
           SUM(tr.target_amount) AS target_amount
    FROM target_rows AS tr
    WHERE NOT %(by_pipeline)s::boolean OR tr.pipeline_id IS NOT NULL
    GROUP BY 1, 2, 3
),
principals AS (
    SELECT 'USER' AS principal_type, u.id AS principal_id
    FROM dyno_crm.crm_user AS u
    WHERE u.tenant_id = %(tenant_id)s::uuid AND u.is_active
    UNION
    SELECT 'GROUP', g.id
    FROM dyno_crm.crm_group AS g
    WHERE g.tenant_id = %(tenant_id)s::uuid
    UNION
    SELECT tr.principal_type, tr.principal_id FROM target_rows AS tr
    UNION
    SELECT os.principal_type, os.principal_id FROM open_sums AS os
),
buckets AS (
    SELECT p.id::text AS bucket
    FROM dyno_crm.pipeline AS p
    WHERE %(by_pipeline)s::boolean
      AND p.tenant_id = %(tenant_id)s::uuid
      AND (%(pipeline_id)s::uuid IS NULL OR p.id = %(pipeline_id)s::uuid)
    UNION ALL
    SELECT COALESCE(%(pipeline_id)s::uuid::text, '')
    WHERE NOT %(by_pipeline)s::boolean
)
INSERT INTO dyno_crm.report_pipeline_coverage_fact
    (run_id, tenant_id, period_start, period_end, principal_type, principal_id,
     pipeline_id, target_amount, open_amount, coverage_ratio)
SELECT
    %(run_id)s::uuid,
    %(tenant_id)s::uuid,
    %(period_start)s::date,
    %(period_end)s::date,
    pr.principal_type,
    pr.principal_id,
    NULLIF(b.bucket, '')::uuid,
    t.target_amount,
    COALESCE(o.open_amount, 0),
    CASE WHEN t.target_amount IS NULL OR t.target_amount = 0 THEN NULL
         ELSE ROUND(COALESCE(o.open_amount, 0) / t.target_amount, 4)
    END
FROM principals AS pr
CROSS JOIN buckets AS b
LEFT JOIN targets AS t
       ON t.principal_type = pr.principal_type AND t.principal_id = pr.principal_id
      AND t.bucket = b.bucket
LEFT JOIN open_sums AS o
       ON o.principal_type = pr.principal_type AND o.principal_id = pr.principal_id
      AND o.bucket = b.bucket;

-- name: prune_runs
-- Deletes whole runs older than the cut-off (facts cascade); counts runs and fact rows.
WITH gone AS (
    DELETE FROM dyno_crm.report_run AS r
    WHERE r.generated_at < now() - make_interval(days => %(older_than_days)s::integer)
      AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid)
    RETURNING r.tenant_id, r.id
)
SELECT
    (SELECT count(*) FROM gone) AS runs,
    (SELECT count(*) FROM dyno_crm.report_pipeline_coverage_fact AS f
     JOIN gone AS g ON f.tenant_id = g.tenant_id AND f.run_id = g.id) AS fact_rows;
