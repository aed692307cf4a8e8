-- Environments, their leases, waitlists, the append-only history and the Slack outbox.
-- One schema for both bots: Bobby owns environments and leases, Gandalf leases its verification
-- environment through the same tables.

CREATE TYPE environment_state AS ENUM ('ready', 'deleting', 'deleted', 'creating', 'faulted');

CREATE TABLE environments (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    url              text NOT NULL DEFAULT '',
    state            environment_state NOT NULL DEFAULT 'ready',
    -- Which bot's config declares it: Gandalf registers its verification environments when Bobby
    -- has not, and Bobby's declaration wins when both do.
    declared_by      text NOT NULL DEFAULT 'bobby' CHECK (declared_by IN ('bobby', 'gandalf')),
    keep_on_weekends boolean NOT NULL DEFAULT false,
    preserved_until  timestamptz,
    preserved_by     text,
    -- {"phase", "step", "exit_code", "attempts", "log_tail"}: present exactly when faulted.
    fault            jsonb,
    -- {"phase", "outcome", "finished_at"} of the last Nightly phase that touched it.
    last_nightly     jsonb,
    -- Set when the environment left the config: kept for its history, hidden everywhere else.
    retired_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fault_iff_faulted CHECK ((state = 'faulted') = (fault IS NOT NULL)),
    CONSTRAINT preserved_has_who CHECK ((preserved_until IS NULL) = (preserved_by IS NULL))
);

-- The live lease of an environment. The primary key is the invariant: at most one lease per
-- environment, whatever the application does. Ended leases live on in `history`.
CREATE TABLE leases (
    environment text PRIMARY KEY REFERENCES environments (name),
    holder      text NOT NULL CHECK (holder <> ''),
    reason      text NOT NULL DEFAULT '',
    since       timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    -- When the holder was reminded of the coming expiry; cleared when the expiry moves.
    reminded_at timestamptz,
    CONSTRAINT expires_after_start CHECK (expires_at > since)
);
CREATE INDEX leases_by_expiry ON leases (expires_at);

CREATE TABLE waitlist (
    id          bigserial PRIMARY KEY,
    environment text NOT NULL REFERENCES environments (name),
    user_id     text NOT NULL,
    joined_at   timestamptz NOT NULL,
    UNIQUE (environment, user_id)
);

-- Every change, who made it, when and why. Append-only: updates, deletes and truncation fail.
CREATE TABLE history (
    id          bigserial PRIMARY KEY,
    environment text NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX history_by_environment ON history (environment, id DESC);

CREATE FUNCTION history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'history is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON history
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();
CREATE TRIGGER history_no_truncate BEFORE TRUNCATE ON history
    FOR EACH STATEMENT EXECUTE FUNCTION history_is_append_only();

-- Messages to Slack, written in the same transaction as the change they report and delivered by
-- one worker with retries, in order per channel.
CREATE TABLE slack_outbox (
    id              bigserial PRIMARY KEY,
    channel         text NOT NULL,
    text            text NOT NULL,
    buttons         jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    -- When to try again after a failure; NULL means as soon as possible.
    next_attempt_at timestamptz,
    last_error      text,
    delivered_at    timestamptz,
    -- Slack refused the message for good (unknown channel, bad token): kept for inspection.
    failed_at       timestamptz,
    slack_ts        text
);
CREATE INDEX slack_outbox_pending ON slack_outbox (channel, id) WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Wake-ups for the workers of every replica: a new outbox row, a lease that changed. Row-level on
-- purpose: a statement trigger also fires for statements that change nothing, and the expiry
-- worker's own no-op updates would wake it forever. Postgres folds duplicate notifications of one
-- transaction into one.
CREATE FUNCTION notify_channel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$;
CREATE TRIGGER slack_outbox_notify AFTER INSERT ON slack_outbox
    FOR EACH ROW EXECUTE FUNCTION notify_channel('slack_outbox');
CREATE TRIGGER leases_notify AFTER INSERT OR UPDATE OR DELETE ON leases
    FOR EACH ROW EXECUTE FUNCTION notify_channel('leases');
