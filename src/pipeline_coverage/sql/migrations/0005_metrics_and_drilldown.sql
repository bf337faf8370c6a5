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
-- that placed the deal, amounts, category, probability, names, and flags. Only deals
-- credited to at least one row of the run are kept. The amounts a fact row carries
-- are sums over its deals here, computed from exactly these rows when the run is
-- written. No foreign keys: a run's rows are written once, with their run, in one
-- statement, and a per-row key check would cost more than the rows themselves; a
-- trigger on report_run deletes them with their run.
CREATE TABLE dyno_crm.report_run_deal (
    tenant_id         uuid          NOT NULL,
    run_id            uuid          NOT NULL,
    deal_id           uuid          NOT NULL,
    deal_name         text          NOT NULL,
    pipeline_id       uuid          NOT NULL,
    pipeline_name     text          NOT NULL,
    stage_id          uuid          NOT NULL,
    stage_name        text          NOT NULL,
    deal_class        text          NOT NULL,
    forecast_category text          NOT NULL,
    probability       smallint,
    amount            numeric(18,2),
    currency          text          NOT NULL,
    reporting_amount  numeric(18,2) NOT NULL,
    weighted_amount   numeric(18,2) NOT NULL,
    placed_on         date,
    owner_user_id     uuid,
    flags             text[]        NOT NULL,
    CONSTRAINT pk_report_run_deal PRIMARY KEY (tenant_id, run_id, deal_id),
    CONSTRAINT ck_report_run_deal_class
        CHECK (deal_class IN ('OPEN', 'WON', 'LOST', 'UNDATED'))
);

-- Who a run credits each deal to, and why: one row per fact row that has deals, its
-- deals and their credit reasons as parallel arrays (SPEC.md §7's reasons, in the
-- order of the arrays). Arrays instead of a row per credit: a 300k-deal tenant's run
-- credits ~75k (principal, deal) pairs, and a row each (with its index entry) costs
-- several times the run's computation; see docs/decisions.md for the measurements.
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
    DELETE FROM dyno_crm.report_run_deal AS d
    USING gone AS g WHERE d.tenant_id = g.tenant_id AND d.run_id = g.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tr_report_run_drop_drilldown
    AFTER DELETE ON dyno_crm.report_run
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION dyno_crm.report_run_drop_drilldown();
