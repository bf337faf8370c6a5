-- name: set_for_transaction
-- Sets each named setting for the rest of the transaction, and returns the value each
-- had before (read before it is set: a row's columns are evaluated in order).
SELECT s.name, current_setting(s.name) AS previous, set_config(s.name, s.value, true)
FROM unnest(%(names)s::text[], %(values)s::text[]) AS s (name, value);
