-- One candidate verifies at a time per repository: `waiting_for_checks` (added by the previous
-- migration, usable only once it committed) is a verifying state too. The lead of a batch (or a
-- PR alone) is the row counted; the other members point at their lead (migration ..032).
DROP INDEX queue_items_one_verifying;
CREATE UNIQUE INDEX queue_items_one_verifying ON queue_items (repo)
    WHERE state IN ('waiting_for_environment', 'preparing', 'deploying', 'testing', 'waiting_for_checks', 'landing')
      AND (batch_lead IS NULL OR batch_lead = id);
