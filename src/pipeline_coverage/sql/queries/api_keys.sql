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
-- Revokes a key (idempotent: the first revocation time is kept) and ends its sessions.
WITH revoked AS (
    UPDATE dyno_crm.api_key AS k
    SET revoked_at = COALESCE(k.revoked_at, now())
    WHERE k.id = %(key_id)s::uuid
      AND (%(tenant_id)s::uuid IS NULL OR k.tenant_id = %(tenant_id)s::uuid)
    RETURNING k.id, k.tenant_id, k.name, k.created_at, k.revoked_at
),
ended AS (
    UPDATE dyno_crm.api_session AS s
    SET ended_at = COALESCE(s.ended_at, now())
    FROM revoked AS r
    WHERE s.tenant_id = r.tenant_id AND s.key_id = r.id
)
SELECT r.id, r.tenant_id, r.name, r.created_at, r.revoked_at FROM revoked AS r;

-- name: authenticate
-- The tenant of an active key, found by the tenant id the key carries and its hash.
SELECT k.tenant_id, t.name AS tenant_name
FROM dyno_crm.api_key AS k
JOIN dyno_crm.tenant AS t ON t.id = k.tenant_id
WHERE k.tenant_id = %(tenant_id)s::uuid
  AND k.key_hash = %(key_hash)s::bytea
  AND k.revoked_at IS NULL;

-- name: start_session
-- Opens a dashboard session for an active key (none if the key is unknown or revoked),
-- deletes the key's oldest sessions beyond the newest `keep` (so a key holds at most
-- `keep` + 1 sessions, however often it signs in), and clears the tenant's sessions that
-- ended or expired a day ago or more.
WITH opened AS (
    INSERT INTO dyno_crm.api_session (tenant_id, key_id, expires_at)
    SELECT k.tenant_id, k.id, now() + make_interval(secs => %(lifetime_seconds)s::integer)
    FROM dyno_crm.api_key AS k
    WHERE k.tenant_id = %(tenant_id)s::uuid
      AND k.key_hash = %(key_hash)s::bytea
      AND k.revoked_at IS NULL
    RETURNING tenant_id, id
),
cleared AS (
    DELETE FROM dyno_crm.api_session AS s
    WHERE s.tenant_id = %(tenant_id)s::uuid
      AND LEAST(s.ended_at, s.expires_at) < now() - interval '1 day'
),
trimmed AS (
    DELETE FROM dyno_crm.api_session AS s
    WHERE s.tenant_id = %(tenant_id)s::uuid
      AND s.id IN (
          SELECT older.id
          FROM dyno_crm.api_session AS older
          JOIN dyno_crm.api_key AS k ON k.tenant_id = older.tenant_id AND k.id = older.key_id
          WHERE older.tenant_id = %(tenant_id)s::uuid
            AND k.key_hash = %(key_hash)s::bytea
          ORDER BY older.created_at DESC, older.id
          OFFSET %(keep)s
      )
)
SELECT o.tenant_id, t.name AS tenant_name, o.id AS session_id
FROM opened AS o
JOIN dyno_crm.tenant AS t ON t.id = o.tenant_id;

-- name: authenticate_session
-- The tenant of a live session: not ended, not expired, and its key not revoked.
SELECT s.tenant_id, t.name AS tenant_name
FROM dyno_crm.api_session AS s
JOIN dyno_crm.api_key AS k ON k.tenant_id = s.tenant_id AND k.id = s.key_id
JOIN dyno_crm.tenant AS t ON t.id = s.tenant_id
WHERE s.tenant_id = %(tenant_id)s::uuid
  AND s.id = %(session_id)s::uuid
  AND s.ended_at IS NULL
  AND s.expires_at > now()
  AND k.revoked_at IS NULL;

-- name: end_session
-- Ends a session (signing out); ending it twice keeps the first time.
UPDATE dyno_crm.api_session AS s
SET ended_at = COALESCE(s.ended_at, now())
WHERE s.tenant_id = %(tenant_id)s::uuid
  AND s.id = %(session_id)s::uuid;
