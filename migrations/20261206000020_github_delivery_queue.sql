-- GitHub deliveries as a work queue (SPEC §5.4, issue 14 item 2). A delivery is claimed for a
-- while by one replica (in a statement of its own, never a transaction held across GitHub calls);
-- a failed attempt is tried again later with backoff, a bounded number of times, and then set
-- aside as failed with its error; deliveries about one pull request (`subject`) are processed in
-- the order they arrived, while other pull requests' go ahead.
--
-- A command runs once: each command of a comment records its answer in `answers` in the very
-- transaction of its write (a queue item inserted, cancelled or dropped), so a retried delivery
-- skips the commands already run; `executed_at` and `reply` (what to post on the PR) are then
-- committed together, and posting the reply is a step of its own (`reply_posted_at`), so a
-- delivery retried after its effect posts the reply and never runs the command again.

ALTER TABLE github_deliveries
    -- Arrival order: `received_at` comes from the bot's clock, which two deliveries can share.
    ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
    -- The pull request (or issue) it is about, `owner/repo#n`; NULL when about none (ping, a
    -- check run…), which is then processed without waiting for anything.
    ADD COLUMN subject text GENERATED ALWAYS AS (
        (payload #>> '{repository,full_name}') || '#'
        || coalesce(payload #>> '{issue,number}', payload #>> '{pull_request,number}')
    ) STORED,
    -- Attempts started (a claim is an attempt, so one that crashed the bot counts).
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Not before this instant (NULL: at once).
    ADD COLUMN next_attempt_at timestamptz,
    -- Which replica works on it, until when: a crashed replica's claim runs out.
    ADD COLUMN claimed_by text,
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN last_error text,
    -- Whether the last error was GitHub refusing for good (403, 404, 410, 422): fewer retries.
    ADD COLUMN last_error_permanent boolean NOT NULL DEFAULT false,
    -- The answers of the comment's commands run so far, in order: `[[command, answer], …]`.
    ADD COLUMN answers jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(answers) = 'array'),
    -- The delivery's effect is committed; `reply` is what is left to post (NULL: nothing).
    ADD COLUMN executed_at timestamptz,
    ADD COLUMN reply text,
    ADD COLUMN reply_posted_at timestamptz,
    -- Set aside after its last attempt; `last_error` says why.
    ADD COLUMN failed_at timestamptz;

-- Deliveries processed before this migration ran their effect and posted their reply.
UPDATE github_deliveries SET executed_at = processed_at WHERE processed_at IS NOT NULL;

ALTER TABLE github_deliveries
    ADD CONSTRAINT github_deliveries_claim_whole
        CHECK ((claimed_by IS NULL) = (claimed_until IS NULL)),
    ADD CONSTRAINT github_deliveries_reply_after_effect
        CHECK (reply IS NULL OR executed_at IS NOT NULL),
    ADD CONSTRAINT github_deliveries_posted_what_was_to_post
        CHECK (reply_posted_at IS NULL OR reply IS NOT NULL),
    ADD CONSTRAINT github_deliveries_processed_means_done
        CHECK (processed_at IS NULL OR (executed_at IS NOT NULL AND (reply IS NULL OR reply_posted_at IS NOT NULL))),
    ADD CONSTRAINT github_deliveries_processed_or_failed
        CHECK (processed_at IS NULL OR failed_at IS NULL),
    ADD CONSTRAINT github_deliveries_failed_says_why
        CHECK (failed_at IS NULL OR last_error IS NOT NULL),
    ADD CONSTRAINT github_deliveries_finished_unclaimed
        CHECK ((processed_at IS NULL AND failed_at IS NULL) OR claimed_by IS NULL);

CREATE UNIQUE INDEX github_deliveries_seq ON github_deliveries (seq);
DROP INDEX github_deliveries_pending;
-- The unfinished deliveries, in arrival order: what the processor claims from.
CREATE INDEX github_deliveries_unfinished ON github_deliveries (seq)
    WHERE processed_at IS NULL AND failed_at IS NULL;
CREATE INDEX github_deliveries_unfinished_subject ON github_deliveries (subject, seq)
    WHERE processed_at IS NULL AND failed_at IS NULL;
CREATE INDEX github_deliveries_failed ON github_deliveries (failed_at) WHERE failed_at IS NOT NULL;

-- A claim released (the delivery processed, failed for now, or set aside) may let the next
-- delivery about the same pull request go: the other replicas are told, as on an insert.
CREATE TRIGGER github_deliveries_released AFTER UPDATE OF claimed_by ON github_deliveries
    FOR EACH ROW WHEN (OLD.claimed_by IS NOT NULL AND NEW.claimed_by IS NULL)
    EXECUTE FUNCTION notify_channel('github_deliveries');
