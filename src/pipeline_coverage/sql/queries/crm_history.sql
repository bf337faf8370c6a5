-- The CRM's own history of its deals (`import --history`, SPEC.md §13): its lines,
-- matched with the export's deals (pg_temp.pipeline_coverage_import_deals), become
-- versions of origin 'crm' that end at the tenant's first recorded export (the clip).

-- name: create_history_lines
-- The history's lines as read (an import's transaction): each line's deal (by id when
-- the file has ids; by name later), when its values took effect, and the values.
DROP TABLE IF EXISTS pg_temp.pipeline_coverage_history;
CREATE TEMP TABLE pipeline_coverage_history (
    line bigint NOT NULL,
    opportunity text NOT NULL,
    deal_id uuid,
    at timestamptz NOT NULL,
    stage text NOT NULL,
    amount numeric(18, 2),
    close_date date,
    probability integer,
    forecast_category text,
    currency text
) ON COMMIT DROP;

-- name: copy_history_lines
COPY pg_temp.pipeline_coverage_history
    (line, opportunity, deal_id, at, stage, amount, close_date, probability,
     forecast_category, currency)
FROM STDIN;

-- name: analyze_history_lines
-- A temporary table has no statistics until it is analyzed: the joins below plan on them.
ANALYZE pg_temp.pipeline_coverage_history;

-- name: history_names_of_several_deals
-- Lines naming a deal (any case) that several of the export's deals are named; the
-- first of them, for the error.
SELECT h.line, h.opportunity, n.deals
FROM pg_temp.pipeline_coverage_history AS h
JOIN (
    SELECT lower(r.name) AS name, count(*) AS deals
    FROM pg_temp.pipeline_coverage_import_deals AS r
    GROUP BY lower(r.name)
    HAVING count(*) > 1
) AS n ON n.name = lower(h.opportunity)
ORDER BY h.line
LIMIT 100;

-- name: match_history_names
-- Each line's deal by name (any case), when the file names deals only.
UPDATE pg_temp.pipeline_coverage_history AS h
SET deal_id = r.id
FROM pg_temp.pipeline_coverage_import_deals AS r
WHERE lower(r.name) = lower(h.opportunity);

-- name: history_unmatched
-- The lines of opportunities that are not deals of the export (skipped, counted).
SELECT count(*) AS lines, count(DISTINCT h.opportunity) AS opportunities,
       min(h.line) AS first_line
FROM pg_temp.pipeline_coverage_history AS h
WHERE NOT EXISTS (SELECT 1 FROM pg_temp.pipeline_coverage_import_deals AS r
                  WHERE r.id = h.deal_id);

-- name: history_stages_named
-- The stages the matched lines name, by kind of deal (its pipeline), each with its
-- first line and that line's probability (what a stage created for it is given).
SELECT r.kind, h.stage, min(h.line) AS line,
       (array_agg(h.probability ORDER BY h.line))[1] AS probability
FROM pg_temp.pipeline_coverage_history AS h
JOIN pg_temp.pipeline_coverage_import_deals AS r ON r.id = h.deal_id
GROUP BY r.kind, h.stage
ORDER BY min(h.line);

-- name: drop_history_stages
DROP TABLE IF EXISTS pg_temp.pipeline_coverage_history_stages;

-- name: create_history_stages
-- Each kind of deal and stage as the history writes it → the stage, and whether it is
-- a closed one (its date is then the close date, else the expected close date).
CREATE TEMP TABLE pipeline_coverage_history_stages ON COMMIT DROP AS
SELECT s.kind, s.stage, s.stage_id, s.closed
FROM unnest(%(kinds)s::integer[], %(stages)s::text[], %(ids)s::uuid[], %(closed)s::boolean[])
    AS s (kind, stage, stage_id, closed);

-- name: tenant_clip
-- Where the CRM's history ends: the tenant's first recorded export (this import's time
-- when nothing was recorded).
SELECT COALESCE(t.recorded_since, %(at)s::timestamptz) AS clip
FROM dyno_crm.tenant AS t
WHERE t.id = %(tenant_id)s::uuid;

-- name: drop_crm_versions
-- A history import replaces the CRM-history versions of the export's deals as a whole.
DELETE FROM dyno_crm.deal_version AS v
USING pg_temp.pipeline_coverage_import_deals AS r
WHERE v.tenant_id = %(tenant_id)s::uuid AND v.deal_id = r.id AND v.origin = 'crm';

-- name: drop_recorded_before_clip
-- Values of the export's deals recorded as known since always (written before recorded
-- history began) that ended at the clip: the CRM's history says how they were.
DELETE FROM dyno_crm.deal_version AS v
USING pg_temp.pipeline_coverage_import_deals AS r
WHERE v.tenant_id = %(tenant_id)s::uuid AND v.deal_id = r.id AND v.origin = 'recorded'
  AND v.valid_from IS NULL AND v.valid_to <= %(clip)s::timestamptz;

-- name: recorded_from_clip
-- Those that held past the clip are known from the clip on.
UPDATE dyno_crm.deal_version AS v
SET valid_from = %(clip)s::timestamptz
FROM pg_temp.pipeline_coverage_import_deals AS r
WHERE v.tenant_id = %(tenant_id)s::uuid AND v.deal_id = r.id AND v.origin = 'recorded'
  AND v.valid_from IS NULL;

-- name: deals_recorded_from_clip
-- And so are the export's deals whose current values were known since always.
UPDATE dyno_crm.deal AS d
SET recorded_from = %(clip)s::timestamptz
FROM pg_temp.pipeline_coverage_import_deals AS r
WHERE d.tenant_id = %(tenant_id)s::uuid AND d.id = r.id AND d.recorded_from IS NULL;

-- name: write_crm_versions
-- The versions of the export's deals before the clip; counts them. A deal's lines in
-- time order (then line order), each until the next; the first from the deal's created
-- date when that is earlier; the last until the clip; a version at or after the clip is
-- left out, one spanning it is cut there (recorded history wins). A deal without lines
-- is as it is now from its created date (since always without one). Stage, amount,
-- close date, forecast category and currency are the line's (the deal's currency when
-- the line has none); name, pipeline, assignee and teams are the deal's; the owner is
-- the deal's at the clip, assumed (the CRM's history has no owner).
WITH deals AS (
    SELECT d.tenant_id, d.id, d.pipeline_id, d.stage_id, d.name, d.amount,
           d.expected_close_date, d.close_date, d.assigned_user_id, d.owned_by_group_id,
           d.assigned_group_id, d.forecast_category, d.currency, r.created_at,
           (COALESCE(
               (SELECT ARRAY[v.owned_by_user_id] FROM dyno_crm.deal_version AS v
                WHERE v.tenant_id = d.tenant_id AND v.deal_id = d.id AND v.origin = 'recorded'
                  AND (v.valid_from IS NULL OR v.valid_from <= %(clip)s::timestamptz)
                  AND %(clip)s::timestamptz < v.valid_to),
               ARRAY[d.owned_by_user_id]
           ))[1] AS owner
    FROM pg_temp.pipeline_coverage_import_deals AS r
    JOIN dyno_crm.deal AS d ON d.tenant_id = %(tenant_id)s::uuid AND d.id = r.id
), lines AS (
    SELECT h.deal_id, h.line, h.at, s.stage_id, s.closed, h.amount, h.close_date,
           h.forecast_category, h.currency,
           lead(h.at) OVER w AS next_at, row_number() OVER w AS n
    FROM pg_temp.pipeline_coverage_history AS h
    JOIN pg_temp.pipeline_coverage_import_deals AS r ON r.id = h.deal_id
    JOIN pg_temp.pipeline_coverage_history_stages AS s ON s.kind = r.kind AND s.stage = h.stage
    WINDOW w AS (PARTITION BY h.deal_id ORDER BY h.at, h.line)
), versions AS (
    SELECT d.tenant_id, d.id AS deal_id,
           CASE WHEN l.n = 1 AND d.created_at < l.at THEN d.created_at ELSE l.at END
               AS valid_from,
           LEAST(l.next_at, %(clip)s::timestamptz) AS valid_to,
           d.pipeline_id, l.stage_id, d.name, l.amount,
           CASE WHEN l.closed THEN NULL ELSE l.close_date END AS expected_close_date,
           CASE WHEN l.closed THEN l.close_date END AS close_date,
           d.owner, d.assigned_user_id, d.owned_by_group_id, d.assigned_group_id,
           l.forecast_category, COALESCE(l.currency, d.currency) AS currency
    FROM lines AS l
    JOIN deals AS d ON d.id = l.deal_id
    UNION ALL
    SELECT d.tenant_id, d.id, d.created_at, %(clip)s::timestamptz, d.pipeline_id, d.stage_id,
           d.name, d.amount, d.expected_close_date, d.close_date, d.owner,
           d.assigned_user_id, d.owned_by_group_id, d.assigned_group_id,
           d.forecast_category, d.currency
    FROM deals AS d
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.pipeline_coverage_history AS h
                      WHERE h.deal_id = d.id)
), written AS (
    INSERT INTO dyno_crm.deal_version
        (tenant_id, deal_id, valid_from, valid_to, pipeline_id, stage_id, name, amount,
         expected_close_date, close_date, owned_by_user_id, assigned_user_id,
         owned_by_group_id, assigned_group_id, forecast_category, currency, owner_assumed,
         origin)
    SELECT v.tenant_id, v.deal_id, v.valid_from, v.valid_to, v.pipeline_id, v.stage_id,
           v.name, v.amount, v.expected_close_date, v.close_date, v.owner,
           v.assigned_user_id, v.owned_by_group_id, v.assigned_group_id,
           v.forecast_category, v.currency, true, 'crm'
    FROM versions AS v
    WHERE v.valid_from IS NULL OR v.valid_from < v.valid_to
    RETURNING 1
)
SELECT count(*) AS versions FROM written;

-- name: history_lines_used
-- The lines of the export's deals, and how many deals they are of.
SELECT count(*) AS lines, count(DISTINCT h.deal_id) AS deals
FROM pg_temp.pipeline_coverage_history AS h
WHERE EXISTS (SELECT 1 FROM pg_temp.pipeline_coverage_import_deals AS r
              WHERE r.id = h.deal_id);
