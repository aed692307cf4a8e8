-- One PR verifies at a time per repository: `waiting_for_checks` (added by the previous
-- migration, usable only once it committed) is a verifying state too.
DROP INDEX queue_items_one_verifying;
CREATE UNIQUE INDEX queue_items_one_verifying ON queue_items (repo)
    WHERE state IN ('waiting_for_environment', 'preparing', 'deploying', 'testing', 'waiting_for_checks', 'landing');
