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
