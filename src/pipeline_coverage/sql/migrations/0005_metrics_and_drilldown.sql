-- 0005 Metrics and drill-down (SPEC.md §7, §8): forecast categories, the reporting
-- currency, every metric of a fact row, the names a run saw, and the deals behind
-- every row.

-- Forecast category of a stage, and a deal's own (which wins when set). NULL on both
-- means PIPELINE.
ALTER TABLE dyno_crm.pipeline_stage
    ADD COLUMN forecast_category text,
    ADD CONSTRAINT ck_pipeline_stage_forecast_category
        CHECK (forecast_category IN ('COMMIT', 'BEST_CASE', 'PIPELINE', 'OMITTED'));
ALTER TABLE dyno_crm.deal
    ADD COLUMN forecast_category text,
    ADD CONSTRAINT ck_deal_forecast_category
        CHECK (forecast_category IN ('COMMIT', 'BEST_CASE', 'PIPELINE', 'OMITTED'));

-- The reporting currency (ISO 4217): targets and every stored amount are in it.
ALTER TABLE dyno_crm.tenant
    ADD COLUMN currency text NOT NULL DEFAULT 'USD',
    ADD CONSTRAINT ck_tenant_currency CHECK (currency ~ '^[A-Z]{3}$');

-- Every metric of SPEC.md §8, and the names of the principal and pipeline as the run
-- saw them. Columns are NULL on runs stored before this migration (they had no
-- drill-down); every new run fills the counts and amounts. Widths: sums are
-- NUMERIC(38,2) like open_amount; ratios NUMERIC(42,4) like coverage_ratio (the
-- largest sum over the smallest non-zero divisor); the win rate is at most 1; the
-- needed coverage at most 1 / 0.0001; the pipeline gap can be negative (a surplus)
-- and as large as the largest remaining target over the smallest win rate.
ALTER TABLE dyno_crm.report_pipeline_coverage_fact
    ADD COLUMN principal_name           text,
    ADD COLUMN pipeline_name            text,
    ADD COLUMN open_count               integer,
    ADD COLUMN weighted_amount          numeric(38,2),
    ADD COLUMN commit_amount            numeric(38,2),
    ADD COLUMN best_case_amount         numeric(38,2),
    ADD COLUMN pipeline_amount          numeric(38,2),
    ADD COLUMN omitted_amount           numeric(38,2),
    ADD COLUMN won_amount               numeric(38,2),
    ADD COLUMN won_count                integer,
    ADD COLUMN lost_amount              numeric(38,2),
    ADD COLUMN lost_count               integer,
    ADD COLUMN attainment_ratio         numeric(42,4),
    ADD COLUMN remaining_target         numeric(38,2),
    ADD COLUMN remaining_coverage_ratio numeric(42,4),
    ADD COLUMN win_rate                 numeric(5,4),
    ADD COLUMN history_won_count        integer,
    ADD COLUMN history_lost_count       integer,
    ADD COLUMN needed_coverage          numeric(9,4),
    ADD COLUMN pipeline_gap             numeric(44,2),
    ADD COLUMN past_due_amount          numeric(38,2),
    ADD COLUMN past_due_count           integer,
    ADD COLUMN undated_amount           numeric(38,2),
    ADD COLUMN undated_count            integer,
    ADD COLUMN flags                    text[] NOT NULL DEFAULT '{}';

-- Runs stored before this migration keep today's names: the best that is known.
UPDATE dyno_crm.report_pipeline_coverage_fact AS f
SET principal_name = CASE f.principal_type
        WHEN 'USER' THEN (SELECT u.name FROM dyno_crm.crm_user AS u
                          WHERE u.tenant_id = f.tenant_id AND u.id = f.principal_id)
        ELSE (SELECT g.name FROM dyno_crm.crm_group AS g
              WHERE g.tenant_id = f.tenant_id AND g.id = f.principal_id)
    END,
    pipeline_name = (SELECT p.name FROM dyno_crm.pipeline AS p
                     WHERE p.tenant_id = f.tenant_id AND p.id = f.pipeline_id);

-- insert_coverage: a run reads, besides the deals dated in its period (by
-- ix_deal_tenant_close), the deals closed in the period and in the win rate's
-- lookback window, which a closed deal's close date places (SPEC.md §7).
CREATE INDEX ix_deal_tenant_closed_on
    ON dyno_crm.deal (tenant_id, (COALESCE(close_date, expected_close_date)));

-- The deals of a run, once each, as the run saw them (SPEC.md §7): class, the date
-- that placed the deal, amounts, category, probability, names, and flags (a comma-
-- separated list per deal). Only deals credited to at least one row of the run are
-- kept. Stored by column: one row per run, a parallel array per field, element i of
-- every array describing the same deal. A row per deal (and its index entry) costs
-- several times the run's computation for a 300k-deal tenant's 30k deals; one row
-- of arrays is written and read in one piece (docs/decisions.md has the figures).
-- EXTERNAL storage: out of line without compression, which costs more time than it
-- saves space on uuids and amounts. The amounts a fact row carries are sums over
-- its deals here, computed from exactly these values when the run is written. No
-- foreign keys: the row is written once, with its run, in one statement; a trigger
-- on report_run deletes it with its run.
CREATE TABLE dyno_crm.report_run_deals (
    tenant_id          uuid      NOT NULL,
    run_id             uuid      NOT NULL,
    deal_ids           uuid[]    NOT NULL,
    deal_names         text[]    NOT NULL,
    pipeline_ids       uuid[]    NOT NULL,
    pipeline_names     text[]    NOT NULL,
    stage_ids          uuid[]    NOT NULL,
    stage_names        text[]    NOT NULL,
    deal_classes       text[]    NOT NULL,
    forecast_categories text[]   NOT NULL,
    probabilities      smallint[] NOT NULL,
    amounts            numeric[] NOT NULL,
    currencies         text[]    NOT NULL,
    reporting_amounts  numeric[] NOT NULL,
    weighted_amounts   numeric[] NOT NULL,
    placed_on          date[]    NOT NULL,
    owner_user_ids     uuid[]    NOT NULL,
    flags              text[]    NOT NULL,
    CONSTRAINT pk_report_run_deals PRIMARY KEY (tenant_id, run_id),
    CONSTRAINT ck_report_run_deals_parallel CHECK (
        cardinality(deal_names) = cardinality(deal_ids)
        AND cardinality(pipeline_ids) = cardinality(deal_ids)
        AND cardinality(pipeline_names) = cardinality(deal_ids)
        AND cardinality(stage_ids) = cardinality(deal_ids)
        AND cardinality(stage_names) = cardinality(deal_ids)
        AND cardinality(deal_classes) = cardinality(deal_ids)
        AND cardinality(forecast_categories) = cardinality(deal_ids)
        AND cardinality(probabilities) = cardinality(deal_ids)
        AND cardinality(amounts) = cardinality(deal_ids)
        AND cardinality(currencies) = cardinality(deal_ids)
        AND cardinality(reporting_amounts) = cardinality(deal_ids)
        AND cardinality(weighted_amounts) = cardinality(deal_ids)
        AND cardinality(placed_on) = cardinality(deal_ids)
        AND cardinality(owner_user_ids) = cardinality(deal_ids)
        AND cardinality(flags) = cardinality(deal_ids))
);
ALTER TABLE dyno_crm.report_run_deals
    ALTER COLUMN deal_ids SET STORAGE EXTERNAL,
    ALTER COLUMN deal_names SET STORAGE EXTERNAL,
    ALTER COLUMN pipeline_ids SET STORAGE EXTERNAL,
    ALTER COLUMN pipeline_names SET STORAGE EXTERNAL,
    ALTER COLUMN stage_ids SET STORAGE EXTERNAL,
    ALTER COLUMN stage_names SET STORAGE EXTERNAL,
    ALTER COLUMN deal_classes SET STORAGE EXTERNAL,
    ALTER COLUMN forecast_categories SET STORAGE EXTERNAL,
    ALTER COLUMN probabilities SET STORAGE EXTERNAL,
    ALTER COLUMN amounts SET STORAGE EXTERNAL,
    ALTER COLUMN currencies SET STORAGE EXTERNAL,
    ALTER COLUMN reporting_amounts SET STORAGE EXTERNAL,
    ALTER COLUMN weighted_amounts SET STORAGE EXTERNAL,
    ALTER COLUMN placed_on SET STORAGE EXTERNAL,
    ALTER COLUMN owner_user_ids SET STORAGE EXTERNAL,
    ALTER COLUMN flags SET STORAGE EXTERNAL;

-- Who a run credits each deal to, and why: one row per fact row that has deals, its
-- deals and their credit reasons as parallel arrays (SPEC.md §7's reasons). Arrays
-- for the same reason as above: a 300k-deal tenant's run credits ~70k pairs.
CREATE TABLE dyno_crm.report_run_credit (
    tenant_id      uuid   NOT NULL,
    run_id         uuid   NOT NULL,
    principal_type text   NOT NULL,
    principal_id   uuid   NOT NULL,
    pipeline_id    uuid,
    deal_ids       uuid[] NOT NULL,
    credit_reasons text[] NOT NULL,
    CONSTRAINT ux_report_run_credit UNIQUE NULLS NOT DISTINCT
        (tenant_id, run_id, principal_type, principal_id, pipeline_id),
    CONSTRAINT ck_report_run_credit_parallel
        CHECK (cardinality(deal_ids) = cardinality(credit_reasons))
);

-- A run deleted any way (prune, a tenant's cascade, by hand) takes its drill-down
-- with it: one set-based statement per deleting statement, not a trigger per row.
CREATE FUNCTION dyno_crm.report_run_drop_drilldown() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dyno_crm.report_run_credit AS c
    USING gone AS g WHERE c.tenant_id = g.tenant_id AND c.run_id = g.id;
    DELETE FROM dyno_crm.report_run_deals AS d
    USING gone AS g WHERE d.tenant_id = g.tenant_id AND d.run_id = g.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tr_report_run_drop_drilldown
    AFTER DELETE ON dyno_crm.report_run
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION dyno_crm.report_run_drop_drilldown();
