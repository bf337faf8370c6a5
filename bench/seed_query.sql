-- The seed's coverage query (seed part B) as written, with only what it takes to run:
-- its colon-prefixed parameters spelled the psycopg way, with casts, and the GROUP BY
-- its final SELECT lacks. Its joins (pipeline_stage on id alone) and shape are kept.
WITH target AS (
    SELECT SUM(st.target_amount) AS target_amount
    FROM dyno_crm.sales_target st
    WHERE st.tenant_id = %(tenant_id)s::uuid
        AND st.principal_type = %(principal_type)s::text
        AND st.principal_id = %(principal_id)s::uuid
        AND st.period_start = %(period_start)s::date
        AND st.period_end = %(period_end)s::date
        AND ( %(pipeline_id)s::uuid IS NULL OR st.pipeline_id = %(pipeline_id)s::uuid )
),
open_deals AS (
    SELECT
        d.amount
    FROM dyno_crm.deal d
    JOIN dyno_crm.pipeline_stage ps ON ps.id = d.stage_id
    WHERE d.tenant_id = %(tenant_id)s::uuid
        AND ( %(pipeline_id)s::uuid IS NULL OR d.pipeline_id = %(pipeline_id)s::uuid )
        AND ps.stage_state NOT IN ('DONE_SUCCESS', 'DONE_FAILED')
        AND (
            COALESCE(d.expected_close_date, d.close_date) >= %(period_start)s::date
            AND COALESCE(d.expected_close_date, d.close_date) < %(period_end)s::date
        )
        AND (
            (
                %(principal_type)s::text = 'USER' AND (
                    d.owned_by_user_id = %(principal_id)s::uuid OR d.assigned_user_id
                    = %(principal_id)s::uuid
                )
            )
            OR (
                %(principal_type)s::text = 'GROUP' AND (
                    d.owned_by_group_id = %(principal_id)s::uuid OR d.assigned_group_id
                    = %(principal_id)s::uuid
                )
            )
        )
)
SELECT
    %(run_id)s::uuid AS run_id,
    %(tenant_id)s::uuid AS tenant_id,
    %(period_start)s::date AS period_start,
    %(period_end)s::date AS period_end,
    %(principal_type)s::text AS principal_type,
    %(principal_id)s::uuid AS principal_id,
    %(pipeline_id)s::uuid AS pipeline_id,
    t.target_amount,
    COALESCE(SUM(COALESCE(od.amount, 0)), 0) AS open_amount,
    CASE WHEN t.target_amount IS NULL OR t.target_amount = 0 THEN NULL
         ELSE ROUND((COALESCE(SUM(COALESCE(od.amount, 0)), 0) /
t.target_amount), 4)
    END AS coverage_ratio
FROM target t
LEFT JOIN open_deals od ON true
GROUP BY t.target_amount;
