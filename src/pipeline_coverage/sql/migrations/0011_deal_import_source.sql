-- 0011 Which import source a deal came from (SPEC.md §12): a full sync deletes the
-- deals a tenant got from the same source that its complete export no longer has.
--
-- NULL for deals written any other way (`load`, the host CRM): no full sync of any
-- source touches them. The partial index serves "this tenant's deals from source S".
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.deal ADD COLUMN import_source text;
CREATE INDEX ix_deal_import_source ON dyno_crm.deal (tenant_id, import_source)
    WHERE import_source IS NOT NULL;
