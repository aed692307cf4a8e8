-- Slack messages delivered once (SPEC §8). `sending_since` is written (and committed) before a
-- message is posted: a row that has it but no `delivered_at` may have reached Slack (the bot died,
-- or the call timed out, between Slack's answer and ours), so the outbox looks for it in the channel
-- by the metadata it was tagged with before posting it again.
ALTER TABLE slack_outbox ADD COLUMN sending_since timestamptz;
-- How many times a message was found already posted instead of being sent again.
ALTER TABLE slack_outbox ADD COLUMN recovered boolean NOT NULL DEFAULT false;
