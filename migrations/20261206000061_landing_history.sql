-- The commits earlier attempts of an item recorded before moving the base (SPEC §5.3 step 5, §8).
-- A landing whose answer came after its replica lost the queues may have gone through although
-- nobody concluded it; a later attempt (on another replica) starts by clearing `landing_sha`, so
-- the earlier commits are kept here and checked against the base before the item is verified or
-- landed again: a landing happens once, and is reported as landed.
ALTER TABLE queue_items ADD COLUMN earlier_landing_shas text[] NOT NULL DEFAULT '{}';
