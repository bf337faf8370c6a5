-- 0008 Currencies (SPEC.md §9): a deal's own currency, and a tenant's exchange rates.

-- NULL: the tenant's reporting currency.
ALTER TABLE dyno_crm.deal ADD COLUMN currency text;
ALTER TABLE dyno_crm.deal
    ADD CONSTRAINT ck_deal_currency CHECK (currency ~ '^[A-Z]{3}$');

-- One unit of `currency` is `rate` units of the tenant's currency from `valid_from`
-- on, until the next `valid_from` of that currency.
CREATE TABLE dyno_crm.exchange_rate (
    tenant_id  uuid           NOT NULL,
    currency   text           NOT NULL,
    valid_from date           NOT NULL,
    rate       numeric(18,8)  NOT NULL,
    CONSTRAINT pk_exchange_rate PRIMARY KEY (tenant_id, currency, valid_from),
    CONSTRAINT fk_exchange_rate_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_exchange_rate_currency CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT ck_exchange_rate_positive CHECK (rate > 0)
);
