-- Batches (SPEC §5.6). `batch_lead` ties the members of one candidate to its first member (whose
-- steps are the batch's); null for a PR verified alone. `known_red` is what bisection knows: the
-- PRs at the front of the queue known to hold a culprit, kept with the queue so a restart
-- mid-bisection goes on where it was.
ALTER TABLE queue_items ADD COLUMN batch_lead bigint REFERENCES queue_items (id);
ALTER TABLE repo_queues ADD COLUMN known_red jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(known_red) = 'array');
-- One candidate verifies at a time per repository: its lead (or a PR alone) is the one verifying
-- row the index counts; the other members of a batch point at their lead.
DROP INDEX queue_items_one_verifying;
CREATE UNIQUE INDEX queue_items_one_verifying ON queue_items (repo)
    WHERE state IN ('waiting_for_environment', 'preparing', 'deploying', 'testing', 'landing')
      AND (batch_lead IS NULL OR batch_lead = id);
