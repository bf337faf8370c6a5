-- 0013 Recorded history (SPEC.md §13): the values a `load` or an `import` replaced or
-- deleted, as versions of their deal over a range of recorded time.
--
-- A deal's current values hold from `deal.recorded_from` on (the time of the export
-- that last changed them, or made the deal); NULL for a deal written before this
-- migration, or by the host CRM: known since always. A version holds the values a
-- deal had over `[valid_from, valid_to)` (`valid_from` NULL: since always), keyed by
-- its end (one export ends one version of a deal); the values at a time are the
-- deal's version valid then, else its row when `recorded_from` is not later. Deals
-- only: stages, reps, teams and targets are read as they are now (docs/decisions.md).
-- (NULL rather than '-infinity', which a client's datetime cannot hold.)
--
-- `tenant.recorded_until` is the time of the latest export written into the tenant:
-- exports are written in time order (an older one after a newer is refused), so that
-- each version ends where the next begins. `tenant.recorded_since` is the time of its
-- first: recorded history holds from then on, and a CRM's own history (`import
-- --history`) serves the time before it.
--
-- `owner_assumed`: the version's owner was not in its source (a CRM's field history
-- has no owner) and is the owner known at the time.
--
-- `origin`: 'recorded' for the values an export replaced, 'crm' for a version read
-- from the CRM's own history (`import --history`): those end at the tenant's
-- `recorded_since` at the latest, and a deal's are replaced as a whole by the next
-- history import of it.
SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true)
FROM pg_extension WHERE extname = 'citus';

ALTER TABLE dyno_crm.deal
    ADD COLUMN recorded_from timestamptz;
ALTER TABLE dyno_crm.tenant
    ADD COLUMN recorded_until timestamptz,
    ADD COLUMN recorded_since timestamptz;

CREATE TABLE dyno_crm.deal_version (
    tenant_id           uuid          NOT NULL,
    deal_id             uuid          NOT NULL,
    valid_from          timestamptz,
    valid_to            timestamptz   NOT NULL,
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
    forecast_category   text,
    currency            text,
    owner_assumed       boolean       NOT NULL DEFAULT false,
    origin              text          NOT NULL DEFAULT 'recorded',
    CONSTRAINT pk_deal_version PRIMARY KEY (tenant_id, deal_id, valid_to),
    CONSTRAINT fk_deal_version_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_deal_version_range CHECK (valid_from IS NULL OR valid_from < valid_to),
    CONSTRAINT ck_deal_version_origin CHECK (origin IN ('recorded', 'crm'))
);

-- A run as recorded reads the versions valid at its time, by tenant and range end; a
-- rep's report as recorded, the rep's versions (as ix_deal_owned_by_user_close finds a
-- rep's deals).
CREATE INDEX ix_deal_version_tenant_to ON dyno_crm.deal_version (tenant_id, valid_to);
CREATE INDEX ix_deal_version_owned_by_user
    ON dyno_crm.deal_version (tenant_id, owned_by_user_id, valid_to);
CREATE INDEX ix_deal_version_assigned_user
    ON dyno_crm.deal_version (tenant_id, assigned_user_id, valid_to);
