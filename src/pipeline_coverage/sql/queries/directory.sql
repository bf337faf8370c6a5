-- name: list_tenants
-- Every tenant with its reporting currency and how many reps, teams and deals it has.
SELECT t.id, t.name, t.currency,
       (SELECT count(*) FROM dyno_crm.crm_user AS u WHERE u.tenant_id = t.id) AS users,
       (SELECT count(*) FROM dyno_crm.crm_group AS g WHERE g.tenant_id = t.id) AS groups,
       (SELECT count(*) FROM dyno_crm.deal AS d WHERE d.tenant_id = t.id) AS deals
FROM dyno_crm.tenant AS t
WHERE (%(tenant_id)s::uuid IS NULL OR t.id = %(tenant_id)s::uuid)
ORDER BY lower(t.name), t.id;

-- name: find_tenants
-- Tenants whose name is the text (any case), or contains it when none is exactly it.
WITH hits AS (
    SELECT t.id, t.name, lower(t.name) = lower(%(text)s::text) AS exact
    FROM dyno_crm.tenant AS t
    WHERE strpos(lower(t.name), lower(%(text)s::text)) > 0
)
SELECT h.id, h.name FROM hits AS h
WHERE h.exact OR NOT EXISTS (SELECT 1 FROM hits AS e WHERE e.exact)
ORDER BY lower(h.name), h.id
LIMIT 11;

-- name: list_principals
-- A tenant's reps and teams (one kind or both), by name; a team with its parent team.
SELECT 'USER' AS principal_type, u.id, u.name, u.is_active AS active, NULL::uuid AS parent_id,
       NULL::text AS parent_name
FROM dyno_crm.crm_user AS u
WHERE u.tenant_id = %(tenant_id)s::uuid AND (%(kind)s::text IS NULL OR %(kind)s::text = 'USER')
UNION ALL
SELECT 'GROUP', g.id, g.name, true, g.parent_group_id,
       (SELECT p.name FROM dyno_crm.crm_group AS p
        WHERE p.tenant_id = %(tenant_id)s::uuid AND p.id = g.parent_group_id)
FROM dyno_crm.crm_group AS g
WHERE g.tenant_id = %(tenant_id)s::uuid AND (%(kind)s::text IS NULL OR %(kind)s::text = 'GROUP')
ORDER BY 1 DESC, 3, 2;

-- name: principal_name
-- A rep's or team's name (NULL when the tenant has no such principal).
SELECT CASE %(kind)s::text
           WHEN 'USER' THEN (SELECT u.name FROM dyno_crm.crm_user AS u
                             WHERE u.tenant_id = %(tenant_id)s::uuid AND u.id = %(id)s::uuid)
           ELSE (SELECT g.name FROM dyno_crm.crm_group AS g
                 WHERE g.tenant_id = %(tenant_id)s::uuid AND g.id = %(id)s::uuid)
       END AS name;

-- name: find_principals
-- A tenant's reps and teams whose name is the text (any case), or contains it when
-- none is exactly it.
WITH hits AS (
    SELECT 'USER' AS principal_type, u.id, u.name,
           lower(u.name) = lower(%(text)s::text) AS exact
    FROM dyno_crm.crm_user AS u
    WHERE u.tenant_id = %(tenant_id)s::uuid
      AND (%(kind)s::text IS NULL OR %(kind)s::text = 'USER')
      AND strpos(lower(u.name), lower(%(text)s::text)) > 0
    UNION ALL
    SELECT 'GROUP', g.id, g.name, lower(g.name) = lower(%(text)s::text)
    FROM dyno_crm.crm_group AS g
    WHERE g.tenant_id = %(tenant_id)s::uuid
      AND (%(kind)s::text IS NULL OR %(kind)s::text = 'GROUP')
      AND strpos(lower(g.name), lower(%(text)s::text)) > 0
)
SELECT h.principal_type, h.id, h.name FROM hits AS h
WHERE h.exact OR NOT EXISTS (SELECT 1 FROM hits AS e WHERE e.exact)
ORDER BY 1 DESC, lower(h.name), h.id
LIMIT 11;

-- name: find_pipelines
-- A tenant's pipelines whose name is the text (any case), or contains it when none
-- is exactly it.
WITH hits AS (
    SELECT p.id, p.name, lower(p.name) = lower(%(text)s::text) AS exact
    FROM dyno_crm.pipeline AS p
    WHERE p.tenant_id = %(tenant_id)s::uuid
      AND strpos(lower(p.name), lower(%(text)s::text)) > 0
)
SELECT h.id, h.name FROM hits AS h
WHERE h.exact OR NOT EXISTS (SELECT 1 FROM hits AS e WHERE e.exact)
ORDER BY lower(h.name), h.id
LIMIT 11;

-- name: tenant_calendar
-- A tenant's fiscal year start month (for period expressions).
SELECT t.fiscal_year_start_month
FROM dyno_crm.tenant AS t
WHERE t.id = %(tenant_id)s::uuid;

-- name: known_periods
-- The periods a tenant has target rows or stored runs for, newest first, with how
-- many of each and when the last run was made (the dashboard's period picker).
SELECT k.period_start, k.period_end, sum(k.targets)::integer AS targets,
       sum(k.runs)::integer AS runs, max(k.last_run) AS last_run
FROM (
    SELECT st.period_start, st.period_end, count(*) AS targets, 0 AS runs,
           NULL::timestamptz AS last_run
    FROM dyno_crm.sales_target AS st
    WHERE st.tenant_id = %(tenant_id)s::uuid
    GROUP BY st.period_start, st.period_end
    UNION ALL
    SELECT r.period_start, r.period_end, 0, count(*), max(r.generated_at)
    FROM dyno_crm.report_run AS r
    WHERE r.tenant_id = %(tenant_id)s::uuid
    GROUP BY r.period_start, r.period_end
) AS k
GROUP BY k.period_start, k.period_end
ORDER BY k.period_start DESC, k.period_end
LIMIT %(limit)s;

-- name: tenant_calendars
-- Every tenant (or one) with its fiscal year start month and default run options, by
-- name: what a snapshot needs to name each tenant's this and next quarter and run them.
SELECT t.id, t.name, t.fiscal_year_start_month, t.default_rollup AS rollup,
       t.default_target_match AS target_match,
       t.default_win_rate_lookback_days AS win_rate_lookback_days
FROM dyno_crm.tenant AS t
WHERE %(tenant_id)s::uuid IS NULL OR t.id = %(tenant_id)s::uuid
ORDER BY lower(t.name), t.id;
