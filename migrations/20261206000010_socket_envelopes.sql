-- Slack Socket Mode (SPEC §11): the envelopes a bot has taken, so that each is handled once even
-- when Slack retries an envelope that was not acknowledged in time and the retry reaches another
-- connection (another replica's, or this one's after a reconnect). Taking an envelope is the
-- primary key's insert: whichever replica inserts first handles it.
--
-- The acknowledgement's payload (the reply to a slash command) is kept, so a retry is answered
-- with the same reply instead of running the command twice. Rows are only needed while Slack may
-- retry (seconds); they are pruned after an hour.

CREATE TABLE slack_socket_envelopes (
    envelope_id  text PRIMARY KEY CHECK (envelope_id <> '' AND length(envelope_id) <= 200),
    kind         text NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    -- Set once the handler finished; NULL while it runs (or if the replica died meanwhile).
    handled_at   timestamptz,
    -- The acknowledgement's `payload`, when it had one (slash commands).
    ack_payload  jsonb,
    CHECK (ack_payload IS NULL OR handled_at IS NOT NULL)
);

CREATE INDEX slack_socket_envelopes_taken_at ON slack_socket_envelopes (taken_at);
