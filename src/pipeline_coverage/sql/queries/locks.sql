-- name: lock
-- Waits for the session-level advisory lock on a text key.
SELECT pg_advisory_lock(hashtextextended(%(key)s::text, 0));

-- name: unlock
-- Releases it.
SELECT pg_advisory_unlock(hashtextextended(%(key)s::text, 0));

-- name: lock_for_transaction
-- Waits for the advisory lock on a text key until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s::text, 0));
