-- 0003 HTTP API: tenant API keys and idempotency keys for run creation.

-- An API key decides the tenant of every request. Only a SHA-256 of the key is
-- stored; the key itself is shown once, when created. The key's text carries its
-- tenant id, so a lookup is always (tenant_id, key_hash): a router query on Citus.
CREATE TABLE dyno_crm.api_key (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    name       text        NOT NULL,
    key_hash   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT pk_api_key PRIMARY KEY (tenant_id, id),
    -- Serves the authentication of every request.
    CONSTRAINT ux_api_key_hash UNIQUE (tenant_id, key_hash),
    CONSTRAINT fk_api_key_tenant FOREIGN KEY (tenant_id)
        REFERENCES dyno_crm.tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_api_key_hash_length CHECK (octet_length(key_hash) = 32)
);

-- POST /v1/coverage-runs with an Idempotency-Key header: the first request's run,
-- and a hash of its body to tell a replay from a conflicting reuse of the key.
CREATE TABLE dyno_crm.idempotency_key (
    tenant_id    uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    run_id       uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_idempotency_key PRIMARY KEY (tenant_id, key),
    CONSTRAINT fk_idempotency_key_run FOREIGN KEY (tenant_id, run_id)
        REFERENCES dyno_crm.report_run (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_idempotency_key_length CHECK (length(key) BETWEEN 1 AND 255)
);
