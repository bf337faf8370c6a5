-- name: run_pair
-- The two runs' headers (each scoped to the tenant when the caller gives one), and
-- whether a run has rows stored before drill-downs existed (migration 0005). The
-- rows are looked up by the tenant too, so a tenant's pair stays on its shard (Citus).
SELECT r.id AS run_id, r.tenant_id, tn.name AS tenant_name, r.report_type,
       r.generated_at, r.period_start, r.period_end, r.parameters::text AS parameters,
       tn.fiscal_year_start_month,
       EXISTS (SELECT 1 FROM dyno_crm.report_pipeline_coverage_fact AS f
               WHERE f.tenant_id = r.tenant_id AND f.run_id = r.id
                 AND (%(tenant_id)s::uuid IS NULL OR f.tenant_id = %(tenant_id)s::uuid)
                 AND f.open_count IS NULL) AS without_drilldown
FROM dyno_crm.report_run AS r
JOIN dyno_crm.tenant AS tn ON tn.id = r.tenant_id
WHERE r.id IN (%(run_a)s::uuid, %(run_b)s::uuid)
  AND (%(tenant_id)s::uuid IS NULL OR r.tenant_id = %(tenant_id)s::uuid);

-- name: movement_rows
-- The waterfall (SPEC.md §11) per principal and bucket of either run: A's open
-- amount, the steps summed over their deals from the two drill-downs, B's open
-- amount. A deal is in a step by its classes for this principal and bucket: counted
-- OPEN in A (a NO_RATE deal is in no amount, so it is open in neither run), and in
-- B counted OPEN (changed), WON, LOST, or none of those (left); counted OPEN in B
-- only: entered. `changed` counts the deals whose amount moved.
WITH credits AS NOT MATERIALIZED (
    -- Both runs' (row, deal) pairs; a row's bucket is its pipeline, or none (nil).
    SELECT c.run_id, c.principal_type, c.principal_id, cr.deal_id,
           COALESCE(c.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket
    FROM /* fragment: run_credit_rows */ AS c
    CROSS JOIN LATERAL unnest(c.deal_ids) AS cr (deal_id)
    WHERE c.tenant_id = %(tenant_id)s::uuid
      AND c.run_id IN (%(run_a)s::uuid, %(run_b)s::uuid)
      AND (%(principal_type)s::text IS NULL OR c.principal_type = %(principal_type)s::text)
      AND (%(principal_id)s::uuid IS NULL OR c.principal_id = %(principal_id)s::uuid)
),
counted AS MATERIALIZED (
    -- Of both runs' deals, those a step can use: counted OPEN ones, and closed ones in B.
    -- Materialized: read once and hashed against the credits. Inlined, a plan that
    -- takes the stored arrays for 10 elements (a generic one, or one without the
    -- tables' statistics) unnested the runs' deals once per credit row.
    SELECT d.run_id, d.deal_id, d.deal_class, d.reporting_amount
    FROM /* fragment: run_deal_amounts */ AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id IN (%(run_a)s::uuid, %(run_b)s::uuid)
      -- One principal's: only the stored chunks that hold its deals in either run (a
      -- run stored before chunks is one, 0), each run's chain rows with them.
      AND (%(principal_id)s::uuid IS NULL
           OR d.chunk = ANY (ARRAY(
               SELECT DISTINCT COALESCE(x.chunk, 0)
               FROM (SELECT unnest(c.deal_ids) AS deal_id, unnest(c.deal_chunks) AS chunk
                     FROM /* fragment: run_credit_rows */ AS c
                     WHERE c.tenant_id = %(tenant_id)s::uuid
                       AND c.run_id IN (%(run_a)s::uuid, %(run_b)s::uuid)
                       AND (%(principal_type)s::text IS NULL
                            OR c.principal_type = %(principal_type)s::text)
                       AND c.principal_id = %(principal_id)s::uuid) AS x)))
      AND ((d.deal_class = 'OPEN' AND d.reporting_amount IS NOT NULL)
           OR (d.run_id = %(run_b)s::uuid AND d.deal_class IN ('WON', 'LOST')))
),
a_open AS (
    SELECT c.principal_type, c.principal_id, c.bucket, c.deal_id, k.reporting_amount
    FROM credits AS c
    JOIN counted AS k ON k.run_id = c.run_id AND k.deal_id = c.deal_id
    WHERE c.run_id = %(run_a)s::uuid
      AND k.deal_class = 'OPEN'
),
b_in AS (
    SELECT c.principal_type, c.principal_id, c.bucket, c.deal_id, k.deal_class,
           k.reporting_amount
    FROM credits AS c
    JOIN counted AS k ON k.run_id = c.run_id AND k.deal_id = c.deal_id
    WHERE c.run_id = %(run_b)s::uuid
      -- B's closed deals matter only if A had them open (to be won or lost).
      AND (k.deal_class = 'OPEN'
           OR k.deal_id IN (SELECT ka.deal_id FROM counted AS ka
                            WHERE ka.run_id = %(run_a)s::uuid AND ka.deal_class = 'OPEN'))
),
steps AS (
    SELECT COALESCE(a.principal_type, b.principal_type) AS principal_type,
           COALESCE(a.principal_id, b.principal_id) AS principal_id,
           COALESCE(a.bucket, b.bucket) AS bucket,
           COALESCE(a.deal_id, b.deal_id) AS deal_id,
           CASE WHEN a.deal_id IS NULL THEN 'entered'
                WHEN b.deal_class IN ('WON', 'LOST') THEN lower(b.deal_class)
                WHEN b.deal_class = 'OPEN' THEN 'changed'
                ELSE 'left' END AS step,
           a.reporting_amount AS a_amount, b.reporting_amount AS b_amount
    FROM a_open AS a
    FULL JOIN b_in AS b
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
               AS changed_count,
           -- With deals: the deals of each step (a changed one only if its amount
           -- moved), for movement_deals to describe; ids as text, which psycopg2 reads
           -- as a list (a uuid[] it would not).
           array_agg(s.deal_id::text) FILTER (WHERE %(deals)s::boolean AND s.step = 'won')
               AS listed_won,
           array_agg(s.deal_id::text) FILTER (WHERE %(deals)s::boolean AND s.step = 'lost')
               AS listed_lost,
           array_agg(s.deal_id::text) FILTER (WHERE %(deals)s::boolean AND s.step = 'left')
               AS listed_left,
           array_agg(s.deal_id::text) FILTER (WHERE %(deals)s::boolean AND s.step = 'entered')
               AS listed_entered,
           array_agg(s.deal_id::text) FILTER (WHERE %(deals)s::boolean AND s.step = 'changed'
                                                AND s.b_amount <> s.a_amount)
               AS listed_changed
    FROM steps AS s
    GROUP BY s.principal_type, s.principal_id, s.bucket
),
facts AS (
    SELECT f.run_id, f.principal_type, f.principal_id, f.principal_name, f.pipeline_id,
           f.pipeline_name,
           COALESCE(f.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket,
           f.target_amount, f.won_amount, f.open_amount, f.open_count, f.coverage_ratio,
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
       -- (Amounts with their 2 decimals also where a step has no deal: "0.00".)
       COALESCE(fa.open_amount, 0)::numeric(38,2) AS start_amount,
       COALESCE(p.won_amount, 0)::numeric(38,2) AS won_amount,
       COALESCE(p.won_count, 0) AS won_count,
       COALESCE(p.lost_amount, 0)::numeric(38,2) AS lost_amount,
       COALESCE(p.lost_count, 0) AS lost_count,
       COALESCE(p.left_amount, 0)::numeric(38,2) AS left_amount,
       COALESCE(p.left_count, 0) AS left_count,
       COALESCE(p.entered_amount, 0)::numeric(38,2) AS entered_amount,
       COALESCE(p.entered_count, 0) AS entered_count,
       COALESCE(p.changed_amount, 0)::numeric(39,2) AS changed_amount,
       COALESCE(p.changed_count, 0) AS changed_count,
       COALESCE(fb.open_amount, 0)::numeric(38,2) AS end_amount,
       COALESCE(fa.open_count, 0) AS start_count, COALESCE(fb.open_count, 0) AS end_count,
       fa.target_amount AS start_target_amount, fb.target_amount AS end_target_amount,
       fa.coverage_ratio AS start_coverage_ratio, fb.coverage_ratio AS end_coverage_ratio,
       fa.remaining_target AS start_remaining_target,
       fb.remaining_target AS end_remaining_target,
       fa.remaining_coverage_ratio AS start_remaining_coverage_ratio,
       fb.remaining_coverage_ratio AS end_remaining_coverage_ratio,
       fa.won_amount AS start_won_amount, fb.won_amount AS end_won_amount,
       p.listed_won, p.listed_lost, p.listed_left, p.listed_entered, p.listed_changed
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
-- The deals movement_rows listed (row, step, deal) with both runs' amount, date,
-- stage and owner (each as that run stored it), their signed movement,
-- for `left` and `entered` why (from the other run's drill-down: UNDATED, NO_RATE,
-- PIPELINE_CHANGED, REASSIGNED, REOPENED; not in it at all: OUT_OF_SCOPE, or DELETED
-- when the deal is gone), and what the deal is like now (the live deal table).
-- (No LATERAL lookups: Citus routes the statement to the tenant's shard only when
-- every table is filtered by the tenant.)
WITH listed AS (
    SELECT l.*
    FROM unnest(%(principal_types)s::text[], %(principal_ids)s::uuid[],
                %(pipeline_ids)s::uuid[], %(deal_ids)s::uuid[], %(steps)s::text[])
        AS l (principal_type, principal_id, pipeline_id, deal_id, step)
),
stored AS MATERIALIZED (
    -- Both runs' view of the listed deals. (`= ANY` of the list, not `IN (SELECT ...)`:
    -- a plain condition on the deal reaches into run_deal_rows, which then
    -- sorts only the listed deals' entries of a chunk stored as what changed.)
    SELECT d.run_id, d.deal_id, d.deal_name, d.pipeline_id, d.pipeline_name, d.stage_name,
           d.deal_class, d.amount, d.currency, d.reporting_amount, d.placed_on,
           d.owner_user_id
    FROM /* fragment: run_deal_rows */ AS d
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.run_id IN (%(run_a)s::uuid, %(run_b)s::uuid)
      AND d.deal_id = ANY (%(deal_ids)s::uuid[])
),
now_deals AS (
    -- What the listed deals are like now (found by the deal key's index).
    SELECT d.id, d.name, d.amount, COALESCE(d.currency, t.currency) AS currency,
           CASE WHEN ps.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED')
                THEN COALESCE(d.close_date, d.expected_close_date)
                ELSE COALESCE(d.expected_close_date, d.close_date) END AS placed_on,
           ps.name AS stage_name, ps.stage_state, p.name AS pipeline_name,
           d.owned_by_user_id, u.name AS owner_name
    FROM dyno_crm.deal AS d
    JOIN dyno_crm.tenant AS t ON t.id = %(tenant_id)s::uuid
    JOIN dyno_crm.pipeline_stage AS ps ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
    JOIN dyno_crm.pipeline AS p ON p.tenant_id = d.tenant_id AND p.id = d.pipeline_id
    LEFT JOIN dyno_crm.crm_user AS u
           ON u.tenant_id = d.tenant_id AND u.id = d.owned_by_user_id
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND d.id = ANY (%(deal_ids)s::uuid[])
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
       nw.currency AS now_currency, nw.placed_on AS now_placed_on,
       nw.stage_name AS now_stage_name, nw.stage_state AS now_stage_state,
       nw.pipeline_name AS now_pipeline_name, nw.owned_by_user_id AS now_owner_user_id,
       nw.owner_name AS now_owner_name
FROM listed AS s
LEFT JOIN stored AS da ON da.run_id = %(run_a)s::uuid AND da.deal_id = s.deal_id
LEFT JOIN stored AS db ON db.run_id = %(run_b)s::uuid AND db.deal_id = s.deal_id
LEFT JOIN dyno_crm.crm_user AS ua
       ON ua.tenant_id = %(tenant_id)s::uuid AND ua.id = da.owner_user_id
LEFT JOIN dyno_crm.crm_user AS ub
       ON ub.tenant_id = %(tenant_id)s::uuid AND ub.id = db.owner_user_id
-- Today's deal, for the deals that left or entered.
LEFT JOIN now_deals AS nw ON s.step IN ('left', 'entered') AND nw.id = s.deal_id
-- Per row, by step, the largest movement first.
ORDER BY s.principal_type, s.principal_id,
         COALESCE(s.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid),
         array_position(ARRAY['won', 'lost', 'left', 'entered', 'changed'], s.step),
         abs(CASE s.step WHEN 'entered' THEN db.reporting_amount
                         WHEN 'changed' THEN db.reporting_amount - da.reporting_amount
                         ELSE da.reporting_amount END) DESC,
         s.deal_id;
