-- 0014 Coverage calibration (SPEC.md §14): the chance of making the number, fitted on
-- the tenant's past quarters, on every row of a run; and the fits themselves.
--
-- `hit_probability` is the calibrated chance that the row's principal ends the quarter
-- with won_amount >= target_amount, from its remaining_coverage_ratio at the run's
-- week of the quarter; `_low` and `_high` bound its 95% interval. NULL when the row
-- has no coverage of a remaining quota (no target, quota met) or the tenant has no fit
-- at the run's week (the run's parameters say why). 4 decimals, at most 1.
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.report_pipeline_coverage_fact
    ADD COLUMN hit_probability      numeric(5,4),
    ADD COLUMN hit_probability_low  numeric(5,4),
    ADD COLUMN hit_probability_high numeric(5,4);

-- One fit per tenant, principal type and week of the quarter (1-13), as `calibration`
-- last wrote it: logistic regression of the quarter's outcome on ln(coverage)
-- (docs/calibration.md), its coefficients and their covariance (for the interval),
-- the coverages at which it reaches 50% and 80%, and what it was fitted on. A week
-- without a fit keeps its row, with `reason` (too few quarters or observations, no
-- increase with coverage, outcomes separated), so that a run can say why.
CREATE TABLE dyno_crm.calibration_fit (
    tenant_id        uuid        NOT NULL,
    principal_type   text        NOT NULL,
    week             smallint    NOT NULL,
    fitted_at        timestamptz NOT NULL,
    -- the runs it was fitted on were made with these options (the tenant's defaults)
    rollup           boolean     NOT NULL,
    target_match     text        NOT NULL,
    quarters         integer     NOT NULL,
    last_quarter_end date,
    observations     integer     NOT NULL,
    hits             integer     NOT NULL,
    -- the weeks whose observations were pooled for this week's fit
    first_week       smallint    NOT NULL,
    last_week        smallint    NOT NULL,
    intercept        double precision,
    slope            double precision,
    var_intercept    double precision,
    covariance       double precision,
    var_slope        double precision,
    coverage_50      numeric(12,4),
    coverage_80      numeric(12,4),
    reason           text,
    CONSTRAINT pk_calibration_fit PRIMARY KEY (tenant_id, principal_type, week),
    CONSTRAINT fk_calibration_fit_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_calibration_fit_principal_type CHECK (principal_type IN ('USER', 'GROUP')),
    CONSTRAINT ck_calibration_fit_week CHECK (week BETWEEN 1 AND 13),
    CONSTRAINT ck_calibration_fit_fitted CHECK ((slope IS NULL) = (reason IS NOT NULL))
);
