-- 0009 Team hierarchy and roll-up (SPEC.md §7, §10): a group's parent, and the
-- member target a rolled-up group row carries.
--
-- crm_group.parent_group_id makes teams a forest. The reference includes tenant_id
-- (a parent in another tenant is impossible) and is checked at commit, so a tenant's
-- groups can be written in any order and a tenant's cascade can delete them; the
-- loader refuses cycles with the line that closes one. Deleting a group with
-- dyno_crm.delete_crm_group re-attaches its child groups to its own parent (a region
-- keeps the teams of a removed sub-region), which Citus accepts where ON DELETE
-- SET NULL (column) is refused (see 0006).
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.crm_group ADD COLUMN parent_group_id uuid;
ALTER TABLE dyno_crm.crm_group
    ADD CONSTRAINT ck_crm_group_not_own_parent CHECK (parent_group_id <> id);
ALTER TABLE dyno_crm.crm_group ADD CONSTRAINT fk_crm_group_parent
    FOREIGN KEY (tenant_id, parent_group_id) REFERENCES dyno_crm.crm_group (tenant_id, id)
    DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX ix_crm_group_parent ON dyno_crm.crm_group (tenant_id, parent_group_id);

CREATE OR REPLACE FUNCTION dyno_crm.delete_crm_group(p_tenant_id uuid, p_group_id uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
BEGIN
    UPDATE dyno_crm.deal AS d
    SET owned_by_group_id = NULLIF(d.owned_by_group_id, p_group_id),
        assigned_group_id = NULLIF(d.assigned_group_id, p_group_id)
    WHERE d.tenant_id = p_tenant_id
      AND (d.owned_by_group_id = p_group_id OR d.assigned_group_id = p_group_id);
    UPDATE dyno_crm.crm_group AS child
    SET parent_group_id = (SELECT g.parent_group_id FROM dyno_crm.crm_group AS g
                           WHERE g.tenant_id = p_tenant_id AND g.id = p_group_id)
    WHERE child.tenant_id = p_tenant_id AND child.parent_group_id = p_group_id;
    DELETE FROM dyno_crm.crm_group AS g WHERE g.tenant_id = p_tenant_id AND g.id = p_group_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted > 0;
END;
$$;

-- With roll-up, a group row's Σ of its direct member users' and child groups' matched
-- targets (NULL on user rows, on runs without roll-up, and when none of them has one).
ALTER TABLE dyno_crm.report_pipeline_coverage_fact
    ADD COLUMN member_target_amount numeric(38,2);
