-- Runs and their steps (DESIGN.md §10). Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    workflow_path   TEXT NOT NULL,
    definition      TEXT NOT NULL,
    params          TEXT NOT NULL DEFAULT '{}',
    trigger_data    TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL,
    owner           TEXT,
    lease_until     INTEGER,
    dry_run         INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    parent_run      TEXT,
    outputs         TEXT NOT NULL DEFAULT '{}',
    error           TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);
CREATE INDEX runs_workflow_created ON runs (workflow, created_at);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_created ON runs (created_at);

CREATE TABLE steps (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    phase       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER,
    started_at  INTEGER,
    finished_at INTEGER,
    outputs     TEXT NOT NULL DEFAULT '{}',
    stdout_tail TEXT NOT NULL DEFAULT '',
    stderr_tail TEXT NOT NULL DEFAULT '',
    message     TEXT,
    log_path    TEXT,
    decision    TEXT,
    decided_by  TEXT,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
