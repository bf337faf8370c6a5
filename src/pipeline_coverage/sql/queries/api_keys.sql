-- name: insert_key
-- Stores a new key's hash for a tenant; returns the key's row.
INSERT INTO dyno_crm.api_key (tenant_id, name, key_hash)
SELECT t.id, %(name)s::text, %(key_hash)s::bytea
FROM dyno_crm.tenant AS t
WHERE t.id = %(tenant_id)s::uuid
RETURNING id, tenant_id, name, created_at, revoked_at;

-- name: list_keys
-- A tenant's keys (or every tenant's), newest first; never the key or its hash.
SELECT k.id, k.tenant_id, k.name, k.created_at, k.revoked_at
FROM dyno_crm.api_key AS k
WHERE (%(tenant_id)s::uuid IS NULL OR k.tenant_id = %(tenant_id)s::uuid)
ORDER BY k.created_at DESC, k.id;

-- name: revoke_key
-- Revokes a key (idempotent: the first revocation time is kept).
UPDATE dyno_crm.api_key AS k
SET revoked_at = COALESCE(k.revoked_at, now())
WHERE k.id = %(key_id)s::uuid
  AND (%(tenant_id)s::uuid IS NULL OR k.tenant_id = %(tenant_id)s::uuid)
RETURNING k.id, k.tenant_id, k.name, k.created_at, k.revoked_at;

-- name: authenticate
-- The tenant of an active key, found by the tenant id the key carries and its hash.
SELECT k.tenant_id, t.name
FROM dyno_crm.api_key AS k
JOIN dyno_crm.tenant AS t ON t.id = k.tenant_id
WHERE k.tenant_id = %(tenant_id)s::uuid
  AND k.key_hash = %(key_hash)s::bytea
  AND k.revoked_at IS NULL;
