-- 0001 core schema: the dyno_crm contract of SPEC.md §3 and the report's storage
-- (the seed's part A, with the fixes of SPEC.md §2).
--
-- Every table carries tenant_id, every primary key and unique constraint starts with
-- it, and every foreign key includes it: no row can point into another tenant, and a
-- Citus cluster can distribute every table by tenant_id.
--
-- Money: inputs are NUMERIC(18,2) (up to 9,999,999,999,999,999.99). Sums stored in
-- the fact table are NUMERIC(38,2): 10^20 maximal deals would still fit, so no valid
-- input can overflow them. The ratio is NUMERIC(42,4): the largest sum over the
-- smallest non-zero target (0.01) is < 10^38.

CREATE SCHEMA IF NOT EXISTS dyno_crm;

CREATE TABLE dyno_crm.tenant (
    id   uuid NOT NULL,
    name text NOT NULL,
    CONSTRAINT pk_tenant PRIMARY KEY (id)
);

CREATE TABLE dyno_crm.crm_user (
    tenant_id uuid    NOT NULL,
    id        uuid    NOT NULL,
    name      text    NOT NULL,
    email     text,
    is_active boolean NOT NULL DEFAULT true,
    CONSTRAINT pk_crm_user PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_crm_user_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE
);

CREATE TABLE dyno_crm.crm_group (
    tenant_id uuid NOT NULL,
    id        uuid NOT NULL,
    name      text NOT NULL,
    CONSTRAINT pk_crm_group PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_crm_group_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE
);

CREATE TABLE dyno_crm.group_member (
    tenant_id uuid NOT NULL,
    group_id  uuid NOT NULL,
    user_id   uuid NOT NULL,
    CONSTRAINT pk_group_member PRIMARY KEY (tenant_id, group_id, user_id),
    CONSTRAINT fk_group_member_group FOREIGN KEY (tenant_id, group_id)
        REFERENCES dyno_crm.crm_group (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT fk_group_member_user FOREIGN KEY (tenant_id, user_id)
        REFERENCES dyno_crm.crm_user (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE dyno_crm.pipeline (
    tenant_id uuid NOT NULL,
    id        uuid NOT NULL,
    name      text NOT NULL,
    CONSTRAINT pk_pipeline PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_pipeline_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE
);

CREATE TABLE dyno_crm.pipeline_stage (
    tenant_id   uuid     NOT NULL,
    id          uuid     NOT NULL,
    pipeline_id uuid     NOT NULL,
    name        text     NOT NULL,
    stage_state text     NOT NULL,
    probability smallint,
    position    integer,
    CONSTRAINT pk_pipeline_stage PRIMARY KEY (tenant_id, id),
    -- Lets a deal reference (pipeline, stage) together: a stage belongs to its deal's pipeline.
    CONSTRAINT ux_pipeline_stage_pipeline UNIQUE (tenant_id, pipeline_id, id),
    CONSTRAINT fk_pipeline_stage_pipeline FOREIGN KEY (tenant_id, pipeline_id)
        REFERENCES dyno_crm.pipeline (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_pipeline_stage_state CHECK (
        stage_state IN ('NOT_STARTED', 'IN_PROGRESS', 'DONE_SUCCESS', 'DONE_FAILED')),
    CONSTRAINT ck_pipeline_stage_probability CHECK (probability BETWEEN 0 AND 100)
);

CREATE TABLE dyno_crm.deal (
    tenant_id           uuid          NOT NULL,
    id                  uuid          NOT NULL,
    pipeline_id         uuid          NOT NULL,
    stage_id            uuid          NOT NULL,
    name                text          NOT NULL,
    amount              numeric(18,2),
    expected_close_date date,
    close_date          date,
    owned_by_user_id    uuid,
    assigned_user_id    uuid,
    owned_by_group_id   uuid,
    assigned_group_id   uuid,
    CONSTRAINT pk_deal PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_deal_pipeline FOREIGN KEY (tenant_id, pipeline_id)
        REFERENCES dyno_crm.pipeline (tenant_id, id) ON DELETE CASCADE,
    -- Deferrable, so that one import can move a stage and its deals to another pipeline.
    CONSTRAINT fk_deal_stage FOREIGN KEY (tenant_id, pipeline_id, stage_id)
        REFERENCES dyno_crm.pipeline_stage (tenant_id, pipeline_id, id)
        DEFERRABLE INITIALLY IMMEDIATE,
    CONSTRAINT fk_deal_owned_by_user FOREIGN KEY (tenant_id, owned_by_user_id)
        REFERENCES dyno_crm.crm_user (tenant_id, id) ON DELETE SET NULL (owned_by_user_id),
    CONSTRAINT fk_deal_assigned_user FOREIGN KEY (tenant_id, assigned_user_id)
        REFERENCES dyno_crm.crm_user (tenant_id, id) ON DELETE SET NULL (assigned_user_id),
    CONSTRAINT fk_deal_owned_by_group FOREIGN KEY (tenant_id, owned_by_group_id)
        REFERENCES dyno_crm.crm_group (tenant_id, id) ON DELETE SET NULL (owned_by_group_id),
    CONSTRAINT fk_deal_assigned_group FOREIGN KEY (tenant_id, assigned_group_id)
        REFERENCES dyno_crm.crm_group (tenant_id, id) ON DELETE SET NULL (assigned_group_id),
    CONSTRAINT ck_deal_amount_non_negative CHECK (amount >= 0)
);

CREATE TABLE dyno_crm.sales_target (
    tenant_id      uuid          NOT NULL,
    id             uuid          NOT NULL,
    principal_type varchar(20)   NOT NULL,
    principal_id   uuid          NOT NULL,
    pipeline_id    uuid,
    period_start   date          NOT NULL,
    period_end     date          NOT NULL,
    target_amount  numeric(18,2) NOT NULL,
    CONSTRAINT pk_sales_target PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_sales_target_pipeline FOREIGN KEY (tenant_id, pipeline_id)
        REFERENCES dyno_crm.pipeline (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_sales_target_principal_type CHECK (principal_type IN ('USER', 'GROUP')),
    CONSTRAINT ck_sales_target_period CHECK (period_end > period_start),
    CONSTRAINT ck_sales_target_amount_non_negative CHECK (target_amount >= 0)
);

-- The seed's report_run, keyed by (tenant_id, id) like every other table.
CREATE TABLE dyno_crm.report_run (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL,
    report_type  varchar(50) NOT NULL,
    generated_at timestamptz NOT NULL DEFAULT now(),
    period_start date        NOT NULL,
    period_end   date        NOT NULL,
    parameters   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT pk_report_run PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_report_run_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_report_run_type CHECK (report_type IN ('PIPELINE_COVERAGE')),
    CONSTRAINT ck_report_run_period CHECK (period_end > period_start)
);

-- Serves `show RUN_ID` (a run looked up by its id alone).
CREATE INDEX ix_report_run_id ON dyno_crm.report_run (id);
-- Serves `runs --tenant T` (newest first).
CREATE INDEX ix_report_run_tenant_generated
    ON dyno_crm.report_run (tenant_id, generated_at DESC);

CREATE TABLE dyno_crm.report_pipeline_coverage_fact (
    run_id         uuid          NOT NULL,
    tenant_id      uuid          NOT NULL,
    period_start   date          NOT NULL,
    period_end     date          NOT NULL,
    principal_type varchar(20)   NOT NULL,
    principal_id   uuid          NOT NULL,
    pipeline_id    uuid,
    target_amount  numeric(38,2),
    open_amount    numeric(38,2) NOT NULL,
    coverage_ratio numeric(42,4),
    CONSTRAINT fk_rpc_run FOREIGN KEY (tenant_id, run_id)
        REFERENCES dyno_crm.report_run (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT fk_rpc_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE,
    -- One row per principal (and pipeline) in a run; also the index for reading a run.
    CONSTRAINT ux_rpc_unique_row UNIQUE NULLS NOT DISTINCT
        (tenant_id, run_id, principal_type, principal_id, pipeline_id),
    CONSTRAINT ck_rpc_principal_type CHECK (principal_type IN ('USER', 'GROUP')),
    CONSTRAINT ck_rpc_open_amount_non_negative CHECK (open_amount >= 0)
);

-- The seed's index: serves a principal's coverage history across runs.
CREATE INDEX ix_rpc_tenant_principal
    ON dyno_crm.report_pipeline_coverage_fact (tenant_id, principal_type, principal_id);
