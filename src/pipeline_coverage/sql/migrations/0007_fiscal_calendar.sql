-- 0007 Fiscal calendar (SPEC.md §10): the month a tenant's fiscal year starts in.
-- A fiscal year is named by the calendar year in which it ends (start month 7:
-- FY2027 is 2026-07-01 to 2027-07-01; start month 1: FY2026 is calendar 2026).
ALTER TABLE dyno_crm.tenant
    ADD COLUMN fiscal_year_start_month smallint NOT NULL DEFAULT 1;
ALTER TABLE dyno_crm.tenant
    ADD CONSTRAINT ck_tenant_fiscal_year_start_month
        CHECK (fiscal_year_start_month BETWEEN 1 AND 12);
