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

-- name: input_floor
-- The least a batch with every metric must read: the deals the run's statement reads,
-- with their stages (the period's candidates, dated in it or undated, and the win
-- rate's lookback window of closed deals), counted, nothing computed.
SELECT count(*), SUM(COALESCE(d.amount, 0))
FROM dyno_crm.deal AS d
JOIN dyno_crm.pipeline_stage AS ps
  ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND ((COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
        AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date)
       OR (COALESCE(d.close_date, d.expected_close_date) >= %(period_start)s::date
           AND COALESCE(d.close_date, d.expected_close_date) < %(period_end)s::date)
       OR COALESCE(d.expected_close_date, d.close_date) IS NULL)
UNION ALL
SELECT count(*), SUM(COALESCE(d.amount, 0))
FROM dyno_crm.deal AS d
JOIN dyno_crm.pipeline_stage AS ps
  ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND ps.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED')
  AND COALESCE(d.close_date, d.expected_close_date) >= %(history_start)s::date
  AND COALESCE(d.close_date, d.expected_close_date) < %(period_start)s::date;

-- name: principal_floor
-- The least a single report must read: its principal's deals (owned or assigned), each
-- once, by the principal's indexes, with their stages, counted, nothing computed. (The
-- run reads them for the period and for the win rate's year, computes and stores.)
-- Sent specialized (sql.specialize) for a rep (`users`) or a team (`groups`), as the
-- run's statement is, so that only the principal's own indexes apply.
SELECT count(*), SUM(COALESCE(d.amount, 0)), max(ps.name)
FROM dyno_crm.deal AS d
JOIN dyno_crm.pipeline_stage AS ps
  ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND (false
       -- if users
       OR d.owned_by_user_id = %(principal_id)s::uuid
       OR d.assigned_user_id = %(principal_id)s::uuid
       -- end if
       -- if groups
       OR d.owned_by_group_id = %(principal_id)s::uuid
       OR d.assigned_group_id = %(principal_id)s::uuid
       -- end if
      );

-- name: write_drilldown_floor
-- The least a batch with its drill-down must write: a copy of a stored run (its
-- header, its deals, its credit rows and its fact rows; the same rows and bytes, with
-- their constraints, indexes and keys) under a new header, nothing computed.
WITH header AS (
    INSERT INTO dyno_crm.report_run
        (tenant_id, report_type, generated_at, period_start, period_end, parameters,
         credit_base_run_id, credit_chain)
    SELECT r.tenant_id, r.report_type, now(), r.period_start, r.period_end, r.parameters,
           r.credit_base_run_id, r.credit_chain
    FROM dyno_crm.report_run AS r
    WHERE r.tenant_id = %(tenant_id)s::uuid AND r.id = %(run_id)s::uuid
    RETURNING id
),
deals AS (
    INSERT INTO dyno_crm.report_run_deals
        (tenant_id, run_id, chunk, base_run_id, chain, removed_deal_ids, deal_ids, deal_names,
         pipeline_ids, pipeline_names, stage_ids, stage_names, deal_classes,
         forecast_categories, probabilities, amounts, currencies, reporting_amounts,
         weighted_amounts, placed_on, owner_user_ids, flags)
    SELECT d.tenant_id, h.id, d.chunk, d.base_run_id, d.chain, d.removed_deal_ids,
           d.deal_ids, d.deal_names, d.pipeline_ids, d.pipeline_names,
           d.stage_ids, d.stage_names, d.deal_classes, d.forecast_categories, d.probabilities,
           d.amounts, d.currencies, d.reporting_amounts, d.weighted_amounts, d.placed_on,
           d.owner_user_ids, d.flags
    FROM dyno_crm.report_run_deals AS d, header AS h
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.run_id = %(run_id)s::uuid
    RETURNING run_id
),
credits AS (
    INSERT INTO dyno_crm.report_run_credit
        (tenant_id, run_id, principal_type, principal_id, pipeline_id, deal_ids,
         credit_reasons, deal_chunks, removed)
    SELECT c.tenant_id, h.id, c.principal_type, c.principal_id, c.pipeline_id, c.deal_ids,
           c.credit_reasons, c.deal_chunks, c.removed
    FROM dyno_crm.report_run_credit AS c, header AS h
    WHERE c.tenant_id = %(tenant_id)s::uuid AND c.run_id = %(run_id)s::uuid
    RETURNING run_id
)
-- (its metric columns, {metrics} and {fact_metrics}, are the registry's:
-- pipeline_coverage.metrics, composed with psycopg.sql by bench/run.py)
INSERT INTO dyno_crm.report_pipeline_coverage_fact
    (run_id, tenant_id, period_start, period_end, principal_type, principal_id,
     pipeline_id, principal_name, pipeline_name, flags, target_overlaps, {metrics})
SELECT h.id, f.tenant_id, f.period_start, f.period_end, f.principal_type, f.principal_id,
       f.pipeline_id, f.principal_name, f.pipeline_name, f.flags, f.target_overlaps,
       {fact_metrics}
FROM dyno_crm.report_pipeline_coverage_fact AS f, header AS h
WHERE f.tenant_id = %(tenant_id)s::uuid AND f.run_id = %(run_id)s::uuid
RETURNING run_id;

-- name: previous_batch
-- The batch as it was before the drill-down and the §8 metrics (the seed's three
-- columns only), kept here to time today's batch against it in the same run.
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

-- name: a_day_of_changes
-- A day in a CRM, between two daily snapshots the storage figures compare: of the
-- deals dated in the period, one in fifty changes (deterministically, by id and
-- %(day)s) — re-valued (half of them), moved to another stage, handed to its
-- assignee, deleted — and as many new deals as deleted arrive (copies, new ids).
WITH dated AS (
    SELECT d.id, abs(hashtext(d.id::text || %(day)s::text)) %% 1000 AS pick
    FROM dyno_crm.deal AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
      AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date
),
-- (Data-modifying CTEs run whether or not anything reads them.)
revalued AS (
    UPDATE dyno_crm.deal AS d SET amount = ROUND(COALESCE(d.amount, 1000) * 1.1, 2)
    FROM dated AS x
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = x.id AND x.pick < 10
    RETURNING d.id
),
staged AS (
    UPDATE dyno_crm.deal AS d
    SET stage_id = (SELECT ps.id FROM dyno_crm.pipeline_stage AS ps
                    WHERE ps.tenant_id = d.tenant_id AND ps.pipeline_id = d.pipeline_id
                      AND ps.id <> d.stage_id
                    ORDER BY ps.position LIMIT 1)
    FROM dated AS x
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = x.id AND x.pick BETWEEN 10 AND 13
    RETURNING d.id
),
handed AS (
    UPDATE dyno_crm.deal AS d
    SET owned_by_user_id = COALESCE(d.assigned_user_id, d.owned_by_user_id)
    FROM dated AS x
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = x.id AND x.pick BETWEEN 14 AND 15
    RETURNING d.id
),
deleted AS (
    DELETE FROM dyno_crm.deal AS d USING dated AS x
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = x.id AND x.pick BETWEEN 16 AND 17
    RETURNING d.id
)
INSERT INTO dyno_crm.deal
    (tenant_id, id, pipeline_id, stage_id, name, amount, expected_close_date,
     owned_by_user_id, assigned_user_id, owned_by_group_id, assigned_group_id)
SELECT d.tenant_id, gen_random_uuid(), d.pipeline_id, d.stage_id, d.name || ' (new)', d.amount,
       d.expected_close_date, d.owned_by_user_id, d.assigned_user_id, d.owned_by_group_id,
       d.assigned_group_id
FROM dyno_crm.deal AS d
JOIN dated AS x ON x.id = d.id
WHERE d.tenant_id = %(tenant_id)s::uuid AND x.pick BETWEEN 18 AND 19;

-- name: a_week_of_changes
-- A week in a CRM, between two runs the movement benchmark compares: of the deals
-- dated in the period, about one in ten changes (deterministically, by id) — won,
-- lost, slipped to the next quarter, re-valued, handed to its assignee, deleted — and
-- the new deals of the week arrive (copies of a few, with new ids).
WITH dated AS (
    SELECT d.id, d.pipeline_id, abs(hashtext(d.id::text)) %% 60 AS pick
    FROM dyno_crm.deal AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
      AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date
),
-- (Data-modifying CTEs run whether or not anything reads them.)
closed AS (
    UPDATE dyno_crm.deal AS d
    SET stage_id = (SELECT ps.id FROM dyno_crm.pipeline_stage AS ps
                    WHERE ps.tenant_id = d.tenant_id AND ps.pipeline_id = d.pipeline_id
                      AND ps.stage_state = CASE WHEN x.pick = 0 THEN 'DONE_SUCCESS'
                                                ELSE 'DONE_FAILED' END
                    ORDER BY ps.position LIMIT 1),
        close_date = %(period_start)s::date + 3
    FROM dated AS x
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = x.id AND x.pick IN (0, 1)
    RETURNING d.id
),
moved AS (
    UPDATE dyno_crm.deal AS d
    SET expected_close_date = CASE WHEN x.pick = 2 THEN %(period_end)s::date + 10
                                   ELSE d.expected_close_date END,
        amount = CASE WHEN x.pick = 3 THEN ROUND(d.amount * 0.7, 2) ELSE d.amount END,
        owned_by_user_id = CASE WHEN x.pick = 4 THEN d.assigned_user_id
                                ELSE d.owned_by_user_id END
    FROM dated AS x
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = x.id AND x.pick IN (2, 3, 4)
    RETURNING d.id
),
deleted AS (
    DELETE FROM dyno_crm.deal AS d
    USING dated AS x
    WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = x.id AND x.pick = 5
    RETURNING d.id
)
INSERT INTO dyno_crm.deal
    (tenant_id, id, pipeline_id, stage_id, name, amount, expected_close_date, close_date,
     owned_by_user_id, assigned_user_id, owned_by_group_id, assigned_group_id)
SELECT d.tenant_id, gen_random_uuid(), d.pipeline_id, d.stage_id, d.name || ' (new)',
       d.amount, d.expected_close_date, d.close_date, d.owned_by_user_id,
       d.assigned_user_id, d.owned_by_group_id, d.assigned_group_id
FROM dyno_crm.deal AS d
JOIN dated AS x ON x.id = d.id AND x.pick = 6
WHERE d.tenant_id = %(tenant_id)s::uuid;
