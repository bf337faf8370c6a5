-- 0016 The export row an imported deal was last written from, as a 64-bit digest
-- (SPEC.md §12):
-- a re-import reads in full only the rows whose digest it does not find, so an
-- unchanged row of a large export costs a hash, not a parse, a COPY and a comparison.
--
-- Set by `import` (for CSV exports) on every deal it writes; cleared whenever `load`
-- changes the deal, so a digest always says "this deal holds what that row gave".
-- NULL for deals written any other way. No index: an import reads the digests of the
-- tenant's deals from its source by ix_deal_import_source.
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.deal ADD COLUMN import_digest bigint;

-- Deleting a rep through the product clears the deals' references to it: those deals
-- no longer hold what their export rows gave, so their digests go too (the next import
-- reads their rows again, and makes the rep again). (A team's deletion needs no such
-- care: an import writes no team on a deal, and a deal given one by `load` has no
-- digest left.)
CREATE OR REPLACE FUNCTION dyno_crm.delete_crm_user(p_tenant_id uuid, p_user_id uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
BEGIN
    UPDATE dyno_crm.deal AS d
    SET owned_by_user_id = NULLIF(d.owned_by_user_id, p_user_id),
        assigned_user_id = NULLIF(d.assigned_user_id, p_user_id),
        import_digest = NULL
    WHERE d.tenant_id = p_tenant_id
      AND (d.owned_by_user_id = p_user_id OR d.assigned_user_id = p_user_id);
    DELETE FROM dyno_crm.crm_user AS u WHERE u.tenant_id = p_tenant_id AND u.id = p_user_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted > 0;
END;
$$;
