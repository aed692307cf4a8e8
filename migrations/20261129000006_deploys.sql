-- `/bobby deploy` (SPEC §4.6): deploys of a ref to an environment, their steps and logs, what is
-- deployed where, and Slack messages that are edited in place (progress) or answered in a thread.

CREATE TABLE deploys (
    id            bigserial PRIMARY KEY,
    environment   text NOT NULL REFERENCES environments (name),
    state         text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    -- The ref as typed (`feature/x`, `#123`, a SHA) and the commit it resolved to.
    ref           text NOT NULL,
    sha           text NOT NULL CHECK (sha ~ '^[0-9a-f]{7,64}$'),
    by_user       text NOT NULL,
    -- The affected (or `only`) set, the build levels and the deploy order: the plan that runs.
    resources     text[] NOT NULL,
    plan          jsonb NOT NULL,
    -- Where progress is shown (the channel the command was typed in, or the deployer's DMs) and
    -- the outbox row of the progress message, which later rows edit (chat.update).
    channel       text NOT NULL,
    message_id    bigint,
    -- Set to ask the deploy to stop: by `deploy cancel`, the lease ending, Nightly taking the
    -- environment. The running deploy hears it through NOTIFY.
    cancel_reason text,
    -- What went wrong, for people: the failing step and how it ended, or why it stopped.
    outcome       text,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    CONSTRAINT finished_iff_over CHECK ((state = 'running') = (finished_at IS NULL))
);
-- One deploy at a time per environment, whatever the replicas do.
CREATE UNIQUE INDEX deploys_one_running ON deploys (environment) WHERE state = 'running';
CREATE INDEX deploys_latest ON deploys (environment, id DESC);

CREATE TABLE deploy_steps (
    id          bigserial PRIMARY KEY,
    deploy_id   bigint NOT NULL REFERENCES deploys (id),
    step        text NOT NULL CHECK (step IN ('build', 'deploy', 'test')),
    resource    text,
    state       text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    exit_code   integer,
    log         text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL,
    finished_at timestamptz
);
CREATE INDEX deploy_steps_by_deploy ON deploy_steps (deploy_id, id);

-- What runs where: one row per resource whose deploy step succeeded. Empty after Nightly deletes
-- or creates the environment (then it runs the base branch's tip).
CREATE TABLE deployed (
    environment text NOT NULL REFERENCES environments (name),
    resource    text NOT NULL,
    sha         text NOT NULL,
    ref         text NOT NULL,
    by_user     text NOT NULL,
    at          timestamptz NOT NULL,
    deploy_id   bigint NOT NULL REFERENCES deploys (id),
    PRIMARY KEY (environment, resource)
);

-- A lease that ends or changes hands cancels the environment's running deploy; so does Nightly
-- starting to delete or create it, which also forgets what was deployed there.
CREATE FUNCTION deploys_cancel_on_lease_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.holder IS DISTINCT FROM OLD.holder THEN
        UPDATE deploys SET cancel_reason = 'the lease on ' || OLD.environment || ' ended'
         WHERE environment = OLD.environment AND state = 'running' AND cancel_reason IS NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER leases_cancel_deploys AFTER UPDATE OR DELETE ON leases
    FOR EACH ROW EXECUTE FUNCTION deploys_cancel_on_lease_end();

CREATE FUNCTION deploys_follow_nightly() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('deleting', 'creating') AND NEW.state IS DISTINCT FROM OLD.state THEN
        UPDATE deploys SET cancel_reason = 'Nightly is ' || NEW.state::text || ' ' || NEW.name
         WHERE environment = NEW.name AND state = 'running' AND cancel_reason IS NULL;
        DELETE FROM deployed WHERE environment = NEW.name;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER environments_follow_nightly AFTER UPDATE OF state ON environments
    FOR EACH ROW EXECUTE FUNCTION deploys_follow_nightly();

CREATE FUNCTION deploys_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bobby_deploys', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER deploys_cancel_requested AFTER UPDATE OF cancel_reason ON deploys
    FOR EACH ROW WHEN (NEW.cancel_reason IS NOT NULL AND OLD.cancel_reason IS NULL)
    EXECUTE FUNCTION deploys_notify_cancel();

-- Outbox rows that edit an earlier message (`edits`: chat.update of that row's message) or answer
-- it in its thread (`thread_of`). Both point at a row of the same channel, delivered before them.
ALTER TABLE slack_outbox
    ADD COLUMN edits bigint REFERENCES slack_outbox (id),
    ADD COLUMN thread_of bigint REFERENCES slack_outbox (id),
    ADD CONSTRAINT edits_or_thread CHECK (edits IS NULL OR thread_of IS NULL);
