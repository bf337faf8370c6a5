-- name: find_key
-- The body hash and run of an Idempotency-Key already used by this tenant.
SELECT k.request_hash, k.run_id
FROM dyno_crm.idempotency_key AS k
WHERE k.tenant_id = %(tenant_id)s::uuid AND k.key = %(key)s::text;

-- name: insert_key
-- Remembers the run an Idempotency-Key produced.
INSERT INTO dyno_crm.idempotency_key (tenant_id, key, request_hash, run_id)
VALUES (%(tenant_id)s::uuid, %(key)s::text, %(request_hash)s::bytea, %(run_id)s::uuid);
