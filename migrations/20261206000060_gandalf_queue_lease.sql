-- Gandalf's merge queues are worked under a lease with an epoch too (SPEC §8), no longer under a
-- session advisory lock: a verification and a landing are work that must happen once. One lease,
-- key `queues`, for every repository's queue (one replica works them all, as before). Every write
-- of a verification (its state, its steps, the landing commit, its conclusion) checks it in the
-- write's transaction, and the base branch is moved only right after such a check.
INSERT INTO work_lease_kinds (kind, ttl) VALUES ('gandalf', '10 seconds');
