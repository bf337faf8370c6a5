-- name: delete_absent_deals
-- Full sync: deletes the tenant's deals among the candidates (the deals it got from a
-- source) that are not kept (the source's current export); counts them. Nothing
-- references a deal: stored runs keep the values of their deals in their own arrays.
DELETE FROM dyno_crm.deal AS d
WHERE d.tenant_id = %(tenant_id)s::uuid
  AND d.id IN (SELECT unnest(%(candidates)s::uuid[]) EXCEPT SELECT unnest(%(kept)s::uuid[]));
