-- `rules simulate` takes the notices that have come due, pending or of a
-- shadow life situation, at every step of virtual time; without an index
-- for the shadow ones each take scanned every notice ever made, which grows
-- with the population times the steps. Only shadow rows are in it, so the
-- outbox's own inserts do not pay for it.
CREATE INDEX notices_shadow_available ON notices (available_at) WHERE state = 'shadow';
