-- The scheduler's persistent state (DESIGN.md §5). A schedule is `job:<uuid>` or
-- `workflow:<name>:<expr>[@tz]`. Its next fire is computed from `last_fire`, never from the time
-- the daemon started. Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE schedules (
    id          TEXT PRIMARY KEY,
    -- The newest fire instant handled (enqueued, skipped or recorded missed).
    last_fire   INTEGER,
    -- When claw first saw the schedule: the anchor while it has no fire yet.
    first_seen  INTEGER NOT NULL,
    fired       INTEGER NOT NULL DEFAULT 0,
    missed      INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0
);

-- One row per fire: the primary key makes enqueueing a fire exactly-once, also between two
-- processes racing on one database.
CREATE TABLE schedule_fires (
    schedule      TEXT NOT NULL,
    scheduled_for INTEGER NOT NULL,
    -- scheduled_for plus the schedule's jitter offset.
    due_at        INTEGER NOT NULL,
    enqueued_at   INTEGER NOT NULL,
    -- 1: a catch-up fire, enqueued after its grace period.
    late          INTEGER NOT NULL DEFAULT 0,
    -- queued | running | ok | error | interrupted | skipped | run (a workflow run: see run_id)
    status        TEXT NOT NULL,
    run_id        TEXT,
    detail        TEXT,
    finished_at   INTEGER,
    PRIMARY KEY (schedule, scheduled_for)
);
CREATE INDEX schedule_fires_status ON schedule_fires (status);
CREATE INDEX schedule_fires_enqueued ON schedule_fires (enqueued_at);
