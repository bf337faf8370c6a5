-- Recorded history (SPEC.md §13): versions of deals over recorded time, and the
-- order in which a tenant's exports are written.

-- name: lock_recorded_tenant
-- A tenant a load writes deals of, held until it commits (two loads of a tenant then
-- record in turn), with the time of its latest export and the clock. One tenant a
-- statement, in id order: Citus locks rows by a router query only (a row lock over
-- several tenants' shards is refused).
SELECT t.name, t.recorded_until, now() AS now
FROM dyno_crm.tenant AS t
WHERE t.id = %(tenant)s::uuid
FOR NO KEY UPDATE;

-- name: move_recorded_until
-- The tenants' latest export is now this one; their first stays the earliest written
-- (LEAST skips NULLs: a tenant's first export sets it).
UPDATE dyno_crm.tenant AS t
SET recorded_until = GREATEST(t.recorded_until, %(at)s::timestamptz),
    recorded_since = LEAST(t.recorded_since, t.recorded_until, %(at)s::timestamptz)
WHERE t.id = ANY (%(tenants)s::uuid[])
  AND (t.recorded_until IS NULL OR t.recorded_until < %(at)s::timestamptz
       OR t.recorded_since IS NULL);
