-- name: delete_absent_deals
-- Full sync: deletes the tenant's deals among the candidates (the deals it got from a
-- source) that are not kept (the source's current export); counts them. Nothing
-- references a deal: stored runs keep the values of their deals in their own arrays.
DELETE FROM dyno_crm.deal AS d
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND d.id IN (SELECT unnest(%(candidates)s::uuid[]) EXCEPT SELECT unnest(%(kept)s::uuid[]));

-- name: tenants_named
-- Tenants whose name is exactly the text, in any case (an import names its tenant).
SELECT t.id, t.name, t.currency, t.fiscal_year_start_month
FROM dyno_crm.tenant AS t
WHERE lower(t.name) = lower(%(name)s::text)
ORDER BY t.id;

-- name: tenant_users
-- A tenant's reps, by name (an import matches owners and members by name, any case).
SELECT u.id, u.name FROM dyno_crm.crm_user AS u
WHERE u.tenant_id = %(tenant_id)s::uuid
ORDER BY u.id;

-- name: tenant_groups
-- A tenant's teams with their parent, by name.
SELECT g.id, g.name, g.parent_group_id FROM dyno_crm.crm_group AS g
WHERE g.tenant_id = %(tenant_id)s::uuid
ORDER BY g.id;

-- name: tenant_pipelines
-- A tenant's pipelines, by name.
SELECT p.id, p.name FROM dyno_crm.pipeline AS p
WHERE p.tenant_id = %(tenant_id)s::uuid
ORDER BY p.id;

-- name: tenant_stages
-- A tenant's stages with their pipeline, state, probability and position.
SELECT s.id, s.pipeline_id, s.name, s.stage_state, s.probability, s.position
FROM dyno_crm.pipeline_stage AS s
WHERE s.tenant_id = %(tenant_id)s::uuid
ORDER BY s.id;

-- name: tenant_memberships
-- A tenant's team memberships.
SELECT m.group_id, m.user_id FROM dyno_crm.group_member AS m
WHERE m.tenant_id = %(tenant_id)s::uuid;

-- name: source_deals
-- The ids of the deals a tenant got from an import source (what a full sync may delete).
SELECT d.id FROM dyno_crm.deal AS d
WHERE d.tenant_id = %(tenant_id)s::uuid AND d.import_source = %(source)s::text;

-- name: mark_source_deals
-- Marks the deals an import wrote as coming from its source (only those not yet so).
UPDATE dyno_crm.deal AS d
SET import_source = %(source)s::text
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND d.id = ANY (%(deal_ids)s::uuid[])
  AND d.import_source IS DISTINCT FROM %(source)s::text;

-- name: drop_other_members
-- A team the teams file names has exactly the members it gives: the others leave it.
DELETE FROM dyno_crm.group_member AS m
WHERE m.tenant_id = %(tenant_id)s::uuid
  AND m.group_id = ANY (%(groups)s::uuid[])
  AND (m.group_id::text || ':' || m.user_id::text) <> ALL (%(kept)s::text[]);

-- name: drop_replaced_targets
-- A sheet's target replaces any other of the same principal, period and pipeline.
DELETE FROM dyno_crm.sales_target AS t
USING dyno_crm.sales_target AS k
WHERE t.tenant_id = %(tenant_id)s::uuid
  AND k.tenant_id = %(tenant_id)s::uuid
  AND k.id = ANY (%(kept)s::uuid[])
  AND t.id <> ALL (%(kept)s::uuid[])
  AND t.principal_type = k.principal_type
  AND t.principal_id = k.principal_id
  AND t.pipeline_id IS NOT DISTINCT FROM k.pipeline_id
  AND t.period_start = k.period_start
  AND t.period_end = k.period_end;
