-- Fencing by leases with epochs (SPEC §8): work that must happen once (a Nightly run, a deploy) is
-- owned through a row here. A session advisory lock alone is not enough: it vanishes the instant
-- its session dies while the owner's steps keep running, and a second replica would start the same
-- work. A lease instead lasts until `expires_at` whatever happens to connections; its owner renews
-- it, kills its steps when it cannot, and every write of the work checks that the lease is still
-- its own (same owner, same epoch, not expired) in the write's transaction.
--
-- Expiry is measured by the database's clock (`now()`) only, so replicas' clocks do not matter.

-- How long a lease lasts without renewal, per kind of work. In the database rather than in each
-- replica's config: every replica must agree on it, and an operator (or a test) tunes it in one
-- place. The owner renews every third of it and gives up (kills its steps) when a third is left.
-- Ten seconds: a database that is away longer than about seven costs the steps that were running
-- (they run again from their start under the next owner), and a bot killed with -9 and restarted
-- waits at most that long before it resumes its own work.
CREATE TABLE work_lease_kinds (
    kind text PRIMARY KEY,
    ttl  interval NOT NULL CHECK (ttl >= interval '1 second')
);
INSERT INTO work_lease_kinds (kind, ttl) VALUES ('nightly', '10 seconds'), ('deploy', '10 seconds');

CREATE TABLE work_leases (
    kind       text NOT NULL REFERENCES work_lease_kinds (kind),
    -- Which piece of work: `leader` for Nightly, the deploy's id for a deploy.
    key        text NOT NULL,
    -- The replica that holds it (`host:pid:n`, unique per acquisition in a process).
    owner      text NOT NULL,
    -- The fencing token: +1 at every take-over. A write carrying an older epoch is refused.
    epoch      bigint NOT NULL CHECK (epoch >= 1),
    acquired_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);
