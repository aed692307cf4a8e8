-- Bobby's Nightly (SPEC §4.5): runs, what each did to each environment and each step, the nights
-- admins asked to skip, and when environments were down (for the hours-saved line of the summary).
--
-- Everything a run does is written here as it happens, so that after a crash the next leader knows
-- which step was running where and can resume it, or mark it interrupted: no environment stays
-- `deleting` or `creating` because a process died.

CREATE TABLE nightly_runs (
    id            bigserial PRIMARY KEY,
    phase         text NOT NULL CHECK (phase IN ('delete', 'create')),
    -- `scheduled`: the scheduler woke for it; `caught-up`: found missed at start; `manual`: asked for.
    trigger       text NOT NULL CHECK (trigger IN ('scheduled', 'caught-up', 'manual')),
    -- The schedule slot a scheduled or caught-up run is for; NULL for manual runs. One run per slot,
    -- whatever replicas and restarts do.
    scheduled_for timestamptz,
    -- Manual runs: who asked (a Slack id, or `cli`), and the one environment they named, if any.
    requested_by  text,
    only_env      text,
    -- `requested` (manual, waiting for the Nightly leader) → `running` → `finished`; `interrupted`
    -- when Bobby stopped mid-run and the next phase was due before it came back; `skipped` for a
    -- slot of a night an admin skipped.
    state         text NOT NULL CHECK (state IN ('requested', 'running', 'finished', 'interrupted', 'skipped')),
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    -- An interrupted run is resumed until this instant (when the other phase is due), else it is
    -- marked interrupted.
    resume_until  timestamptz,
    note          text NOT NULL DEFAULT '',
    CONSTRAINT scheduled_has_slot CHECK ((trigger = 'manual') = (scheduled_for IS NULL)),
    UNIQUE (phase, scheduled_for)
);
-- One run at a time: the Nightly leader runs them one after the other; this backs that up.
CREATE UNIQUE INDEX nightly_runs_one_running ON nightly_runs ((true)) WHERE state = 'running';
CREATE INDEX nightly_runs_requested ON nightly_runs (id) WHERE state = 'requested';

-- What a run decided for each environment, in processing order.
CREATE TABLE nightly_run_envs (
    run_id      bigint NOT NULL REFERENCES nightly_runs (id),
    environment text NOT NULL,
    position    integer NOT NULL,
    -- `pending` → `running` → `ok` | `faulted`; `interrupted` (see nightly_runs.resume_until);
    -- `skipped` with a reason: preserved, gandalf, not-kept, already-up, already-down, busy.
    state       text NOT NULL CHECK (state IN ('pending', 'running', 'ok', 'faulted', 'interrupted', 'skipped')),
    skip_reason text,
    -- Preserved: until when.
    skip_until  timestamptz,
    -- The environment's state before the run claimed it: an interrupted run puts back the ones it
    -- never started on.
    prev_state  environment_state,
    prev_fault  jsonb,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (run_id, environment),
    CONSTRAINT skipped_has_reason CHECK ((state = 'skipped') = (skip_reason IS NOT NULL))
);

-- The steps of each environment of a run. The command is stored too: a run resumed after a crash
-- runs what it started with, even if the config changed meanwhile.
CREATE TABLE nightly_steps (
    run_id          bigint NOT NULL,
    environment     text NOT NULL,
    position        integer NOT NULL,
    name            text NOT NULL,
    command         text NOT NULL,
    -- `backoff`: throttled (exit 75), waiting until next_attempt_at for the next attempt.
    state           text NOT NULL CHECK (state IN ('pending', 'running', 'backoff', 'ok', 'failed', 'skipped')),
    -- Attempts of the current try (a step resumed after a crash starts a new try).
    attempts        integer NOT NULL DEFAULT 0,
    exit_code       integer,
    -- How the last attempt ended, for people ("exit status 3", "timed out …").
    ended           text,
    next_attempt_at timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    log_tail        text,
    PRIMARY KEY (run_id, environment, position),
    FOREIGN KEY (run_id, environment) REFERENCES nightly_run_envs (run_id, environment)
);

-- Every attempt of every step with its (masked, bounded) output: the log behind the summary's link.
CREATE TABLE nightly_attempts (
    id              bigserial PRIMARY KEY,
    run_id          bigint NOT NULL,
    environment     text NOT NULL,
    step_position   integer NOT NULL,
    attempt         integer NOT NULL,
    -- The wait before this attempt and the ceiling it was drawn from (full jitter); NULL for the first.
    backoff_ms      bigint,
    backoff_cap_ms  bigint,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    exit_code       integer,
    ended           text,
    output          text NOT NULL DEFAULT '',
    FOREIGN KEY (run_id, environment, step_position) REFERENCES nightly_steps (run_id, environment, position)
);
CREATE INDEX nightly_attempts_by_step ON nightly_attempts (run_id, environment, step_position, id);

-- Nights an admin asked Nightly to leave alone: the delete on that local date and the create after it.
CREATE TABLE nightly_skips (
    night        date PRIMARY KEY,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL
);

-- When each environment was down (deleted by Nightly until a create started on it): the hours
-- saved compared with keeping everything up all the time.
CREATE TABLE environment_downtime (
    id          bigserial PRIMARY KEY,
    environment text NOT NULL REFERENCES environments (name),
    down_from   timestamptz NOT NULL,
    down_until  timestamptz,
    CONSTRAINT ends_after_start CHECK (down_until IS NULL OR down_until >= down_from)
);
CREATE UNIQUE INDEX environment_downtime_open ON environment_downtime (environment) WHERE down_until IS NULL;

-- What the Nightly leader is waiting for, for `nightly status` on any replica and for tests that
-- move a manual clock: the next slot it sleeps until.
CREATE TABLE nightly_scheduler (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    next_phase   text,
    next_due_at  timestamptz,
    leader_since timestamptz,
    updated_at   timestamptz NOT NULL
);

-- A manual run was requested: wake the Nightly leader. A run reached an end: wake whoever waits
-- for it (`bobby nightly run` on the command line).
CREATE TRIGGER nightly_runs_requested AFTER INSERT ON nightly_runs
    FOR EACH ROW WHEN (NEW.state = 'requested') EXECUTE FUNCTION notify_channel('nightly');
CREATE TRIGGER nightly_runs_ended AFTER UPDATE OF state ON nightly_runs
    FOR EACH ROW WHEN (NEW.state IN ('finished', 'interrupted', 'skipped') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION notify_channel('nightly_done');
