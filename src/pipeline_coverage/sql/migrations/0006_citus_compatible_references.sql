-- 0006 References a Citus cluster accepts (docs/scaling.md, docs/decisions.md).
--
-- Citus refuses two things of 0001/0005 on tables distributed by tenant_id:
--   * ON DELETE SET NULL (column) on a foreign key that includes the distribution
--     column (deal's four references to crm_user/crm_group);
--   * any trigger on a table to distribute (report_run's statement-level trigger
--     that deleted a run's drill-down).
-- The same behaviour, in a form both plain PostgreSQL and Citus accept:
--   * deal's user/group references become plain foreign keys (NO ACTION), checked
--     at commit (DEFERRABLE INITIALLY DEFERRED: a tenant's cascade deletes its users
--     before its deals, which an immediate check would refuse), and
--     dyno_crm.delete_crm_user / dyno_crm.delete_crm_group clear a deal's references
--     to the user or group before deleting it (what SET NULL did);
--   * the drill-down tables reference their run ON DELETE CASCADE, so a run deleted
--     any way (prune, a tenant's cascade, by hand) still takes its drill-down along.
-- Works on plain PostgreSQL and on a schema already (partly) distributed: Citus
-- propagates this DDL to the shards. One subcommand per ALTER TABLE, and Citus's
-- sequential mode, so that DDL after DML in this transaction stays on one
-- connection per worker.
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.deal DROP CONSTRAINT fk_deal_owned_by_user;
ALTER TABLE dyno_crm.deal DROP CONSTRAINT fk_deal_assigned_user;
ALTER TABLE dyno_crm.deal DROP CONSTRAINT fk_deal_owned_by_group;
ALTER TABLE dyno_crm.deal DROP CONSTRAINT fk_deal_assigned_group;
ALTER TABLE dyno_crm.deal ADD CONSTRAINT fk_deal_owned_by_user
    FOREIGN KEY (tenant_id, owned_by_user_id) REFERENCES dyno_crm.crm_user (tenant_id, id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE dyno_crm.deal ADD CONSTRAINT fk_deal_assigned_user
    FOREIGN KEY (tenant_id, assigned_user_id) REFERENCES dyno_crm.crm_user (tenant_id, id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE dyno_crm.deal ADD CONSTRAINT fk_deal_owned_by_group
    FOREIGN KEY (tenant_id, owned_by_group_id) REFERENCES dyno_crm.crm_group (tenant_id, id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE dyno_crm.deal ADD CONSTRAINT fk_deal_assigned_group
    FOREIGN KEY (tenant_id, assigned_group_id) REFERENCES dyno_crm.crm_group (tenant_id, id)
    DEFERRABLE INITIALLY DEFERRED;

-- Deletes a user of a tenant, clearing every deal's reference to it first (the deals
-- stay, owner/assignee NULL); memberships go with it (fk_group_member_user cascades).
-- True when the user existed. A host CRM deletes users through this function; a
-- plain DELETE of a user that deals still name fails (at commit) with a foreign key
-- violation.
CREATE FUNCTION dyno_crm.delete_crm_user(p_tenant_id uuid, p_user_id uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
BEGIN
    UPDATE dyno_crm.deal AS d
    SET owned_by_user_id = NULLIF(d.owned_by_user_id, p_user_id),
        assigned_user_id = NULLIF(d.assigned_user_id, p_user_id)
    WHERE d.tenant_id = p_tenant_id
      AND (d.owned_by_user_id = p_user_id OR d.assigned_user_id = p_user_id);
    DELETE FROM dyno_crm.crm_user AS u WHERE u.tenant_id = p_tenant_id AND u.id = p_user_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted > 0;
END;
$$;

-- The same for a group (its memberships cascade).
CREATE FUNCTION dyno_crm.delete_crm_group(p_tenant_id uuid, p_group_id uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
BEGIN
    UPDATE dyno_crm.deal AS d
    SET owned_by_group_id = NULLIF(d.owned_by_group_id, p_group_id),
        assigned_group_id = NULLIF(d.assigned_group_id, p_group_id)
    WHERE d.tenant_id = p_tenant_id
      AND (d.owned_by_group_id = p_group_id OR d.assigned_group_id = p_group_id);
    DELETE FROM dyno_crm.crm_group AS g WHERE g.tenant_id = p_tenant_id AND g.id = p_group_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted > 0;
END;
$$;

-- The drill-down goes with its run by cascade instead of a trigger. The trigger kept
-- these tables free of orphans; any left by hand-made deletes go first.
DROP TRIGGER IF EXISTS tr_report_run_drop_drilldown ON dyno_crm.report_run;
DROP FUNCTION IF EXISTS dyno_crm.report_run_drop_drilldown();
DELETE FROM dyno_crm.report_run_deals AS d
WHERE NOT EXISTS (SELECT 1 FROM dyno_crm.report_run AS r
                  WHERE r.tenant_id = d.tenant_id AND r.id = d.run_id);
DELETE FROM dyno_crm.report_run_credit AS c
WHERE NOT EXISTS (SELECT 1 FROM dyno_crm.report_run AS r
                  WHERE r.tenant_id = c.tenant_id AND r.id = c.run_id);
ALTER TABLE dyno_crm.report_run_deals ADD CONSTRAINT fk_report_run_deals_run
    FOREIGN KEY (tenant_id, run_id) REFERENCES dyno_crm.report_run (tenant_id, id)
    ON DELETE CASCADE;
ALTER TABLE dyno_crm.report_run_credit ADD CONSTRAINT fk_report_run_credit_run
    FOREIGN KEY (tenant_id, run_id) REFERENCES dyno_crm.report_run (tenant_id, id)
    ON DELETE CASCADE;
