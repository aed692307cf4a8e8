-- Gandalf's merge queue: one queue per repository, its items (one per time a PR was queued), the
-- steps of each verification, and the GitHub deliveries already handled.

CREATE TYPE queue_item_state AS ENUM (
    'queued', 'waiting_for_environment', 'preparing', 'deploying', 'testing', 'landing',
    'merged', 'failed', 'cancelled', 'dropped'
);

CREATE TABLE repo_queues (
    repo          text PRIMARY KEY,
    paused        boolean NOT NULL DEFAULT false,
    paused_reason text NOT NULL DEFAULT '',
    paused_by     text,
    paused_at     timestamptz
);

CREATE TABLE queue_items (
    id                bigserial PRIMARY KEY,
    repo              text NOT NULL REFERENCES repo_queues (repo),
    pr                integer NOT NULL CHECK (pr > 0),
    title             text NOT NULL DEFAULT '',
    author            text NOT NULL DEFAULT '',
    -- The head that was approved and queued; new commits drop the item.
    head_sha          text NOT NULL,
    priority          integer NOT NULL DEFAULT 0,
    queued_by         text NOT NULL,
    queued_by_slack   text,
    enqueued_at       timestamptz NOT NULL,
    state             queue_item_state NOT NULL DEFAULT 'queued',
    base_sha          text,
    candidate_sha     text,
    affected          jsonb NOT NULL DEFAULT '[]',
    deployed          jsonb NOT NULL DEFAULT '[]',
    outcome_reason    text,
    verify_started_at timestamptz,
    finished_at       timestamptz,
    landed_sha        text
);
-- A PR is in the queue at most once at a time.
CREATE UNIQUE INDEX queue_items_active_pr ON queue_items (repo, pr)
    WHERE state NOT IN ('merged', 'failed', 'cancelled', 'dropped');
-- One PR verifies at a time per repository.
CREATE UNIQUE INDEX queue_items_one_verifying ON queue_items (repo)
    WHERE state IN ('waiting_for_environment', 'preparing', 'deploying', 'testing', 'landing');
-- The invariant of the product: a PR is never landed twice.
CREATE UNIQUE INDEX queue_items_landed_once ON queue_items (repo, pr) WHERE state = 'merged';
CREATE INDEX queue_items_order ON queue_items (repo, priority DESC, enqueued_at, id) WHERE state = 'queued';

CREATE TABLE queue_steps (
    id          bigserial PRIMARY KEY,
    item_id     bigint NOT NULL REFERENCES queue_items (id),
    name        text NOT NULL CHECK (name IN ('build', 'deploy', 'test', 'revert')),
    resource    text,
    state       text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    exit_code   integer,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    log         text NOT NULL DEFAULT ''
);
CREATE INDEX queue_steps_by_item ON queue_steps (item_id, id);

-- GitHub deliveries, stored before they are acknowledged and processed from here, so a crash
-- between the two loses nothing; the id makes a redelivery a no-op.
CREATE TABLE github_deliveries (
    delivery_id  text PRIMARY KEY,
    event        text NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL,
    processed_at timestamptz
);
CREATE INDEX github_deliveries_pending ON github_deliveries (received_at) WHERE processed_at IS NULL;
CREATE TRIGGER github_deliveries_notify AFTER INSERT ON github_deliveries
    FOR EACH ROW EXECUTE FUNCTION notify_channel('github_deliveries');

CREATE TRIGGER queue_items_notify AFTER INSERT OR UPDATE ON queue_items
    FOR EACH ROW EXECUTE FUNCTION notify_channel('gandalf_queue');
