-- The commit Gandalf is about to move the base to, recorded before it moves it (SPEC §5.3 step 5).
-- For `squash` this is a commit Gandalf created: after a crash, recovery finds it on the base (or
-- not) and never creates and lands a second one. Cleared when a verification (re)starts.
ALTER TABLE queue_items ADD COLUMN landing_sha text
    CHECK (landing_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$');
