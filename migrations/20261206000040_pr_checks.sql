-- Gandalf on the pull request (SPEC §5.7).
--
-- `waiting_for_checks`: the item's pipeline passed and the repository's `required_checks` still
-- run. A value added to an enum cannot be used in the transaction that adds it, so the index that
-- names it is rebuilt by the next migration.
ALTER TYPE queue_item_state ADD VALUE IF NOT EXISTS 'waiting_for_checks' AFTER 'testing';

-- Gandalf's own check on each queued PR, as an outbox: a trigger writes one row per change of an
-- item's state (and per step that starts) in the very transaction of the change, so no code path
-- can change an item without its check following, and a crash loses no update. A worker delivers
-- them to GitHub in order per item, retrying through outages (`gandalf::checks::outbox`).
CREATE TABLE pr_check_updates (
    id              bigserial PRIMARY KEY,
    item_id         bigint NOT NULL REFERENCES queue_items (id),
    -- The item's state at the change (`queue_item_state` as text), or 'step' when a step started.
    state           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX pr_check_updates_pending ON pr_check_updates (item_id, id) WHERE delivered_at IS NULL;

-- The check run of each item once created (NULL: shown as a commit status), and when an
-- `in_progress` update was last sent (they are throttled to a few a minute).
CREATE TABLE pr_checks (
    item_id          bigint PRIMARY KEY REFERENCES queue_items (id),
    check_run_id     bigint,
    last_progress_at timestamptz
);

CREATE FUNCTION gandalf_check_follows_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO pr_check_updates (item_id, state) VALUES (NEW.id, NEW.state::text);
        PERFORM pg_notify('gandalf_checks', NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER queue_items_check AFTER INSERT OR UPDATE OF state ON queue_items
    FOR EACH ROW EXECUTE FUNCTION gandalf_check_follows_item();

CREATE FUNCTION gandalf_check_follows_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pr_check_updates (item_id, state) VALUES (NEW.item_id, 'step');
    PERFORM pg_notify('gandalf_checks', NEW.item_id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER queue_steps_check AFTER INSERT ON queue_steps
    FOR EACH ROW EXECUTE FUNCTION gandalf_check_follows_step();

-- What the repository's own CI reported on a candidate (`required_checks`), from `check_run` and
-- `status` deliveries and from polling GitHub; the verifier waits on these rows (NOTIFY
-- `gandalf_ci`) and the control center shows them.
CREATE TABLE candidate_checks (
    repo       text NOT NULL,
    sha        text NOT NULL CHECK (sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    name       text NOT NULL,
    -- queued | in_progress | completed
    status     text NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed')),
    conclusion text,
    url        text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, sha, name),
    CHECK ((status = 'completed') = (conclusion IS NOT NULL))
);
