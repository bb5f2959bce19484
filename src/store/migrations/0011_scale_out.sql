-- Scale-out (docs/scale-out.md): several claw processes share one store (PostgreSQL).
-- `epoch` is the fencing token of a run's claim: bumped at every claim by a worker, and every
-- write of the run's state by that worker is conditional on it. `labels` are the run's
-- `runs_on:` (a JSON array): only a worker with all of them claims it.
ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
CREATE INDEX runs_unfinished ON runs (created_at, id) WHERE status IN ('queued', 'running', 'waiting');

-- `claw worker` processes, as they last reported (`claw doctor` lists the ones alive).
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    labels     TEXT NOT NULL DEFAULT '[]',
    slots      INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
);

-- A role one process holds at a time (the scheduler of several daemons), with its own epoch.
CREATE TABLE role_leases (
    role        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
);

-- Step logs kept in the store, in capped chunks, so `claw run logs` works from any machine.
CREATE TABLE step_log_chunks (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step   TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (run_id, step, seq)
);
