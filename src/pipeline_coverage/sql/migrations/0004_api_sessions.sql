-- 0004 Dashboard sessions kept on the server, so signing out ends a session at once.

-- The dashboard's signed cookie holds only (tenant_id, id) of a row here. A session
-- lives until it expires, is ended by signing out, or its API key is revoked (which
-- ends every session the key opened). Keyed by tenant, like every table.
CREATE TABLE dyno_crm.api_session (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    key_id     uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz,
    CONSTRAINT pk_api_session PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_api_session_key FOREIGN KEY (tenant_id, key_id)
        REFERENCES dyno_crm.api_key (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_api_session_expiry CHECK (expires_at > created_at)
);

-- Serves "end every session of this key" when a key is revoked.
CREATE INDEX ix_api_session_key ON dyno_crm.api_session (tenant_id, key_id);
