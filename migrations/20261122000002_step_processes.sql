-- Step processes (Nightly steps, deploys, verifications) that are running right now, by process
-- group. A bot that crashed leaves rows here; at start it kills those groups before resuming work.
CREATE TABLE step_processes (
    pgid       integer NOT NULL,
    -- The machine (and boot) the group lives on: a process group id means nothing elsewhere.
    host       text NOT NULL,
    what       text NOT NULL,
    started_at timestamptz NOT NULL,
    PRIMARY KEY (host, pgid)
);
