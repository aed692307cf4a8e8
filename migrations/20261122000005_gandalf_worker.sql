-- Gandalf's verification worker.
--
-- Both bots write to the one Slack outbox, but each posts with its own Slack app: `sender` says
-- whose message a row is, and each bot's deliverer takes only its own.
ALTER TABLE slack_outbox ADD COLUMN sender text NOT NULL DEFAULT 'bobby' CHECK (sender IN ('bobby', 'gandalf'));
DROP INDEX slack_outbox_pending;
CREATE INDEX slack_outbox_pending ON slack_outbox (sender, channel, id) WHERE delivered_at IS NULL AND failed_at IS NULL;

-- What a waiting or verifying item is doing right now ("waiting for verify-1, held by …"), apart
-- from `outcome_reason`, which explains how a finished item ended.
ALTER TABLE queue_items ADD COLUMN note text;
-- How many times the item was verified (a base that moved before landing verifies it again).
ALTER TABLE queue_items ADD COLUMN attempts integer NOT NULL DEFAULT 0;

-- A verification's steps: 'interrupted' when a crash cut them short.
ALTER TABLE queue_steps DROP CONSTRAINT queue_steps_state_check;
ALTER TABLE queue_steps ADD CONSTRAINT queue_steps_state_check
    CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted'));
ALTER TABLE queue_steps ADD COLUMN attempt integer NOT NULL DEFAULT 1;

-- Wake-ups for Gandalf's queue worker: a queue paused or resumed, an environment whose state
-- Nightly changed (a verification waits while its environment is being deleted or created).
CREATE TRIGGER repo_queues_notify AFTER INSERT OR UPDATE ON repo_queues
    FOR EACH ROW EXECUTE FUNCTION notify_channel('gandalf_queue');
CREATE TRIGGER environments_notify AFTER UPDATE OF state ON environments
    FOR EACH ROW EXECUTE FUNCTION notify_channel('environments');
