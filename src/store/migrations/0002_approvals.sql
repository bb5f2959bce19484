-- Approval gates (DESIGN.md §4): the request a waiting step makes, and each approver's vote.
CREATE TABLE approvals (
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step         TEXT NOT NULL,
    message      TEXT NOT NULL,
    approvers    TEXT NOT NULL DEFAULT '[]',
    quorum       INTEGER NOT NULL DEFAULT 1,
    deadline     INTEGER,
    on_timeout   TEXT NOT NULL DEFAULT 'reject',
    input        TEXT NOT NULL DEFAULT '[]',
    requested_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

CREATE TABLE approval_votes (
    run_id     TEXT NOT NULL,
    step       TEXT NOT NULL,
    approver   TEXT NOT NULL,
    decision   TEXT NOT NULL,
    reason     TEXT,
    input      TEXT NOT NULL DEFAULT '{}',
    decided_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, step, approver),
    FOREIGN KEY (run_id, step) REFERENCES approvals (run_id, step) ON DELETE CASCADE
) WITHOUT ROWID;
