-- A verification whose `test` failed and then passed on a retry (`test_retries`, SPEC §5.6) landed,
-- and is marked flaky: the PR comment, the control center and the flaky rate say so.
ALTER TABLE queue_items ADD COLUMN flaky boolean NOT NULL DEFAULT false;
