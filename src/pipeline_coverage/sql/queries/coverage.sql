-- name: check_scope
-- Whether the tenant, the principal and the pipeline (when given) exist in that
-- tenant; and the tenant's reporting currency.
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
    ) AS pipeline_exists,
    (SELECT t.currency FROM dyno_crm.tenant AS t WHERE t.id = %(tenant_id)s::uuid) AS currency;

-- name: insert_coverage
-- A run's drill-down and fact rows (SPEC.md §7, §8), in one statement, for one
-- principal (principal_id set) or everyone in scope (principal_id NULL), per pipeline
-- when by_pipeline. The credit rule — which deal counts for whom, and why — is
-- written once, in `credited`; the fact rows are sums over exactly the drill-down
-- rows this statement stores (the RETURNING of both inserts), so every amount and
-- count of a row equals its deals, by construction.
WITH candidate AS (
    -- The tenant's deals a run may count: in the pipeline scope; for one principal,
    -- only deals naming it (the owner/assignee indexes find them); dated in the
    -- period or the win rate's lookback window, or undated. One pass, no rule yet.
    SELECT d.id AS deal_id, d.name AS deal_name, d.pipeline_id, d.stage_id, d.amount,
           d.owned_by_user_id, d.assigned_user_id, d.owned_by_group_id, d.assigned_group_id,
           ps.name AS stage_name, ps.probability,
           COALESCE(d.forecast_category, ps.forecast_category, 'PIPELINE') AS forecast_category,
           ps.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED') AS done,
           ps.stage_state = 'DONE_SUCCESS' AS won,
           -- An open deal is placed by its expected close date, a closed one by the
           -- date it closed (SPEC.md §7).
           CASE WHEN ps.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED')
                THEN COALESCE(d.close_date, d.expected_close_date)
                ELSE COALESCE(d.expected_close_date, d.close_date)
           END AS placed_on
    FROM dyno_crm.deal AS d
    JOIN dyno_crm.pipeline_stage AS ps
      ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND (%(pipeline_id)s::uuid IS NULL OR d.pipeline_id = %(pipeline_id)s::uuid)
      AND (%(principal_id)s::uuid IS NULL
           OR (%(principal_type)s::text = 'USER'
               AND (d.owned_by_user_id = %(principal_id)s::uuid
                    OR d.assigned_user_id = %(principal_id)s::uuid))
           OR (%(principal_type)s::text = 'GROUP'
               AND (d.owned_by_group_id = %(principal_id)s::uuid
                    OR d.assigned_group_id = %(principal_id)s::uuid)))
      AND ((COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
            AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date)
           OR (COALESCE(d.close_date, d.expected_close_date) >= %(history_start)s::date
               AND COALESCE(d.close_date, d.expected_close_date) < %(period_end)s::date)
           OR COALESCE(d.expected_close_date, d.close_date) IS NULL)
),
classified AS (
    -- SPEC.md §7's classes; HISTORY_* are the lookback window's closed deals, which
    -- only the win rate counts (they are no part of the drill-down).
    SELECT c.*,
           CASE
               WHEN NOT c.done AND c.placed_on IS NULL THEN 'UNDATED'
               WHEN c.placed_on >= %(period_start)s::date AND c.placed_on < %(period_end)s::date
                   THEN CASE WHEN NOT c.done THEN 'OPEN' WHEN c.won THEN 'WON' ELSE 'LOST' END
               WHEN c.done AND c.placed_on >= %(history_start)s::date
                        AND c.placed_on < %(period_start)s::date
                   THEN CASE WHEN c.won THEN 'HISTORY_WON' ELSE 'HISTORY_LOST' END
           END AS deal_class,
           CASE WHEN %(by_pipeline)s::boolean THEN c.pipeline_id ELSE %(pipeline_id)s::uuid END
               AS bucket
    FROM candidate AS c
),
credited AS (
    -- THE CREDIT RULE (SPEC.md §7): a user for the deals it owns or is assigned, a
    -- group for the deals it owns or is assigned; once per principal, with the first
    -- reason that applies (an assignee who is also the owner is credited as OWNER).
    SELECT cr.principal_type, cr.principal_id, cr.credit_reason, k.deal_id, k.deal_class,
           k.bucket
    FROM classified AS k
    CROSS JOIN LATERAL (VALUES
        ('USER', k.owned_by_user_id, 'OWNER'),
        ('USER', NULLIF(k.assigned_user_id, k.owned_by_user_id), 'ASSIGNEE'),
        ('GROUP', k.owned_by_group_id, 'OWNER_GROUP'),
        ('GROUP', NULLIF(k.assigned_group_id, k.owned_by_group_id), 'ASSIGNED_GROUP')
    ) AS cr (principal_type, principal_id, credit_reason)
    WHERE k.deal_class IS NOT NULL
      AND cr.principal_id IS NOT NULL
      AND (%(principal_id)s::uuid IS NULL
           OR (cr.principal_type = %(principal_type)s::text
               AND cr.principal_id = %(principal_id)s::uuid))
),
stored_deals AS (
    -- The drill-down's deals: each credited deal of the period (and each undated open
    -- one) once, with what the run saw of it.
    INSERT INTO dyno_crm.report_run_deal
        (tenant_id, run_id, deal_id, deal_name, pipeline_id, pipeline_name, stage_id,
         stage_name, deal_class, forecast_category, probability, amount, currency,
         reporting_amount, weighted_amount, placed_on, owner_user_id, flags)
    SELECT %(tenant_id)s::uuid, %(run_id)s::uuid, k.deal_id, k.deal_name, k.pipeline_id,
           p.name, k.stage_id, k.stage_name, k.deal_class, k.forecast_category,
           k.probability, k.amount, %(currency)s::text,
           COALESCE(k.amount, 0),
           CASE WHEN k.deal_class = 'OPEN'
                THEN ROUND(COALESCE(k.amount, 0) * COALESCE(k.probability, 0) / 100.0, 2)
                ELSE 0 END,
           k.placed_on, k.owned_by_user_id,
           array_remove(ARRAY[
               CASE WHEN k.deal_class = 'UNDATED' THEN 'UNDATED' END,
               CASE WHEN k.deal_class = 'OPEN' AND k.amount IS NULL THEN 'NO_AMOUNT' END,
               CASE WHEN k.deal_class = 'OPEN' AND k.probability IS NULL
                    THEN 'NO_PROBABILITY' END,
               CASE WHEN k.deal_class = 'OPEN' AND k.placed_on < %(as_of)s::date
                    THEN 'PAST_DUE' END
           ], NULL)
    FROM classified AS k
    JOIN dyno_crm.pipeline AS p ON p.tenant_id = %(tenant_id)s::uuid AND p.id = k.pipeline_id
    WHERE k.deal_class IN ('OPEN', 'WON', 'LOST', 'UNDATED')
      AND k.deal_id IN (SELECT cd.deal_id FROM credited AS cd)
    RETURNING deal_id, deal_class, forecast_category, reporting_amount, weighted_amount, flags
),
stored_credits AS (
    -- Who each stored deal counts for, and why: one row per (principal, bucket).
    INSERT INTO dyno_crm.report_run_credit
        (tenant_id, run_id, principal_type, principal_id, pipeline_id, deal_ids,
         credit_reasons)
    SELECT %(tenant_id)s::uuid, %(run_id)s::uuid, cd.principal_type, cd.principal_id,
           cd.bucket, array_agg(cd.deal_id ORDER BY cd.deal_id),
           array_agg(cd.credit_reason ORDER BY cd.deal_id)
    FROM credited AS cd
    WHERE cd.deal_class IN ('OPEN', 'WON', 'LOST', 'UNDATED')
    GROUP BY cd.principal_type, cd.principal_id, cd.bucket
    RETURNING principal_type, principal_id, pipeline_id AS bucket, deal_ids
),
sums AS (
    -- Every amount and count of a row, from the stored drill-down rows.
    SELECT sc.principal_type, sc.principal_id, sc.bucket,
           count(*) FILTER (WHERE sd.deal_class = 'OPEN') AS open_count,
           COALESCE(SUM(sd.reporting_amount) FILTER (WHERE sd.deal_class = 'OPEN'), 0)
               AS open_amount,
           COALESCE(SUM(sd.weighted_amount) FILTER (WHERE sd.deal_class = 'OPEN'), 0)
               AS weighted_amount,
           COALESCE(SUM(sd.reporting_amount) FILTER (
               WHERE sd.deal_class = 'OPEN' AND sd.forecast_category = 'COMMIT'), 0)
               AS commit_amount,
           COALESCE(SUM(sd.reporting_amount) FILTER (
               WHERE sd.deal_class = 'OPEN' AND sd.forecast_category = 'BEST_CASE'), 0)
               AS best_case_amount,
           COALESCE(SUM(sd.reporting_amount) FILTER (
               WHERE sd.deal_class = 'OPEN' AND sd.forecast_category = 'PIPELINE'), 0)
               AS pipeline_amount,
           COALESCE(SUM(sd.reporting_amount) FILTER (
               WHERE sd.deal_class = 'OPEN' AND sd.forecast_category = 'OMITTED'), 0)
               AS omitted_amount,
           COALESCE(SUM(sd.reporting_amount) FILTER (WHERE sd.deal_class = 'WON'), 0)
               AS won_amount,
           count(*) FILTER (WHERE sd.deal_class = 'WON') AS won_count,
           COALESCE(SUM(sd.reporting_amount) FILTER (WHERE sd.deal_class = 'LOST'), 0)
               AS lost_amount,
           count(*) FILTER (WHERE sd.deal_class = 'LOST') AS lost_count,
           COALESCE(SUM(sd.reporting_amount) FILTER (
               WHERE sd.deal_class = 'OPEN' AND 'PAST_DUE' = ANY (sd.flags)), 0)
               AS past_due_amount,
           count(*) FILTER (WHERE sd.deal_class = 'OPEN' AND 'PAST_DUE' = ANY (sd.flags))
               AS past_due_count,
           COALESCE(SUM(sd.reporting_amount) FILTER (WHERE sd.deal_class = 'UNDATED'), 0)
               AS undated_amount,
           count(*) FILTER (WHERE sd.deal_class = 'UNDATED') AS undated_count
    FROM stored_credits AS sc
    CROSS JOIN LATERAL unnest(sc.deal_ids) AS u (deal_id)
    JOIN stored_deals AS sd ON sd.deal_id = u.deal_id
    GROUP BY sc.principal_type, sc.principal_id, sc.bucket
),
history AS (
    -- The win rate's closed deals before the period, by the same credit rule.
    SELECT cd.principal_type, cd.principal_id, cd.bucket,
           count(*) FILTER (WHERE cd.deal_class = 'HISTORY_WON') AS history_won_count,
           count(*) FILTER (WHERE cd.deal_class = 'HISTORY_LOST') AS history_lost_count
    FROM credited AS cd
    WHERE cd.deal_class IN ('HISTORY_WON', 'HISTORY_LOST')
    GROUP BY cd.principal_type, cd.principal_id, cd.bucket
),
target_rows AS (
    -- The principal's target rows overlapping the period; `matched` per target_match
    -- (exact: the same period; within: inside it). Unmatched overlapping rows only
    -- raise TARGET_PERIOD_MISMATCH when nothing matched. By pipeline, a pipeline-less
    -- target belongs to no pipeline's row (its bucket is NULL), but its principal is
    -- in scope.
    SELECT st.principal_type::text AS principal_type, st.principal_id, st.target_amount,
           CASE WHEN %(by_pipeline)s::boolean THEN st.pipeline_id
                ELSE %(pipeline_id)s::uuid END AS bucket,
           CASE %(target_match)s::text
               WHEN 'within' THEN st.period_start >= %(period_start)s::date
                              AND st.period_end <= %(period_end)s::date
               ELSE st.period_start = %(period_start)s::date
                AND st.period_end = %(period_end)s::date
           END AS matched
    FROM dyno_crm.sales_target AS st
    WHERE st.tenant_id = %(tenant_id)s::uuid
      AND st.period_start < %(period_end)s::date
      AND st.period_end > %(period_start)s::date
      AND (%(pipeline_id)s::uuid IS NULL OR st.pipeline_id = %(pipeline_id)s::uuid)
      AND (%(principal_id)s::uuid IS NULL
           OR (st.principal_type = %(principal_type)s::text
               AND st.principal_id = %(principal_id)s::uuid))
),
targets AS (
    SELECT tr.principal_type, tr.principal_id, tr.bucket,
           SUM(tr.target_amount) FILTER (WHERE tr.matched) AS target_amount,
           bool_or(tr.matched) AS matched
    FROM target_rows AS tr
    GROUP BY tr.principal_type, tr.principal_id, tr.bucket
),
principals AS (
    -- One principal, or SPEC.md §5 and §8's set: active users, all groups, and anyone
    -- with a matched target or a credited deal of the period.
    SELECT %(principal_type)s::text AS principal_type, %(principal_id)s::uuid AS principal_id
    WHERE %(principal_id)s::uuid IS NOT NULL
    UNION
    SELECT 'USER', u.id
    FROM dyno_crm.crm_user AS u
    WHERE %(principal_id)s::uuid IS NULL AND u.tenant_id = %(tenant_id)s::uuid AND u.is_active
    UNION
    SELECT 'GROUP', g.id
    FROM dyno_crm.crm_group AS g
    WHERE %(principal_id)s::uuid IS NULL AND g.tenant_id = %(tenant_id)s::uuid
    UNION
    SELECT t.principal_type, t.principal_id FROM targets AS t WHERE t.matched
    UNION
    SELECT s.principal_type, s.principal_id FROM sums AS s
),
buckets AS (
    SELECT p.id AS bucket
    FROM dyno_crm.pipeline AS p
    WHERE %(by_pipeline)s::boolean
      AND p.tenant_id = %(tenant_id)s::uuid
      AND (%(pipeline_id)s::uuid IS NULL OR p.id = %(pipeline_id)s::uuid)
    UNION ALL
    SELECT %(pipeline_id)s::uuid
    WHERE NOT %(by_pipeline)s::boolean
),
base AS (
    SELECT pr.principal_type, pr.principal_id, b.bucket, t.target_amount,
           (t.principal_id IS NOT NULL AND t.target_amount IS NULL) AS mismatch,
           COALESCE(s.open_count, 0) AS open_count,
           COALESCE(s.open_amount, 0) AS open_amount,
           COALESCE(s.weighted_amount, 0) AS weighted_amount,
           COALESCE(s.commit_amount, 0) AS commit_amount,
           COALESCE(s.best_case_amount, 0) AS best_case_amount,
           COALESCE(s.pipeline_amount, 0) AS pipeline_amount,
           COALESCE(s.omitted_amount, 0) AS omitted_amount,
           COALESCE(s.won_amount, 0) AS won_amount,
           COALESCE(s.won_count, 0) AS won_count,
           COALESCE(s.lost_amount, 0) AS lost_amount,
           COALESCE(s.lost_count, 0) AS lost_count,
           COALESCE(s.past_due_amount, 0) AS past_due_amount,
           COALESCE(s.past_due_count, 0) AS past_due_count,
           COALESCE(s.undated_amount, 0) AS undated_amount,
           COALESCE(s.undated_count, 0) AS undated_count,
           COALESCE(h.history_won_count, 0) AS history_won_count,
           COALESCE(h.history_lost_count, 0) AS history_lost_count,
           CASE WHEN COALESCE(h.history_won_count, 0) + COALESCE(h.history_lost_count, 0) > 0
                THEN ROUND(h.history_won_count::numeric
                           / (h.history_won_count + h.history_lost_count), 4)
           END AS win_rate,
           CASE WHEN t.target_amount IS NOT NULL
                THEN GREATEST(t.target_amount - COALESCE(s.won_amount, 0), 0)
           END AS remaining_target
    FROM principals AS pr
    CROSS JOIN buckets AS b
    LEFT JOIN targets AS t
           ON t.principal_type = pr.principal_type AND t.principal_id = pr.principal_id
          AND t.bucket IS NOT DISTINCT FROM b.bucket
    LEFT JOIN sums AS s
           ON s.principal_type = pr.principal_type AND s.principal_id = pr.principal_id
          AND s.bucket IS NOT DISTINCT FROM b.bucket
    LEFT JOIN history AS h
           ON h.principal_type = pr.principal_type AND h.principal_id = pr.principal_id
          AND h.bucket IS NOT DISTINCT FROM b.bucket
)
INSERT INTO dyno_crm.report_pipeline_coverage_fact
    (run_id, tenant_id, period_start, period_end, principal_type, principal_id,
     pipeline_id, target_amount, open_amount, coverage_ratio, principal_name,
     pipeline_name, open_count, weighted_amount, commit_amount, best_case_amount,
     pipeline_amount, omitted_amount, won_amount, won_count, lost_amount, lost_count,
     attainment_ratio, remaining_target, remaining_coverage_ratio, win_rate,
     history_won_count, history_lost_count, needed_coverage, pipeline_gap,
     past_due_amount, past_due_count, undated_amount, undated_count, flags)
SELECT
    %(run_id)s::uuid, %(tenant_id)s::uuid, %(period_start)s::date, %(period_end)s::date,
    x.principal_type, x.principal_id, x.bucket, x.target_amount, x.open_amount,
    CASE WHEN x.target_amount IS NULL OR x.target_amount = 0 THEN NULL
         ELSE ROUND(x.open_amount / x.target_amount, 4) END,
    COALESCE(u.name, g.name), p.name,
    x.open_count, x.weighted_amount, x.commit_amount, x.best_case_amount,
    x.pipeline_amount, x.omitted_amount, x.won_amount, x.won_count, x.lost_amount,
    x.lost_count,
    CASE WHEN x.target_amount IS NULL OR x.target_amount = 0 THEN NULL
         ELSE ROUND(x.won_amount / x.target_amount, 4) END,
    x.remaining_target,
    CASE WHEN x.remaining_target IS NULL OR x.remaining_target = 0 THEN NULL
         ELSE ROUND(x.open_amount / x.remaining_target, 4) END,
    x.win_rate, x.history_won_count, x.history_lost_count,
    CASE WHEN x.win_rate IS NULL OR x.win_rate = 0 THEN NULL
         ELSE ROUND(1 / x.win_rate, 4) END,
    CASE WHEN x.remaining_target IS NULL OR x.win_rate IS NULL OR x.win_rate = 0 THEN NULL
         ELSE ROUND(x.remaining_target / x.win_rate - x.open_amount, 2) END,
    x.past_due_amount, x.past_due_count, x.undated_amount, x.undated_count,
    CASE WHEN x.mismatch THEN ARRAY['TARGET_PERIOD_MISMATCH'] ELSE '{}'::text[] END
FROM base AS x
LEFT JOIN dyno_crm.crm_user AS u
       ON x.principal_type = 'USER' AND u.tenant_id = %(tenant_id)s::uuid
      AND u.id = x.principal_id
LEFT JOIN dyno_crm.crm_group AS g
       ON x.principal_type = 'GROUP' AND g.tenant_id = %(tenant_id)s::uuid
      AND g.id = x.principal_id
LEFT JOIN dyno_crm.pipeline AS p
       ON p.tenant_id = %(tenant_id)s::uuid AND p.id = x.bucket;
