-- 0002 report indexes. Each index names the query it serves (sql/queries/*.sql);
-- docs/benchmarks.md shows the plans. The "close day" is the report's date rule,
-- COALESCE(expected_close_date, close_date), indexed as an expression.

-- insert_single_fact, principal_type USER: the owner's deals closing in the period,
-- without touching other reps' deals. Partial: deals without an owner are never
-- looked up this way. (No INCLUDE columns: an index-only scan is impossible on an
-- expression index whose columns the query reads, and every extra byte slows loads.)
CREATE INDEX ix_deal_owned_by_user_close
    ON dyno_crm.deal (tenant_id, owned_by_user_id, (COALESCE(expected_close_date, close_date)))
    WHERE owned_by_user_id IS NOT NULL;

-- insert_single_fact, USER: the same for the assignee (the other arm of the OR).
CREATE INDEX ix_deal_assigned_user_close
    ON dyno_crm.deal (tenant_id, assigned_user_id, (COALESCE(expected_close_date, close_date)))
    WHERE assigned_user_id IS NOT NULL;

-- insert_single_fact, principal_type GROUP: the owning team's deals in the period.
CREATE INDEX ix_deal_owned_by_group_close
    ON dyno_crm.deal (tenant_id, owned_by_group_id, (COALESCE(expected_close_date, close_date)))
    WHERE owned_by_group_id IS NOT NULL;

-- insert_single_fact, GROUP: the assigned team's deals in the period.
CREATE INDEX ix_deal_assigned_group_close
    ON dyno_crm.deal (tenant_id, assigned_group_id, (COALESCE(expected_close_date, close_date)))
    WHERE assigned_group_id IS NOT NULL;

-- insert_batch_facts: one range scan over the tenant's deals closing in the period
-- (most deals of a tenant close in other periods).
CREATE INDEX ix_deal_tenant_close
    ON dyno_crm.deal (tenant_id, (COALESCE(expected_close_date, close_date)));

-- insert_single_fact (all five columns) and insert_batch_facts (the first three):
-- the target rows of exactly this period.
CREATE INDEX ix_sales_target_period_principal
    ON dyno_crm.sales_target (tenant_id, period_start, period_end, principal_type, principal_id);
