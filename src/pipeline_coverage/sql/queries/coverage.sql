-- name: check_scope
-- Whether the tenant, the principal and the pipeline (when given) exist in that
-- tenant; the tenant's reporting currency and the exchange rates in force on the
-- run's as_of (SPEC.md §9: the latest of each other currency from that day or
-- before), which the run freezes in its parameters; its fiscal calendar (the run's
-- week of the quarter, for its calibration); and whether `db distribute` made
-- the functions that run the run's statement on the tenant's Citus worker
-- ('prepared': both; 'statement': only run_tenant_statement, an earlier version's).
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
    (SELECT t.currency FROM dyno_crm.tenant AS t WHERE t.id = %(tenant_id)s::uuid) AS currency,
    (SELECT t.fiscal_year_start_month FROM dyno_crm.tenant AS t
     WHERE t.id = %(tenant_id)s::uuid) AS fiscal_year_start_month,
    (SELECT COALESCE(jsonb_object_agg(r.currency, r.rate::text), '{}')::text
     FROM (SELECT DISTINCT ON (er.currency) er.currency, er.rate
           FROM dyno_crm.exchange_rate AS er
           JOIN dyno_crm.tenant AS t ON t.id = er.tenant_id
           WHERE er.tenant_id = %(tenant_id)s::uuid
             AND er.valid_from <= %(as_of)s::date
             AND er.currency <> t.currency
           ORDER BY er.currency, er.valid_from DESC) AS r) AS rates,
    CASE WHEN to_regprocedure('dyno_crm.run_tenant_prepared(uuid, text, text, text)') IS NOT NULL
         THEN 'prepared'
         WHEN to_regprocedure('dyno_crm.run_tenant_statement(uuid, text)') IS NOT NULL
         THEN 'statement'
    END AS routed;

-- name: group_tree
-- With rollup (SPEC.md §10): each group of the tenant (for one principal: that
-- group) with itself at depth 0 and every group below it, as the JSON the run's
-- statement reads. The loader refuses cycles; `walk` ends one written some other way
-- at the group it started from. (A statement of its own: Citus plans a recursive CTE
-- only in a plain router query, not among the run's data-modifying ones; and not
-- PostgreSQL's CYCLE clause, which Citus cannot pass on to a worker.)
WITH RECURSIVE tree (ancestor_id, group_id, depth, walk) AS (
    SELECT g.id, g.id, 0, ARRAY[g.id]
    FROM dyno_crm.crm_group AS g
    WHERE g.tenant_id = %(tenant_id)s::uuid
      AND (%(principal_id)s::uuid IS NULL
           OR (%(principal_type)s::text = 'GROUP' AND g.id = %(principal_id)s::uuid))
    UNION ALL
    SELECT t.ancestor_id, c.id, t.depth + 1, t.walk || c.id
    FROM tree AS t
    JOIN dyno_crm.crm_group AS c
      ON c.tenant_id = %(tenant_id)s::uuid AND c.parent_group_id = t.group_id
    WHERE c.id <> ALL (t.walk)
)
SELECT COALESCE(jsonb_agg(jsonb_build_object(
           'ancestor_id', t.ancestor_id, 'group_id', t.group_id, 'depth', t.depth)), '[]')::text
           AS tree
FROM tree AS t;

-- name: insert_coverage
-- A run's drill-down and fact rows (SPEC.md §7, §8), in one statement, for one
-- principal (principal_id set) or everyone in scope (principal_id NULL), per pipeline
-- when by_pipeline. The credit rule — which deal counts for whom, and why — is
-- written once, in `credited`. A row's drill-down (its deals and credit reasons)
-- and its amounts and counts come out of one aggregation over the same credited
-- deals, whose values are the ones stored for the run: every amount and count of a
-- row equals the sum over its deals, by construction. With rollup, a group is also
-- credited with the deals of its member users, its descendant groups and their
-- members (SPEC.md §7, §10).
-- Runs send it specialized (sql.specialize): the parts marked `if rollup` only with
-- rollup, those marked `if batch` only for a batch, and those marked `if users` /
-- `if groups` only when the run is for users / groups (a batch: both), and those
-- marked `if within` only with target_match=within, and those marked `if recorded`
-- (`unless recorded`: the line for runs on current data) only for runs as recorded,
-- and those marked `if tenant_window` (`unless tenant_window`: the line for one
-- principal's run, whose deals the owner/assignee indexes find) only for a batch,
-- whose period and win-rate window the tenant's date indexes find.
-- What is left
-- out is what the run's values would fold away, so that a single report can run on
-- one generic plan per connection (reports/coverage.py), with every condition it
-- keeps indexable.
--
-- Codes. Where a name would be compared once per unit, a small integer stands for it
-- (compared cheaply, as a number). Every use carries its name, `2 /* WON */`, and
-- tests/unit/test_sql_codes.py checks each use against these two lists:
--   kind    which of a row's sums a unit goes to (`units`):
--           0 NOT_COUNTED (NO_RATE: in no sum), 2 WON, 3 LOST, 4 UNDATED,
--           5 HISTORY_WON, 6 HISTORY_LOST (the win rate's window),
--           10 OPEN (of no known category; every open kind is 10 or more),
--           11 OPEN_COMMIT, 12 OPEN_BEST_CASE, 13 OPEN_PIPELINE, 14 OPEN_OMITTED
--   reason  why a deal counts for a principal (`credited`, `rolled_up`), in SPEC.md
--           §7's order, the first that applies winning:
--           1 OWNER, 2 ASSIGNEE, 3 OWNER_GROUP, 4 ASSIGNED_GROUP, 5 MEMBER, 6 SUBGROUP
WITH
-- if rollup
tree AS (
    -- With rollup: each group (for one principal: that group) with itself (depth 0)
    -- and every group below it, as `group_tree` read them before the run.
    SELECT t.ancestor_id, t.group_id, t.depth
    FROM jsonb_to_recordset(%(tree)s::jsonb) AS t (ancestor_id uuid, group_id uuid, depth integer)
),
rolled_members AS (
    -- With rollup: the users each group's credit reaches, at the nearest depth (0: a
    -- member of the group itself).
    SELECT gm.user_id, t.ancestor_id, min(t.depth) AS depth
    FROM tree AS t
    JOIN dyno_crm.group_member AS gm
      ON gm.tenant_id = %(tenant_id)s::uuid AND gm.group_id = t.group_id
    GROUP BY gm.user_id, t.ancestor_id
),
-- end if
scoped AS NOT MATERIALIZED (
    -- The tenant's deals a run may count, with their stages: in the pipeline scope,
    -- and for one principal only the deals naming it (the owner/assignee indexes find
    -- them). Not materialized: each use below adds its own date window, which the
    -- planner pushes down to the date indexes.
    SELECT d.id AS deal_id, d.name AS deal_name, d.pipeline_id, d.stage_id, d.amount,
           d.expected_close_date, d.close_date, d.forecast_category,
           COALESCE(d.currency, %(currency)s::text) AS currency,
           -- The rate in force on the run's as_of, as the run froze it (SPEC.md §9):
           -- 1 for the reporting currency, NULL when none is in force (NO_RATE).
           CASE WHEN COALESCE(d.currency, %(currency)s::text) = %(currency)s::text THEN 1
                ELSE (%(rates)s::jsonb ->> d.currency)::numeric
           END AS rate,
           d.owned_by_user_id, d.assigned_user_id, d.owned_by_group_id, d.assigned_group_id,
           -- A version whose owner its source did not say (a CRM's field history): the
           -- owner known at the time is assumed (SPEC.md §13), and the deal says so.
           -- unless recorded: false AS owner_assumed,
           -- if recorded
           d.owner_assumed,
           -- end if
           ps.name AS stage_name, ps.probability, ps.forecast_category AS stage_category,
           ps.stage_state,
           CASE WHEN %(by_pipeline)s::boolean THEN d.pipeline_id ELSE %(pipeline_id)s::uuid END
               AS bucket
    FROM
    -- unless recorded: dyno_crm.deal AS d
    -- if recorded
    (
        -- A run as recorded (SPEC.md §13): the deals as they stood at the end of as_of
        -- (recorded_at is the midnight after it, UTC, and the end is the instant before:
        -- an export taken at that midnight is the next day's), from their versions
        -- valid then and the rows whose values already held; a deal made later, or
        -- deleted by then, is not among them. (recorded_at NULL: the deals as they are.)
        SELECT v.tenant_id, v.deal_id AS id, v.name, v.pipeline_id, v.stage_id, v.amount,
               v.expected_close_date, v.close_date, v.forecast_category, v.currency,
               v.owned_by_user_id, v.assigned_user_id, v.owned_by_group_id,
               v.assigned_group_id, v.owner_assumed
        FROM dyno_crm.deal_version AS v
        WHERE v.tenant_id = %(tenant_id)s::uuid
          AND v.valid_to >= %(recorded_at)s::timestamptz
          AND (v.valid_from IS NULL OR v.valid_from < %(recorded_at)s::timestamptz)
        UNION ALL
        SELECT c.tenant_id, c.id, c.name, c.pipeline_id, c.stage_id, c.amount,
               c.expected_close_date, c.close_date, c.forecast_category, c.currency,
               c.owned_by_user_id, c.assigned_user_id, c.owned_by_group_id,
               c.assigned_group_id, false
        FROM dyno_crm.deal AS c
        WHERE c.tenant_id = %(tenant_id)s::uuid
          AND (%(recorded_at)s::timestamptz IS NULL OR c.recorded_from IS NULL
               OR c.recorded_from < %(recorded_at)s::timestamptz)
    ) AS d
    -- end if
    JOIN dyno_crm.pipeline_stage AS ps
      ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
    WHERE d.tenant_id = %(tenant_id)s::uuid
      AND (%(pipeline_id)s::uuid IS NULL OR d.pipeline_id = %(pipeline_id)s::uuid)
      AND (false
           -- if batch
           OR %(principal_id)s::uuid IS NULL
           -- end if
           -- if users
           OR (%(principal_type)s::text = 'USER'
               AND (d.owned_by_user_id = %(principal_id)s::uuid
                    OR d.assigned_user_id = %(principal_id)s::uuid))
           -- end if
           -- if groups
           OR (%(principal_type)s::text = 'GROUP'
               AND (d.owned_by_group_id = %(principal_id)s::uuid
                    OR d.assigned_group_id = %(principal_id)s::uuid))
           -- end if
           -- if rollup
           -- one group, rolled up: also the deals of the groups and users below it,
           -- each list an array computed once (`= ANY`, which the owner and assignee
           -- indexes take, where `IN (SELECT ...)` left only the tenant's dates)
           OR (%(rollup)s::boolean AND %(principal_type)s::text = 'GROUP'
               AND (d.owned_by_group_id = ANY (ARRAY(SELECT t.group_id FROM tree AS t))
                    OR d.assigned_group_id = ANY (ARRAY(SELECT t.group_id FROM tree AS t))
                    OR d.owned_by_user_id = ANY (ARRAY(SELECT m.user_id FROM rolled_members AS m))
                    OR d.assigned_user_id = ANY (ARRAY(SELECT m.user_id FROM rolled_members AS m))))
           -- end if
      )
),
placed AS (
    -- The period's candidates, each with the date that places it (SPEC.md §7): an
    -- open deal its expected close date, a closed one the date it closed.
    SELECT s.*,
           s.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED') AS done,
           CASE WHEN s.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED')
                THEN COALESCE(s.close_date, s.expected_close_date)
                ELSE COALESCE(s.expected_close_date, s.close_date)
           END AS placed_on
    FROM scoped AS s
    -- if tenant_window
    WHERE (COALESCE(s.expected_close_date, s.close_date) >= %(period_start)s::date
           AND COALESCE(s.expected_close_date, s.close_date) < %(period_end)s::date)
       OR (COALESCE(s.close_date, s.expected_close_date) >= %(period_start)s::date
           AND COALESCE(s.close_date, s.expected_close_date) < %(period_end)s::date)
    -- end if
    -- One principal's dates (rolled up or not) compared `+ 0`, as in `units`:
    -- its deals come by its owner/assignee indexes, not by the tenant's date indexes.
    -- unless tenant_window: WHERE (COALESCE(s.expected_close_date, s.close_date) + 0 >= %(period_start)s::date
    -- unless tenant_window:        AND COALESCE(s.expected_close_date, s.close_date) + 0 < %(period_end)s::date)
    -- unless tenant_window:    OR (COALESCE(s.close_date, s.expected_close_date) + 0 >= %(period_start)s::date
    -- unless tenant_window:        AND COALESCE(s.close_date, s.expected_close_date) + 0 < %(period_end)s::date)
       OR COALESCE(s.expected_close_date, s.close_date) IS NULL
    OFFSET 0  -- computed once per deal, not inlined into every use of placed_on
),
classified AS (
    -- SPEC.md §7's classes of the period's deals (NULL: dated outside the period),
    -- with the values the drill-down stores and the sums add up.
    SELECT c.deal_id, c.deal_name, c.pipeline_id, c.stage_id, c.stage_name, c.amount,
           c.probability, c.owned_by_user_id, c.assigned_user_id, c.owned_by_group_id,
           c.assigned_group_id, c.bucket, c.placed_on, c.deal_class,
           -- An open (or undated) deal's category is the deal's, else its stage's, else
           -- PIPELINE (SPEC.md §8); a closed deal's is its outcome's, as CRMs file them
           -- (Salesforce: Closed Won is Closed, Closed Lost is Omitted), never the open
           -- category it had before it closed.
           CASE c.deal_class WHEN 'WON' THEN 'CLOSED' WHEN 'LOST' THEN 'OMITTED'
                ELSE COALESCE(c.forecast_category, c.stage_category, 'PIPELINE')
           END AS forecast_category,
           c.currency, c.rate IS NOT NULL AS counted,
           ROUND(COALESCE(c.amount, 0) * c.rate, 2) AS reporting_amount,
           CASE WHEN c.deal_class = 'OPEN'
                THEN ROUND(ROUND(COALESCE(c.amount, 0) * c.rate, 2)
                           * COALESCE(c.probability, 0) / 100.0, 2)
                ELSE 0 END AS weighted_amount,
           c.deal_class = 'OPEN' AND c.rate IS NOT NULL AND c.placed_on < %(as_of)s::date
               AS past_due,
           concat_ws(',',
               CASE WHEN c.deal_class = 'UNDATED' THEN 'UNDATED' END,
               CASE WHEN c.rate IS NULL THEN 'NO_RATE' END,
               CASE WHEN c.deal_class = 'OPEN' AND c.amount IS NULL THEN 'NO_AMOUNT' END,
               CASE WHEN c.deal_class = 'OPEN' AND c.probability IS NULL
                    THEN 'NO_PROBABILITY' END,
               CASE WHEN c.deal_class = 'OPEN' AND c.placed_on < %(as_of)s::date
                    THEN 'PAST_DUE' END,
               CASE WHEN c.owner_assumed THEN 'OWNER_ASSUMED' END) AS flags,
           -- The stored chunk that holds the deal (migration 0015): its owner's
           -- hash, so that a rep's deals share one chunk and a drill-down of a rep
           -- or a team reads only the chunks of the deals it shows.
           (hashtext(COALESCE(c.owned_by_user_id::text, '')) & 255)::smallint AS chunk
    FROM (
        SELECT pl.*,
               CASE
                   WHEN NOT pl.done AND pl.placed_on IS NULL THEN 'UNDATED'
                   WHEN pl.placed_on >= %(period_start)s::date
                        AND pl.placed_on < %(period_end)s::date
                       THEN CASE WHEN NOT pl.done THEN 'OPEN'
                                 WHEN pl.stage_state = 'DONE_SUCCESS' THEN 'WON'
                                 ELSE 'LOST' END
               END AS deal_class
        FROM placed AS pl
        OFFSET 0  -- the class is computed once per deal, not inlined into every use
    ) AS c
    WHERE c.deal_class IS NOT NULL
),
units AS (
    -- What the credit rule is applied to: each deal of the period (and each undated
    -- one) with its values; and the closed deals of the win rate's lookback window,
    -- grouped by the principals they name (the win rate only counts them, and they
    -- are most of what a run reads). `kind` (the codes above) says which of a row's
    -- sums and counts a unit goes to.
    SELECT k.deal_id, k.deal_class, k.bucket, k.owned_by_user_id, k.assigned_user_id,
           k.owned_by_group_id, k.assigned_group_id, 1 AS deals, k.forecast_category,
           k.reporting_amount, k.weighted_amount, k.past_due, k.chunk,
           CASE WHEN NOT k.counted THEN 0 /* NOT_COUNTED */
                WHEN k.deal_class = 'OPEN' THEN
                    CASE k.forecast_category WHEN 'COMMIT' THEN 11 /* OPEN_COMMIT */
                                             WHEN 'BEST_CASE' THEN 12 /* OPEN_BEST_CASE */
                                             WHEN 'PIPELINE' THEN 13 /* OPEN_PIPELINE */
                                             WHEN 'OMITTED' THEN 14 /* OPEN_OMITTED */
                                             ELSE 10 /* OPEN */ END
                WHEN k.deal_class = 'WON' THEN 2 /* WON */
                WHEN k.deal_class = 'LOST' THEN 3 /* LOST */
                ELSE 4 /* UNDATED */
           END AS kind
    FROM classified AS k
    UNION ALL
    SELECT NULL,
           CASE WHEN h.stage_state = 'DONE_SUCCESS' THEN 'HISTORY_WON' ELSE 'HISTORY_LOST' END,
           h.bucket, h.owned_by_user_id, h.assigned_user_id, h.owned_by_group_id,
           h.assigned_group_id, count(*), NULL, NULL, NULL, NULL, NULL,
           CASE WHEN h.stage_state = 'DONE_SUCCESS' THEN 5 /* HISTORY_WON */
                ELSE 6 /* HISTORY_LOST */ END
    FROM scoped AS h
    WHERE h.stage_state IN ('DONE_SUCCESS', 'DONE_FAILED')
      AND h.rate IS NOT NULL  -- a deal without a rate is left out of every count
      -- if tenant_window
      AND COALESCE(h.close_date, h.expected_close_date) >= %(history_start)s::date
      AND COALESCE(h.close_date, h.expected_close_date) < %(period_start)s::date
      -- end if
      -- One principal's window (rolled up or not) compares its dates `+ 0`,
      -- which no index matches: its deals come by the owner/assignee indexes, never
      -- by the tenant's date indexes. A generic plan cannot tell a year (or a quarter)
      -- of the tenant's deals from a few, and a principal's two indexes estimate more
      -- rows than its guess wherever the table holds fewer than ~400 teams (or reps):
      -- the year's scan took 700 ms where the team's deals took 25 (docs/performance.md).
      -- unless tenant_window: AND COALESCE(h.close_date, h.expected_close_date) + 0 >= %(history_start)s::date
      -- unless tenant_window: AND COALESCE(h.close_date, h.expected_close_date) + 0 < %(period_start)s::date
    GROUP BY h.stage_state = 'DONE_SUCCESS', h.bucket, h.owned_by_user_id,
             h.assigned_user_id, h.owned_by_group_id, h.assigned_group_id
),
-- if rollup
rolled_up AS (
    -- With rollup, a group's credit (SPEC.md §7): the deals that name the group, its
    -- member users, its descendant groups and their members; once per group, with
    -- the first reason that applies (the lowest `reason` code). A unit is a deal, or
    -- a group of history deals naming the same principals: its key is every column
    -- it was grouped by.
    SELECT DISTINCT ON (c.principal_id, c.deal_id, c.deal_class, c.bucket,
                        c.owned_by_user_id, c.assigned_user_id, c.owned_by_group_id,
                        c.assigned_group_id)
           c.*
    FROM (
        SELECT t.ancestor_id AS principal_id,
               CASE WHEN t.depth = 0 THEN 3 /* OWNER_GROUP */ ELSE 6 /* SUBGROUP */ END
                   AS reason,
               n.*
        FROM units AS n JOIN tree AS t ON t.group_id = n.owned_by_group_id
        UNION ALL
        SELECT t.ancestor_id,
               CASE WHEN t.depth = 0 THEN 4 /* ASSIGNED_GROUP */ ELSE 6 /* SUBGROUP */ END,
               n.*
        FROM units AS n JOIN tree AS t ON t.group_id = n.assigned_group_id
        UNION ALL
        SELECT m.ancestor_id, CASE WHEN m.depth = 0 THEN 5 /* MEMBER */ ELSE 6 /* SUBGROUP */ END,
               n.*
        FROM units AS n JOIN rolled_members AS m ON m.user_id = n.owned_by_user_id
        UNION ALL
        SELECT m.ancestor_id, CASE WHEN m.depth = 0 THEN 5 /* MEMBER */ ELSE 6 /* SUBGROUP */ END,
               n.*
        FROM units AS n JOIN rolled_members AS m ON m.user_id = n.assigned_user_id
    ) AS c
    ORDER BY c.principal_id, c.deal_id, c.deal_class, c.bucket, c.owned_by_user_id,
             c.assigned_user_id, c.owned_by_group_id, c.assigned_group_id, c.reason
),
-- end if
credited AS (
    -- THE CREDIT RULE (SPEC.md §7): a user for the deals it owns or is assigned, a
    -- group for the deals it owns or is assigned (with rollup: `rolled_up`); once per
    -- principal, with the first reason that applies (an assignee who is also the
    -- owner is credited as OWNER). Each unit is paired with the four credit slots,
    -- one per column that can name a principal (with rollup, groups are credited by
    -- `rolled_up` instead): one pass over the units, which are then not stored for a
    -- second (four UNION ALL arms read them four times: a tenth slower).
    --
    -- The rule is applied here; four other places depend on it, and change with it:
    --   `scoped`     for one principal, reads only the deals whose owner/assignee
    --                columns (user or group; with rollup, its tree's and members')
    --                name it: the deals this rule could credit to it;
    --   `units`      groups the win rate's window by the same four columns;
    --   `rolled_up`  a group's reasons with rollup (MEMBER, SUBGROUP) and their order;
    --   tests/oracle.py `Oracle.credits`, which states the rule independently.
    SELECT cr.principal_type, cr.principal_id, cr.credit_reason, cr.deal_id,
           cr.deal_class, cr.bucket, cr.deals, cr.forecast_category, cr.reporting_amount,
           cr.weighted_amount, cr.past_due, cr.chunk, cr.kind
    FROM (
        SELECT s.principal_type,
               CASE s.reason WHEN 1 /* OWNER */ THEN n.owned_by_user_id
                             WHEN 2 /* ASSIGNEE */ THEN NULLIF(n.assigned_user_id, n.owned_by_user_id)
                             WHEN 3 /* OWNER_GROUP */ THEN n.owned_by_group_id
                             ELSE NULLIF(n.assigned_group_id, n.owned_by_group_id) END
                   AS principal_id,
               s.credit_reason,
               n.*
        FROM units AS n
        CROSS JOIN (VALUES (1 /* OWNER */, 'USER', 'OWNER'),
                           (2 /* ASSIGNEE */, 'USER', 'ASSIGNEE'),
                           (3 /* OWNER_GROUP */, 'GROUP', 'OWNER_GROUP'),
                           (4 /* ASSIGNED_GROUP */, 'GROUP', 'ASSIGNED_GROUP'))
            AS s (reason, principal_type, credit_reason)
        WHERE NOT %(rollup)s::boolean OR s.principal_type = 'USER'
        -- if rollup
        UNION ALL
        SELECT 'GROUP', r.principal_id,
               CASE r.reason WHEN 3 /* OWNER_GROUP */ THEN 'OWNER_GROUP'
                             WHEN 4 /* ASSIGNED_GROUP */ THEN 'ASSIGNED_GROUP'
                             WHEN 5 /* MEMBER */ THEN 'MEMBER' ELSE 'SUBGROUP' END,
               r.deal_id, r.deal_class, r.bucket, r.owned_by_user_id, r.assigned_user_id,
               r.owned_by_group_id, r.assigned_group_id, r.deals, r.forecast_category,
               r.reporting_amount, r.weighted_amount, r.past_due, r.chunk, r.kind
        FROM rolled_up AS r
        WHERE %(rollup)s::boolean
        -- end if
    ) AS cr
    WHERE cr.principal_id IS NOT NULL
      AND (%(principal_id)s::uuid IS NULL
           OR (cr.principal_type = %(principal_type)s::text
               AND cr.principal_id = %(principal_id)s::uuid))
),
-- if batch
earlier_batches AS (
    -- The tenant's earlier batch runs of the period, and whether each is of this run's
    -- kind (by pipeline or not, rolled up or not: either gives other credit rows).
    SELECT r.id, r.generated_at, r.credit_chain,
           COALESCE((r.parameters ->> 'by_pipeline')::boolean, false) = %(by_pipeline)s::boolean
           AND COALESCE((r.parameters ->> 'rollup')::boolean, false) = %(rollup)s::boolean
               AS same_kind
    FROM dyno_crm.report_run AS r
    WHERE r.tenant_id = %(tenant_id)s::uuid
      AND r.id <> %(run_id)s::uuid
      AND r.period_start = %(period_start)s::date
      AND r.period_end = %(period_end)s::date
      AND r.parameters ->> 'mode' = 'batch'
      -- (a batch of one pipeline holds other deals than the tenant's)
      AND r.parameters ->> 'pipeline_id' IS NOT DISTINCT FROM %(pipeline_id)s::text
),
base_run AS (
    -- A batch run stores each chunk as what changed since the same chunk of the
    -- tenant's newest earlier batch run of the period (migration 0017), where it has
    -- one: that run.
    SELECT e.id
    FROM earlier_batches AS e
    WHERE EXISTS (SELECT 1 FROM dyno_crm.report_run_deals AS x
                  WHERE x.tenant_id = %(tenant_id)s::uuid AND x.run_id = e.id)
    ORDER BY e.generated_at DESC, e.id DESC
    LIMIT 1
),
credit_base_run AS (
    -- ... and its credit rows as what changed since the newest one of its kind
    -- (migration 0018).
    SELECT e.id, e.credit_chain
    FROM earlier_batches AS e
    WHERE e.same_kind
    ORDER BY e.generated_at DESC, e.id DESC
    LIMIT 1
),
base_chunks AS (
    -- Its chunk rows, each with the runs it builds on and itself.
    SELECT b.run_id, b.chunk, COALESCE(b.chain, '{}') || b.run_id AS chain
    FROM dyno_crm.report_run_deals AS b
    WHERE b.tenant_id = %(tenant_id)s::uuid
      AND b.run_id = (SELECT br.id FROM base_run AS br)
),
base_deals AS MATERIALIZED (
    -- Its deals, chunk by chunk, as every reader resolves them (fragments.sql).
    SELECT v.*
    FROM /* fragment: run_deal_rows */ AS v
    WHERE v.tenant_id = %(tenant_id)s::uuid
      AND v.run_id = (SELECT br.id FROM base_run AS br)
),
base_credits AS MATERIALIZED (
    -- Its credit rows, as every reader resolves them (fragments.sql; migration 0018).
    -- (keyed by the bucket made hashable: none, or the pipeline, which may be the nil
    -- UUID itself)
    SELECT v.principal_type, v.principal_id, v.pipeline_id, v.pipeline_id IS NULL AS whole,
           COALESCE(v.pipeline_id, '00000000-0000-0000-0000-000000000000'::uuid) AS bucket,
           v.deal_ids, v.credit_reasons, v.deal_chunks
    FROM /* fragment: run_credit_rows */ AS v
    WHERE v.tenant_id = %(tenant_id)s::uuid
      AND v.run_id = (SELECT cb.id FROM credit_base_run AS cb)
),
-- end if
chunk_deals AS (
    -- The run's deals of the period (each once, credited to a row or not) with the
    -- values the run stores for them, and (a batch) whether the base run stored the
    -- very same values for the deal in the same chunk.
    SELECT k.chunk, k.deal_id, k.deal_name, k.pipeline_id, p.name AS pipeline_name,
           k.stage_id, k.stage_name, k.deal_class, k.forecast_category, k.probability,
           k.amount, k.currency, k.reporting_amount, k.weighted_amount, k.placed_on,
           k.owned_by_user_id AS owner_user_id, k.flags,
           -- if batch
           COALESCE((b.deal_name, b.pipeline_id, b.pipeline_name, b.stage_id, b.stage_name,
                b.deal_class, b.forecast_category, b.probability, b.amount::text,
                b.currency, b.reporting_amount::text, b.weighted_amount::text,
                b.placed_on, b.owner_user_id, b.flags)
               IS NOT DISTINCT FROM
               (k.deal_name, k.pipeline_id, p.name, k.stage_id, k.stage_name,
                k.deal_class, k.forecast_category, k.probability, k.amount::text,
                k.currency, k.reporting_amount::text, k.weighted_amount::text,
                k.placed_on, k.owned_by_user_id, k.flags), false)
               AS unchanged
           -- end if
           -- unless batch: false AS unchanged
    FROM classified AS k
    JOIN dyno_crm.pipeline AS p ON p.tenant_id = %(tenant_id)s::uuid AND p.id = k.pipeline_id
    -- if batch
    LEFT JOIN base_deals AS b ON b.chunk = k.chunk AND b.deal_id = k.deal_id
    -- end if
),
-- if batch
delta_plan AS (
    -- The chunks stored as what changed since their base: those the base run has,
    -- whose chain would be at most 31 runs long, and whose new, changed and removed deals
    -- are at most a fifth of the chunk's. Every other chunk is stored complete.
    SELECT s.chunk, bc.run_id AS base_run_id, bc.chain,
           COALESCE(rm.deal_ids, '{}') AS removed_deal_ids
    FROM (SELECT c.chunk, count(*) AS deals, count(*) FILTER (WHERE NOT c.unchanged) AS changed
          FROM chunk_deals AS c GROUP BY c.chunk) AS s
    JOIN base_chunks AS bc ON bc.chunk = s.chunk
    LEFT JOIN (
        SELECT b.chunk, array_agg(b.deal_id) AS deal_ids
        FROM base_deals AS b
        WHERE NOT EXISTS (SELECT 1 FROM chunk_deals AS c
                          WHERE c.chunk = b.chunk AND c.deal_id = b.deal_id)
        GROUP BY b.chunk
    ) AS rm ON rm.chunk = s.chunk
    WHERE cardinality(bc.chain) <= 31
      AND (s.changed + COALESCE(cardinality(rm.deal_ids), 0)) * 5 <= s.deals
),
-- end if
stored_deals AS (
    -- The run's deals, stored by column, one row per chunk (`classified`): element i
    -- of every array is one deal (the arrays are aggregated in one pass, so they line
    -- up). A chunk stored as what changed holds its new and changed deals only.
    INSERT INTO dyno_crm.report_run_deals
        (tenant_id, run_id, chunk, base_run_id, chain, removed_deal_ids, deal_ids,
         deal_names, pipeline_ids, pipeline_names, stage_ids, stage_names, deal_classes,
         forecast_categories, probabilities, amounts, currencies, reporting_amounts,
         weighted_amounts, placed_on, owner_user_ids, flags)
    SELECT %(tenant_id)s::uuid, %(run_id)s::uuid, c.chunk, c.base_run_id, c.chain,
           c.removed_deal_ids,
           COALESCE(array_agg(c.deal_id) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.deal_name) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.pipeline_id) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.pipeline_name) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.stage_id) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.stage_name) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.deal_class) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.forecast_category) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.probability) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.amount) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.currency) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.reporting_amount) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.weighted_amount) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.placed_on) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.owner_user_id) FILTER (WHERE c.kept), '{}'),
           COALESCE(array_agg(c.flags) FILTER (WHERE c.kept), '{}')
    FROM (
        SELECT cd.*, dp.base_run_id, dp.chain, dp.removed_deal_ids,
               dp.chunk IS NULL OR NOT cd.unchanged AS kept
        FROM chunk_deals AS cd
        -- if batch
        LEFT JOIN delta_plan AS dp ON dp.chunk = cd.chunk
        -- end if
        -- unless batch: CROSS JOIN (SELECT NULL::smallint AS chunk, NULL::uuid AS base_run_id,
        -- unless batch:                    NULL::uuid[] AS chain, NULL::uuid[] AS removed_deal_ids) AS dp
    ) AS c
    GROUP BY c.chunk, c.base_run_id, c.chain, c.removed_deal_ids
    RETURNING run_id
),
per_row AS (
    -- Every amount and count a row gets from its credited deals (over exactly the
    -- values stored for those deals; NO_RATE deals are in the drill-down, and in no
    -- amount or count), the win rate's counts, and the row's drill-down (its deals
    -- and their credit reasons): one aggregation over the credited units. A sum over
    -- no unit is NULL here; `totals` makes it 0.
    SELECT cd.principal_type, cd.principal_id, cd.bucket,
           count(*) FILTER (WHERE cd.kind >= 10 /* OPEN */) AS open_count,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind >= 10 /* OPEN */) AS open_amount,
           SUM(cd.weighted_amount) FILTER (WHERE cd.kind >= 10 /* OPEN */) AS weighted_amount,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind = 11 /* OPEN_COMMIT */)
               AS commit_amount,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind = 12 /* OPEN_BEST_CASE */)
               AS best_case_amount,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind = 13 /* OPEN_PIPELINE */)
               AS pipeline_amount,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind = 14 /* OPEN_OMITTED */)
               AS omitted_amount,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind = 2 /* WON */) AS won_amount,
           count(*) FILTER (WHERE cd.kind = 2 /* WON */) AS won_count,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind = 3 /* LOST */) AS lost_amount,
           count(*) FILTER (WHERE cd.kind = 3 /* LOST */) AS lost_count,
           SUM(cd.reporting_amount) FILTER (WHERE cd.past_due) AS past_due_amount,
           count(*) FILTER (WHERE cd.past_due) AS past_due_count,
           SUM(cd.reporting_amount) FILTER (WHERE cd.kind = 4 /* UNDATED */) AS undated_amount,
           count(*) FILTER (WHERE cd.kind = 4 /* UNDATED */) AS undated_count,
           SUM(cd.deals) FILTER (WHERE cd.kind = 5 /* HISTORY_WON */) AS history_won_count,
           SUM(cd.deals) FILTER (WHERE cd.kind = 6 /* HISTORY_LOST */) AS history_lost_count,
           -- (a principal credited with deals of the period is in scope, also when
           -- none of them has a rate: its row is where their drill-down shows them)
           bool_or(cd.deal_id IS NOT NULL) AS in_scope,
           array_agg(cd.deal_id) FILTER (WHERE cd.deal_id IS NOT NULL) AS deal_ids,
           array_agg(cd.credit_reason) FILTER (WHERE cd.deal_id IS NOT NULL)
               AS credit_reasons,
           array_agg(cd.chunk) FILTER (WHERE cd.deal_id IS NOT NULL) AS deal_chunks
    FROM credited AS cd
    GROUP BY cd.principal_type, cd.principal_id, cd.bucket
),
-- if batch
credit_changes AS MATERIALIZED (
    -- Each credit row of the run (a batch) against the base run's: unchanged when that
    -- has the same deals with the same reasons and chunks, in whatever order.
    SELECT r.principal_type, r.principal_id, r.bucket, r.deal_ids, r.credit_reasons,
           r.deal_chunks,
           b.deal_ids IS NOT NULL
           AND cardinality(b.deal_ids) = cardinality(r.deal_ids)
           AND ((b.deal_ids = r.deal_ids AND b.credit_reasons = r.credit_reasons
                 AND b.deal_chunks IS NOT DISTINCT FROM r.deal_chunks)
                OR NOT EXISTS (
                    SELECT * FROM unnest(r.deal_ids, r.credit_reasons, r.deal_chunks)
                    EXCEPT ALL
                    SELECT * FROM unnest(b.deal_ids, b.credit_reasons, b.deal_chunks)))
               AS unchanged
    FROM per_row AS r
    LEFT JOIN base_credits AS b
           ON b.principal_type = r.principal_type AND b.principal_id = r.principal_id
          AND b.whole = (r.bucket IS NULL)
          AND b.bucket = COALESCE(r.bucket, '00000000-0000-0000-0000-000000000000'::uuid)
    WHERE r.deal_ids IS NOT NULL
),
credit_removed AS (
    -- The base run's credit rows this run has none for.
    SELECT b.principal_type, b.principal_id, b.pipeline_id AS bucket
    FROM base_credits AS b
    WHERE NOT EXISTS (
        SELECT 1 FROM per_row AS r
        WHERE r.deal_ids IS NOT NULL AND r.principal_type = b.principal_type
          AND r.principal_id = b.principal_id AND (r.bucket IS NULL) = b.whole
          AND COALESCE(r.bucket, '00000000-0000-0000-0000-000000000000'::uuid) = b.bucket)
),
credit_plan AS (
    -- The credit rows are stored as what changed since the base run (migration 0018)
    -- when its chain would be at most 31 runs long and the new, changed and removed
    -- rows are at most a fifth of the run's; else complete.
    SELECT b.id AS base_run_id, COALESCE(b.credit_chain, '{}') || b.id AS chain
    FROM credit_base_run AS b
    WHERE COALESCE(cardinality(b.credit_chain), 0) < 31
      AND ((SELECT count(*) FROM credit_changes AS c WHERE NOT c.unchanged)
           + (SELECT count(*) FROM credit_removed)) * 5
          <= (SELECT count(*) FROM credit_changes)
),
credit_header AS (
    UPDATE dyno_crm.report_run AS r
    SET credit_base_run_id = p.base_run_id, credit_chain = p.chain
    FROM credit_plan AS p
    WHERE r.tenant_id = %(tenant_id)s::uuid AND r.id = %(run_id)s::uuid
    RETURNING r.id
),
-- end if
stored_credits AS (
    -- Who each stored deal counts for, and why: one row per (principal, bucket); a
    -- batch built on a base run only the rows that changed, and `removed` ones.
    INSERT INTO dyno_crm.report_run_credit
        (tenant_id, run_id, principal_type, principal_id, pipeline_id, deal_ids,
         credit_reasons, deal_chunks, removed)
    SELECT %(tenant_id)s::uuid, %(run_id)s::uuid, r.principal_type, r.principal_id,
           r.bucket, r.deal_ids, r.credit_reasons, r.deal_chunks, false
    -- unless batch: FROM per_row AS r WHERE r.deal_ids IS NOT NULL
    -- if batch
    FROM credit_changes AS r
    WHERE NOT (r.unchanged AND EXISTS (SELECT 1 FROM credit_plan))
    UNION ALL
    SELECT %(tenant_id)s::uuid, %(run_id)s::uuid, x.principal_type, x.principal_id,
           x.bucket, '{}', '{}', '{}', true
    FROM credit_removed AS x
    WHERE EXISTS (SELECT 1 FROM credit_plan)
    -- end if
    RETURNING run_id
),
-- if rollup
member_links AS (
    -- With rollup: each group's direct member users and child groups, whose matched
    -- targets add up to its member_target_amount (for one principal: that group's).
    SELECT gm.group_id, 'USER' AS member_type, gm.user_id AS member_id
    FROM dyno_crm.group_member AS gm
    WHERE %(rollup)s::boolean AND gm.tenant_id = %(tenant_id)s::uuid
      AND (%(principal_id)s::uuid IS NULL
           OR (%(principal_type)s::text = 'GROUP' AND gm.group_id = %(principal_id)s::uuid))
    UNION ALL
    SELECT c.parent_group_id, 'GROUP', c.id
    FROM dyno_crm.crm_group AS c
    WHERE %(rollup)s::boolean AND c.tenant_id = %(tenant_id)s::uuid
      AND c.parent_group_id IS NOT NULL
      AND (%(principal_id)s::uuid IS NULL
           OR (%(principal_type)s::text = 'GROUP'
               AND c.parent_group_id = %(principal_id)s::uuid))
),
-- end if
target_rows AS (
    -- The principal's target rows overlapping the period (with rollup, for one group:
    -- also its members' and child groups'); `matched` per target_match (exact: the
    -- same period; within: inside it). Unmatched overlapping rows only raise
    -- TARGET_PERIOD_MISMATCH when nothing matched. By pipeline, a pipeline-less
    -- target belongs to no pipeline's row (its bucket is NULL), but its principal is
    -- in scope.
    SELECT st.principal_type::text AS principal_type, st.principal_id, st.target_amount,
           st.id AS target_id, st.pipeline_id, st.period_start, st.period_end,
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
      AND (false
           -- if batch
           OR %(principal_id)s::uuid IS NULL
           -- end if
           OR (st.principal_type = %(principal_type)s::text
               AND st.principal_id = %(principal_id)s::uuid)
           -- if rollup
           OR (st.principal_type, st.principal_id) IN (
               SELECT ml.member_type, ml.member_id FROM member_links AS ml)
           -- end if
      )
),
targets AS (
    SELECT tr.principal_type, tr.principal_id, tr.bucket,
           SUM(tr.target_amount) FILTER (WHERE tr.matched) AS target_amount,
           bool_or(tr.matched) AS matched
    FROM target_rows AS tr
    GROUP BY tr.principal_type, tr.principal_id, tr.bucket
),
-- if within
overlapping_targets AS (
    -- With target_match=within, SPEC.md §10 sums every target row inside the period:
    -- two matched rows of one principal and pipeline whose periods overlap (a year's
    -- target and its quarters') count the overlap twice. The row is flagged
    -- TARGET_OVERLAP and keeps the rows it summed so, each as `start..end amount id`.
    SELECT a.principal_type, a.principal_id, a.bucket,
           array_agg(DISTINCT a.period_start || '..' || a.period_end || ' '
                     || a.target_amount || ' ' || a.target_id) AS target_overlaps
    FROM target_rows AS a
    JOIN target_rows AS b
      ON b.principal_type = a.principal_type AND b.principal_id = a.principal_id
     AND b.pipeline_id IS NOT DISTINCT FROM a.pipeline_id AND b.target_id <> a.target_id
     AND b.period_start < a.period_end AND a.period_start < b.period_end
    WHERE %(target_match)s::text = 'within' AND a.matched AND b.matched
    GROUP BY a.principal_type, a.principal_id, a.bucket
),
-- end if
-- if rollup
member_targets AS (
    SELECT ml.group_id, t.bucket, SUM(t.target_amount) AS member_target_amount
    FROM member_links AS ml
    JOIN targets AS t
      ON t.principal_type = ml.member_type AND t.principal_id = ml.member_id AND t.matched
    GROUP BY ml.group_id, t.bucket
),
-- end if
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
    SELECT t.principal_type, t.principal_id FROM targets AS t
    WHERE t.matched AND %(principal_id)s::uuid IS NULL  -- one principal: not its members
    UNION
    SELECT r.principal_type, r.principal_id FROM per_row AS r WHERE r.in_scope
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
totals AS (
    -- Each row's target and sums: a principal (or bucket) that no unit was credited to
    -- has no `per_row` line, and a kind no unit had no sum; both are 0 — the one place
    -- a missing sum becomes 0.
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
           COALESCE(s.history_won_count, 0) AS history_won_count,
           COALESCE(s.history_lost_count, 0) AS history_lost_count,
           -- if within
           o.target_overlaps,
           -- end if
           -- unless within: NULL::text[] AS target_overlaps,
           -- if rollup
           mt.member_target_amount
           -- end if
           -- unless rollup: NULL::numeric AS member_target_amount
    FROM principals AS pr
    CROSS JOIN buckets AS b
    LEFT JOIN targets AS t
           ON t.principal_type = pr.principal_type AND t.principal_id = pr.principal_id
          AND t.bucket IS NOT DISTINCT FROM b.bucket
    LEFT JOIN per_row AS s
           ON s.principal_type = pr.principal_type AND s.principal_id = pr.principal_id
          AND s.bucket IS NOT DISTINCT FROM b.bucket
    -- if rollup
    LEFT JOIN member_targets AS mt
           ON pr.principal_type = 'GROUP' AND mt.group_id = pr.principal_id
          AND mt.bucket IS NOT DISTINCT FROM b.bucket
    -- end if
    -- if within
    LEFT JOIN overlapping_targets AS o
           ON o.principal_type = pr.principal_type AND o.principal_id = pr.principal_id
          AND o.bucket IS NOT DISTINCT FROM b.bucket
    -- end if
),
derived AS (
    -- What a row computes from its sums (SPEC.md §8): the remaining target, the win
    -- rate, the ratios and the gap. A ratio has no value when its denominator has none
    -- or is 0 — NULLIF(denominator, 0) is that guard, the only one. The win rate is
    -- rounded first (`x`), and the needed coverage and the gap use the rounded one,
    -- as stored. A metric computed from a row's other columns is one line here.
    SELECT x.*,
           ROUND(x.open_amount / NULLIF(x.target_amount, 0), 4) AS coverage_ratio,
           ROUND(x.won_amount / NULLIF(x.target_amount, 0), 4) AS attainment_ratio,
           ROUND(x.open_amount / NULLIF(x.remaining_target, 0), 4) AS remaining_coverage_ratio,
           ROUND(1 / NULLIF(x.win_rate, 0), 4) AS needed_coverage,
           ROUND(x.remaining_target / NULLIF(x.win_rate, 0) - x.open_amount, 2) AS pipeline_gap
    FROM (
        SELECT tt.*,
               CASE WHEN tt.target_amount IS NOT NULL
                    THEN GREATEST(tt.target_amount - tt.won_amount, 0)
               END AS remaining_target,
               ROUND(tt.history_won_count::numeric
                     / NULLIF(tt.history_won_count + tt.history_lost_count, 0), 4) AS win_rate
        FROM totals AS tt
    ) AS x
),
fits AS (
    -- The tenant's calibration at the run's week (SPEC.md §14), per principal type, as
    -- the run read it from calibration_fit (none: the run says why in its parameters):
    -- logistic in ln(coverage), with the covariance of its two coefficients.
    SELECT cf.*
    FROM jsonb_to_recordset(%(calibration)s::jsonb)
        AS cf (principal_type text, intercept float8, slope float8, var_intercept float8,
               covariance float8, var_slope float8, floor float8, ceiling float8)
),
calibrated AS (
    -- A row's chance of making the number at its coverage of the remaining quota, and
    -- its 95 percent interval (the delta method on the linear predictor, then the logistic):
    -- only a whole-pipeline row with a remaining quota and a fit for its type. The
    -- coverage is held within the fit's floor and ceiling (ln of 0 has no value) and
    -- the predictor within ±30 (exp must not overflow): docs/calibration.md.
    SELECT d.*,
           ROUND((1 / (1 + exp(-p.eta)))::numeric, 4) AS hit_probability,
           ROUND((1 / (1 + exp(-p.low)))::numeric, 4) AS hit_probability_low,
           ROUND((1 / (1 + exp(-p.high)))::numeric, 4) AS hit_probability_high
    FROM derived AS d
    LEFT JOIN fits AS cf
           ON cf.principal_type = d.principal_type AND d.bucket IS NULL
          AND d.remaining_coverage_ratio IS NOT NULL
    LEFT JOIN LATERAL (
        -- (only where a fit joined: GREATEST and LEAST pass over a NULL)
        SELECT GREATEST(LEAST(e.eta, 30), -30) AS eta,
               GREATEST(LEAST(e.eta - 1.959964 * e.se, 30), -30) AS low,
               GREATEST(LEAST(e.eta + 1.959964 * e.se, 30), -30) AS high
        FROM (SELECT ln(CASE WHEN cf.floor IS NOT NULL
                             THEN LEAST(GREATEST(d.remaining_coverage_ratio::float8, cf.floor),
                                        cf.ceiling) END) AS x) AS c
        CROSS JOIN LATERAL (
            SELECT cf.intercept + cf.slope * c.x AS eta,
                   sqrt(GREATEST(cf.var_intercept + 2 * c.x * cf.covariance
                                 + c.x * c.x * cf.var_slope, 0)) AS se
        ) AS e
        WHERE cf.principal_type IS NOT NULL
    ) AS p ON true
)
INSERT INTO dyno_crm.report_pipeline_coverage_fact
    (run_id, tenant_id, period_start, period_end, principal_type, principal_id,
     pipeline_id, principal_name, pipeline_name, flags, target_overlaps,
     target_amount, open_amount, coverage_ratio, open_count, weighted_amount,
     commit_amount, best_case_amount, pipeline_amount, omitted_amount, won_amount,
     won_count, lost_amount, lost_count, attainment_ratio, remaining_target,
     remaining_coverage_ratio, win_rate, history_won_count, history_lost_count,
     needed_coverage, pipeline_gap, past_due_amount, past_due_count, undated_amount,
     undated_count, member_target_amount, hit_probability, hit_probability_low,
     hit_probability_high)
SELECT
    %(run_id)s::uuid, %(tenant_id)s::uuid, %(period_start)s::date, %(period_end)s::date,
    x.principal_type, x.principal_id, x.bucket,
    -- (looked up per row, by key: a single report runs with nested loops off, and a
    -- join would hash all of the tenant's reps and teams for its one row)
    CASE x.principal_type
        WHEN 'USER' THEN (SELECT u.name FROM dyno_crm.crm_user AS u
                          WHERE u.tenant_id = %(tenant_id)s::uuid AND u.id = x.principal_id)
        ELSE (SELECT g.name FROM dyno_crm.crm_group AS g
              WHERE g.tenant_id = %(tenant_id)s::uuid AND g.id = x.principal_id)
    END,
    (SELECT p.name FROM dyno_crm.pipeline AS p
     WHERE p.tenant_id = %(tenant_id)s::uuid AND p.id = x.bucket),
    CASE WHEN x.mismatch THEN ARRAY['TARGET_PERIOD_MISMATCH']
         WHEN x.target_overlaps IS NOT NULL THEN ARRAY['TARGET_OVERLAP']
         ELSE '{}'::text[] END,
    x.target_overlaps,
    -- every metric of the registry (pipeline_coverage.metrics), in its order
    x.target_amount, x.open_amount, x.coverage_ratio, x.open_count, x.weighted_amount,
    x.commit_amount, x.best_case_amount, x.pipeline_amount, x.omitted_amount, x.won_amount,
    x.won_count, x.lost_amount, x.lost_count, x.attainment_ratio, x.remaining_target,
    x.remaining_coverage_ratio, x.win_rate, x.history_won_count, x.history_lost_count,
    x.needed_coverage, x.pipeline_gap, x.past_due_amount, x.past_due_count, x.undated_amount,
    x.undated_count, x.member_target_amount, x.hit_probability, x.hit_probability_low,
    x.hit_probability_high
FROM calibrated AS x;
